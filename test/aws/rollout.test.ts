/**
 * Versioned rollouts end to end on the emulator: the real stack updated the way `cdk deploy` updates it
 * (UpdateStack with the new template), the real control plane and agents (local processes played by
 * the Fargate simulator), traffic through the ALB simulator (weighted rules, its own health checks,
 * draining), under a bounded load the whole time.
 *
 * The app (test/aws/fixtures/versioned) answers with the label of every component a request touched,
 * so a response whose chain mixes versions would show it; each version below is the same app with its
 * own labels in weaver.toml (a changed config is a new version).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import { AwsClients } from "../../runtime/deployers/aws/clients.js";
import { OUTPUTS, type RolloutPhase } from "../../runtime/deployers/aws/contract.js";
import { Versions, type LiveVersion } from "../../runtime/deployers/aws/versions.js";
import { ROOT, get, runCli, waitFor } from "../support/index.js";
import { startAlbSimulator, type AlbSimulator } from "./alb.js";
import { startFargate, type FargateSimulator } from "./fargate.js";
import { sleep, useEmulator, type Emulator } from "./moto.js";
import { createAppResources, updateAppResources, type AppResources } from "./stack.js";

const FIXTURE = path.join(ROOT, "test/aws/fixtures/versioned/weaver.toml");
/** Fast loops for the test; production defaults are seconds. */
const FAST = { TSWEAVER_RECONCILE_MS: "250", TSWEAVER_DISCOVERY_MS: "150", TSWEAVER_HEARTBEAT_MS: "500" };
const LISTENERS = { web: { container_port: 18090, deregistration_delay_seconds: 1 } };
const tmp = mkdtempSync(path.join(os.tmpdir(), "tsweaver-rollout-"));

/**
 * The fixture app as version `label`: every component's label set, the binary made absolute,
 * `[aws.rollout]` and component settings merged in.
 */
function versionConfig(label: string, opts: { rollout?: Record<string, unknown>; main?: Record<string, unknown>; back?: Record<string, unknown> } = {}): string {
  const doc = parseToml(readFileSync(FIXTURE, "utf8")) as Record<string, any>;
  doc["tsweaver"]["binary"] = path.resolve(path.dirname(FIXTURE), doc["tsweaver"]["binary"] as string);
  doc["tsweaver/Main"] = { label, ...opts.main };
  doc["versioned/Middle"] = { label };
  doc["versioned/Back"] = { label, ...opts.back };
  doc["aws"] = { ...doc["aws"], rollout: { steps: [10, 50, 100], step_seconds: 2, health_timeout_seconds: 10, ...opts.rollout } };
  const file = path.join(tmp, `${label}.toml`);
  writeFileSync(file, stringifyToml(doc));
  return file;
}

/** A bounded load through the ALB: `workers` sequential request loops until stopped. */
class Load {
  readonly replies: { status: number; body: string; at: number }[] = [];
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(
    private readonly url: string,
    workers = 2,
    private readonly pauseMs = 20,
  ) {
    this.loops = Array.from({ length: workers }, () => this.loop());
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const at = Date.now();
      try {
        const r = await get(this.url, 10_000);
        this.replies.push({ status: r.status, body: r.body, at });
      } catch (err) {
        this.replies.push({ status: 0, body: (err as Error).message, at });
      }
      await new Promise((r) => setTimeout(r, this.pauseMs));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  failed(): { status: number; body: string }[] {
    return this.replies.filter((r) => r.status !== 200);
  }

  /** Each successful reply's chain, e.g. ["v1", "v1", "v1"]. */
  chains(): string[][] {
    return this.replies.filter((r) => r.status === 200).map((r) => JSON.parse(r.body) as string[]);
  }
}

describe("AWS rollouts: versions never mix, traffic moves in steps, failures roll back", () => {
  let emu: Emulator;
  let res: AppResources;
  let sim: FargateSimulator;
  let alb: AlbSimulator;
  let versions: Versions;
  let url: string;
  /** The version serving after the first rollout (the later ones roll back to it). */
  let stable: string;

  const live = () => versions.list();
  const phaseOf = async (version: string): Promise<RolloutPhase | undefined> => (await live()).get(version)?.rollout.phase;
  /** Percent of the web listener's traffic per version. */
  const traffic = async (): Promise<Map<string, number>> => {
    const rule = await versions.rule(JSON.parse(res.outputs[OUTPUTS.LISTENERS]!).web.listenerArn as string);
    const out = new Map<string, number>();
    for (const [arn, w] of rule?.weights ?? []) out.set(Versions.versionOfTargetGroup(arn)!, w);
    return out;
  };
  const runningTasksOf = (v: LiveVersion | string) => {
    const version = typeof v === "string" ? v : v.version;
    return sim.runningTasks().filter((t) => t.service?.endsWith(`-${version}`));
  };
  /** Deploys a new version the way cdk deploy does; returns its id. */
  const deploy = async (configFile: string): Promise<string> => {
    res = await updateAppResources(res, { configFile, listeners: LISTENERS, rpcPort: 19010, controlPort: 19110 });
    return res.version;
  };
  const assertSingleVersionChains = (load: Load) => {
    for (const chain of load.chains()) assert.equal(new Set(chain).size, 1, `a response mixed versions: ${JSON.stringify(chain)}`);
  };

  before(async () => {
    emu = await useEmulator();
    res = await createAppResources({ configFile: versionConfig("v1"), listeners: LISTENERS, rpcPort: 19010, controlPort: 19110 });
    sim = await startFargate({ endpoint: emu.endpoint, cluster: res.clusterArn, workdir: res.workdir, taskEnv: () => FAST });
    alb = await startAlbSimulator({ endpoint: emu.endpoint, loadBalancerArn: res.outputs[OUTPUTS.LOAD_BALANCER_ARN]!, healthCheckIntervalMs: 200, refreshMs: 100 });
    versions = new Versions(new AwsClients(), res.clusterArn, res.stack);
    const activate = await runCli(["aws", "activate", res.configFile, "--timeout", "120"]);
    assert.equal(activate.code, 0, activate.err + activate.out);
    url = `${alb.urlOf(80)}/chain`;
    await waitFor("v1 answers through the ALB", async () => (await get(url)).body === '["v1","v1","v1"]', 30_000, 100);
  });

  after(async () => {
    await sim?.stop();
    await alb?.stop();
    await res?.delete();
    await emu?.stop();
  });

  test("v1 → v2 under load: zero failed requests, no mixed chains, v2 takes 100%, v1 scaled to 0 and removed", async () => {
    const v1 = res.version;
    const load = new Load(url);
    const started = Date.now();
    const v2 = await deploy(versionConfig("v2"));
    assert.notEqual(v2, v1, "a changed config is a new version");
    const seen = new Set<string>();
    const at100 = await waitFor("v2 at 100% of the traffic", async () => {
      const t = await traffic();
      for (const [v, w] of t) if (w > 0 && w < 100) seen.add(`${v}:${w}`);
      return t.get(v2) === 100 && !t.has(v1) ? Date.now() : undefined;
    }, 90_000, 100);
    await waitFor("v1's services removed", async () => !(await live()).has(v1) && runningTasksOf(v1).length === 0, 60_000, 200);
    assert.equal(await phaseOf(v2), "live");
    stable = v2;
    await load.stop();

    assert.deepEqual(load.failed(), [], "no request failed during the rollout");
    assertSingleVersionChains(load);
    const labels = new Set(load.chains().map((c) => c[0]));
    assert.ok(labels.has("v1") && labels.has("v2"), `both versions served during the rollout (${[...labels].join(", ")})`);
    assert.ok([...seen].some((s) => s.startsWith(`${v2}:10`)), `traffic moved in steps: ${[...seen].join(" ")}`);
    const status = await runCli(["aws", "status", res.configFile]);
    assert.match(status.out, new RegExp(`${v2} \\(deployed\\) +live +web 100%`));
    assert.doesNotMatch(status.out, new RegExp(v1));
    console.log(`rollout v1→v2: UpdateStack to 100% on v2 in ${at100 - started} ms; requests ${load.replies.length}, failed ${load.failed().length}`);
  });

  test("a v3 that never becomes healthy is rolled back automatically; v2 serves throughout", async () => {
    const v2 = stable;
    const load = new Load(url);
    const v3 = await deploy(versionConfig("v3", { main: { broken: true } }));
    await waitFor("v3 rolled back", async () => (await phaseOf(v3)) === "rolled-back", 60_000, 200);
    await waitFor("v3 scaled to 0", async () => [...((await live()).get(v3)?.services.values() ?? [])].every((s) => s.desired === 0) && runningTasksOf(v3).length === 0, 30_000, 200);
    await load.stop();
    assert.deepEqual(Object.fromEntries(await traffic()), { [v2]: 100 });
    assert.deepEqual(load.failed(), []);
    assertSingleVersionChains(load);
    assert.deepEqual(new Set(load.chains().map((c) => c[0])), new Set(["v2"]));
    const rollout = await runCli(["aws", "rollout", "status", res.configFile]);
    assert.match(rollout.out, new RegExp(`version ${v3}: rolled-back \\(not healthy within 10 s: group tsweaver-main: 0/1 replicas ready\\) · no listener traffic · previous: ${v2}`));
  });

  test("tsweaver aws rollout rollback on a healthy v4 moves all traffic back to v2 and retires v4", async () => {
    const v2 = stable;
    const load = new Load(url);
    const v4 = await deploy(versionConfig("v4", { rollout: { step_seconds: 600 } }));
    await waitFor("v4 takes its first step", async () => (await phaseOf(v4)) === "step-0", 60_000, 200);
    assert.deepEqual(Object.fromEntries(await traffic()), { [v2]: 90, [v4]: 10 });
    const rollback = await runCli(["aws", "rollout", "rollback", res.configFile, "--timeout", "60"]);
    assert.equal(rollback.code, 0, rollback.err + rollback.out);
    assert.match(rollback.out, new RegExp(`rollback requested for version ${v4} \\(was step-0\\)`));
    assert.match(rollback.out, /rolled back: the previous version takes all traffic/);
    assert.deepEqual(Object.fromEntries(await traffic()), { [v2]: 100 });
    await waitFor("v4 scaled to 0", async () => runningTasksOf(v4).length === 0, 30_000, 200);
    await load.stop();
    assert.deepEqual(load.failed(), []);
    assertSingleVersionChains(load);
    assert.match((await runCli(["aws", "rollout", "status", res.configFile])).out, new RegExp(`version ${v4}: rolled-back \\(rollback requested`));
    const again = await runCli(["aws", "rollout", "promote", res.configFile]);
    assert.equal(again.code, 1);
    assert.match(again.err, /is already rolled back .*deploy a new version/);
  });

  test("the control plane killed in the middle of a rollout: its replacement completes it", async () => {
    const before = [...(await traffic()).keys()];
    const load = new Load(url);
    const v5 = await deploy(versionConfig("v5", { rollout: { step_seconds: 3 } }));
    await waitFor("v5 mid-rollout", async () => /^step-/.test((await phaseOf(v5)) ?? ""), 60_000, 100);
    const [cp] = sim.runningTasks("tsweaver_controlplane");
    assert.ok(cp);
    sim.kill(cp.taskArn, "SIGKILL");
    await waitFor("a new control plane task", () => sim.runningTasks("tsweaver_controlplane").some((t) => t.taskId !== cp.taskId), 30_000);
    await waitFor("v5 at 100% and live", async () => (await traffic()).get(v5) === 100 && (await phaseOf(v5)) === "live", 90_000, 200);
    await waitFor("the previous versions removed", async () => [...(await live()).keys()].join() === v5, 60_000, 200);
    await load.stop();
    assert.deepEqual(load.failed(), []);
    assertSingleVersionChains(load);
    for (const v of before) assert.deepEqual(runningTasksOf(v), [], `${v} has no task left`);
    stable = v5;
  });

  test("a v6 whose calls fail is rolled back on its error rate at the first step; v5 serves throughout", async () => {
    const v5 = stable;
    const load = new Load(url);
    const v6 = await deploy(versionConfig("v6", { back: { fail: true }, rollout: { step_seconds: 60 } }));
    await waitFor("v6 rolled back", async () => (await phaseOf(v6)) === "rolled-back", 60_000, 200);
    assert.deepEqual(Object.fromEntries(await traffic()), { [v5]: 100 });
    const rolledBackAt = Date.now();
    await sleep(1_000);
    await load.stop();
    assert.match((await runCli(["aws", "rollout", "status", res.configFile])).out, new RegExp(`version ${v6}: rolled-back \\(error rate 100\\.0% of \\d+ calls at 10% \\(limit 5\\.0%\\)\\)`));
    // Only requests the ALB sent to v6 failed (its 10%); v5 answered every one of its own.
    const failed = load.failed();
    assert.ok(failed.length > 0, "v6 got its share of the traffic");
    for (const f of failed) assert.match(f.body, /Back v6 fails on purpose/);
    assert.deepEqual(load.replies.filter((r) => r.at > rolledBackAt + 500 && r.status !== 200), [], "after the rollback every request succeeds");
    assertSingleVersionChains(load);
    assert.deepEqual(new Set(load.chains().map((c) => c[0])), new Set(["v5"]));
  });
});
