/**
 * Shared by the rollout tests (rollout.test.ts, rollback.test.ts): the versioned test app deployed to the
 * emulator through the real stack, the Fargate and ALB simulators, a bounded load through the ALB, and
 * what AWS says about versions and traffic.
 *
 * The app (test/aws/fixtures/versioned) answers with the label of every component a request touched,
 * so a response whose chain mixes versions would show it; each version is the same app with its own
 * labels in weaver.toml (a changed config is a new version).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import { AwsClients } from "../../runtime/deployers/aws/clients.js";
import { OUTPUTS, type RolloutPhase } from "../../runtime/deployers/aws/contract.js";
import { Versions, type LiveVersion } from "../../runtime/deployers/aws/versions.js";
import { ROOT, get, runCli, waitFor } from "../support/index.js";
import { startAlbSimulator, type AlbSimulator } from "./alb.js";
import { startFargate, type FargateSimulator } from "./fargate.js";
import { useEmulator, type Emulator } from "./moto.js";
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
export function versionConfig(
  label: string,
  opts: {
    rollout?: Record<string, unknown>;
    main?: Record<string, unknown>;
    back?: Record<string, unknown>;
    /** `[aws.alarms]`. */
    alarms?: Record<string, unknown>;
  } = {},
): string {
  const doc = parseToml(readFileSync(FIXTURE, "utf8")) as Record<string, any>;
  doc["tsweaver"]["binary"] = path.resolve(path.dirname(FIXTURE), doc["tsweaver"]["binary"] as string);
  doc["tsweaver/Main"] = { label, ...opts.main };
  doc["versioned/Middle"] = { label };
  doc["versioned/Back"] = { label, ...opts.back };
  doc["aws"] = { ...doc["aws"], rollout: { steps: [10, 50, 100], step_seconds: 2, health_timeout_seconds: 30, ...opts.rollout } };
  if (opts.alarms) doc["aws"]["alarms"] = opts.alarms;
  const file = path.join(tmp, `${label}.toml`);
  writeFileSync(file, stringifyToml(doc));
  return file;
}

/** A bounded load through the ALB: `workers` sequential request loops until stopped. */
export class Load {
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

/** The versioned app on the emulator, activated at v1 and answering through the ALB simulator. */
export class RolloutDeployment {
  res!: AppResources;
  sim!: FargateSimulator;
  url = "";
  private emu!: Emulator;
  private alb!: AlbSimulator;
  private versions!: Versions;

  static async start(): Promise<RolloutDeployment> {
    const d = new RolloutDeployment();
    d.emu = await useEmulator();
    d.res = await createAppResources({ configFile: versionConfig("v1"), listeners: LISTENERS, rpcPort: 19010, controlPort: 19110 });
    d.sim = await startFargate({ endpoint: d.emu.endpoint, cluster: d.res.clusterArn, workdir: d.res.workdir, taskEnv: () => FAST });
    d.alb = await startAlbSimulator({
      endpoint: d.emu.endpoint,
      loadBalancerArn: d.res.outputs[OUTPUTS.LOAD_BALANCER_ARN]!,
      healthCheckIntervalMs: 250,
      refreshMs: 200,
    });
    d.versions = new Versions(new AwsClients(), d.res.clusterArn, d.res.stack);
    const activate = await runCli(["aws", "activate", d.res.configFile, "--timeout", "120"]);
    assert.equal(activate.code, 0, activate.err + activate.out);
    d.url = `${d.alb.urlOf(80)}/chain`;
    await waitFor("v1 answers through the ALB", async () => (await get(d.url)).body === '["v1","v1","v1"]', 30_000, 100);
    return d;
  }

  async stop(): Promise<void> {
    await this.sim?.stop();
    await this.alb?.stop();
    await this.res?.delete();
    await this.emu?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }

  live(): Promise<Map<string, LiveVersion>> {
    return this.versions.list();
  }

  async phaseOf(version: string): Promise<RolloutPhase | undefined> {
    return (await this.live()).get(version)?.rollout.phase;
  }

  /** Percent of the web listener's traffic per version. */
  async traffic(): Promise<Map<string, number>> {
    const rule = await this.versions.rule(JSON.parse(this.res.outputs[OUTPUTS.LISTENERS]!).web.listenerArn as string);
    const out = new Map<string, number>();
    for (const [arn, w] of rule?.weights ?? []) out.set(Versions.versionOfTargetGroup(arn)!, w);
    return out;
  }

  runningTasksOf(version: string) {
    return this.sim.runningTasks().filter((t) => t.service?.endsWith(`-${version}`));
  }

  /** Deploys a new version the way cdk deploy does; returns its id. */
  async deploy(configFile: string): Promise<string> {
    this.res = await updateAppResources(this.res, { configFile, listeners: LISTENERS, rpcPort: 19010, controlPort: 19110 });
    return this.res.version;
  }

  /** The CLI against this deployment, e.g. `cli("aws", "status")`. */
  cli(...args: string[]) {
    return runCli([...args, this.res.configFile]);
  }
}

export function assertSingleVersionChains(load: Load): void {
  for (const chain of load.chains()) assert.equal(new Set(chain).size, 1, `a response mixed versions: ${JSON.stringify(chain)}`);
}
