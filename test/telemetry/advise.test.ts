import assert from "node:assert/strict";
import { test } from "node:test";
import { adviseColocation, colocateToml } from "../../runtime/telemetry/advise.js";
import type { CallGraph, Edge } from "../../runtime/telemetry/graph.js";

function edge(caller: string, callee: string, callsPerSec: number, bytesPerSec?: number, remote = true): Edge {
  return {
    caller,
    callee,
    remote,
    calls: callsPerSec * 60,
    errors: 0,
    callsPerSec,
    bytesPerSec,
    errorRate: 0,
    meanMs: 1,
    p50Ms: 1,
    p99Ms: 2,
  };
}

function graph(edges: Edge[]): CallGraph {
  const components = [...new Set(edges.flatMap((e) => [e.caller, e.callee]))].filter((c) => c !== "").sort();
  return { windowSec: 60, components, edges };
}

// main → A (100/s), A → B (80/s), B → A (10/s, same pair), main → C (1/s), C → D (50/s), D → E (49/s).
const shop = graph([
  edge("main", "A", 100, 100 * 200),
  edge("A", "B", 80, 80 * 300),
  edge("B", "A", 10, 10 * 300),
  edge("main", "C", 1, 100),
  edge("C", "D", 50, 50 * 100),
  edge("D", "E", 49, 49 * 100),
]);

test("advice: the heaviest pairs are merged, both directions of a pair count together", () => {
  const a = adviseColocation(shop, [], { maxComponents: 3 });
  assert.deepEqual(a.colocate, [
    ["A", "B", "main"],
    ["C", "D", "E"],
  ]);
  assert.equal(a.edges[0]!.a, "A");
  assert.equal(a.edges[0]!.b, "main");
  const ab = a.edges.find((e) => e.a === "A" && e.b === "B")!;
  assert.equal(ab.callsPerSec, 90, "A→B and B→A are one pair");
  assert.equal(ab.bytesPerSec, 90 * 300);
  assert.ok(a.changed);
  // Only main → C stays across processes.
  assert.deepEqual(a.advised, { callsPerSec: 1, bytesPerSec: 100 });
  assert.equal(a.now.callsPerSec, 290);
  assert.deepEqual(
    a.edges.filter((e) => e.remoteAdvised).map((e) => `${e.a}-${e.b}`),
    ["C-main"],
  );
});

test("advice keeps to the group size limit and says which merges it held back", () => {
  const a = adviseColocation(shop, [], { maxComponents: 2 });
  assert.deepEqual(a.colocate, [
    ["A", "main"],
    ["C", "D"],
  ]);
  assert.ok(
    a.held.some((h) => /^A ↔ B \(\d+% of the traffic\): the group would have 3 components, more than the limit of 2$/.test(h)),
    a.held.join("\n"),
  );
  for (const g of a.colocate) assert.ok(g.length <= 2);
});

test("advice leaves `separate` components alone and ignores pairs below the minimum share", () => {
  const a = adviseColocation(shop, [], { maxComponents: 10, separate: ["main"] });
  assert.ok(!a.colocate.flat().includes("main"));
  assert.ok(a.held.some((h) => h.includes("main kept separate")));
  assert.deepEqual(a.colocate, [
    ["A", "B"],
    ["C", "D", "E"],
  ]);
  // With a 33% floor only main ↔ A (about 101 of 293 call-equivalents/s, bytes included) is worth it.
  const strict = adviseColocation(shop, [], { maxComponents: 10, minShare: 0.33 });
  assert.deepEqual(strict.colocate, [["A", "main"]]);
});

test("advice compares with the current grouping and weighs bytes", () => {
  const same = adviseColocation(
    shop,
    [
      ["A", "B", "main"],
      ["C", "D", "E"],
    ],
    { maxComponents: 3 },
  );
  assert.equal(same.changed, false);
  assert.equal(same.now.callsPerSec, 1);
  // 1 call/s of 1 MiB outweighs 10 small calls/s: bytes count at 16 KiB per call.
  const big = graph([edge("main", "Blob", 1, 1 << 20), edge("main", "Tiny", 10, 10 * 50)]);
  const b = adviseColocation(big, [], { maxComponents: 2 });
  assert.deepEqual(b.colocate, [["Blob", "main"]]);
});

test("advice on no traffic proposes nothing; limits are checked", () => {
  const a = adviseColocation(graph([]), [["x", "y"]]);
  assert.deepEqual(a.colocate, []);
  assert.equal(a.changed, true, "the current x+y group is not what no traffic would pick");
  assert.throws(() => adviseColocation(shop, [], { maxComponents: 0 }), /maxComponents must be an integer ≥ 1, got 0/);
  assert.throws(() => adviseColocation(shop, [], { minShare: 2 }), /minShare must be within 0\.\.1, got 2/);
});

test("colocateToml writes a weaver.toml line that parses back", () => {
  assert.equal(
    colocateToml([
      ["a/B", "a/C"],
      ["tsweaver/Main", "x"],
    ]),
    'colocate = [["a/B", "a/C"], ["tsweaver/Main", "x"]]',
  );
});
