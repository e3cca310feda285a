/**
 * Tests of the AWS test harness itself (no tsweaver AWS deployer needed): the emulator, the stack's
 * resources created in it, the Fargate simulator and the throttling proxy.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  DescribeLogGroupsCommand,
  GetLogEventsCommand,
} from "@aws-sdk/client-cloudwatch-logs";
import {
  CreateClusterCommand,
  CreateServiceCommand,
  DescribeServicesCommand,
  DescribeTasksCommand,
  ECSClient,
  ListClustersCommand,
  ListTasksCommand,
  RegisterTaskDefinitionCommand,
  StopTaskCommand,
  UpdateServiceCommand,
} from "@aws-sdk/client-ecs";
import {
  DescribeListenersCommand,
  DescribeLoadBalancersCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { CreateSecretCommand, GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { ListNamespacesCommand, ServiceDiscoveryClient } from "@aws-sdk/client-servicediscovery";
import {
  CONTROLPLANE_NAME,
  ENV,
  OUTPUTS,
  listenerUrlOutputKey,
  versionedServiceName,
  type GroupsOutput,
  type ListenersOutput,
} from "../../runtime/deployers/aws/contract.js";
import { alive as exists, ROOT, waitFor } from "../support/index.js";
import { startFargate, type SimTask } from "./fargate.js";
import { checkMotoInstalled, clientConfig, httpStatus, MOTO_MISSING, useEmulator, type Emulator } from "./moto.js";
import { createAppResources, discoveryServicesOf, type AppResources, HELLO_CONFIG } from "./stack.js";
import { startThrottleProxy } from "./throttle.js";

const SLEEPER = path.join(ROOT, "dist/test/aws/fixtures/sleeper.js");

let emu: Emulator;
before(async () => {
  emu = await useEmulator();
});
after(async () => {
  await emu?.stop();
});

interface SleeperReport {
  pid: number;
  ip: string;
  port: number;
  argv: string[];
  cwd: string;
  configExists: boolean;
  env: Record<string, string>;
  container: { Name: string; Networks: { NetworkMode: string; IPv4Addresses: string[] }[] };
  task: { TaskARN: string; Family: string; LaunchType: string; Containers: { Name: string }[] };
  grandchild?: number;
}

/** The process runs (a killed process not yet reaped by init — a zombie — does not). */
function alive(pid: number): boolean {
  if (!exists(pid)) return false;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return exists(pid);
  }
}

function report(t: SimTask): SleeperReport | undefined {
  const line = t.stdout.find((l) => l.startsWith("SLEEPER {"));
  return line === undefined ? undefined : (JSON.parse(line.slice("SLEEPER ".length)) as SleeperReport);
}

test("the emulator is up, with throwaway credentials", async () => {
  assert.equal(process.env["AWS_ACCESS_KEY_ID"] !== undefined && process.env["AWS_REGION"] !== undefined, true);
  assert.equal(process.env["AWS_ENDPOINT_URL"], emu.endpoint);
  if (emu.moto) assert.equal(await httpStatus(`${emu.endpoint}/moto-api/`), 200);
  const ecs = new ECSClient(clientConfig(emu.endpoint));
  await ecs.send(new ListClustersCommand({}));
  ecs.destroy();
  assert.throws(
    () => checkMotoInstalled("/nonexistent/python3"),
    (err: Error) => err.message.startsWith(MOTO_MISSING),
  );
});

describe("createAppResources on examples/hello", () => {
  let res: AppResources;
  before(async () => {
    res = await createAppResources({ configFile: HELLO_CONFIG, listeners: { hello: { health_check_path: "/healthz" } } });
  });
  after(async () => {
    if (res !== undefined) assert.deepEqual(await res.delete(), []);
  });

  test("the stack's outputs are exactly the contract's keys, with real values", () => {
    const groups = ["hello-reverser", "tsweaver-main"];
    const expected = new Set<string>([...Object.values(OUTPUTS), listenerUrlOutputKey("hello")]);
    assert.deepEqual(new Set(Object.keys(res.outputs)), expected);
    const o = res.outputs;
    assert.equal(o[OUTPUTS.APP], "hello");
    assert.equal(o[OUTPUTS.DEPLOYMENT], res.stack);
    assert.equal(o[OUTPUTS.CLUSTER_NAME], res.stack);
    assert.match(o[OUTPUTS.CLUSTER_ARN]!, new RegExp(`^arn:aws:ecs:[^:]+:\\d{12}:cluster/${res.stack}$`));
    assert.equal(o[OUTPUTS.CONTROLPLANE_SERVICE], CONTROLPLANE_NAME);
    assert.equal(o[OUTPUTS.NAMESPACE_NAME], res.stack);
    assert.match(o[OUTPUTS.NAMESPACE_ID]!, /^ns-/);
    assert.equal(o[OUTPUTS.MAIN_GROUP], "tsweaver-main");
    assert.match(o[OUTPUTS.VERSION]!, /^v[0-9a-f]{10}$/);
    assert.match(o[OUTPUTS.SECRET_ARN]!, /^arn:aws:secretsmanager:/);
    const g = JSON.parse(o[OUTPUTS.GROUPS]!) as GroupsOutput;
    assert.deepEqual(Object.keys(g).sort(), groups);
    assert.match(g["hello-reverser"]!.discoveryServiceId, /^srv-/);
    const l = JSON.parse(o[OUTPUTS.LISTENERS]!) as ListenersOutput;
    assert.equal(l["hello"]!.url, o["UrlHello"]);
    assert.equal(l["hello"]!.url, `http://${o[OUTPUTS.LOAD_BALANCER_DNS]}`);
    assert.match(l["hello"]!.listenerArn, /^arn:aws:elasticloadbalancing:.*:listener\//);
  });

  test("ECS: cluster, the control plane's service and every task definition under the contract's names", async () => {
    const ecs = new ECSClient(clientConfig(emu.endpoint));
    const d = await ecs.send(new DescribeServicesCommand({ cluster: res.stack, services: [CONTROLPLANE_NAME] }));
    const byName = new Map(d.services!.map((s) => [s.serviceName!, s]));
    assert.equal(byName.get(CONTROLPLANE_NAME)!.desiredCount, 1);
    assert.equal(byName.get(CONTROLPLANE_NAME)!.taskDefinition, res.controlPlane.arn);
    assert.equal(res.groups["hello-reverser"]!.taskDefinition, res.agents["hello-reverser"]!.arn);
    ecs.destroy();

    const agent = res.agents["hello-reverser"]!;
    assert.equal(agent.family, `${res.stack}-hello-reverser`);
    assert.equal(agent.container, "agent");
    assert.deepEqual(agent.command, ["aws", "agent"]);
    assert.deepEqual(agent.env, {
      [ENV.APP]: "hello",
      [ENV.DEPLOYMENT]: res.stack,
      [ENV.VERSION]: res.version,
      [ENV.CONFIG]: "weaver.toml",
      [ENV.NAMESPACE]: res.stack,
      [ENV.CONTROLPLANE_SERVICE]: CONTROLPLANE_NAME,
      [ENV.RPC_PORT]: "9000",
      [ENV.GROUP]: "hello-reverser",
      [ENV.COMPONENTS]: "hello/Reverser",
      [ENV.HEALTH_PORT]: "9101",
    });
    assert.deepEqual(agent.secrets, { [ENV.SECRET]: res.secretArn });
    assert.ok(existsSync(path.join(res.workdir, agent.env[ENV.CONFIG]!)), "TSWEAVER_CONFIG resolves in the task's working directory");

    const cp = res.controlPlane;
    assert.equal(cp.family, `${res.stack}-controlplane`);
    assert.equal(cp.container, "controlplane");
    assert.deepEqual(cp.command, ["aws", "controlplane"]);
    assert.equal(cp.env[ENV.CLUSTER], res.clusterArn);
    assert.equal(cp.env[ENV.NAMESPACE_ID], res.namespaceId);
    assert.match(cp.env[ENV.SUBNETS]!, /^subnet-[0-9a-f]+,subnet-[0-9a-f]+$/);
    assert.match(cp.env[ENV.SECURITY_GROUP]!, /^sg-/);
    assert.equal(cp.env[ENV.ASSIGN_PUBLIC_IP], "DISABLED");
    assert.deepEqual(cp.secrets, { [ENV.SECRET]: res.secretArn });
    assert.deepEqual(res.groups["tsweaver-main"]!.components, ["tsweaver/Main"]);
    assert.equal(res.groups["tsweaver-main"]!.min, 1);
    assert.equal(res.listeners["hello"]!.containerPort, 8080);
    assert.equal(res.listeners["hello"]!.port, 80);
  });

  test("Cloud Map, ELBv2, Secrets Manager, CloudWatch Logs and Application Auto Scaling", async () => {
    const cfg = clientConfig(emu.endpoint);
    const sd = new ServiceDiscoveryClient(cfg);
    const ns = await sd.send(new ListNamespacesCommand({}));
    assert.equal(ns.Namespaces!.find((n) => n.Id === res.namespaceId)?.Name, res.stack);
    assert.equal(ns.Namespaces!.find((n) => n.Id === res.namespaceId)?.Type, "HTTP");
    const ids = new Map((await discoveryServicesOf(sd, res.namespaceId)).map((s) => [s.Name, s.Id]));
    assert.deepEqual([...ids.keys()].sort(), ["hello-reverser", "tsweaver-main", CONTROLPLANE_NAME].sort());
    assert.equal(res.groups["hello-reverser"]!.discoveryServiceId, ids.get("hello-reverser"));
    assert.equal(res.controlPlane.discoveryServiceId, ids.get(CONTROLPLANE_NAME));
    sd.destroy();

    const elb = new ElasticLoadBalancingV2Client(cfg);
    assert.equal(res.listeners["hello"]!.healthCheckPath, "/healthz");
    const lb = (await elb.send(new DescribeLoadBalancersCommand({ LoadBalancerArns: [res.outputs[OUTPUTS.LOAD_BALANCER_ARN]!] })))
      .LoadBalancers![0]!;
    assert.equal(lb.DNSName, res.outputs[OUTPUTS.LOAD_BALANCER_DNS]);
    const listeners = await elb.send(new DescribeListenersCommand({ LoadBalancerArn: lb.LoadBalancerArn }));
    assert.equal(listeners.Listeners!.find((l) => l.ListenerArn === res.listeners["hello"]!.listenerArn)?.Port, 80);
    elb.destroy();

    const sm = new SecretsManagerClient(cfg);
    assert.equal((await sm.send(new GetSecretValueCommand({ SecretId: res.secretArn }))).SecretString, res.secret);
    assert.match(res.secret, /^[A-Za-z0-9]{48}$/);
    sm.destroy();

    const logs = new CloudWatchLogsClient(cfg);
    const lg = await logs.send(new DescribeLogGroupsCommand({ logGroupNamePrefix: res.logGroup }));
    assert.equal(lg.logGroups?.[0]?.logGroupName, res.logGroup);
    logs.destroy();

    // Scalable targets belong to the versions' services, which the control plane creates: none yet.
    assert.deepEqual(res.scalableTargets, []);
  });

  test("the Fargate simulator gives the stack's tasks their task definition's environment", async () => {
    // The sleeper stands in for the image's entrypoint: it reports what `tsweaver aws ...` would get.
    const sim = await startFargate({
      endpoint: emu.endpoint,
      cluster: res.clusterName,
      workdir: res.workdir,
      entrypoint: [process.execPath, SLEEPER],
      pollMs: 100,
    });
    const ecs = new ECSClient(clientConfig(emu.endpoint));
    try {
      const cp = await sim.waitFor("the control plane task", (ts) => ts.map(report).find((r) => r?.argv.join(" ") === "aws controlplane"));
      for (const k of [
        ENV.APP,
        ENV.DEPLOYMENT,
        ENV.VERSION,
        ENV.ROLLOUT,
        ENV.VPC_ID,
        ENV.CONTROL_PORT,
        ENV.RPC_PORT,
        ENV.CLUSTER,
        ENV.NAMESPACE_ID,
        ENV.CONTROLPLANE_SERVICE_ID,
        ENV.GROUPS,
        ENV.LISTENERS,
        ENV.SUBNETS,
        ENV.SECURITY_GROUP,
        ENV.ASSIGN_PUBLIC_IP,
      ]) {
        assert.equal(cp.env[k], res.controlPlane.env[k], k);
      }
      assert.equal(cp.env[ENV.SECRET], res.secret);
      assert.equal(cp.env["AWS_ENDPOINT_URL"], emu.endpoint);
      assert.equal(cp.cwd, res.workdir);
      assert.equal(cp.env[ENV.CONFIG], undefined, "the control plane reads no weaver.toml");

      // A version's group service, as the control plane creates it.
      const service = versionedServiceName("hello-reverser", res.version);
      await ecs.send(
        new CreateServiceCommand({
          cluster: res.stack,
          serviceName: service,
          taskDefinition: res.groups["hello-reverser"]!.taskDefinition,
          desiredCount: 1,
          launchType: "FARGATE",
        }),
      );
      const agent = await sim.waitFor("an agent task", (ts) => ts.map(report).find((r) => r?.env[ENV.GROUP] === "hello-reverser"));
      assert.deepEqual(agent.argv, ["aws", "agent"]);
      assert.equal(agent.env[ENV.SECRET], res.secret);
      assert.equal(agent.env[ENV.COMPONENTS], "hello/Reverser");
      assert.equal(agent.configExists, true, "the agent finds weaver.toml at TSWEAVER_CONFIG in its working directory");
      // Both bound the same port (TSWEAVER_RPC_PORT), each on its own task address.
      assert.equal(agent.port, cp.port);
      assert.notEqual(agent.ip, cp.ip);
      await ecs.send(new UpdateServiceCommand({ cluster: res.stack, service, desiredCount: 0 }));
      await sim.waitFor("the agent task to stop", (ts) => ts.filter((t) => t.service === service).every((t) => t.state === "exited"));
    } finally {
      await sim.stop();
      ecs.destroy();
    }
    assert.deepEqual(sim.runningTasks(), []);
  });
});

describe("FargateSimulator on a service of sleepers", () => {
  const cluster = `sim-${randomBytes(4).toString("hex")}`;
  const logGroup = `/tsweaver-test/${cluster}`;
  let ecs: ECSClient;
  let secretArn: string;

  before(async () => {
    const cfg = clientConfig(emu.endpoint);
    ecs = new ECSClient(cfg);
    await ecs.send(new CreateClusterCommand({ clusterName: cluster }));
    const sm = new SecretsManagerClient(cfg);
    secretArn = (await sm.send(new CreateSecretCommand({ Name: `${cluster}-secret`, SecretString: "s3cr3t" }))).ARN!;
    sm.destroy();
    const logs = new CloudWatchLogsClient(cfg);
    await logs.send(new CreateLogGroupCommand({ logGroupName: logGroup }));
    logs.destroy();
    // moto 5.2.1 crashes running awsvpc task definitions: the simulator does not need the network mode.
    const td = await ecs.send(
      new RegisterTaskDefinitionCommand({
        family: `${cluster}-sleeper`,
        networkMode: "bridge",
        cpu: "256",
        memory: "512",
        containerDefinitions: [
          {
            name: "sleeper",
            image: "sleeper:latest",
            memory: 512,
            essential: true,
            entryPoint: ["node", SLEEPER],
            command: ["zzz"],
            environment: [
              { name: "SLEEPER_PORT", value: "7000" },
              { name: "SLEEPER_CHILD", value: "1" },
            ],
            secrets: [{ name: "THE_SECRET", valueFrom: secretArn }],
            logConfiguration: {
              logDriver: "awslogs",
              options: { "awslogs-group": logGroup, "awslogs-region": emu.region, "awslogs-stream-prefix": "sleeper" },
            },
          },
        ],
      }),
    );
    await ecs.send(
      new CreateServiceCommand({
        cluster,
        serviceName: "sleeper",
        taskDefinition: td.taskDefinition!.taskDefinitionArn,
        desiredCount: 0,
        launchType: "FARGATE",
      }),
    );
  });
  after(() => ecs?.destroy());

  test("runs, replaces and stops a service's tasks as local processes", async () => {
    const sim = await startFargate({ endpoint: emu.endpoint, cluster, pollMs: 100, stopTimeoutMs: 2000 });
    try {
      await ecs.send(new UpdateServiceCommand({ cluster, service: "sleeper", desiredCount: 2 }));
      const two = await sim.waitFor("two sleepers", (ts) => {
        const up = ts.filter((t) => t.state === "running" && report(t) !== undefined);
        return up.length === 2 ? up : undefined;
      });

      // In the emulator: two RUNNING tasks of the service, started by its deployment.
      const listed = (await ecs.send(new ListTasksCommand({ cluster, desiredStatus: "RUNNING" }))).taskArns!;
      assert.deepEqual([...listed].sort(), two.map((t) => t.taskArn).sort());
      const described = (await ecs.send(new DescribeTasksCommand({ cluster, tasks: listed }))).tasks!;
      for (const t of described) {
        assert.equal(t.group, "service:sleeper");
        assert.match(t.startedBy!, /^ecs-svc\//);
        assert.equal(t.lastStatus, "RUNNING");
      }

      // Each process: its own address, the task's metadata, the container's environment and secret.
      assert.notEqual(two[0]!.ip, two[1]!.ip);
      for (const t of two) {
        // The address the process runs on is the ENI address ECS reports for the task.
        const eni = described
          .find((d) => d.taskArn === t.taskArn)
          ?.attachments?.find((a) => a.type === "ElasticNetworkInterface")
          ?.details?.find((d) => d.name === "privateIPv4Address")?.value;
        assert.equal(t.ip, eni);
        assert.match(t.ip, /^127\./);
        const r = report(t)!;
        assert.equal(r.ip, t.ip);
        assert.deepEqual(r.argv, ["zzz"]);
        assert.equal(r.env["THE_SECRET"], "s3cr3t");
        assert.equal(r.env["AWS_ENDPOINT_URL"], emu.endpoint);
        assert.equal(r.env["AWS_REGION"], emu.region);
        assert.equal(r.env["ECS_CONTAINER_METADATA_URI_V4"], t.metadataUri);
        assert.equal(r.task.TaskARN, t.taskArn);
        assert.equal(r.task.Family, `${cluster}-sleeper`);
        assert.equal(r.task.LaunchType, "FARGATE");
        assert.equal(r.container.Name, "sleeper");
        assert.deepEqual(r.container.Networks[0], { ...r.container.Networks[0], NetworkMode: "awsvpc", IPv4Addresses: [t.ip] });
        // It really listens there.
        const served = (await (await fetch(`http://${t.ip}:7000/`)).json()) as SleeperReport;
        assert.equal(served.pid, t.pid);
      }

      // StopTask (by anyone) → SIGTERM; the service gets a replacement on a new address.
      const [first, second] = two as [SimTask, SimTask];
      await ecs.send(new StopTaskCommand({ cluster, task: first.taskArn, reason: "stopped by the test" }));
      const stopped = await sim.waitFor("the stopped task's process to exit", () => {
        const t = sim.task(first.taskArn)!;
        return t.state === "exited" ? t : undefined;
      });
      assert.equal(stopped.exitCode, 0);
      assert.ok(stopped.stdout.includes("SLEEPER got SIGTERM"));
      assert.equal(stopped.stoppedReason, "stopped by the test");
      const replacement = await sim.waitFor("a replacement", (ts) =>
        ts.find((t) => t.state === "running" && t.taskArn !== second.taskArn && report(t)),
      );
      assert.ok(![first.ip, second.ip].includes(replacement.ip), "addresses are never reused");
      await waitFor("the grandchild of the stopped task to be gone", () => !alive(report(first)!.grandchild!), 5000);

      // A crash (SIGKILL of the main process) → the task is stopped with the exit code; whatever the
      // process started dies with the task; the service gets a replacement.
      sim.kill(second.taskArn, "SIGKILL");
      const crashed = await sim.waitFor("the crash to be noticed", () => {
        const t = sim.task(second.taskArn)!;
        return t.state === "exited" ? t : undefined;
      });
      assert.equal(crashed.exitCode, 137);
      const inEmulator = await waitFor("the crashed task to be STOPPED in the emulator", async () => {
        const t = (await ecs.send(new DescribeTasksCommand({ cluster, tasks: [second.taskArn] }))).tasks![0]!;
        return t.lastStatus === "STOPPED" ? t : undefined;
      });
      assert.equal(inEmulator.stoppedReason, "Essential container in task exited (code 137)");
      await waitFor("the grandchild of the crashed task to be gone", () => !alive(report(second)!.grandchild!), 5000);
      await sim.waitFor("two sleepers again", (ts) => ts.filter((t) => t.state === "running" && report(t)).length === 2);

      // The awslogs driver: output is in CloudWatch Logs, one stream per task.
      const logs = new CloudWatchLogsClient(clientConfig(emu.endpoint));
      const events = await waitFor("the task's output in CloudWatch Logs", async () => {
        const out = await logs.send(new GetLogEventsCommand({ logGroupName: logGroup, logStreamName: `sleeper/sleeper/${first.taskId}` }));
        return out.events?.some((e) => e.message === "SLEEPER got SIGTERM") ? out.events : undefined;
      });
      assert.ok(events.some((e) => e.message!.startsWith("SLEEPER {")));
      logs.destroy();

      // Scaled to 0: every process stops.
      await ecs.send(new UpdateServiceCommand({ cluster, service: "sleeper", desiredCount: 0 }));
      await sim.waitFor("every sleeper to stop", (ts) => ts.every((t) => t.state === "exited"));
      assert.deepEqual((await ecs.send(new ListTasksCommand({ cluster, desiredStatus: "RUNNING" }))).taskArns, []);
    } finally {
      await sim.stop();
    }
    // Nothing left running (a SIGKILLed process may linger as a zombie for a moment).
    const pids = sim.tasks().flatMap((t) => [t.pid!, report(t)?.grandchild ?? t.pid!]);
    await waitFor("every process of every task to be gone", () => pids.every((p) => !alive(p)), 3000);
  });

  test("stop() stops every process and its task", async () => {
    const sim = await startFargate({ endpoint: emu.endpoint, cluster, pollMs: 100, stopTimeoutMs: 1000 });
    await ecs.send(new UpdateServiceCommand({ cluster, service: "sleeper", desiredCount: 1 }));
    const t = await sim.waitFor("a sleeper", (ts) => ts.find((x) => x.state === "running" && report(x)));
    await ecs.send(new UpdateServiceCommand({ cluster, service: "sleeper", desiredCount: 0 }));
    await sim.stop();
    assert.equal(alive(t.pid!), false);
    await waitFor("the task's grandchild to be gone", () => !alive(report(t)!.grandchild!), 3000);
    assert.deepEqual((await ecs.send(new ListTasksCommand({ cluster, desiredStatus: "RUNNING" }))).taskArns, []);
  });
});

test("the throttling proxy answers AWS throttling errors, then forwards", async () => {
  const proxy = await startThrottleProxy({ target: emu.endpoint });
  const cfg = clientConfig(proxy.endpoint);
  const ecs = new ECSClient({ ...cfg, maxAttempts: 1 });
  const elb = new ElasticLoadBalancingV2Client({ ...cfg, maxAttempts: 1 });
  const sd = new ServiceDiscoveryClient({ ...cfg, maxAttempts: 1 });
  const retrying = new ECSClient({ ...cfg, maxAttempts: 3 });
  try {
    // JSON protocol (ECS, Cloud Map): HTTP 400 ThrottlingException.
    proxy.throttle("ListClusters", 1);
    await assert.rejects(ecs.send(new ListClustersCommand({})), (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(err.name, "ThrottlingException");
      assert.equal(err.$metadata?.httpStatusCode, 400);
      return true;
    });
    await ecs.send(new ListClustersCommand({}));
    proxy.throttle("ListNamespaces", 1, { service: "servicediscovery" });
    await assert.rejects(sd.send(new ListNamespacesCommand({})), { name: "ThrottlingException" });
    await sd.send(new ListNamespacesCommand({}));

    // Query protocol (ELBv2): HTTP 400 Throttling.
    proxy.throttle("DescribeLoadBalancers", 1);
    await assert.rejects(elb.send(new DescribeLoadBalancersCommand({})), (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(err.name, "Throttling");
      assert.equal(err.$metadata?.httpStatusCode, 400);
      return true;
    });
    await elb.send(new DescribeLoadBalancersCommand({}));

    // The SDK retries throttling errors.
    proxy.throttle("ListClusters", 2);
    const out = await retrying.send(new ListClustersCommand({}));
    assert.equal(out.$metadata.attempts, 3);

    assert.equal(proxy.injected("ListClusters"), 3);
    assert.equal(proxy.injected(), 5);
    assert.deepEqual(proxy.counts()["ecs:ListClusters"], { calls: 5, injected: 3 });
    assert.deepEqual(proxy.counts()["elasticloadbalancing:DescribeLoadBalancers"], { calls: 2, injected: 1 });
    assert.equal(proxy.calls("servicediscovery:ListNamespaces"), 2);
  } finally {
    for (const c of [ecs, elb, sd, retrying]) c.destroy();
    await proxy.stop();
  }
});
