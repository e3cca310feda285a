// `npm run bench:boutique` (full run) or `npm run bench:boutique -- --quick` (smoke run).
// Flags: --quick; --rates=N,N,... (fixed-rate phases, req/s; --rate=N is one); --seconds=N (per phase);
// --idle=SECONDS; --systems=single,multi,advised,grpc; --json (also print `BENCH_JSON {...}`);
// --cpu-prof=DIR (node --cpu-prof for every app process; summarize with `node dist/bench/profile-summary.js DIR`);
// --weavelet-node-arg=FLAG (repeatable: a node flag for multi's weavelets, e.g. --max-semi-space-size=16);
// --curve (instead: the scale curves of single, multi and grpc-js, rates doubling until saturation; with
// --curve-seconds=N per rate, --curve-max-rate=N, --svg=PATH for the plot, default bench/boutique-curve.svg).
import { writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  CURVE_SYSTEMS,
  curveSvg,
  formatCurve,
  formatTable,
  FULL_BOUNDS,
  FULL_CURVE,
  QUICK_BOUNDS,
  runBoutique,
  runCurve,
  SYSTEMS,
  type SystemName,
} from "./run.js";

const args = process.argv.slice(2);
const quick = args.includes("--quick") || process.env["BENCH_QUICK"] === "1";
const bounds = { ...(quick ? QUICK_BOUNDS : FULL_BOUNDS) };
const curveBounds = { ...FULL_CURVE };
let systems: SystemName[] | undefined;
let cpuProfDir: string | undefined;
const weaveletNodeArgs: string[] = [];
let json = false;
let curve = false;
let svg = path.resolve("bench/boutique-curve.svg");
const positive = (flag: string, v: string): number => {
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : fail(`${flag} must be a positive number, not "${v}"`);
};
for (const a of args) {
  const [flag = "", value = ""] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a];
  if (flag === "--quick") continue;
  else if (flag === "--json") json = true;
  else if (flag === "--curve") curve = true;
  else if (flag === "--rate" || flag === "--rates")
    bounds.rates = value
      .split(",")
      .map((r) => positive(flag, r))
      .sort((x, y) => x - y);
  else if (flag === "--seconds") bounds.phaseSeconds = positive(flag, value);
  else if (flag === "--idle") bounds.idleMs = positive(flag, value) * 1000;
  else if (flag === "--curve-seconds") curveBounds.phaseSeconds = positive(flag, value);
  else if (flag === "--curve-max-rate") curveBounds.maxRate = positive(flag, value);
  else if (flag === "--svg") svg = path.resolve(value);
  else if (flag === "--systems")
    systems = value.split(",").map((s) => ((SYSTEMS as readonly string[]).includes(s) ? (s as SystemName) : fail(`unknown system ${s}`)));
  else if (flag === "--cpu-prof") cpuProfDir = path.resolve(value);
  else if (flag === "--weavelet-node-arg") weaveletNodeArgs.push(value);
  else
    fail(
      `unknown argument ${a} (use --quick, --rates=N,..., --seconds=N, --idle=S, --systems=..., --json, --cpu-prof=DIR, --weavelet-node-arg=FLAG, --curve, --curve-seconds=N, --curve-max-rate=N, --svg=PATH)`,
    );
}
if (curve && systems?.includes("advised")) fail("--curve runs single, multi and grpc; not advised");

function fail(msg: string): never {
  process.stderr.write(`bench:boutique: ${msg}\n`);
  process.exit(2);
}

const cpus = os.cpus();
const loadavg = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
process.stdout.write(
  `machine: ${cpus.length} × ${cpus[0]?.model ?? "?"}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, load avg ${loadavg()}\n`,
);
const log = (s: string) => process.stderr.write(`bench:boutique: ${s}\n`);
if (weaveletNodeArgs.length > 0) process.stdout.write(`multi's weavelets run with node ${weaveletNodeArgs.join(" ")}\n`);
if (curve) {
  const curves = await runCurve(curveBounds, { systems: systems ?? CURVE_SYSTEMS, weaveletNodeArgs, log });
  process.stdout.write(formatCurve(curves, curveBounds) + "\n");
  writeFileSync(svg, curveSvg(curves));
  process.stdout.write(`plot: ${svg}\n`);
  if (json) process.stdout.write(`BENCH_JSON ${JSON.stringify({ curveBounds, curves })}\n`);
} else {
  const results = await runBoutique(bounds, { systems: systems ?? SYSTEMS, ...(cpuProfDir ? { cpuProfDir } : {}), weaveletNodeArgs, log });
  process.stdout.write(formatTable(results, bounds) + "\n");
  if (json) process.stdout.write(`BENCH_JSON ${JSON.stringify({ bounds, results })}\n`);
}
process.stdout.write(`load avg at the end: ${loadavg()}\n`);
