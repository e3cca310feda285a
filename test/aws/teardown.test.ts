/**
 * `cdk destroy` of an active app, on the emulator (docs/aws.md, "Deleting the stack"). CloudFormation
 * deletes the control plane's service first (test/infra/teardown.test.ts checks the order): ECS stops
 * its task while DescribeStacks says DELETE_IN_PROGRESS, and the control plane removes what the
 * template does not hold and deregisters every replica. Then CloudFormation deletes the Cloud Map
 * services, which AWS refuses while they hold instances.
 *
 * moto deletes a stack synchronously (never DELETE_IN_PROGRESS) and deletes Cloud Map services that
 * hold instances, so the proxy in front of it (gaps.ts) plays both: DescribeStacks reports the deletion,
 * DeleteService answers ResourceInUse while instances remain. The test itself deregisters nothing: the
 * deletions succeed only if the control plane's teardown did it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { DescribeServicesCommand, ECSClient, UpdateServiceCommand } from "@aws-sdk/client-ecs";
import {
  DescribeRulesCommand,
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import {
  DeleteNamespaceCommand,
  DeleteServiceCommand as DeleteDiscoveryServiceCommand,
  ListInstancesCommand,
  ServiceDiscoveryClient,
} from "@aws-sdk/client-servicediscovery";
import { CONTROLPLANE_NAME, targetGroupName, versionedServiceName } from "../../runtime/deployers/aws/contract.js";
import { get, runCli, waitFor } from "../support/index.js";
import { startFargate, type FargateSimulator, type SimTask } from "./fargate.js";
import { awsGaps, type AwsGaps } from "./gaps.js";
import { clientConfig, useEmulator, type Emulator } from "./moto.js";
import { createAppResources, discoveryServicesOf, type AppResources, HELLO_CONFIG, FAST_LOOPS } from "./stack.js";
import { startThrottleProxy, type ThrottleProxy } from "./throttle.js";

const GROUPS = ["hello-reverser", "tsweaver-main"];
/** A simulated task whose process has not ended. */
const live = (t: SimTask): boolean => t.state === "starting" || t.state === "running" || t.state === "stopping";

describe("cdk destroy of an active app: the control plane empties what CloudFormation deletes next", () => {
  let emu: Emulator;
  let res: AppResources;
  let sim: FargateSimulator;
  let proxy: ThrottleProxy;
  let gaps: AwsGaps;
  let ecs: ECSClient;
  let elb: ElasticLoadBalancingV2Client;
  /** Cloud Map through the proxy: DeleteService refuses while instances remain, as AWS does. */
  let sd: ServiceDiscoveryClient;

  const svc = (group: string) => versionedServiceName(group, res.version);
  const instances = async (group: string) =>
    (await sd.send(new ListInstancesCommand({ ServiceId: res.groups[group]!.discoveryServiceId }))).Instances ?? [];

  before(async () => {
    emu = await useEmulator();
    res = await createAppResources({
      configFile: HELLO_CONFIG,
      listeners: { hello: { container_port: 18280, deregistration_delay_seconds: 1 } },
      rpcPort: 19400,
      controlPort: 19500,
    });
    // ECS reports a task as stopped only once its container has exited (the simulator knows).
    gaps = awsGaps({
      running: (arn) => {
        const t = sim?.task(arn);
        return t !== undefined && live(t);
      },
    });
    proxy = await startThrottleProxy({ target: emu.endpoint, intercept: gaps.intercept });
    ecs = new ECSClient(clientConfig(emu.endpoint));
    elb = new ElasticLoadBalancingV2Client(clientConfig(emu.endpoint));
    sd = new ServiceDiscoveryClient(clientConfig(proxy.endpoint));
    sim = await startFargate({
      endpoint: emu.endpoint,
      cluster: res.clusterArn,
      workdir: res.workdir,
      taskEnv: () => ({ ...FAST_LOOPS, AWS_ENDPOINT_URL: proxy.endpoint }),
      // Long enough for the control plane's clean-up (ECS gives it its 120 s stop timeout).
      stopTimeoutMs: 120_000,
    });
  });

  after(async () => {
    await sim?.stop();
    await proxy?.stop();
    // What is left after the deletion (the stack, the secret); Cloud Map is already gone.
    await res?.delete();
    for (const c of [ecs, elb, sd]) c?.destroy();
    await emu?.stop();
  });

  test("active: both groups' replicas registered in Cloud Map, main's listener target registered", async () => {
    const activate = await runCli(["aws", "activate", res.configFile, "--timeout", "120"]);
    assert.equal(activate.code, 0, activate.err + activate.out);
    const main = await sim.waitFor("main's task", () => sim.runningTasks(svc("tsweaver-main"))[0]);
    await waitFor(
      "hello answers through the reverser",
      async () => (await get(`http://${main.ip}:18280/hello?name=x`)).status === 200,
      30_000,
    );
    for (const g of GROUPS) await waitFor(`${g} registered`, async () => (await instances(g)).length > 0);
    const tg = await elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "hello", res.version)] }));
    const health = await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroups![0]!.TargetGroupArn! }));
    assert.equal(health.TargetHealthDescriptions?.length, 1);
    // As AWS would, the played Cloud Map refuses to delete a service that holds instances.
    await assert.rejects(
      sd.send(new DeleteDiscoveryServiceCommand({ Id: res.groups["tsweaver-main"]!.discoveryServiceId })),
      (err: Error) => err.name === "ResourceInUse",
    );
  });

  test("deleting the stack: the stopped control plane removes the versions and every replica; Cloud Map's deletions succeed", async () => {
    const [cp] = sim.runningTasks(CONTROLPLANE_NAME);
    assert.ok(cp, "the control plane runs");
    // CloudFormation deletes the control plane's service first: the stack reads DELETE_IN_PROGRESS, and
    // ECS scales the service to 0, which stops the task (SIGTERM, then its stop timeout).
    gaps.stackDeleting(res.stack);
    const started = Date.now();
    await ecs.send(new UpdateServiceCommand({ cluster: res.clusterArn, service: CONTROLPLANE_NAME, desiredCount: 0 }));
    await sim.waitFor("the control plane task ends", (tasks) => tasks.some((t) => t.taskArn === cp.taskArn && !live(t)), 110_000);
    console.log(`teardown: the control plane's clean-up took ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // What CloudFormation deletes next: every Cloud Map service (refused if any holds an instance), then the namespace.
    for (const s of await discoveryServicesOf(sd, res.namespaceId)) {
      await sd.send(new DeleteDiscoveryServiceCommand({ Id: s.Id }));
    }
    await sd.send(new DeleteNamespaceCommand({ Id: res.namespaceId }));
    assert.deepEqual(await discoveryServicesOf(sd, res.namespaceId), []);

    // The versions' services, listener rule and target groups are gone; no group task runs.
    const services = await ecs.send(new DescribeServicesCommand({ cluster: res.clusterArn, services: GROUPS.map(svc) }));
    for (const s of services.services ?? []) assert.notEqual(s.status, "ACTIVE", `${s.serviceName} is deleted`);
    assert.deepEqual(
      sim
        .tasks()
        .filter(live)
        .map((t) => t.taskId),
      [],
      "no group task runs",
    );
    const rules = await elb.send(new DescribeRulesCommand({ ListenerArn: res.listeners["hello"]!.listenerArn }));
    assert.deepEqual(
      (rules.Rules ?? []).filter((r) => !r.IsDefault),
      [],
      "the weighted rule is deleted",
    );
    await assert.rejects(elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "hello", res.version)] })));
  });
});
