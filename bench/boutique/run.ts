// The boutique comparison (issue 7; Service Weaver's HotOS'23 table): the same shop as
//   - tsweaver single   one process: node dist/examples/boutique/main.js
//   - tsweaver multi    MultiDeployer, one replica per group: a deployer + 10 weavelets (one per component)
//   - multi, advised    the same, grouped as `tsweaver multi advise` proposes after a warm-up run of the
//                       one-group-per-component deployment (the advisor's default limits)
//   - grpc-js           10 processes: 9 @grpc/grpc-js services + the frontend (bench/boutique/service.ts)
// all serving the same JSON API from the same frontend code, driven by the same load generator
// (load.ts). For each: p50/p99 latency at fixed request rates, CPU-seconds per 1000 requests over
// every process of the system (utime+stime from /proc/<pid>/stat, during each fixed-rate phase), split
// into background work (the idle rate of timers, polls and heartbeats over the phase) and call work,
// the idle wake-ups and memory (RSS), and the maximum sustained rate (closed loop). `runCurve` doubles
// the rate until the system saturates. The load generator runs in this process and is not counted.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { DeploymentDir } from "../../runtime/deployers/multi/state.js";
import { colocateToml, type ColocationAdvice } from "../../runtime/telemetry/advise.js";
import { LoadGenerator, type LoadResult } from "./load.js";

const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/bench/boutique
const ROOT = path.resolve(HERE, "../../..");
const CLK_TCK = 100; // Linux USER_HZ

/** Bounds of one run; every phase is bounded in requests and in time. */
export interface BoutiqueBounds {
  /**
   * Idle phase before any load: CPU of the whole system doing nothing (ms). It starts once the processes
   * have settled after start-up (`idleSettleMs`) and should span whole metric-collection periods (10 s).
   */
  idleMs: number;
  idleSettleMs: number;
  warmupRequests: number;
  warmupMs: number;
  /** Fixed request rates (req/s) of the latency and CPU phases, lowest first ... */
  rates: number[];
  /** ... each for this many seconds (rate × seconds requests; the phase also stops 5 s later). */
  phaseSeconds: number;
  /** Closed-loop phase for the maximum rate: concurrent users, request and time bounds. */
  maxConcurrency: number;
  maxRequests: number;
  maxMs: number;
}

export const FULL_BOUNDS: BoutiqueBounds = {
  idleMs: 30_000,
  idleSettleMs: 15_000,
  warmupRequests: 3000,
  warmupMs: 4000,
  // 400: the highest rate grpc-js sustains here (its closed-loop maximum is ~500 req/s).
  rates: [100, 400],
  phaseSeconds: 20,
  maxConcurrency: 32,
  maxRequests: 50_000,
  maxMs: 8000,
};
export const QUICK_BOUNDS: BoutiqueBounds = {
  idleMs: 5_000,
  idleSettleMs: 2_000,
  warmupRequests: 200,
  warmupMs: 1500,
  rates: [50],
  phaseSeconds: 2,
  maxConcurrency: 16,
  maxRequests: 2000,
  maxMs: 1500,
};

export const SYSTEMS = ["single", "multi", "advised", "grpc"] as const;
export type SystemName = (typeof SYSTEMS)[number];

/** One fixed-rate phase of one system. */
export interface RatePoint {
  /** Offered rate, req/s (the achieved one is `load.rate`). */
  rate: number;
  load: LoadResult;
  cpuSeconds: number;
  cpuPer1000: number;
  /** The idle rate of background work (timers, polls, heartbeats) over the phase, per 1000 requests ... */
  backgroundPer1000: number;
  /** ... and the rest: the work the calls cost. */
  callPer1000: number;
}

/** Resident memory (VmRSS) while idle, MiB. */
export interface IdleMemory {
  /** Every process of the system together. */
  totalMiB: number;
  /** multi: the deployer process. */
  deployerMiB?: number;
  /** multi: the median weavelet (single: the process; grpc-js: the median service). */
  processMiB: number;
}

export interface SystemResult {
  system: SystemName;
  processes: number;
  /** The colocate groups the system ran with (multi, advised). */
  colocate?: string[][];
  /** One per rate of the bounds, lowest first. */
  fixed: RatePoint[];
  /** CPU-seconds per minute of the whole system while idle (timers, polls, heartbeats). */
  idleCpuPerMin: number;
  /** Thread wake-ups (context switches) per second of the whole system while idle. */
  idleWakeupsPerSec: number;
  idleMemory: IdleMemory;
  max: LoadResult;
}

interface Running {
  address: string;
  /** multi: the deployer's process (the first of `pids()`). */
  deployerPid?: number;
  /** The colocation advice from the deployment's call graph (multi only). */
  advice?: (windowSec: number) => Promise<ColocationAdvice>;
  pids(): number[];
  stop(): Promise<void>;
}

/** utime+stime of a process in seconds (0 if it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // f[0] is field 3 (state)
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Context switches (voluntary and not) of every thread of a process: how often it woke up (0 if gone). */
export function wakeups(pid: number): number {
  let n = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      for (const m of status.matchAll(/ctxt_switches:\s+(\d+)/g)) n += Number(m[1]);
    }
  } catch {
    // the process or thread is gone
  }
  return n;
}

/** Resident memory of a process in MiB (VmRSS; 0 if it is gone). */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function sum(pids: readonly number[], f: (pid: number) => number): number {
  return pids.reduce((s, p) => s + f(p), 0);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
}

/** A child process printing `READY <rest>`; its remaining output is read and dropped. */
function startChild(args: string[], env: Record<string, string>, what: string): Promise<{ child: ChildProcess; ready: string }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (err = (err + c).slice(-4000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not ready after 30 s\n${err}`)), 30_000);
    const lines = createInterface({ input: child.stdout! });
    let ready = false;
    lines.on("line", (line) => {
      if (ready) return;
      const m = /^READY (.*)$/.exec(line) ?? /listener boutique available on http:\/\/(\S+)/.exec(line);
      if (m) {
        ready = true;
        clearTimeout(timer);
        resolve({ child, ready: m[1]! });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`${what} exited (${code}) before it was ready\n${err}`));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

function profArgs(dir: string | undefined, name: string): string[] {
  return dir ? ["--cpu-prof", `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}-\${pid}.cpuprofile`] : [];
}

async function startSingle(profDir: string | undefined): Promise<Running> {
  // Ready when it prints "tsweaver: listener boutique available on http://ADDRESS".
  const { child, ready } = await startChild([...profArgs(profDir, "single"), "dist/examples/boutique/main.js"], {}, "tsweaver single");
  return { address: ready, pids: () => [child.pid!], stop: () => stopChild(child) };
}

async function startMulti(
  tmp: string,
  profDir: string | undefined,
  colocate: readonly (readonly string[])[] = [],
  weaveletNodeArgs: readonly string[] = [],
): Promise<Running> {
  const config = path.join(tmp, "weaver.toml");
  // Each weavelet writes its own CPU profile when it stops.
  // (Node's default profile names carry the pid, so the weavelets' files do not collide.)
  const nodeArgs = [...(profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []), ...weaveletNodeArgs];
  const env = nodeArgs.length > 0 ? `node_args = ${JSON.stringify(nodeArgs)}\n` : "";
  writeFileSync(
    config,
    `[tsweaver]
name = "boutique"
binary = ${JSON.stringify(path.join(ROOT, "dist/examples/boutique/main.js"))}
${colocateToml(colocate)}
${env}
[multi]
replicas = 1

[multi.listeners.boutique]
address = "127.0.0.1:0"
`,
  );
  const stateDir = path.join(tmp, "state");
  const { child, ready } = await startChild(["dist/bench/boutique/multi-host.js", config, stateDir], {}, "tsweaver multi");
  const info = JSON.parse(ready) as { proxy: string; direct: string; deploymentId: string };
  const dir = new DeploymentDir(stateDir, info.deploymentId);
  return {
    // Main's own listener, like the grpc frontend's: neither system pays for a proxy in front.
    address: info.direct,
    deployerPid: child.pid!,
    advice: async (windowSec: number) => {
      const s = dir.readStatus();
      if (!s?.admin) throw new Error("multi: no admin server in status.json");
      const res = await fetch(`http://${s.admin}/api/advice?window=${windowSec}`, {
        headers: { authorization: `Bearer ${dir.readAdminToken()}` },
      });
      if (!res.ok) throw new Error(`multi: /api/advice: ${res.status} ${await res.text()}`);
      return (await res.json()) as ColocationAdvice;
    },
    pids: () => {
      const s = dir.readStatus();
      return [child.pid!, ...(s?.groups.flatMap((g) => g.replicas.map((r) => r.pid)).filter((p) => p > 0) ?? [])];
    },
    stop: () => stopChild(child),
  };
}

async function startGrpc(profDir: string | undefined): Promise<Running> {
  const children: ChildProcess[] = [];
  const addrs: Record<string, string> = {};
  const start = async (key: string): Promise<void> => {
    const { child, ready } = await startChild(
      [...profArgs(profDir, `grpc-${key}`), "dist/bench/boutique/service.js", key],
      { BOUTIQUE_ADDRS: JSON.stringify(addrs) },
      `grpc ${key}`,
    );
    children.push(child);
    addrs[key] = `127.0.0.1:${ready.trim()}`;
  };
  try {
    await Promise.all(["catalog", "currency", "cart", "shipping", "payment", "email", "ad"].map(start));
    await Promise.all(["recommendation", "checkout"].map(start));
    await start("frontend");
  } catch (err) {
    await Promise.all(children.map(stopChild));
    throw err;
  }
  return {
    address: addrs["frontend"]!,
    pids: () => children.map((c) => c.pid!),
    stop: () => Promise.all(children.map(stopChild)).then(() => {}),
  };
}

/** How to start a system: CPU profiles, and node flags for multi's weavelets (e.g. a young generation size). */
export interface StartOptions {
  cpuProfDir?: string;
  weaveletNodeArgs?: readonly string[];
}

function startSystem(system: SystemName, tmp: string, opts: StartOptions, colocate: string[][] | undefined): Promise<Running> {
  return system === "single"
    ? startSingle(opts.cpuProfDir)
    : system === "multi" || system === "advised"
      ? startMulti(tmp, opts.cpuProfDir, colocate, opts.weaveletNodeArgs)
      : startGrpc(opts.cpuProfDir);
}

/** Waits until multi's status.json lists every replica's pid (groups start on first use). */
async function settle(system: SystemName): Promise<void> {
  await new Promise((r) => setTimeout(r, system === "multi" || system === "advised" ? 2200 : 100));
}

/** The warm-up before the measured phases (JIT, connections; multi: every group started), then the settle. */
async function warmUp(system: SystemName, load: LoadGenerator, bounds: { warmupRequests: number; warmupMs: number }): Promise<void> {
  const warm = await load.closedLoop(8, bounds.warmupRequests, bounds.warmupMs);
  if (warm.errors > 0) throw new Error(`${system}: warm-up failed: ${warm.firstError}`);
  await settle(system);
}

/** One fixed-rate phase: latency, and CPU over every process, split by the idle rate of background work. */
async function ratePhase(sys: Running, load: LoadGenerator, rate: number, seconds: number, idleCpuPerMin: number): Promise<RatePoint> {
  const pids = sys.pids();
  const cpu0 = sum(pids, cpuSeconds);
  const requests = Math.max(1, Math.round(rate * seconds));
  const fixed = await load.fixedRate(rate, requests, seconds * 1000 + 5000);
  const cpu = sum(pids, cpuSeconds) - cpu0;
  const per1000 = (n: number) => (n / fixed.requests) * 1000;
  const background = Math.min(cpu, (idleCpuPerMin / 60) * fixed.seconds);
  return {
    rate,
    load: fixed,
    cpuSeconds: cpu,
    cpuPer1000: per1000(cpu),
    backgroundPer1000: per1000(background),
    callPer1000: per1000(cpu - background),
  };
}

/** Runs the comparison; `log` gets progress lines. */
export async function runBoutique(
  bounds: BoutiqueBounds,
  opts: StartOptions & { systems?: readonly SystemName[]; log?: (s: string) => void } = {},
): Promise<SystemResult[]> {
  const log = opts.log ?? (() => {});
  const out: SystemResult[] = [];
  const tmp = mkdtempSync(path.join(os.tmpdir(), "tsweaver-boutique-bench-"));
  if (opts.cpuProfDir) mkdirSync(opts.cpuProfDir, { recursive: true });
  try {
    for (const system of opts.systems ?? SYSTEMS) {
      let colocate: string[][] | undefined;
      if (system === "advised") {
        colocate = await adviseBoutique(tmp, bounds, log);
        log(`advised: colocate = ${JSON.stringify(colocate)}`);
      }
      log(`${system}: starting`);
      const sys = await startSystem(system, tmp, opts, colocate);
      const load = new LoadGenerator(sys.address);
      try {
        // Idle first: nothing but the system's own timers, once start-up work (module compilation, the
        // GCs that follow it, multi's groups starting) has settled.
        await settle(system);
        await new Promise((r) => setTimeout(r, bounds.idleSettleMs));
        const idlePids = sys.pids();
        const idle0 = sum(idlePids, cpuSeconds);
        const wake0 = sum(idlePids, wakeups);
        log(`${system}: idle for ${bounds.idleMs / 1000} s over ${idlePids.length} processes`);
        await new Promise((r) => setTimeout(r, bounds.idleMs));
        const idleCpuPerMin = ((sum(idlePids, cpuSeconds) - idle0) / bounds.idleMs) * 60_000;
        const idleWakeupsPerSec = ((sum(idlePids, wakeups) - wake0) / bounds.idleMs) * 1000;
        const rss = idlePids.map(rssMiB);
        const idleMemory: IdleMemory = {
          totalMiB: rss.reduce((a, b) => a + b, 0),
          processMiB: median(sys.deployerPid === undefined ? rss : rss.slice(1)),
          ...(sys.deployerPid === undefined ? {} : { deployerMiB: rssMiB(sys.deployerPid) }),
        };
        log(`${system}: warm-up on ${sys.address}`);
        await warmUp(system, load, bounds);
        const fixed: RatePoint[] = [];
        for (const rate of bounds.rates) {
          log(`${system}: ${rate} req/s for ${bounds.phaseSeconds} s over ${sys.pids().length} processes`);
          fixed.push(await ratePhase(sys, load, rate, bounds.phaseSeconds, idleCpuPerMin));
        }
        log(`${system}: closed loop, ${bounds.maxConcurrency} users`);
        const max = await load.closedLoop(bounds.maxConcurrency, bounds.maxRequests, bounds.maxMs);
        out.push({
          system,
          processes: sys.pids().length,
          ...(colocate ? { colocate } : {}),
          fixed,
          idleCpuPerMin,
          idleWakeupsPerSec,
          idleMemory,
          max,
        });
      } finally {
        load.close();
        await sys.stop();
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

/** Bounds of a scale curve: rates double from `startRate` until saturation, each phase and the whole bounded. */
export interface CurveBounds {
  startRate: number;
  /** Seconds per rate. */
  phaseSeconds: number;
  /** No rate above this (the load generator's own limit on this machine). */
  maxRate: number;
  /** Stop a system's curve after this long (ms). */
  maxMs: number;
  warmupRequests: number;
  warmupMs: number;
}

export const FULL_CURVE: CurveBounds = {
  startRate: 50,
  phaseSeconds: 6,
  maxRate: 12_800,
  maxMs: 90_000,
  warmupRequests: 2000,
  warmupMs: 3000,
};
export const CURVE_SYSTEMS: readonly SystemName[] = ["single", "multi", "grpc"];

export interface CurveResult {
  system: SystemName;
  points: RatePoint[];
  /** Why the curve stopped at its last point. */
  stop: string;
}

/**
 * Why a phase shows saturation, or undefined: errors, achieved rate under 90% of the offered one, or
 * p99 above 10× its value at the lowest rate.
 */
export function saturation(point: RatePoint, first: RatePoint): string | undefined {
  if (point.load.errors > 0) return `${point.load.errors} errors (${point.load.firstError ?? "?"})`;
  if (point.load.rate < 0.9 * point.rate) return `achieved ${point.load.rate.toFixed(0)} of ${point.rate} req/s`;
  if (point.load.p99Ms > 10 * first.load.p99Ms) return `p99 ${point.load.p99Ms.toFixed(1)} ms > 10 × ${first.load.p99Ms.toFixed(1)} ms`;
  return undefined;
}

/** The scale curves: for each system, CPU per request and p99 as the rate doubles until saturation. */
export async function runCurve(
  bounds: CurveBounds,
  opts: StartOptions & { systems?: readonly SystemName[]; log?: (s: string) => void } = {},
): Promise<CurveResult[]> {
  const log = opts.log ?? (() => {});
  const out: CurveResult[] = [];
  const tmp = mkdtempSync(path.join(os.tmpdir(), "tsweaver-boutique-curve-"));
  try {
    for (const system of opts.systems ?? CURVE_SYSTEMS) {
      if (system === "advised") throw new Error("curve: the advised system is not part of the scale curves");
      log(`curve ${system}: starting`);
      const sys = await startSystem(system, tmp, opts, undefined);
      const load = new LoadGenerator(sys.address);
      try {
        await warmUp(system, load, bounds);
        const points: RatePoint[] = [];
        const deadline = Date.now() + bounds.maxMs;
        let stop = `reached ${bounds.maxRate} req/s (the bound)`;
        for (let rate = bounds.startRate; rate <= bounds.maxRate; rate *= 2) {
          if (Date.now() + bounds.phaseSeconds * 1000 > deadline) {
            stop = `time bound (${bounds.maxMs / 1000} s)`;
            break;
          }
          const p = await ratePhase(sys, load, rate, bounds.phaseSeconds, 0);
          points.push(p);
          log(
            `curve ${system}: ${rate} req/s → ${p.load.rate.toFixed(0)} achieved, p99 ${p.load.p99Ms.toFixed(1)} ms, ${p.cpuPer1000.toFixed(3)} CPU-s/1000`,
          );
          const why = saturation(p, points[0]!);
          if (why) {
            stop = why;
            break;
          }
        }
        out.push({ system, points, stop });
      } finally {
        load.close();
        await sys.stop();
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

/**
 * The advised grouping: the one-group-per-component deployment under the warm-up load, then the
 * advisor's proposal from its call graph (as `tsweaver multi advise` prints it).
 */
async function adviseBoutique(tmp: string, bounds: BoutiqueBounds, log: (s: string) => void): Promise<string[][]> {
  log("advised: warm-up run, one group per component, to measure the call graph");
  const probe = await startMulti(tmp, undefined);
  const load = new LoadGenerator(probe.address);
  try {
    const warm = await load.closedLoop(8, bounds.warmupRequests, bounds.warmupMs);
    if (warm.errors > 0) throw new Error(`advised: warm-up failed: ${warm.firstError}`);
    // Rates need two metric history points with calls between them: keep a trickle going until then.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const advice = await probe.advice!(60);
      if (advice.windowSec > 0 && advice.edges.length > 0) return advice.colocate;
      if (Date.now() > deadline) throw new Error("advised: no call graph after 20 s");
      await load.closedLoop(2, 20, 500);
    }
  } finally {
    load.close();
    await probe.stop();
  }
}

const LABELS: Record<SystemName, string> = {
  single: "tsweaver single",
  multi: "tsweaver multi (1/group)",
  advised: "tsweaver multi, advised colocation",
  grpc: "grpc-js microservices",
};

const f = (n: number | undefined, d = 2): string => (n !== undefined && Number.isFinite(n) ? n.toFixed(d) : "-");

/** The side-by-side tables, ratios to grpc-js and the issue's goals. */
export function formatTable(results: SystemResult[], bounds: BoutiqueBounds): string {
  const grpc = results.find((r) => r.system === "grpc");
  const low = (r: SystemResult): RatePoint => r.fixed[0]!;
  const lines = [
    `Online Boutique, ${bounds.phaseSeconds} s at each of ${bounds.rates.join(", ")} req/s (locustfile mix); first table at ${bounds.rates[0]} req/s; max rate: closed loop, ${bounds.maxConcurrency} users`,
    "",
    "| system | processes | p50 ms | p99 ms | errors | max req/s | CPU-s / 1000 req | CPU vs grpc-js | p50 vs grpc-js | max rate vs grpc-js | idle CPU-s / min |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    const cpuX = grpc ? low(grpc).cpuPer1000 / low(r).cpuPer1000 : NaN;
    const p50X = grpc ? low(grpc).load.p50Ms / low(r).load.p50Ms : NaN;
    const maxX = grpc ? r.max.rate / grpc.max.rate : NaN;
    const errors = r.fixed.reduce((n, p) => n + p.load.errors, r.max.errors);
    lines.push(
      `| ${LABELS[r.system]} | ${r.processes} | ${f(low(r).load.p50Ms)} | ${f(low(r).load.p99Ms)} | ${errors} | ${f(r.max.rate, 0)} | ${f(low(r).cpuPer1000, 3)} | ${f(cpuX)}× fewer | ${f(p50X)}× lower | ${f(maxX)}× | ${f(r.idleCpuPerMin, 3)} |`,
    );
  }
  lines.push(
    "",
    "CPU per request at each rate; background = idle CPU-s/min × phase duration ÷ requests, call work = the rest:",
    "",
    "| system | offered req/s | achieved req/s | p50 ms | p99 ms | CPU-s / 1000 req | background | call work | CPU vs grpc-js |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  );
  for (const r of results)
    for (const p of r.fixed) {
      const g = grpc?.fixed.find((q) => q.rate === p.rate);
      lines.push(
        `| ${LABELS[r.system]} | ${p.rate} | ${f(p.load.rate, 0)} | ${f(p.load.p50Ms)} | ${f(p.load.p99Ms)} | ${f(p.cpuPer1000, 3)} | ${f(p.backgroundPer1000, 3)} | ${f(p.callPer1000, 3)} | ${g ? `${f(g.cpuPer1000 / p.cpuPer1000)}× fewer` : "-"} |`,
      );
    }
  lines.push(
    "",
    "Idle (nothing but the system's own timers, polls and heartbeats), memory while idle:",
    "",
    "| system | processes | idle CPU-s / min | wake-ups / s | RSS total MiB | deployer RSS MiB | RSS of one process (median) MiB |",
    "|---|---:|---:|---:|---:|---:|---:|",
  );
  for (const r of results)
    lines.push(
      `| ${LABELS[r.system]} | ${r.processes} | ${f(r.idleCpuPerMin, 3)} | ${f(r.idleWakeupsPerSec, 1)} | ${f(r.idleMemory.totalMiB, 0)} | ${f(r.idleMemory.deployerMiB, 0)} | ${f(r.idleMemory.processMiB, 0)} |`,
    );
  if (grpc) {
    lines.push("", "Goals (issues 7 and 17):");
    const multi = results.find((r) => r.system === "multi");
    const single = results.find((r) => r.system === "single");
    if (multi) {
      for (const p of multi.fixed) {
        const g = grpc.fixed.find((q) => q.rate === p.rate);
        if (!g) continue;
        const x = g.cpuPer1000 / p.cpuPer1000;
        const saturated = g.load.rate < 0.9 * g.rate ? " (grpc-js did not sustain this rate: not a valid baseline)" : "";
        lines.push(`  multi CPU/request ≥ 3× fewer than grpc-js at ${p.rate} req/s: ${f(x)}× ${x >= 3 ? "PASS" : "MISS"}${saturated}`);
      }
      lines.push(
        `  multi p50 lower than grpc-js: ${f(low(multi).load.p50Ms)} vs ${f(low(grpc).load.p50Ms)} ms ${low(multi).load.p50Ms < low(grpc).load.p50Ms ? "PASS" : "MISS"}`,
      );
    }
    const advised = results.find((r) => r.system === "advised");
    if (advised) {
      const x = low(grpc).cpuPer1000 / low(advised).cpuPer1000;
      lines.push(
        `  multi, advised colocation: ${f(x)}× fewer CPU-s/request than grpc-js; colocate = ${JSON.stringify(advised.colocate ?? [])}`,
      );
    }
    if (single) {
      const x = low(grpc).cpuPer1000 / low(single).cpuPer1000;
      lines.push(`  single CPU/request ≥ 8× fewer than grpc-js: ${f(x)}× ${x >= 8 ? "PASS" : "MISS"}`);
    }
  }
  return lines.join("\n");
}

/** The scale curves as a table: one row per rate, CPU-s/1000 req and p99 for each system. */
export function formatCurve(curves: CurveResult[], bounds: CurveBounds): string {
  const rates = [...new Set(curves.flatMap((c) => c.points.map((p) => p.rate)))].sort((a, b) => a - b);
  const lines = [
    `Scale curves: rates doubling from ${bounds.startRate} req/s, ${bounds.phaseSeconds} s each, until saturation (errors, achieved < 90% of offered, or p99 > 10× its first value)`,
    "",
    `| offered req/s | ${curves.map((c) => `${LABELS[c.system]}: CPU-s / 1000 req | p99 ms`).join(" | ")} |`,
    `|---:|${curves.map(() => "---:|---:").join("|")}|`,
  ];
  for (const rate of rates) {
    const cells = curves.map((c) => {
      const p = c.points.find((q) => q.rate === rate);
      return p ? `${f(p.cpuPer1000, 3)} | ${f(p.load.p99Ms, 1)}` : "- | -";
    });
    lines.push(`| ${rate} | ${cells.join(" | ")} |`);
  }
  lines.push("");
  for (const c of curves) lines.push(`  ${LABELS[c.system]}: stopped at ${c.points.at(-1)?.rate ?? "-"} req/s: ${c.stop}`);
  return lines.join("\n");
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

const COLORS: Record<SystemName, string> = { single: "#2b8a3e", multi: "#1c7ed6", advised: "#7048e8", grpc: "#e8590c" };

/**
 * The scale curves as an SVG: CPU-s per 1000 requests (left) and p99 (right) against the offered rate,
 * both on log scales. Written by hand: no plotting dependency for two small charts.
 */
export function curveSvg(curves: CurveResult[]): string {
  const W = 420;
  const H = 300;
  const M = { l: 56, r: 12, t: 28, b: 44 };
  const points = curves.flatMap((c) => c.points);
  const rates = points.map((p) => p.rate);
  const [x0, x1] = [Math.min(...rates), Math.max(...rates)];
  const esc = (t: string) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;");
  const panel = (ox: number, title: string, value: (p: RatePoint) => number): string => {
    const vs = points.map(value).filter((v) => v > 0 && Number.isFinite(v));
    const y0 = 10 ** Math.floor(Math.log10(Math.min(...vs)));
    const y1 = 10 ** Math.ceil(Math.log10(Math.max(...vs)));
    const sx = (r: number) =>
      round1(ox + M.l + ((Math.log2(r) - Math.log2(x0)) / Math.max(1, Math.log2(x1) - Math.log2(x0))) * (W - M.l - M.r));
    const sy = (v: number) =>
      round1(M.t + (1 - (Math.log10(v) - Math.log10(y0)) / Math.max(1, Math.log10(y1) - Math.log10(y0))) * (H - M.t - M.b));
    const out = [`<text x="${ox + W / 2}" y="16" text-anchor="middle" font-weight="bold">${esc(title)}</text>`];
    out.push(`<rect x="${ox + M.l}" y="${M.t}" width="${W - M.l - M.r}" height="${H - M.t - M.b}" fill="none" stroke="#999"/>`);
    for (let y = y0; y <= y1 * 1.0001; y *= 10)
      out.push(
        `<line x1="${ox + M.l}" x2="${ox + W - M.r}" y1="${sy(y)}" y2="${sy(y)}" stroke="#eee"/><text x="${ox + M.l - 4}" y="${sy(y) + 4}" text-anchor="end">${Number(y.toPrecision(2))}</text>`,
      );
    for (let r = x0; r <= x1; r *= 2) out.push(`<text x="${sx(r)}" y="${H - M.b + 14}" text-anchor="middle">${r}</text>`);
    out.push(`<text x="${ox + W / 2}" y="${H - 8}" text-anchor="middle">offered req/s</text>`);
    for (const c of curves) {
      const pts = c.points.filter((p) => value(p) > 0 && Number.isFinite(value(p)));
      out.push(
        `<polyline fill="none" stroke="${COLORS[c.system]}" stroke-width="2" points="${pts.map((p) => `${sx(p.rate)},${sy(value(p))}`).join(" ")}"/>`,
      );
      for (const p of pts) out.push(`<circle cx="${sx(p.rate)}" cy="${sy(value(p))}" r="3" fill="${COLORS[c.system]}"/>`);
    }
    return out.join("\n");
  };
  const legend = curves.map(
    (c, i) =>
      `<text x="${M.l + 8 + i * 170}" y="${H + 18}" fill="${COLORS[c.system]}" font-weight="bold">■ ${esc(LABELS[c.system])}</text>`,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 28}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    panel(0, "CPU-s per 1000 requests", (p) => p.cpuPer1000),
    panel(W, "p99 latency, ms", (p) => p.load.p99Ms),
    ...legend,
    "</svg>",
    "",
  ].join("\n");
}
