import assert from "node:assert/strict";
import { test } from "node:test";
import type { MetricUpdate } from "../../../runtime/protos/runtime.js";
import { METRICS } from "../../../runtime/deployers/aws/contract.js";
import {
  EMF_LIMITS,
  RESERVED_DIMENSIONS,
  emfLines,
  labelDimension,
  labelOfDimension,
  registeredReplicasLines,
} from "../../../runtime/deployers/aws/emf.js";

const source = { app: "shop", group: "shop-cart", version: "v1" };

function counter(name: string, labels: Record<string, string>, value: number): MetricUpdate {
  return { name, kind: "COUNTER", labels, value, bounds: [], counts: [], help: "" };
}
function histogram(name: string, labels: Record<string, string>, bounds: number[], counts: number[], sum: number): MetricUpdate {
  return { name, kind: "HISTOGRAM", labels, value: sum, bounds, counts: counts.map(String), help: "" };
}

interface EmfDoc {
  _aws: {
    Timestamp: number;
    CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[];
  };
  [k: string]: unknown;
}

/** Checks a line against the EMF specification's rules CloudWatch enforces (else it drops the line). */
function parseValid(line: string): EmfDoc {
  const doc = JSON.parse(line) as EmfDoc;
  assert.equal(typeof doc._aws.Timestamp, "number");
  for (const d of doc._aws.CloudWatchMetrics) {
    assert.equal(d.Namespace, METRICS.NAMESPACE);
    assert.ok(d.Metrics.length >= 1 && d.Metrics.length <= 100);
    for (const set of d.Dimensions) {
      assert.ok(set.length <= 30);
      for (const dim of set) assert.equal(typeof doc[dim], "string", `dimension ${dim} is a string member`);
    }
    for (const m of d.Metrics) {
      const v = doc[m.Name] as number | { Values: number[]; Counts: number[] };
      if (typeof v === "number") continue;
      assert.ok(
        v.Values.length >= 1 && v.Values.length <= 100 && v.Values.length === v.Counts.length,
        `${m.Name}: a value/count histogram`,
      );
    }
  }
  return doc;
}

test("method metrics: one line per caller → component.method with calls, errors and latency; served by group and method; the load", () => {
  const edge = { caller: "shop/Frontend", component: "shop/Cart", method: "add", remote: "true" };
  const servedLabels = { component: "shop/Cart", method: "add" };
  const { lines, dropped } = emfLines(
    [
      counter("tsweaver_method_calls_total", edge, 30),
      counter("tsweaver_method_errors_total", edge, 3),
      histogram("tsweaver_method_latency_ms", edge, [1, 5, 10], [10, 15, 5, 0], 120),
      counter("tsweaver_method_served_total", servedLabels, 20),
      histogram("tsweaver_method_served_latency_ms", servedLabels, [1, 5, 10], [0, 0, 0, 20], 400),
    ],
    source,
    10_000,
    1_700_000_000_000,
  );
  assert.equal(dropped, 0);
  const docs = lines.map(parseValid);
  assert.equal(docs.length, 3);
  const [calls, served, load] = docs as [EmfDoc, EmfDoc, EmfDoc];
  assert.deepEqual(
    { App: calls["App"], Caller: calls["Caller"], Component: calls["Component"], Method: calls["Method"], Version: calls["Version"] },
    { App: "shop", Caller: "shop/Frontend", Component: "shop/Cart", Method: "add", Version: "v1" },
  );
  assert.equal(calls["Calls"], 30);
  assert.equal(calls["Errors"], 3);
  assert.deepEqual(calls["Latency"], { Values: [0.5, 3, 7.5], Counts: [10, 15, 5], Sum: 120, Count: 30, Min: 0, Max: 10 });
  assert.deepEqual(served._aws.CloudWatchMetrics[0]!.Dimensions, [
    ["App", "Group", "Version"],
    ["App", "Component", "Method", "Version"],
  ]);
  assert.equal(served["ServedCalls"], 20);
  assert.deepEqual(served["ServedLatency"], { Values: [20], Counts: [20], Sum: 400, Count: 20, Min: 10, Max: 20 });
  assert.equal(load["ServedCallsPerSecond"], 2, "20 served calls over 10 s");
  assert.equal(load._aws.Timestamp, 1_700_000_000_000);
});

test("an idle replica still reports its load (zero), so the group's average per replica stays right", () => {
  const { lines } = emfLines([], source, 15_000);
  assert.equal(lines.length, 1);
  assert.equal(parseValid(lines[0]!)["ServedCallsPerSecond"], 0);
});

test("user metrics: labels become dimensions up to the limit; series past the per-report limit are dropped and counted", () => {
  const many = Array.from({ length: EMF_LIMITS.userSeries + 5 }, (_, i) => counter("shop_orders_total", { shop: `s${i}` }, 1));
  const wide = counter("shop_wide", { a: "1", b: "2", c: "3", d: "4", e: "5" }, 7);
  const { lines, dropped } = emfLines([wide, ...many], source, 1000);
  assert.equal(dropped, 6);
  const docs = lines.map(parseValid);
  const w = docs.find((d) => d["shop_wide"] !== undefined)!;
  assert.deepEqual(w._aws.CloudWatchMetrics[0]!.Dimensions, [["App", "Group", "Version", "Kind", "a", "b", "c"]]);
  assert.equal(w["Kind"], "COUNTER", "the kind, which ListMetrics does not give");
  assert.equal(w["d"], undefined, "labels past the limit are not sent");
  assert.equal(docs.filter((d) => d["shop_orders_total"] !== undefined).length, EMF_LIMITS.userSeries - 1);
});

test("a user label named like a dimension every line carries (App, Group, Version, Kind) is renamed, never overwriting it", () => {
  const { lines } = emfLines([counter("shop_sorted_total", { Kind: "fruit", App: "other", Kind_: "x" }, 3)], source, 1000);
  const doc = lines.map(parseValid).find((d) => d["shop_sorted_total"] !== undefined)!;
  assert.deepEqual(doc._aws.CloudWatchMetrics[0]!.Dimensions, [["App", "Group", "Version", "Kind", "Kind_", "App_", "Kind__"]]);
  assert.deepEqual(
    [doc["App"], doc["Kind"], doc["Kind_"], doc["App_"], doc["Kind__"]],
    ["shop", "COUNTER", "fruit", "other", "x"],
    "the runtime's dimensions keep their values; each label keeps its own under its dimension name",
  );
  // The dashboard reads the labels back under their own names; other names pass unchanged both ways.
  for (const name of [...RESERVED_DIMENSIONS, "Kind_", "App__", "kind", "Kindness", "shop"])
    assert.equal(labelOfDimension(labelDimension(name)), name, name);
  assert.deepEqual(["kind", "Kindness", "shop"].map(labelDimension), ["kind", "Kindness", "shop"]);
});

test("tsweaver's own other metrics are not republished as user metrics", () => {
  const { lines } = emfLines([counter("tsweaver_rpc_bytes_total", {}, 100)], source, 1000);
  assert.equal(lines.length, 1, "only the load line");
});

test("registered replicas: one valid line per group and version, zero included", () => {
  const lines = registeredReplicasLines(
    "shop",
    [
      { group: "shop-cart", version: "v1", replicas: 3 },
      { group: "shop-cart", version: "v2", replicas: 0 },
    ],
    1_700_000_000_000,
  );
  assert.equal(lines.length, 2);
  const docs = lines.map(parseValid);
  const D = METRICS.DIM;
  assert.deepEqual(docs[0]!._aws.CloudWatchMetrics, [
    {
      Namespace: METRICS.NAMESPACE,
      Dimensions: [[D.APP, D.GROUP, D.VERSION]],
      Metrics: [{ Name: METRICS.REGISTERED_REPLICAS, Unit: "Count" }],
    },
  ]);
  assert.equal(docs[0]!._aws.Timestamp, 1_700_000_000_000);
  assert.deepEqual(
    docs.map((d) => [d[D.APP], d[D.GROUP], d[D.VERSION], d[METRICS.REGISTERED_REPLICAS]]),
    [
      ["shop", "shop-cart", "v1", 3],
      ["shop", "shop-cart", "v2", 0],
    ],
  );
});
