// The boutique comparison (issue 7; Service Weaver's HotOS'23 table): the same shop as
//   - tsweaver single   one process: node dist/examples/boutique/main.js
//   - tsweaver multi    MultiDeployer, one replica per group: a deployer + 10 weavelets (one per component)
//   - multi, advised    the same, grouped as `tsweaver multi advise` proposes after a warm-up run of the
//                       one-group-per-component deployment (the advisor's default limits)
//   - grpc-js           10 processes: 9 @grpc/grpc-js services + the frontend (bench/boutique/service.ts)
// all serving the same JSON API from the same frontend code, driven by the same load generator
// (load.ts). For each: p50/p99 latency at a fixed request rate, CPU-seconds per 1000 requests over
// every process of the system (utime+stime from /proc/<pid>/stat, during the fixed-rate phase), and the
// maximum sustained rate (closed loop). The load generator runs in this process and is not counted.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
  /** Idle phase before any load: CPU of the whole system doing nothing (ms). */
  idleMs: number;
  warmupRequests: number;
  warmupMs: number;
  /** Fixed request rate (req/s) of the latency and CPU phase ... */
  rate: number;
  /** ... for this many requests (at most rate × seconds; the phase also stops at requests/rate + 5 s). */
  requests: number;
  /** Closed-loop phase for the maximum rate: concurrent users, request and time bounds. */
  maxConcurrency: number;
  maxRequests: number;
  maxMs: number;
}

export const FULL_BOUNDS: BoutiqueBounds = {
  idleMs: 30_000,
  warmupRequests: 3000,
  warmupMs: 4000,
  rate: 100,
  requests: 2000,
  maxConcurrency: 32,
  maxRequests: 50_000,
  maxMs: 8000,
};
export const QUICK_BOUNDS: BoutiqueBounds = {
  idleMs: 5_000,
  warmupRequests: 200,
  warmupMs: 1500,
  rate: 50,
  requests: 100,
  maxConcurrency: 16,
  maxRequests: 2000,
  maxMs: 1500,
};

export const SYSTEMS = ["single", "multi", "advised", "grpc"] as const;
export type SystemName = (typeof SYSTEMS)[number];

export interface SystemResult {
  system: SystemName;
  processes: number;
  /** The colocate groups the system ran with (multi, advised). */
  colocate?: string[][];
  fixed: LoadResult;
  cpuSeconds: number;
  cpuPer1000: number;
  /** CPU-seconds per minute of the whole system while idle (timers, polls, heartbeats). */
  idleCpuPerMin: number;
  max: LoadResult;
}

interface Running {
  address: string;
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

async function startMulti(tmp: string, profDir: string | undefined, colocate: readonly (readonly string[])[] = []): Promise<Running> {
  const config = path.join(tmp, "weaver.toml");
  // Each weavelet writes its own CPU profile when it stops.
  // (Node's default profile names carry the pid, so the weavelets' files do not collide.)
  const env = profDir ? `node_args = ${JSON.stringify(["--cpu-prof", `--cpu-prof-dir=${profDir}`])}\n` : "";
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

/** Runs the comparison; `log` gets progress lines. */
export async function runBoutique(
  bounds: BoutiqueBounds,
  opts: { systems?: readonly SystemName[]; cpuProfDir?: string; log?: (s: string) => void } = {},
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
      const sys =
        system === "single"
          ? await startSingle(opts.cpuProfDir)
          : system === "multi" || system === "advised"
            ? await startMulti(tmp, opts.cpuProfDir, colocate)
            : await startGrpc(opts.cpuProfDir);
      const load = new LoadGenerator(sys.address);
      try {
        // Idle first: nothing but the system's own timers (multi: after status.json lists every replica).
        await new Promise((r) => setTimeout(r, system === "multi" || system === "advised" ? 2200 : 500));
        const idlePids = sys.pids();
        const idle0 = idlePids.reduce((s, p) => s + cpuSeconds(p), 0);
        log(`${system}: idle for ${bounds.idleMs / 1000} s over ${idlePids.length} processes`);
        await new Promise((r) => setTimeout(r, bounds.idleMs));
        const idleCpuPerMin = ((idlePids.reduce((s, p) => s + cpuSeconds(p), 0) - idle0) / bounds.idleMs) * 60_000;
        log(`${system}: warm-up on ${sys.address}`);
        const warm = await load.closedLoop(8, bounds.warmupRequests, bounds.warmupMs);
        if (warm.errors > 0) throw new Error(`${system}: warm-up failed: ${warm.firstError}`);
        await new Promise((r) => setTimeout(r, system === "multi" ? 2200 : 100)); // multi: status.json has every pid
        const pids = sys.pids();
        const cpu0 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
        log(`${system}: ${bounds.requests} requests at ${bounds.rate}/s over ${pids.length} processes`);
        const fixed = await load.fixedRate(bounds.rate, bounds.requests, (bounds.requests / bounds.rate) * 1000 + 5000);
        const cpu = pids.reduce((s, p) => s + cpuSeconds(p), 0) - cpu0;
        log(`${system}: closed loop, ${bounds.maxConcurrency} users`);
        const max = await load.closedLoop(bounds.maxConcurrency, bounds.maxRequests, bounds.maxMs);
        out.push({
          system,
          processes: pids.length,
          ...(colocate ? { colocate } : {}),
          fixed,
          cpuSeconds: cpu,
          cpuPer1000: (cpu / fixed.requests) * 1000,
          idleCpuPerMin,
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

/** The side-by-side table, ratios to grpc-js and the issue's goals. */
export function formatTable(results: SystemResult[], bounds: BoutiqueBounds): string {
  const grpc = results.find((r) => r.system === "grpc");
  const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : "-");
  const lines = [
    `Online Boutique, ${bounds.requests} requests at ${bounds.rate} req/s (locustfile mix) for p50/p99 and CPU; max rate: closed loop, ${bounds.maxConcurrency} users`,
    "",
    "| system | processes | p50 ms | p99 ms | errors | max req/s | CPU-s / 1000 req | CPU vs grpc-js | p50 vs grpc-js | max rate vs grpc-js | idle CPU-s / min |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of results) {
    const cpuX = grpc ? grpc.cpuPer1000 / r.cpuPer1000 : NaN;
    const p50X = grpc ? grpc.fixed.p50Ms / r.fixed.p50Ms : NaN;
    const maxX = grpc ? r.max.rate / grpc.max.rate : NaN;
    lines.push(
      `| ${LABELS[r.system]} | ${r.processes} | ${f(r.fixed.p50Ms)} | ${f(r.fixed.p99Ms)} | ${r.fixed.errors + r.max.errors} | ${f(r.max.rate, 0)} | ${f(r.cpuPer1000, 3)} | ${f(cpuX)}× fewer | ${f(p50X)}× lower | ${f(maxX)}× | ${f(r.idleCpuPerMin, 3)} |`,
    );
  }
  if (grpc) {
    lines.push("", "Goals (issue 7):");
    const multi = results.find((r) => r.system === "multi");
    const single = results.find((r) => r.system === "single");
    if (multi) {
      const x = grpc.cpuPer1000 / multi.cpuPer1000;
      lines.push(`  multi CPU/request ≥ 3× fewer than grpc-js: ${f(x)}× ${x >= 3 ? "PASS" : "MISS"}`);
      lines.push(
        `  multi p50 lower than grpc-js: ${f(multi.fixed.p50Ms)} vs ${f(grpc.fixed.p50Ms)} ms ${multi.fixed.p50Ms < grpc.fixed.p50Ms ? "PASS" : "MISS"}`,
      );
    }
    const advised = results.find((r) => r.system === "advised");
    if (advised) {
      const x = grpc.cpuPer1000 / advised.cpuPer1000;
      lines.push(
        `  multi, advised colocation: ${f(x)}× fewer CPU-s/request than grpc-js; colocate = ${JSON.stringify(advised.colocate ?? [])}`,
      );
    }
    if (single) {
      const x = grpc.cpuPer1000 / single.cpuPer1000;
      lines.push(`  single CPU/request ≥ 8× fewer than grpc-js: ${f(x)}× ${x >= 8 ? "PASS" : "MISS"}`);
    }
  }
  return lines.join("\n");
}
