/**
 * Versioned rollouts end to end on the emulator: the real stack updated the way `cdk deploy` updates it
 * (UpdateStack with the new template), the real control plane and agents (local processes played by
 * the Fargate simulator), traffic through the ALB simulator (weighted rules, its own health checks,
 * draining), under a bounded load the whole time. Rollbacks: rollback.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { waitFor } from "../support/index.js";
import { assertSingleVersionChains, Load, RolloutDeployment, versionConfig } from "./rollouts.js";

describe("AWS rollouts: versions never mix, traffic moves in steps, the control plane can die", () => {
  let d: RolloutDeployment;
  before(async () => {
    d = await RolloutDeployment.start();
  });
  after(async () => {
    await d?.stop();
  });

  test("v1 → v2 under load: zero failed requests, no mixed chains, v2 takes 100%, v1 scaled to 0 and removed", async () => {
    const v1 = d.res.version;
    const load = new Load(d.url);
    const started = Date.now();
    const v2 = await d.deploy(versionConfig("v2"));
    assert.notEqual(v2, v1, "a changed config is a new version");
    const seen = new Set<string>();
    const at100 = await waitFor(
      "v2 at 100% of the traffic",
      async () => {
        const t = await d.traffic();
        for (const [v, w] of t) if (w > 0 && w < 100) seen.add(`${v}:${w}`);
        return t.get(v2) === 100 && !t.has(v1) ? Date.now() : undefined;
      },
      90_000,
      100,
    );
    await waitFor("v1's services removed", async () => !(await d.live()).has(v1) && d.runningTasksOf(v1).length === 0, 60_000, 200);
    assert.equal(await d.phaseOf(v2), "live");
    await load.stop();

    assert.deepEqual(load.failed(), [], "no request failed during the rollout");
    assertSingleVersionChains(load);
    const labels = new Set(load.chains().map((c) => c[0]));
    assert.ok(labels.has("v1") && labels.has("v2"), `both versions served during the rollout (${[...labels].join(", ")})`);
    assert.ok(
      [...seen].some((s) => s.startsWith(`${v2}:10`)),
      `traffic moved in steps: ${[...seen].join(" ")}`,
    );
    const status = await d.cli("aws", "status");
    assert.match(status.out, new RegExp(`${v2} \\(deployed\\) +live +web 100%`));
    assert.doesNotMatch(status.out, new RegExp(v1));
    console.log(
      `rollout v1→v2: UpdateStack to 100% on v2 in ${at100 - started} ms; requests ${load.replies.length}, failed ${load.failed().length}`,
    );
  });

  test("the control plane killed in the middle of a rollout: its replacement completes it", async () => {
    const before = [...(await d.traffic()).keys()];
    const load = new Load(d.url);
    const v3 = await d.deploy(versionConfig("v3", { rollout: { step_seconds: 3 } }));
    await waitFor("v3 mid-rollout", async () => /^step-/.test((await d.phaseOf(v3)) ?? ""), 60_000, 100);
    const [cp] = d.sim.runningTasks("tsweaver_controlplane");
    assert.ok(cp);
    d.sim.kill(cp.taskArn, "SIGKILL");
    await waitFor(
      "a new control plane task",
      () => d.sim.runningTasks("tsweaver_controlplane").some((t) => t.taskId !== cp.taskId),
      30_000,
    );
    await waitFor("v3 at 100% and live", async () => (await d.traffic()).get(v3) === 100 && (await d.phaseOf(v3)) === "live", 90_000, 200);
    await waitFor("the previous version removed", async () => [...(await d.live()).keys()].join() === v3, 60_000, 200);
    await load.stop();
    assert.deepEqual(load.failed(), []);
    assertSingleVersionChains(load);
    for (const v of before) assert.deepEqual(d.runningTasksOf(v), [], `${v} has no task left`);
  });
});
