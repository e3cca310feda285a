/**
 * The default-deadline conformance scenarios (test/conformance/deadlines.ts) on the AWS deployer against
 * the emulator: the conformance app's main, conf/Callee and conf/Hang as ECS services of their own, so
 * every scenario's call crosses tasks; the outcome must be the one single and multi produce.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { targetGroupName } from "../../runtime/deployers/aws/contract.js";
import { DEADLINE_CONFIG, DEADLINE_EXPECTED, scenarioQuery } from "../conformance/deadlines.js";
import { CONFORMANCE_APP, get, runCli, waitFor, writeConfig } from "../support/index.js";
import { startFargate, type FargateSimulator } from "./fargate.js";
import { clientConfig, useEmulator, type Emulator } from "./moto.js";
import { createAppResources, type AppResources } from "./stack.js";

describe("conformance on the AWS deployer: default deadlines", () => {
  let emu: Emulator;
  let res: AppResources;
  let sim: FargateSimulator;
  let base = "";

  before(async () => {
    emu = await useEmulator();
    const config = writeConfig(`[tsweaver]\nname = "conformance"\nbinary = ${JSON.stringify(CONFORMANCE_APP)}\n${DEADLINE_CONFIG}`);
    res = await createAppResources({
      configFile: config,
      listeners: { api: { container_port: 18095 } },
      rpcPort: 19020,
      controlPort: 19120,
    });
    sim = await startFargate({
      endpoint: emu.endpoint,
      cluster: res.clusterArn,
      workdir: res.workdir,
      taskEnv: () => ({ TSWEAVER_RECONCILE_MS: "500", TSWEAVER_DISCOVERY_MS: "200" }),
    });
    const activate = await runCli(["aws", "activate", res.configFile, "--timeout", "120"]);
    assert.equal(activate.code, 0, activate.err + activate.out);
    const elb = new ElasticLoadBalancingV2Client(clientConfig(emu.endpoint));
    try {
      const tg = await elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "api", res.version)] }));
      const health = await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroups![0]!.TargetGroupArn! }));
      const target = health.TargetHealthDescriptions?.[0]?.Target;
      assert.ok(target, "main is registered as the listener's target");
      base = `http://${target.Id}:${target.Port}`;
    } finally {
      elb.destroy();
    }
  });

  after(async () => {
    await sim?.stop();
    await res?.delete();
    await emu?.stop();
  });

  for (const [scenario, expected] of Object.entries(DEADLINE_EXPECTED)) {
    test(scenario, async () => {
      // The first request also waits for conf/Callee's or conf/Hang's service to start.
      const body = await waitFor(
        `GET /run?${scenarioQuery(scenario)}`,
        async () => {
          const r = await get(`${base}/run?${scenarioQuery(scenario)}`, 90_000);
          return r.status === 200 ? (JSON.parse(r.body) as unknown) : undefined;
        },
        120_000,
        500,
      );
      assert.deepEqual(body, expected);
    });
  }
});
