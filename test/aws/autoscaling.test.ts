/**
 * Autoscaling on the emulator (docs/aws.md, "Autoscaling"): activation registers each version service's
 * target-tracking policies (CPU, the weavelets' load, requests per target for the listener's group), and
 * a replica serving calls is protected from scale-in until it is idle or drains. moto has no ECS task
 * protection: the proxy in front of it plays it (gaps.ts), so the control plane's real UpdateTaskProtection
 * calls are what the test observes, and GetTaskProtection answers as ECS would.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ApplicationAutoScalingClient, DescribeScalingPoliciesCommand, type ScalingPolicy } from "@aws-sdk/client-application-auto-scaling";
import { ECSClient, GetTaskProtectionCommand, StopTaskCommand } from "@aws-sdk/client-ecs";
import { DescribeTargetGroupsCommand, ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { METRICS, targetGroupName, versionedServiceName } from "../../runtime/deployers/aws/contract.js";
import { PROTECTION_MINUTES } from "../../runtime/deployers/aws/scaling.js";
import { get, runCli, waitFor } from "../support/index.js";
import { startFargate, type FargateSimulator } from "./fargate.js";
import { awsGaps, type AwsGaps } from "./gaps.js";
import { clientConfig, sleep, useEmulator, type Emulator } from "./moto.js";
import { createAppResources, type AppResources, HELLO_CONFIG, FAST_LOOPS } from "./stack.js";
import { startThrottleProxy, type ThrottleProxy } from "./throttle.js";

describe("AWS autoscaling on the emulator: target-tracking policies on activation, scale-in protection of busy replicas", () => {
  let emu: Emulator;
  let res: AppResources;
  let sim: FargateSimulator;
  let proxy: ThrottleProxy;
  let gaps: AwsGaps;
  let scaling: ApplicationAutoScalingClient;
  let elb: ElasticLoadBalancingV2Client;
  /** ECS through the proxy: GetTaskProtection as the played ECS answers it. */
  let ecs: ECSClient;

  const svc = (group: string) => versionedServiceName(group, res.version);
  const policies = async (group: string): Promise<Map<string, ScalingPolicy>> => {
    const out = await scaling.send(
      new DescribeScalingPoliciesCommand({
        ServiceNamespace: "ecs",
        ResourceId: `service/${res.clusterName}/${svc(group)}`,
        ScalableDimension: "ecs:service:DesiredCount",
      }),
    );
    return new Map((out.ScalingPolicies ?? []).map((p) => [p.PolicyName!, p]));
  };
  const protectedNow = async (taskArn: string): Promise<boolean> => {
    const out = await ecs.send(new GetTaskProtectionCommand({ cluster: res.clusterArn, tasks: [taskArn] }));
    assert.deepEqual(out.failures ?? [], []);
    return out.protectedTasks?.[0]?.protectionEnabled === true;
  };

  let hello = "";
  /** Keeps main calling the reverser (each /hello request is one Reverser.reverse call) until stopped. */
  const traffic = () => {
    let on = true;
    const done = (async () => {
      while (on) {
        await get(`${hello}/hello?name=busy`).catch(() => undefined);
        await sleep(20);
      }
    })();
    return async () => {
      on = false;
      await done;
    };
  };

  before(async () => {
    emu = await useEmulator();
    res = await createAppResources({
      configFile: HELLO_CONFIG,
      groups: { "hello-reverser": { min: 1, load_target: 25 }, "tsweaver-main": { requests_per_target: 1200, cpu_target: 60 } },
      listeners: { hello: { container_port: 18180, deregistration_delay_seconds: 1 } },
      rpcPort: 19200,
      controlPort: 19300,
    });
    gaps = awsGaps();
    proxy = await startThrottleProxy({ target: emu.endpoint, intercept: gaps.intercept });
    scaling = new ApplicationAutoScalingClient(clientConfig(emu.endpoint));
    elb = new ElasticLoadBalancingV2Client(clientConfig(emu.endpoint));
    ecs = new ECSClient(clientConfig(proxy.endpoint));
    sim = await startFargate({
      endpoint: emu.endpoint,
      cluster: res.clusterArn,
      workdir: res.workdir,
      taskEnv: () => ({ ...FAST_LOOPS, AWS_ENDPOINT_URL: proxy.endpoint }),
      stopTimeoutMs: 15_000,
    });
    const activate = await runCli(["aws", "activate", res.configFile, "--timeout", "120"]);
    assert.equal(activate.code, 0, activate.err + activate.out);
    const main = await sim.waitFor("main's task", () => sim.runningTasks(svc("tsweaver-main"))[0]);
    hello = `http://${main.ip}:18180`;
    await waitFor("hello answers through the reverser", async () => (await get(`${hello}/hello?name=x`)).status === 200, 30_000);
  });

  after(async () => {
    await sim?.stop();
    await proxy?.stop();
    await res?.delete();
    for (const c of [scaling, elb, ecs]) c?.destroy();
    await emu?.stop();
  });

  test("activation registers CPU, load and request-count target tracking, each on its own metric", async () => {
    const main = await waitFor("main's request-count policy", async () => {
      const p = await policies("tsweaver-main");
      return p.has("requests-hello") ? p : undefined;
    });
    assert.deepEqual([...main.keys()].sort(), ["cpu", "requests-hello"]);
    const cpu = main.get("cpu")!.TargetTrackingScalingPolicyConfiguration!;
    assert.equal(cpu.TargetValue, 60);
    assert.equal(cpu.PredefinedMetricSpecification?.PredefinedMetricType, "ECSServiceAverageCPUUtilization");
    const requests = main.get("requests-hello")!.TargetTrackingScalingPolicyConfiguration!;
    assert.equal(requests.TargetValue, 1200);
    assert.equal(requests.PredefinedMetricSpecification?.PredefinedMetricType, "ALBRequestCountPerTarget");
    // The label names this version's target group behind the stack's load balancer.
    const tg = await elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "hello", res.version)] }));
    const tgArn = tg.TargetGroups![0]!.TargetGroupArn!;
    const lbArn = res.outputs["LoadBalancerArn"]!;
    assert.equal(
      requests.PredefinedMetricSpecification?.ResourceLabel,
      `${lbArn.split(":loadbalancer/")[1]}/${tgArn.split(":").pop()}`,
      "app/<lb name>/<lb id>/targetgroup/<tg name>/<tg id>",
    );

    const reverser = await waitFor("the reverser's policies", async () => {
      const p = await policies("hello-reverser");
      return p.has("load") ? p : undefined;
    });
    // The reverser serves no listener: no request-count policy; CPU at the default 70%.
    assert.deepEqual([...reverser.keys()].sort(), ["cpu", "load"]);
    assert.equal(reverser.get("cpu")!.TargetTrackingScalingPolicyConfiguration!.TargetValue, 70);
    const load = reverser.get("load")!.TargetTrackingScalingPolicyConfiguration!;
    assert.equal(load.TargetValue, 25);
    assert.deepEqual(load.CustomizedMetricSpecification, {
      Namespace: METRICS.NAMESPACE,
      MetricName: METRICS.LOAD,
      Dimensions: [
        { Name: METRICS.DIM.APP, Value: "hello" },
        { Name: METRICS.DIM.GROUP, Value: "hello-reverser" },
        { Name: METRICS.DIM.VERSION, Value: res.version },
      ],
      Statistic: "Average",
      Unit: "Count/Second",
    });
  });

  test("a replica serving calls is protected from scale-in; idle, it is released; draining, it is released before it stops", async () => {
    const [reverser] = sim.runningTasks(svc("hello-reverser"));
    const [main] = sim.runningTasks(svc("tsweaver-main"));
    assert.ok(reverser && main);
    const stop = traffic();
    try {
      const p = await waitFor(
        "the busy reverser protected",
        async () => {
          const out = await ecs.send(new GetTaskProtectionCommand({ cluster: res.clusterArn, tasks: [reverser.taskArn] }));
          return out.protectedTasks?.[0]?.protectionEnabled ? out.protectedTasks[0] : undefined;
        },
        20_000,
        200,
      );
      const expires = p.expirationDate!.getTime();
      assert.ok(expires > Date.now() + (PROTECTION_MINUTES - 1) * 60_000, `protected for ${PROTECTION_MINUTES} minutes`);
      // Main answers HTTP but serves no component call: nothing protects it.
      assert.equal(await protectedNow(main.taskArn), false);
    } finally {
      await stop();
    }
    await waitFor("the idle reverser released", async () => !(await protectedNow(reverser.taskArn)), 20_000, 200);

    // Busy again, then stopped (a scale-in, a redeploy): the drain releases it.
    const again = traffic();
    try {
      await waitFor("the busy reverser protected again", () => protectedNow(reverser.taskArn), 20_000, 200);
      const stopper = new ECSClient(clientConfig(emu.endpoint));
      await stopper.send(new StopTaskCommand({ cluster: res.clusterArn, task: reverser.taskArn, reason: "scale-in" }));
      stopper.destroy();
      await waitFor("the draining reverser released", () => !gaps.protection(reverser.taskArn), 20_000, 100);
    } finally {
      await again();
    }
    const changes = gaps.protectionLog().filter((c) => c.taskArn === reverser.taskArn);
    // Changes alternate by construction; a busy stretch may flap when a heartbeat finds no call on a loaded machine.
    assert.ok(changes.length >= 4 && changes[0]!.enabled && !changes.at(-1)!.enabled, JSON.stringify(changes));
    // Released while draining, before the process ended (its heartbeats stopped at SIGTERM: the release is the drain's).
    const ended = await sim.waitFor("the stopped reverser's process ends", (tasks) =>
      tasks.find((t) => t.taskArn === reverser.taskArn && t.exitedAt !== undefined),
    );
    assert.ok(changes.at(-1)!.at <= ended.exitedAt!, "released before the task stopped");
    assert.ok(!gaps.protectionLog().some((c) => c.taskArn === main.taskArn), "main was never protected");
  });
});
