// `npm run bench:boutique` (full run) or `npm run bench:boutique -- --quick` (smoke run).
// Flags: --quick; --rate=N (fixed-rate phase, req/s); --requests=N; --systems=single,multi,advised,grpc;
// --json (also print `BENCH_JSON {...}`); --cpu-prof=DIR (node --cpu-prof for the single process and the
// grpc-js services; summarize with `node dist/bench/profile-summary.js DIR`).
import os from "node:os";
import path from "node:path";
import { formatTable, FULL_BOUNDS, QUICK_BOUNDS, runBoutique, SYSTEMS, type SystemName } from "./run.js";

const args = process.argv.slice(2);
const quick = args.includes("--quick") || process.env["BENCH_QUICK"] === "1";
const bounds = { ...(quick ? QUICK_BOUNDS : FULL_BOUNDS) };
let systems: SystemName[] = [...SYSTEMS];
let cpuProfDir: string | undefined;
let json = false;
for (const a of args) {
  if (a === "--quick") continue;
  else if (a === "--json") json = true;
  else if (a.startsWith("--rate=")) bounds.rate = Number(a.slice(7));
  else if (a.startsWith("--requests=")) bounds.requests = Number(a.slice(11));
  else if (a.startsWith("--systems="))
    systems = a
      .slice(10)
      .split(",")
      .map((s) => ((SYSTEMS as readonly string[]).includes(s) ? (s as SystemName) : fail(`unknown system ${s}`)));
  else if (a.startsWith("--cpu-prof=")) cpuProfDir = path.resolve(a.slice(11));
  else fail(`unknown argument ${a} (use --quick, --rate=N, --requests=N, --systems=..., --json, --cpu-prof=DIR)`);
}
if (!(bounds.rate > 0 && bounds.requests > 0)) fail("--rate and --requests must be positive");

function fail(msg: string): never {
  process.stderr.write(`bench:boutique: ${msg}\n`);
  process.exit(2);
}

const cpus = os.cpus();
process.stdout.write(
  `machine: ${cpus.length} × ${cpus[0]?.model ?? "?"}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, load avg ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(" ")}\n`,
);
const results = await runBoutique(bounds, {
  systems,
  ...(cpuProfDir ? { cpuProfDir } : {}),
  log: (s) => process.stderr.write(`bench:boutique: ${s}\n`),
});
process.stdout.write(formatTable(results, bounds) + "\n");
if (json) process.stdout.write(`BENCH_JSON ${JSON.stringify({ bounds, results })}\n`);
