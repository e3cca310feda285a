import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { MetricUpdate } from "../../runtime/protos/runtime.js";
import { counter, gauge, histogram, collectMetricDeltas } from "../../runtime/telemetry/metrics.js";
import { MethodStats, METHOD_CALLS, METHOD_ERRORS, METHOD_LATENCY } from "../../runtime/telemetry/methods.js";
import { GROUP_LABEL, MetricStore, REPLICA_LABEL, quantile } from "../../runtime/telemetry/metricstore.js";
import { callGraph, charts } from "../../runtime/telemetry/graph.js";

const mine = (prefix: string) => collectMetricDeltas().filter((u) => u.name.startsWith(prefix));

describe("metrics API: counters, gauges, histograms as deltas", () => {
  test("counters report increments since the last collection, per label set", () => {
    const c = counter("t1_requests_total", "Requests");
    c.add();
    c.add(2, { path: "/a" });
    c.with({ path: "/a" }).add(3);
    c.add(1, { path: "/b" });
    const first = mine("t1_");
    assert.deepEqual(
      first.map((u) => [u.kind, u.labels, u.value, u.help]),
      [
        ["COUNTER", {}, 1, "Requests"],
        ["COUNTER", { path: "/a" }, 5, "Requests"],
        ["COUNTER", { path: "/b" }, 1, "Requests"],
      ],
    );
    assert.deepEqual(mine("t1_"), [], "nothing changed: nothing reported");
    c.add(4, { path: "/b" });
    assert.deepEqual(
      mine("t1_").map((u) => [u.labels, u.value]),
      [[{ path: "/b" }, 4]],
    );
  });

  test("label order does not matter; declaring twice returns the same metric; mistakes are errors", () => {
    const c = counter("t2_total", "x");
    c.add(1, { a: "1", b: "2" });
    c.add(1, { b: "2", a: "1" });
    assert.equal(counter("t2_total", "x"), c);
    assert.deepEqual(
      mine("t2_").map((u) => u.value),
      [2],
    );
    assert.throws(() => gauge("t2_total", "x"), /already declared as a counter/);
    assert.throws(() => counter("t2 bad", "x"), /must match/);
    assert.throws(() => c.add(-1), /must be >= 0/);
    assert.throws(() => c.add(1, { "bad-label": "x" }), /label name/);
    assert.throws(() => histogram("t2_h", "x", { bounds: [2, 1] }), /bounds must increase/);
  });

  test("gauges report their value when set; histograms report sum and bucket increments", () => {
    const g = gauge("t3_queue", "Queue length");
    g.set(5);
    g.add(-2);
    const h = histogram("t3_size", "Sizes", { bounds: [1, 10] });
    h.observe(0.5);
    h.observe(5);
    h.observe(50);
    h.observe(7);
    const d = mine("t3_");
    assert.deepEqual(d.find((u) => u.name === "t3_queue")!.value, 3);
    const hd = d.find((u) => u.name === "t3_size")!;
    assert.deepEqual([hd.kind, hd.value, hd.bounds, hd.counts], ["HISTOGRAM", 62.5, [1, 10], ["1", "2", "1"]]);
    h.observe(2);
    assert.deepEqual(
      mine("t3_").map((u) => [u.name, u.value, u.counts]),
      [["t3_size", 2, ["0", "1", "0"]]],
    );
  });
});

describe("metric store: totals, aggregation over replicas, Prometheus text, call graph", () => {
  const upd = (
    name: string,
    kind: MetricUpdate["kind"],
    labels: Record<string, string>,
    value: number,
    counts: number[] = [],
    bounds: number[] = [],
  ): MetricUpdate => ({
    name,
    kind,
    labels,
    value,
    bounds,
    counts: counts.map(String),
    help: `help of ${name}`,
  });

  test("deltas add up per source; aggregate sums over replicas; gauges keep the latest value", () => {
    const s = new MetricStore();
    const r0 = { [GROUP_LABEL]: "g", [REPLICA_LABEL]: "g-0" };
    const r1 = { [GROUP_LABEL]: "g", [REPLICA_LABEL]: "g-1" };
    s.add([upd("c_total", "COUNTER", { k: "v" }, 2), upd("q", "GAUGE", {}, 7)], r0);
    s.add([upd("c_total", "COUNTER", { k: "v" }, 3), upd("q", "GAUGE", {}, 1)], r1);
    s.add([upd("c_total", "COUNTER", { k: "v" }, 5), upd("q", "GAUGE", {}, 4)], r0);
    assert.deepEqual(
      s
        .all()
        .map((x) => [x.name, x.labels[REPLICA_LABEL], x.value])
        .sort(),
      [
        ["c_total", "g-0", 7],
        ["c_total", "g-1", 3],
        ["q", "g-0", 4],
        ["q", "g-1", 1],
      ],
    );
    assert.deepEqual(
      s
        .aggregate()
        .map((x) => [x.name, x.labels, x.value])
        .sort(),
      [
        ["c_total", { k: "v" }, 10],
        ["q", {}, 5],
      ],
    );
  });

  test("Prometheus exposition: HELP, TYPE, escaped labels, cumulative buckets, _sum and _count", () => {
    const s = new MetricStore();
    s.add([upd("req_total", "COUNTER", { path: 'a"b\\c' }, 3), upd("lat_ms", "HISTOGRAM", { m: "x" }, 12.5, [1, 2, 1], [1, 10])], {
      [REPLICA_LABEL]: "r-0",
    });
    const text = s.prometheus();
    assert.match(text, /^# HELP lat_ms help of lat_ms\n# TYPE lat_ms histogram\n/m);
    assert.match(text, /^lat_ms_bucket\{le="1",m="x",tsweaver_replica="r-0"\} 1$/m);
    assert.match(text, /^lat_ms_bucket\{le="10",m="x",tsweaver_replica="r-0"\} 3$/m);
    assert.match(text, /^lat_ms_bucket\{le="\+Inf",m="x",tsweaver_replica="r-0"\} 4$/m);
    assert.match(text, /^lat_ms_sum\{m="x",tsweaver_replica="r-0"\} 12.5$/m);
    assert.match(text, /^lat_ms_count\{m="x",tsweaver_replica="r-0"\} 4$/m);
    assert.match(text, /^# TYPE req_total counter\nreq_total\{path="a\\"b\\\\c",tsweaver_replica="r-0"\} 3$/m);
  });

  test("quantiles interpolate inside buckets", () => {
    assert.equal(quantile([1, 10], [0, 10, 0], 0.5), 5.5);
    assert.equal(quantile([1, 10], [10, 0, 0], 0.99), 0.99);
    assert.equal(quantile([1, 10], [0, 0, 3], 0.5), 10, "overflow bucket: the last bound");
    assert.equal(quantile([1], [0, 0], 0.5), undefined);
  });

  test("the call graph has one edge per caller → callee with rates over the window", () => {
    const s = new MetricStore();
    const labels = { caller: "app/Main", component: "app/Echo", method: "echo", remote: "true" };
    const b = [1, 10];
    s.add([upd(METHOD_CALLS, "COUNTER", labels, 10), upd(METHOD_LATENCY, "HISTOGRAM", labels, 20, [0, 10, 0], b)], {});
    s.snapshot(1_000);
    s.add(
      [
        upd(METHOD_CALLS, "COUNTER", labels, 20),
        upd(METHOD_ERRORS, "COUNTER", labels, 5),
        upd(METHOD_LATENCY, "HISTOGRAM", labels, 60, [0, 20, 0], b),
      ],
      {},
    );
    s.add([upd(METHOD_CALLS, "COUNTER", { ...labels, method: "pid" }, 20)], {});
    s.snapshot(11_000);
    const g = callGraph(s, 30_000, ["app/Other"]);
    assert.equal(g.windowSec, 10);
    assert.deepEqual(g.components, ["app/Echo", "app/Main", "app/Other"]);
    assert.equal(g.edges.length, 1);
    const e = g.edges[0]!;
    assert.deepEqual(
      [e.caller, e.callee, e.remote, e.calls, e.errors, e.callsPerSec, e.errorRate, e.meanMs],
      ["app/Main", "app/Echo", true, 50, 5, 4, 5 / 40, 3],
    );
    assert.ok(e.p99Ms! > 1 && e.p99Ms! <= 10);
    const [calls] = charts(s);
    assert.deepEqual(calls!.lines, [{ label: "app/Echo", points: [[11_000, 4]] }]);
  });

  test("history points stay a second apart: the newest one, while too close, moves forward", () => {
    const s = new MetricStore();
    s.snapshot(0);
    s.snapshot(5_000);
    s.snapshot(5_010);
    s.snapshot(5_500);
    s.snapshot(6_200);
    assert.deepEqual(
      s.points().map((p) => p.t),
      [0, 5_000, 6_200],
    );
    s.snapshot(6_300);
    s.snapshot(9_000);
    assert.deepEqual(
      s.points().map((p) => p.t),
      [0, 5_000, 6_200, 9_000],
    );
  });

  test("MethodStats count calls, errors and latency of the calls they are told about", () => {
    const st = MethodStats.caller("t/Caller", "t/Callee", "m", false);
    collectMetricDeltas();
    st.ok(0.2);
    st.fail(3);
    const d = collectMetricDeltas().filter((u) => u.labels["caller"] === "t/Caller");
    assert.deepEqual(d.map((u) => [u.name, u.kind === "HISTOGRAM" ? u.counts.reduce((a, c) => a + Number(c), 0) : u.value]).sort(), [
      [METHOD_CALLS, 2],
      [METHOD_ERRORS, 1],
      [METHOD_LATENCY, 2],
    ]);
    assert.deepEqual(d[0]!.labels, { caller: "t/Caller", component: "t/Callee", method: "m", remote: "false" });
  });
});
