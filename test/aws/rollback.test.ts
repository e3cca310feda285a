/**
 * Rollbacks end to end on the emulator (see rollout.test.ts for the setup): automatic ones (a version
 * that never becomes healthy, a version whose calls fail, a version during whose step one of the stack's
 * `[aws.alarms]` alarms is in ALARM) and `tsweaver aws rollout rollback`, each with the serving version
 * answering every request of its own throughout.
 *
 * The emulator's CloudFormation has no AWS::CloudWatch::Alarm: the harness (stack.ts) creates each alarm
 * of the template with PutMetricAlarm under the name the stack gives it, and it never evaluates alarms,
 * so the test puts one into ALARM with SetAlarmState, as CloudWatch would on the metric.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CloudWatchClient, DescribeAlarmsCommand, SetAlarmStateCommand } from "@aws-sdk/client-cloudwatch";
import { ENV } from "../../runtime/deployers/aws/contract.js";
import { waitFor } from "../support/index.js";
import { clientConfig, sleep } from "./moto.js";
import { assertSingleVersionChains, Load, RolloutDeployment, versionConfig } from "./rollouts.js";

describe("AWS rollbacks: automatic on health and errors, and on request", () => {
  let d: RolloutDeployment;
  /** The version serving from the start (v1): every rollout below is rolled back to it. */
  let stable: string;
  before(async () => {
    d = await RolloutDeployment.start();
    stable = d.res.version;
  });
  after(async () => {
    await d?.stop();
  });

  test("a v2 that never becomes healthy is rolled back automatically; v1 serves throughout", async () => {
    const load = new Load(d.url);
    const v2 = await d.deploy(versionConfig("v2", { main: { broken: true }, rollout: { health_timeout_seconds: 10 } }));
    await waitFor("v2 rolled back", async () => (await d.phaseOf(v2)) === "rolled-back", 60_000, 200);
    await waitFor(
      "v2 scaled to 0",
      async () =>
        [...((await d.live()).get(v2)?.services.values() ?? [])].every((s) => s.desired === 0) && d.runningTasksOf(v2).length === 0,
      30_000,
      200,
    );
    await load.stop();
    assert.deepEqual(Object.fromEntries(await d.traffic()), { [stable]: 100 });
    assert.deepEqual(load.failed(), []);
    assertSingleVersionChains(load);
    assert.deepEqual(new Set(load.chains().map((c) => c[0])), new Set(["v1"]));
    const rollout = await d.cli("aws", "rollout", "status");
    assert.match(
      rollout.out,
      new RegExp(
        `version ${v2}: rolled-back \\(not healthy within 10 s: (group [\\w-]+: \\d+/\\d+ replicas ready, )*group tsweaver-main: 0/1 replicas ready(, group [\\w-]+: \\d+/\\d+ replicas ready)*\\) · no listener traffic · previous: ${stable}`,
      ),
    );
  });

  test("tsweaver aws rollout rollback on a healthy v3 moves all traffic back to v1 and retires v3", async () => {
    const load = new Load(d.url);
    const v3 = await d.deploy(versionConfig("v3", { rollout: { step_seconds: 600 } }));
    await waitFor("v3 takes its first step", async () => (await d.phaseOf(v3)) === "step-0", 60_000, 200);
    assert.deepEqual(Object.fromEntries(await d.traffic()), { [stable]: 90, [v3]: 10 });
    const rollback = await d.cli("aws", "rollout", "rollback", "--timeout", "60");
    assert.equal(rollback.code, 0, rollback.err + rollback.out);
    assert.match(rollback.out, new RegExp(`rollback requested for version ${v3} \\(was step-0\\)`));
    assert.match(rollback.out, /rolled back: the previous version takes all traffic/);
    assert.deepEqual(Object.fromEntries(await d.traffic()), { [stable]: 100 });
    await waitFor("v3 scaled to 0", async () => d.runningTasksOf(v3).length === 0, 30_000, 200);
    await load.stop();
    assert.deepEqual(load.failed(), []);
    assertSingleVersionChains(load);
    assert.match((await d.cli("aws", "rollout", "status")).out, new RegExp(`version ${v3}: rolled-back \\(rollback requested`));
    const again = await d.cli("aws", "rollout", "promote");
    assert.equal(again.code, 1);
    assert.match(again.err, /is already rolled back .*deploy a new version/);
  });

  test("a v4 whose calls fail is rolled back on its error rate at the first step; v1 serves throughout", async () => {
    const load = new Load(d.url);
    const v4 = await d.deploy(versionConfig("v4", { back: { fail: true }, rollout: { step_seconds: 60 } }));
    await waitFor("v4 rolled back", async () => (await d.phaseOf(v4)) === "rolled-back", 60_000, 200);
    assert.deepEqual(Object.fromEntries(await d.traffic()), { [stable]: 100 });
    const rolledBackAt = Date.now();
    await sleep(1_000);
    await load.stop();
    assert.match(
      (await d.cli("aws", "rollout", "status")).out,
      new RegExp(`version ${v4}: rolled-back \\(error rate 100\\.0% of \\d+ calls at 10% \\(limit 5\\.0%\\)\\)`),
    );
    // Only requests the ALB sent to v4 failed (its 10%); v1 answered every one of its own.
    const failed = load.failed();
    assert.ok(failed.length > 0, "v4 got its share of the traffic");
    for (const f of failed) assert.match(f.body, /Back v4 fails on purpose/);
    assert.deepEqual(
      load.replies.filter((r) => r.at > rolledBackAt + 500 && r.status !== 200),
      [],
      "after the rollback every request succeeds",
    );
    assertSingleVersionChains(load);
    assert.deepEqual(new Set(load.chains().map((c) => c[0])), new Set(["v1"]));
  });

  /** The alarms the deployed version's control plane watches (its TSWEAVER_ALARMS), with their state in the emulator. */
  async function watchedAlarms(cw: CloudWatchClient): Promise<Map<string, string>> {
    const names = JSON.parse(d.res.controlPlane.env[ENV.ALARMS] ?? "[]") as string[];
    const out = await cw.send(new DescribeAlarmsCommand({ AlarmNames: names }));
    return new Map((out.MetricAlarms ?? []).filter((a) => names.includes(a.AlarmName!)).map((a) => [a.AlarmName!, a.StateValue!]));
  }

  test("a v5 with [aws.alarms] whose alarms stay OK is not rolled back: it goes live step by step", async () => {
    const cw = new CloudWatchClient(clientConfig(d.res.endpoint, d.res.region));
    const load = new Load(d.url);
    const v5 = await d.deploy(versionConfig("v5", { alarms: { error_rate: 0.5, p99_ms: 5000 } }));
    const alarms = await watchedAlarms(cw);
    // Two groups, an error-rate and a p99 alarm each.
    assert.equal(alarms.size, 4, [...alarms.keys()].join(", "));
    for (const [name, state] of alarms) assert.equal(state, "OK", name);
    await waitFor("v5 live", async () => (await d.phaseOf(v5)) === "live", 90_000, 200);
    assert.deepEqual(Object.fromEntries(await d.traffic()), { [v5]: 100 });
    await load.stop();
    assert.deepEqual(load.failed(), []);
    assertSingleVersionChains(load);
    cw.destroy();
  });

  test("a v6 whose alarm goes into ALARM during a step is rolled back automatically; v5 serves throughout", async () => {
    const cw = new CloudWatchClient(clientConfig(d.res.endpoint, d.res.region));
    const previous = d.res.version;
    const load = new Load(d.url);
    const v6 = await d.deploy(versionConfig("v6", { alarms: { error_rate: 0.5, p99_ms: 5000 }, rollout: { step_seconds: 600 } }));
    await waitFor("v6 takes its first step", async () => (await d.phaseOf(v6)) === "step-0", 60_000, 200);
    // Several reconciles at the step with every alarm OK: no rollback.
    await sleep(1_500);
    assert.equal(await d.phaseOf(v6), "step-0");
    const [alarm] = [...(await watchedAlarms(cw)).keys()].sort();
    assert.ok(alarm);
    await cw.send(
      new SetAlarmStateCommand({ AlarmName: alarm, StateValue: "ALARM", StateReason: "test: the metric crossed its threshold" }),
    );
    await waitFor("v6 rolled back", async () => (await d.phaseOf(v6)) === "rolled-back", 30_000, 200);
    assert.deepEqual(Object.fromEntries(await d.traffic()), { [previous]: 100 });
    await waitFor("v6 scaled to 0", async () => d.runningTasksOf(v6).length === 0, 30_000, 200);
    await load.stop();
    assert.deepEqual(load.failed(), []);
    assertSingleVersionChains(load);
    assert.match(
      (await d.cli("aws", "rollout", "status")).out,
      new RegExp(`version ${v6}: rolled-back \\(alarm ${alarm.replace(/\./g, "\\.")} in ALARM at 10%\\)`),
    );
    cw.destroy();
  });
});
