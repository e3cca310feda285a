// Smoke run of the benchmark suite (bench/run.ts --quick): every row starts and produces numbers.
// No timing assertions: a benchmark is never a timed unit test.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { ROOT } from "../support/index.js";

interface Result {
  calls: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
}

interface BenchJson {
  cells: { row: string; size: string; concurrency: number; result: Result }[];
  codecs: Record<string, { bytes: number; encodeOps: number; decodeOps: number; roundTripOps: number }>;
  targets: { target: string; cell: string; ratio: number; pass: boolean }[];
}

function runQuick(): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, "dist/bench/run.js"), "--quick", "--json"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), 150_000);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

test("bench --quick produces numbers for every row, payload and concurrency", { timeout: 180_000 }, async () => {
  const r = await runQuick();
  assert.equal(r.code, 0, `bench exited with ${r.code}\nstderr:\n${r.err}\nstdout:\n${r.out}`);
  const line = r.out.split("\n").find((l) => l.startsWith("BENCH_JSON "));
  assert.ok(line, `no BENCH_JSON line in:\n${r.out}`);
  const data = JSON.parse(line.slice("BENCH_JSON ".length)) as BenchJson;

  for (const row of [
    "raw",
    "rawcodec",
    "tsweaver",
    "plaintext",
    "tcp",
    "notelemetry",
    "grpc",
    "http",
    "rpc",
    "rpc-tls",
    "direct",
    "colocated",
    "direct-checked",
    "colocated-checked",
    "tls",
    "tcp-plaintext",
  ]) {
    for (const size of ["small", "large"]) {
      for (const c of [1, 64]) {
        const cell = data.cells.find((x) => x.row === row && x.size === size && x.concurrency === c);
        assert.ok(cell, `missing cell ${row} ${size} c=${c}`);
        const { calls, opsPerSec, p50Us, p99Us } = cell.result;
        assert.ok(calls > 0, `${row} ${size} c=${c}: no calls measured`);
        for (const [k, v] of Object.entries({ opsPerSec, p50Us, p99Us })) {
          assert.ok(Number.isFinite(v) && v > 0, `${row} ${size} c=${c}: ${k} = ${v}`);
        }
      }
    }
  }
  for (const codec of ["tsweaver", "JSON", "msgpackr", "protobufjs"]) {
    for (const size of ["small", "large"]) {
      const c = data.codecs[`${codec}/${size}`];
      assert.ok(c, `missing codec row ${codec}/${size}`);
      for (const [k, v] of Object.entries(c)) assert.ok(Number.isFinite(v) && v > 0, `${codec}/${size}: ${k} = ${v}`);
    }
  }
  // Ratios, each with a verdict: 2 latency, 2 large vs raw echo + codec, 4 authenticated, 4 TCP vs Unix socket, 8 telemetry (time, CPU), 2 TLS, 4 TLS full path,
  // 2 small calls at c=64 vs raw echo (full path, transport alone), 4 grpc, 4 http, 4 colocated,
  // 4 colocated with the value check (informational).
  assert.equal(data.targets.length, 44);
  for (const name of ["cross-process throughput vs raw echo", "RPC transport alone vs raw echo"]) {
    assert.ok(
      data.targets.some((t) => t.target === name && t.cell === "small c=64"),
      `missing target ${name}`,
    );
  }
  for (const t of data.targets) assert.ok(Number.isFinite(t.ratio), `${t.target} ${t.cell}: ratio ${t.ratio}`);
  // The human-readable table is printed too.
  assert.match(r.out, /\| 2 tsweaver cross-process/);
  assert.match(r.out, /PASS|MISS/);
});
