/**
 * The Online Boutique on the AWS deployer, unchanged: ten groups as ten ECS services (of one version), raised on demand as
 * the frontend first calls each component; then `tsweaver aws dashboard` on it, in headless Chromium: the groups from
 * ECS and Cloud Map, the call graph from the agents' EMF metrics (which the harness turns into CloudWatch metrics),
 * recent traces from X-Ray (`[aws] tracing = "xray"`: the harness plays each task's collector sidecar). The tasks reach the
 * emulator through the proxy that plays what moto lacks (gaps.ts: ECS task protection, which the control plane sets on busy
 * tasks), so their logs hold what they would on AWS.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { XRayClient } from "@aws-sdk/client-xray";
import { targetGroupName, versionedServiceName } from "../../runtime/deployers/aws/contract.js";
import { ROOT, get, runCli, waitFor } from "../support/index.js";
import { checkAwsDashboard } from "./dashboard.js";
import { startFargate, type FargateSimulator } from "./fargate.js";
import { awsGaps } from "./gaps.js";
import { clientConfig, useEmulator, type Emulator } from "./moto.js";
import { createAppResources, type AppResources } from "./stack.js";
import { startThrottleProxy, type ThrottleProxy } from "./throttle.js";
import { startXRayCollector, type XRayCollector } from "./xray.js";

let emu: Emulator;
let res: AppResources;
let sim: FargateSimulator;
let xray: XRayClient;
let collector: XRayCollector;
let proxy: ThrottleProxy;

before(async () => {
  emu = await useEmulator();
  res = await createAppResources({
    configFile: path.join(ROOT, "examples/boutique/weaver.toml"),
    listeners: { boutique: { container_port: 18081 } },
    rpcPort: 19001,
    controlPort: 19101,
    aws: { tracing: "xray" },
  });
  xray = new XRayClient(clientConfig(emu.endpoint));
  collector = await startXRayCollector(xray);
  proxy = await startThrottleProxy({ target: emu.endpoint, intercept: awsGaps().intercept });
  sim = await startFargate({
    endpoint: emu.endpoint,
    cluster: res.clusterArn,
    workdir: res.workdir,
    // A heartbeat a second: the agents' metric lines come every second rather than every 15.
    // The collector sidecar's localhost:4318 is the played collector's port here (tasks share the host's network).
    taskEnv: (t) => ({
      AWS_ENDPOINT_URL: proxy.endpoint,
      TSWEAVER_RECONCILE_MS: "500",
      TSWEAVER_DISCOVERY_MS: "200",
      TSWEAVER_HEARTBEAT_MS: "1000",
      ...(t.env["OTEL_EXPORTER_OTLP_ENDPOINT"] === "http://localhost:4318" ? { OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint } : {}),
    }),
  });
});

after(async () => {
  await sim?.stop();
  await collector?.stop();
  await proxy?.stop();
  xray?.destroy();
  await res?.delete();
  await emu?.stop();
});

test("the boutique runs on the AWS deployer unchanged: home page and a product through ten ECS services", async () => {
  const activate = await runCli(["aws", "activate", res.configFile, "--timeout", "120"]);
  assert.equal(activate.code, 0, activate.err + activate.out);
  const elb = new ElasticLoadBalancingV2Client(clientConfig(emu.endpoint));
  const tg = await elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "boutique", res.version)] }));
  const health = await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroups![0]!.TargetGroupArn! }));
  const target = health.TargetHealthDescriptions?.[0]?.Target;
  assert.ok(target, "main is registered as the listener's target");
  const base = `http://${target.Id}:${target.Port}`;
  const home = await waitFor(
    "home page",
    async () => {
      const r = await get(`${base}/api/home`, 30_000);
      return r.status === 200 ? (JSON.parse(r.body) as { products: { product: { id: string } }[] }) : undefined;
    },
    60_000,
    250,
  );
  assert.equal(home.products.length, 9);
  const product = await get(`${base}/api/product/${home.products[0]!.product.id}`);
  assert.equal(product.status, 200, product.body);
  // Every group the pages needed was raised by the control plane on first use.
  const groups = new Set(sim.runningTasks().map((t) => t.group));
  for (const g of ["tsweaver-main", "boutique-productcatalog", "boutique-currency"].map(
    (g) => `service:${versionedServiceName(g, res.version)}`,
  ))
    assert.ok(groups.has(g), `${g} runs (${[...groups].join(", ")})`);
  elb.destroy();
});

test("tsweaver aws dashboard: the groups and replicas from ECS and Cloud Map, the call graph from CloudWatch, traces from X-Ray, in headless Chromium", async () => {
  await checkAwsDashboard({ res, sim, endpoint: emu.endpoint, collector });
});

test("deactivate stops every group", async () => {
  const deactivate = await runCli(["aws", "deactivate", res.configFile, "--timeout", "60"]);
  assert.equal(deactivate.code, 0, deactivate.err);
});
