// Smoke run of the boutique comparison (bench/boutique): all systems start, serve the locustfile flow
// without errors, and produce numbers and the tables; the command's rate and curve flags on a tiny run.
// Tiny bounds; no timing assertions.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import {
  cpuSeconds,
  curveSvg,
  formatCurve,
  formatTable,
  rssMiB,
  runBoutique,
  saturation,
  wakeups,
  type BoutiqueBounds,
  type RatePoint,
} from "../../bench/boutique/run.js";
import { ROOT, runCli, tempDir } from "../support/index.js";

const TINY: BoutiqueBounds = {
  idleMs: 500,
  idleSettleMs: 0,
  warmupRequests: 30,
  warmupMs: 1500,
  rates: [40, 80],
  phaseSeconds: 0.3,
  maxConcurrency: 4,
  maxRequests: 40,
  maxMs: 500,
};

test("bench:boutique smoke: single, multi, multi advised and grpc-js all serve the flow at each rate and report", async () => {
  const results = await runBoutique(TINY);
  assert.deepEqual(
    results.map((r) => r.system),
    ["single", "multi", "advised", "grpc"],
  );
  for (const r of results) {
    assert.deepEqual(
      r.fixed.map((p) => [p.rate, p.load.requests]),
      [
        [40, 12],
        [80, 24],
      ],
    );
    for (const p of r.fixed) {
      assert.equal(p.load.errors, 0, `${r.system} at ${p.rate}/s: ${p.load.firstError}`);
      assert.ok(Number.isFinite(p.load.p50Ms) && Number.isFinite(p.cpuPer1000));
      assert.ok(p.backgroundPer1000 >= 0 && p.backgroundPer1000 <= p.cpuPer1000 + 1e-9);
      assert.ok(Math.abs(p.backgroundPer1000 + p.callPer1000 - p.cpuPer1000) < 1e-9, "background + call work = the whole");
    }
    assert.equal(r.max.errors, 0, `${r.system}: ${r.max.firstError}`);
    assert.ok(r.max.requests > 0);
    assert.ok(Number.isFinite(r.idleCpuPerMin) && r.idleCpuPerMin >= 0);
    assert.ok(Number.isFinite(r.idleWakeupsPerSec) && r.idleWakeupsPerSec >= 0);
    assert.ok(r.idleMemory.totalMiB >= r.idleMemory.processMiB && r.idleMemory.processMiB > 0);
    assert.equal(r.idleMemory.deployerMiB !== undefined, r.system === "multi" || r.system === "advised");
  }
  assert.equal(results[0]!.processes, 1);
  assert.equal(results[1]!.processes, 11, "multi: the deployer and one weavelet per group");
  const advised = results[2]!;
  assert.ok(advised.colocate && advised.colocate.length > 0, "the advisor proposed at least one group");
  const grouped = advised.colocate.flat().length - advised.colocate.length;
  assert.equal(advised.processes, 11 - grouped, "multi, advised: one process fewer per component merged into a group");
  assert.equal(results[3]!.processes, 10, "grpc-js: nine services and the frontend");
  const table = formatTable(results, TINY);
  assert.match(table, /tsweaver multi \(1\/group\)/);
  assert.match(table, /multi CPU\/request ≥ 3× fewer than grpc-js at 40 req\/s: [\d.]+× (PASS|MISS)/);
  assert.match(table, /multi CPU\/request ≥ 3× fewer than grpc-js at 80 req\/s: [\d.]+× (PASS|MISS)/);
  assert.match(table, /tsweaver multi, advised colocation/);
  assert.match(table, /\| wake-ups \/ s \| RSS total MiB \| deployer RSS MiB \|/);
  assert.ok(cpuSeconds(process.pid) > 0);
  assert.ok(wakeups(process.pid) > 0 && rssMiB(process.pid) > 0);
});

const point = (rate: number, achieved: number, p99Ms: number, errors = 0): RatePoint => ({
  rate,
  load: { requests: rate, errors, seconds: 1, rate: achieved, p50Ms: p99Ms / 2, p99Ms },
  cpuSeconds: 0.1,
  cpuPer1000: 1,
  backgroundPer1000: 0,
  callPer1000: 1,
});

test("scale curve: saturation is errors, an achieved rate under 90%, or p99 above 10× its first value", () => {
  const first = point(50, 50, 4);
  assert.equal(saturation(point(100, 99, 5), first), undefined);
  assert.match(saturation(point(100, 80, 5), first) ?? "", /achieved 80 of 100/);
  assert.match(saturation(point(100, 100, 41), first) ?? "", /p99 41.0 ms > 10 × 4.0 ms/);
  assert.match(saturation(point(100, 100, 5, 2), first) ?? "", /2 errors/);
  const curves = [
    { system: "single" as const, points: [first, point(100, 100, 5)], stop: "reached 100 req/s (the bound)" },
    { system: "grpc" as const, points: [point(50, 50, 8)], stop: "achieved 40 of 100 req/s" },
  ];
  const table = formatCurve(curves, { startRate: 50, phaseSeconds: 1, maxRate: 100, maxMs: 1000, warmupRequests: 1, warmupMs: 1 });
  assert.match(table, /\| 100 \| 1\.000 \| 5\.0 \| - \| - \|/);
  const svg = curveSvg(curves);
  assert.match(svg, /^<svg [^>]*>/);
  assert.equal((svg.match(/<polyline /g) ?? []).length, 4, "two panels × two systems");
});

test("bench:boutique flags: --rates and --seconds, and --curve writing its table and plot", async () => {
  const bench = path.join(ROOT, "dist/bench/boutique/main.js");
  const rates = await runCli(
    ["--quick", "--systems=single,multi", "--rates=60,30", "--seconds=0.4", "--idle=0.5", "--weavelet-node-arg=--max-semi-space-size=16"],
    {},
    bench,
  );
  assert.equal(rates.code, 0, rates.err);
  assert.match(rates.out, /multi's weavelets run with node --max-semi-space-size=16/);
  for (const system of ["tsweaver single", "tsweaver multi \\(1\\/group\\)"])
    for (const rate of [30, 60]) assert.match(rates.out, new RegExp(`\\| ${system} \\| ${rate} \\| \\d+ \\|`));
  assert.match(rates.out, /RSS of one process/);
  const svg = path.join(tempDir(), "curve.svg");
  const curve = await runCli(["--curve", "--systems=single", "--curve-seconds=0.3", "--curve-max-rate=100", `--svg=${svg}`], {}, bench);
  assert.equal(curve.code, 0, curve.err);
  assert.match(curve.out, /\| 50 \| [\d.]+ \| [\d.]+ \|/);
  assert.match(curve.out, /tsweaver single: stopped at \d+ req\/s/);
  assert.ok(existsSync(svg));
  assert.match(readFileSync(svg, "utf8"), /<polyline /);
  const bad = await runCli(["--rates=0"], {}, bench);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--rates must be a positive number/);
});
