/**
 * The AWS deployer end to end against the AWS API emulator: the real stack's resources, the real control
 * plane and agents (as local processes started by the Fargate simulator), and the real `tsweaver aws` CLI.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { DescribeServicesCommand, ECSClient } from "@aws-sdk/client-ecs";
import {
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { ListInstancesCommand, ServiceDiscoveryClient } from "@aws-sdk/client-servicediscovery";
import { CloudWatchLogsClient } from "@aws-sdk/client-cloudwatch-logs";
import { METRICS, targetGroupName, versionedServiceName } from "../../runtime/deployers/aws/contract.js";
import { get, runCli, waitFor } from "../support/index.js";
import { extractEmf, logMessages, total } from "./emf.js";
import { startFargate, type FargateSimulator } from "./fargate.js";
import { clientConfig, useEmulator, type Emulator } from "./moto.js";
import { createAppResources, type AppResources, HELLO_CONFIG, FAST_LOOPS } from "./stack.js";
import { startThrottleProxy, type ThrottleProxy } from "./throttle.js";

describe("AWS deployer on the emulator: activate → cross-task call → status → faults → deactivate", () => {
  let emu: Emulator;
  let res: AppResources;
  let sim: FargateSimulator;
  let proxy: ThrottleProxy;
  let ecs: ECSClient;
  let sd: ServiceDiscoveryClient;
  let elb: ElasticLoadBalancingV2Client;

  const instances = async (group: string) => {
    const out = await sd.send(new ListInstancesCommand({ ServiceId: res.groups[group]!.discoveryServiceId }));
    return out.Instances ?? [];
  };
  /** The targets of the deployed version's target group of the hello listener (the control plane creates it). */
  const targets = async () => {
    const tg = await elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "hello", res.version)] }));
    const out = await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroups![0]!.TargetGroupArn! }));
    return (out.TargetHealthDescriptions ?? []).map((t) => t.Target!);
  };
  /** The ECS service of a group in the deployed version. */
  const svc = (group: string) => versionedServiceName(group, res.version);
  const helloAt = async () => {
    const [t] = await targets();
    assert.ok(t, "a target is registered");
    return `http://${t.Id}:${t.Port}`;
  };
  const taskIdsOf = (group: string) =>
    sim
      .runningTasks(svc(group))
      .map((t) => t.taskId)
      .sort();

  before(async () => {
    emu = await useEmulator();
    ecs = new ECSClient(clientConfig(emu.endpoint));
    sd = new ServiceDiscoveryClient(clientConfig(emu.endpoint));
    elb = new ElasticLoadBalancingV2Client(clientConfig(emu.endpoint));
    res = await createAppResources({
      configFile: HELLO_CONFIG,
      groups: { "hello-reverser": { min: 2 } },
      // A short deregistration delay: the drain test waits it out.
      listeners: { hello: { container_port: 18080, deregistration_delay_seconds: 2 } },
      rpcPort: 19000,
      controlPort: 19100,
    });
    // Every task talks to AWS through a proxy that can inject throttling errors and counts API calls.
    proxy = await startThrottleProxy({ target: emu.endpoint });
    sim = await startFargate({
      endpoint: emu.endpoint,
      cluster: res.clusterArn,
      workdir: res.workdir,
      taskEnv: () => ({ ...FAST_LOOPS, AWS_ENDPOINT_URL: proxy.endpoint }),
      stopTimeoutMs: 15_000,
    });
  });

  after(async () => {
    await sim?.stop();
    await proxy?.stop();
    await res?.delete();
    await emu?.stop();
  });

  test("activate starts main, main's call raises the reverser group, and the listener answers through a cross-task call", async () => {
    // The control plane's first UpdateService calls are throttled: the SDK's retries must absorb them.
    proxy.throttle("UpdateService", 2);
    const before = proxy.counts();
    const started = Date.now();
    const activate = await runCli(["aws", "activate", res.configFile, "--timeout", "120"]);
    assert.equal(activate.code, 0, activate.err + activate.out);
    assert.match(activate.out, new RegExp(`activating ${res.stack} version ${res.version}: group tsweaver-main → 1 task\\(s\\)`));
    assert.match(activate.out, /tasks: 0 pending, 1\/1 running · registered replicas: 1\/1 · targets: hello 1\/1 healthy/);
    assert.match(activate.out, /listener hello: http:\/\//);

    const url = await helloAt();
    const reply = await waitFor(
      "hello answers",
      async () => {
        const r = await get(`${url}/hello?name=World`);
        return r.status === 200 ? r : undefined;
      },
      30_000,
    );
    const routableMs = Date.now() - started;
    assert.equal(reply.body, "Hello, dlroW!\n");

    // The cross-task call needed hello-reverser: the control plane raised it and registered its replicas.
    const reverser = await ecs.send(new DescribeServicesCommand({ cluster: res.clusterArn, services: [svc("hello-reverser")] }));
    assert.equal(reverser.services?.[0]?.desiredCount, 2);
    await waitFor("2 reverser replicas registered", async () => (await instances("hello-reverser")).length === 2);
    const regs = await instances("hello-reverser");
    const running = sim.runningTasks(svc("hello-reverser"));
    assert.deepEqual(regs.map((i) => i.Id).sort(), running.map((t) => t.taskId).sort());
    for (const i of regs) {
      const task = running.find((t) => t.taskId === i.Id)!;
      assert.equal(i.Attributes?.["AWS_INSTANCE_IPV4"], task.ip);
      assert.equal(i.Attributes?.["AWS_INSTANCE_PORT"], "19000");
      assert.equal(i.Attributes?.["TSWEAVER_TASK_ARN"], task.taskArn);
      assert.equal(i.Attributes?.["TSWEAVER_VERSION"], res.version);
    }
    assert.equal(proxy.injected("UpdateService"), 2, "two throttling errors were injected and retried");

    const counts = proxy.counts();
    const delta = Object.entries(counts)
      .map(([api, c]) => [api, c.calls - (before[api]?.calls ?? 0)] as const)
      .filter(([, n]) => n > 0);
    const writes = delta.filter(([api]) => /Update|Register|Deregister/.test(api));
    console.log(
      `activation-to-routable: ${routableMs} ms; AWS calls during activation by all tasks: ${delta.reduce((a, [, n]) => a + n, 0)} (${delta.map(([a, n]) => `${a}=${n}`).join(" ")}); mutating: ${writes.map(([a, n]) => `${a}=${n}`).join(" ")}`,
    );
  });

  test("status shows groups, tasks, registered replicas and target health", async () => {
    const status = await runCli(["aws", "status", res.configFile]);
    assert.equal(status.code, 0, status.err);
    assert.match(status.out, new RegExp(`STACK ${res.stack} .*deployed version ${res.version}`));
    assert.match(status.out, new RegExp(`${res.version} \\(deployed\\) +live +hello 100%`));
    assert.match(status.out, new RegExp(`${res.version} +hello-reverser +2 +2 +0 +2 +healthy`));
    assert.match(status.out, new RegExp(`${res.version} +tsweaver-main +1 +1 +0 +1 +healthy`));
    assert.match(status.out, /hello +http:\/\/\S+ +1 +1/);
    const json = JSON.parse((await runCli(["aws", "status", "--json", res.configFile])).out) as {
      versions: { version: string; groups: { group: string; registered: number }[] }[];
    };
    assert.equal(json.versions.find((v) => v.version === res.version)?.groups.find((g) => g.group === "hello-reverser")?.registered, 2);
  });

  test("a killed agent: its instance is deregistered, calls move to the other replica, ECS replaces it", async () => {
    const url = await helloAt();
    const [victim, survivor] = sim.runningTasks(svc("hello-reverser"));
    sim.kill(victim!.taskArn, "SIGKILL");
    await waitFor(
      "the dead task's instance is deregistered",
      async () => {
        const ids = (await instances("hello-reverser")).map((i) => i.Id);
        return !ids.includes(victim!.taskId) && ids.includes(survivor!.taskId);
      },
      30_000,
    );
    for (let i = 0; i < 10; i++) assert.deepEqual(await get(`${url}/hello?name=abc${i}`), { status: 200, body: `Hello, ${i}cba!\n` });
    await waitFor(
      "a replacement replica registered",
      async () => (await instances("hello-reverser")).length === 2 && !taskIdsOf("hello-reverser").includes(victim!.taskId),
      30_000,
    );
  });

  test("a restarted control plane rebuilds its state from AWS and nothing is lost", async () => {
    const url = await helloAt();
    const [cp] = sim.runningTasks("tsweaver_controlplane");
    const beforeRegs = (await instances("hello-reverser")).map((i) => i.Id).sort();
    sim.kill(cp!.taskArn, "SIGKILL");
    await waitFor("a new control plane task", () => sim.runningTasks("tsweaver_controlplane").some((t) => t.taskId !== cp!.taskId), 30_000);
    // The app keeps serving throughout, and registrations are untouched.
    for (let i = 0; i < 5; i++) assert.equal((await get(`${url}/hello?name=x`)).status, 200);
    assert.deepEqual((await instances("hello-reverser")).map((i) => i.Id).sort(), beforeRegs);
    // The new control plane does the job: a replica killed now is deregistered and replaced.
    const [victim] = sim.runningTasks(svc("hello-reverser"));
    sim.kill(victim!.taskArn, "SIGKILL");
    await waitFor(
      "replacement registered by the new control plane",
      async () => {
        const ids = (await instances("hello-reverser")).map((i) => i.Id);
        return ids.length === 2 && !ids.includes(victim!.taskId);
      },
      30_000,
    );
    assert.equal((await targets()).length, 1, "exactly main's target");
  });

  test("logs reads the app's structured logs back from CloudWatch Logs, filtered by component", async () => {
    const logs = await waitFor(
      "main's log line in CloudWatch",
      async () => {
        const r = await runCli(["aws", "logs", res.configFile, "--component", "tsweaver/Main", "--since", "1h"]);
        return r.code === 0 && /hello listener ready/.test(r.out) ? r.out : undefined;
      },
      20_000,
      500,
    );
    assert.match(logs, /^I \S+ tsweaver\/Main \S+ main\.ts:\d+\] hello listener ready address=\S+:18080$/m);
    assert.doesNotMatch(logs, /control plane serving/, "other components are filtered out");
    const cp = await runCli(["aws", "logs", res.configFile, "--component", "controlplane", "--since", "1h"]);
    assert.match(cp.out, /control plane serving/);
    assert.match(cp.out, /component activated .*component=hello\/Reverser/);
  });

  test("metrics: the agents' and the control plane's EMF lines reach CloudWatch Logs and, extracted as CloudWatch does, show main's calls to Reverser and its registered replicas", async () => {
    const logs = new CloudWatchLogsClient(clientConfig(emu.endpoint));
    const url = await helloAt();
    for (let i = 0; i < 5; i++) assert.equal((await get(`${url}/hello?name=emf${i}`)).status, 200);
    const D = METRICS.DIM;
    const edge = { [D.APP]: "hello", [D.CALLER]: "tsweaver/Main", [D.COMPONENT]: "hello/Reverser", [D.METHOD]: "reverse" };
    const { datapoints, rejected } = await waitFor(
      "EMF datapoints for main → Reverser calls, Reverser's served calls and registered replicas",
      async () => {
        const extracted = extractEmf(await logMessages(logs, res.logGroup));
        const calls = total(extracted.datapoints, METRICS.CALLS, edge);
        const served = total(extracted.datapoints, METRICS.SERVED_CALLS, { [D.APP]: "hello", [D.GROUP]: "hello-reverser" });
        // The control plane's reconcile counts the replicas it finds registered in Cloud Map.
        const registered = extracted.datapoints.some(
          (p) =>
            p.metric === METRICS.REGISTERED_REPLICAS &&
            p.dimensions[D.GROUP] === "hello-reverser" &&
            p.dimensions[D.VERSION] === res.version &&
            p.value >= 1,
        );
        return calls >= 5 && served >= 5 && registered ? extracted : undefined;
      },
      30_000,
      500,
    );
    assert.deepEqual(rejected, [], "every EMF line is one CloudWatch accepts");
    assert.ok(datapoints.some((p) => p.metric === METRICS.LATENCY && p.dimensions[D.COMPONENT] === "hello/Reverser"));
    assert.ok(
      datapoints.some(
        (p) => p.metric === METRICS.LOAD && p.dimensions[D.GROUP] === "hello-reverser" && p.dimensions[D.VERSION] === res.version,
      ),
    );
    // `tsweaver aws logs` shows log entries only, never the metric lines beside them.
    const r = await runCli(["aws", "logs", res.configFile, "--since", "1h"]);
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.out, /_aws|CloudWatchMetrics/);
  });

  test("an AWS error reaches the caller naming the API and the resource", async () => {
    const { ControlPlane } = await import("../../runtime/deployers/aws/controlplane.js");
    const cp = new ControlPlane(
      {
        deployment: res.stack,
        version: res.version,
        clusterArn: res.clusterArn,
        namespaceId: res.namespaceId,
        controlPlaneServiceId: "srv-none",
        controlPort: 0,
        rpcPort: 0,
        secret: "x",
        groups: { ghost: { ...res.groups["hello-reverser"]!, components: ["ghost/C"] } },
        listeners: {},
        rollout: res.aws.rollout,
        vpcId: "",
        subnets: [],
        securityGroup: "",
        assignPublicIp: "DISABLED",
        reconcileMs: 60_000,
      },
      undefined,
      { info() {}, warn() {}, error() {} },
    );
    // A version that has no services here (not the control plane's own, so it does not create them).
    await assert.rejects(
      cp.activate({ taskArn: "t", group: "g", component: "ghost/C", routed: false, version: "v0000000000" }),
      /ecs:DescribeServices on service ghost-v0000000000: not found in cluster .*version v0000000000 is not running here/,
    );
    await assert.rejects(
      cp.activate({ taskArn: "t", group: "g", component: "nobody/Knows", routed: false, version: res.version }),
      /unknown component nobody\/Knows/,
    );
    await assert.rejects(
      cp.exportListener({ taskArn: "t", listener: "admin", ip: "127.0.0.1", port: 1, version: res.version }),
      /listener admin is not configured: add \[aws.listeners.admin\]/,
    );
  });

  test("SIGTERM to an agent drains: deregistered from Cloud Map and the target group, serving through the ALB's delay and a discovery period, then the weavelet stops", async () => {
    const [main] = sim.runningTasks(svc("tsweaver-main"));
    const url = await helloAt();
    const signalled = Date.now();
    sim.kill(main!.taskArn, "SIGTERM");
    await waitFor(
      "deregistered from Cloud Map and the target group",
      async () =>
        !(await instances("tsweaver-main")).some((i) => i.Id === main!.taskId) && !(await targets()).some((t) => url.includes(t.Id!)),
      15_000,
    );
    // Deregistered, yet still serving: the load balancer may send requests until its delay ends.
    assert.equal(sim.task(main!.taskArn)?.state, "running");
    assert.deepEqual(await get(`${url}/hello?name=drain`), { status: 200, body: "Hello, niard!\n" });
    await waitFor("the task's process exits", () => sim.task(main!.taskArn)?.state !== "running", 20_000);
    const log = sim
      .output(main!.taskArn)
      .stdout.flatMap((l) =>
        l.startsWith("{") ? [JSON.parse(l) as { component: string; msg: string; timeMicros: string; attrs: Record<string, string> }] : [],
      )
      .filter((e) => e.component === "agent");
    const at = (msg: string) => log.findIndex((e) => e.msg.startsWith(msg));
    const draining = at("draining: deregistered");
    const stopping = at("stopping the weavelet");
    assert.ok(draining >= 0 && stopping > draining, `drain, then stop: ${log.map((e) => e.msg).join(" | ")}`);
    assert.equal(log[draining]!.attrs["deregistrationDelaySeconds"], "2");
    assert.equal(log[draining]!.attrs["discoveryMs"], FAST_LOOPS.TSWEAVER_DISCOVERY_MS);
    const waitedMs = (Number(log[stopping]!.timeMicros) - Number(log[draining]!.timeMicros)) / 1000;
    assert.ok(
      waitedMs >= 2_000 + Number(FAST_LOOPS.TSWEAVER_DISCOVERY_MS) - 5,
      `the agent served on for ${waitedMs} ms after deregistering`,
    );
    console.log(
      `agent drain: deregistered after SIGTERM, served on ${waitedMs.toFixed(0)} ms, exited ${sim.task(main!.taskArn)?.exitCode ?? "?"} ${Date.now() - signalled} ms after SIGTERM`,
    );
    // ECS replaces the task; the listener answers again.
    await waitFor(
      "a new main task behind the listener",
      async () => (await get(`${await helloAt()}/hello?name=x`)).status === 200,
      60_000,
      250,
    );
  });

  test("deactivate leaves no tasks, instances or targets", async () => {
    const out = await runCli(["aws", "deactivate", res.configFile, "--timeout", "60"]);
    assert.equal(out.code, 0, out.err + out.out);
    assert.match(out.out, /is inactive: no tasks, replicas or targets/);
    assert.deepEqual(taskIdsOf("hello-reverser"), []);
    assert.deepEqual(taskIdsOf("tsweaver-main"), []);
    assert.deepEqual(await instances("hello-reverser"), []);
    assert.deepEqual(await instances("tsweaver-main"), []);
    assert.deepEqual(await targets(), []);
  });

  test("errors name the fix: an unknown stack", async () => {
    const out = await runCli(["aws", "status", "--stack", "no-such-stack"]);
    assert.equal(out.code, 1);
    assert.match(out.err, /stack no-such-stack not found .*deploy it first/);
  });
});
