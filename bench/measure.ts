// Closed-loop load generation shared by every row: `concurrency` workers each issue one call, await it,
// and issue the next. A warm-up phase runs first and is thrown away. Every phase is bounded both in calls
// and in wall time, so a slow or stuck row cannot run away.
import { performance } from "node:perf_hooks";

/** Bounds of one measured cell. */
export interface Bounds {
  /** Warm-up: at most this many calls ... */
  warmupCalls: number;
  /** ... and at most this long (ms). */
  warmupMs: number;
  /** Measurement: at most this many calls ... */
  calls: number;
  /** ... and at most this long (ms). */
  maxMs: number;
}

/** Full run: ~1 s warm-up, up to 2.5 s of measurement per cell. */
export const FULL: Bounds = { warmupCalls: 20_000, warmupMs: 1000, calls: 300_000, maxMs: 2500 };
/** Smoke run: a few hundred calls per cell. */
export const QUICK: Bounds = { warmupCalls: 50, warmupMs: 300, calls: 300, maxMs: 1500 };

/** What one cell measured. */
export interface CellResult {
  /** Calls measured (after warm-up). */
  calls: number;
  /** Wall time of the measurement phase, seconds. */
  seconds: number;
  /** Completed calls per second. */
  opsPerSec: number;
  /** Median call latency, µs. */
  p50Us: number;
  /** 99th percentile call latency, µs. */
  p99Us: number;
  /**
   * CPU time (user + system) of client and server together per measured call, µs, where the row can
   * read both processes' (the network rows). Less sensitive than time to other work on a shared machine.
   */
  cpuUsPerCall?: number | undefined;
}

interface PhaseResult {
  done: number;
  ms: number;
}

async function phase(
  call: () => Promise<unknown>,
  concurrency: number,
  maxCalls: number,
  maxMs: number,
  lat: Float64Array | undefined,
): Promise<PhaseResult> {
  let issued = 0;
  let failure: unknown;
  const start = performance.now();
  const deadline = start + maxMs;
  let stop = false;
  const worker = async (): Promise<void> => {
    while (!stop && issued < maxCalls) {
      const i = issued++;
      const t0 = performance.now();
      try {
        await call();
      } catch (err) {
        failure ??= err;
        stop = true;
      }
      const t1 = performance.now();
      if (lat !== undefined) lat[i] = t1 - t0;
      if (t1 >= deadline) stop = true;
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < concurrency; i++) workers.push(worker());
  await Promise.all(workers);
  const ms = performance.now() - start;
  if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
  return { done: issued, ms };
}

/**
 * Runs warm-up then measurement of `call` at `concurrency`; returns throughput and latency percentiles,
 * and CPU µs per call if `cpuMicros` (CPU time used so far by the processes doing the work) is given.
 */
export async function closedLoop(
  call: () => Promise<unknown>,
  concurrency: number,
  b: Bounds,
  cpuMicros?: () => Promise<number>,
): Promise<CellResult> {
  await phase(call, concurrency, b.warmupCalls, b.warmupMs, undefined);
  const lat = new Float64Array(b.calls);
  const cpu0 = await cpuMicros?.();
  const r = await phase(call, concurrency, b.calls, b.maxMs, lat);
  const cpu1 = await cpuMicros?.();
  const sorted = lat.subarray(0, r.done).sort();
  return {
    calls: r.done,
    seconds: r.ms / 1000,
    opsPerSec: r.done / (r.ms / 1000),
    p50Us: percentile(sorted, 0.5) * 1000,
    p99Us: percentile(sorted, 0.99) * 1000,
    cpuUsPerCall: cpu0 === undefined || cpu1 === undefined ? undefined : (cpu1 - cpu0) / r.done,
  };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** The median of each figure over several measurements of one cell (calls and seconds are summed). */
export function medianOf(rs: readonly CellResult[]): CellResult {
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  return {
    calls: rs.reduce((n, r) => n + r.calls, 0),
    seconds: rs.reduce((n, r) => n + r.seconds, 0),
    opsPerSec: median(rs.map((r) => r.opsPerSec)),
    p50Us: median(rs.map((r) => r.p50Us)),
    p99Us: median(rs.map((r) => r.p99Us)),
    cpuUsPerCall: rs.every((r) => r.cpuUsPerCall !== undefined) ? median(rs.map((r) => r.cpuUsPerCall!)) : undefined,
  };
}

/** Bounds for one of `rounds` rounds that together make `b`. */
export function perRound(b: Bounds, rounds: number): Bounds {
  return { warmupCalls: b.warmupCalls, warmupMs: b.warmupMs / rounds, maxMs: b.maxMs / rounds, calls: Math.ceil(b.calls / rounds) };
}

/** Parses the bounds a parent process passed in an environment variable (JSON), else `fallback`. */
export function boundsFrom(json: string | undefined, fallback: Bounds): Bounds {
  if (!json) return fallback;
  const b = JSON.parse(json) as Bounds;
  return { warmupCalls: b.warmupCalls, warmupMs: b.warmupMs, calls: b.calls, maxMs: b.maxMs };
}

/** What the bench process asks the app's main (cross-process row) to measure. */
export interface CellRequest {
  size: "small" | "large";
  concurrency: number;
  bounds: Bounds;
}

/** Prefix of the line a child process prints its JSON results on. */
export const RESULT_MARKER = "BENCH_RESULT ";

/** The colocated row: cells keyed `size/concurrency`. */
export interface ColocatedResult {
  colocated: Record<string, CellResult>;
  direct: Record<string, CellResult>;
}
