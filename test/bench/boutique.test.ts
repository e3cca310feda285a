// Smoke run of the boutique comparison (bench/boutique): all three systems start, serve the locustfile
// flow without errors, and produce numbers and the table. Tiny bounds; no timing assertions.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cpuSeconds, formatTable, runBoutique, type BoutiqueBounds } from "../../bench/boutique/run.js";

const TINY: BoutiqueBounds = {
  idleMs: 500,
  warmupRequests: 30,
  warmupMs: 1500,
  rate: 40,
  requests: 12,
  maxConcurrency: 4,
  maxRequests: 40,
  maxMs: 500,
};

test("bench:boutique smoke: single, multi, multi advised and grpc-js all serve the flow and report", async () => {
  const results = await runBoutique(TINY);
  assert.deepEqual(
    results.map((r) => r.system),
    ["single", "multi", "advised", "grpc"],
  );
  for (const r of results) {
    assert.equal(r.fixed.errors, 0, `${r.system}: ${r.fixed.firstError}`);
    assert.equal(r.max.errors, 0, `${r.system}: ${r.max.firstError}`);
    assert.equal(r.fixed.requests, TINY.requests);
    assert.ok(r.max.requests > 0);
    assert.ok(Number.isFinite(r.fixed.p50Ms) && Number.isFinite(r.cpuPer1000));
    assert.ok(Number.isFinite(r.idleCpuPerMin) && r.idleCpuPerMin >= 0);
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
  assert.match(table, /multi CPU\/request ≥ 3× fewer than grpc-js/);
  assert.match(table, /tsweaver multi, advised colocation/);
  assert.ok(cpuSeconds(process.pid) > 0);
});
