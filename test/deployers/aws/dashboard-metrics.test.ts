/**
 * What `tsweaver aws dashboard` reads from CloudWatch beyond the call counts: the call graph's p50/p99
 * (CloudWatch's percentile statistics of the EMF latency, per edge) and the app's own metrics; against
 * the emulator with the real SDK client.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CloudWatchClient, GetMetricStatisticsCommand, type Metric, PutMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import { METRICS } from "../../../runtime/deployers/aws/contract.js";
import { edgeLatencyOf, readEdgeLatency, readMetricStore } from "../../../runtime/deployers/aws/dashboard.js";
import { emfLines } from "../../../runtime/deployers/aws/emf.js";
import type { MetricUpdate } from "../../../runtime/protos/runtime.js";
import { callGraph, charts, edgeKey } from "../../../runtime/telemetry/graph.js";
import { METHOD_CALLS, METHOD_LATENCY } from "../../../runtime/telemetry/methods.js";
import { MetricStore } from "../../../runtime/telemetry/metricstore.js";
import { extractEmf, publishDatapoints } from "../../aws/emf.js";
import { clientConfig, useEmulator, type Emulator } from "../../aws/moto.js";

const D = METRICS.DIM;

function latencyMetric(app: string, caller: string, component: string, method: string): Metric {
  return {
    Namespace: METRICS.NAMESPACE,
    MetricName: METRICS.LATENCY,
    Dimensions: [
      { Name: D.APP, Value: app },
      { Name: D.COMPONENT, Value: component },
      { Name: D.METHOD, Value: method },
      { Name: D.CALLER, Value: caller },
      { Name: D.VERSION, Value: "v1" },
    ],
  };
}

test("percentiles per edge: each series' newest point, the slowest method's on an edge with several", () => {
  const cartToDb = edgeKey("shop/Cart", "shop/Db", true);
  const mainToCart = edgeKey("main", "shop/Cart", true);
  const series = [
    { metric: latencyMetric("shop", "shop/Cart", "shop/Db", "Get"), edge: cartToDb },
    { metric: latencyMetric("shop", "shop/Cart", "shop/Db", "Put"), edge: cartToDb },
    { metric: latencyMetric("shop", "main", "shop/Cart", "Add"), edge: mainToCart },
  ];
  const t = (min: number) => new Date(Date.UTC(2026, 0, 1, 0, min));
  const latency = edgeLatencyOf(series, [
    [
      { Timestamp: t(0), ExtendedStatistics: { p50: 40, p99: 80 } },
      { Timestamp: t(5), ExtendedStatistics: { p50: 2, p99: 9 } },
    ],
    [{ Timestamp: t(5), ExtendedStatistics: { p50: 3, p99: 7 } }],
    // A datapoint without percentiles (what moto answers).
    [{ Timestamp: t(5) }],
  ]);
  assert.deepEqual(latency.get(cartToDb), { p50Ms: 3, p99Ms: 9 });
  assert.equal(latency.get(mainToCart), undefined);

  // The call graph takes them for edges whose store has no buckets (CloudWatch's sums and counts) ...
  const store = new MetricStore();
  const labels = { caller: "shop/Cart", component: "shop/Db", method: "Get", remote: "true", version: "v1" };
  store.add(
    [
      { name: METHOD_CALLS, kind: "COUNTER", help: "", labels, value: 4, bounds: [], counts: [] },
      { name: METHOD_LATENCY, kind: "HISTOGRAM", help: "", labels, value: 20, bounds: [], counts: ["4"] },
    ],
    {},
  );
  const edge = callGraph(store, 30_000, [], latency).edges.find((e) => e.callee === "shop/Db");
  assert.equal(edge?.p50Ms, 3);
  assert.equal(edge?.p99Ms, 9);
  assert.equal(edge?.meanMs, 5);
  // ... and estimates its own from buckets where there are some (the multi deployer's store).
  const bucketed = new MetricStore();
  bucketed.add([{ name: METHOD_LATENCY, kind: "HISTOGRAM", help: "", labels, value: 20, bounds: [1, 10], counts: ["0", "4", "0"] }], {});
  const own = callGraph(bucketed, 30_000, [], latency).edges[0]!;
  assert.ok(own.p99Ms! > 1 && own.p99Ms! <= 10, `p99 ${own.p99Ms} from the buckets`);
});

let emu: Emulator;
let cw: CloudWatchClient;

before(async () => {
  emu = await useEmulator();
  cw = new CloudWatchClient(clientConfig(emu.endpoint));
});

after(async () => {
  cw?.destroy();
  await emu?.stop();
});

test("the percentile queries against the emulator: accepted for the EMF latency series; moto computes no percentile", async () => {
  const app = `latency-${Date.now()}`;
  const metric = latencyMetric(app, "main", "shop/Cart", "Add");
  // What CloudWatch makes of an EMF latency histogram: values at bucket midpoints with their counts.
  await cw.send(
    new PutMetricDataCommand({
      Namespace: METRICS.NAMESPACE,
      MetricData: [
        { MetricName: METRICS.LATENCY, Dimensions: metric.Dimensions, Unit: "Milliseconds", Values: [0.5, 5.5, 75], Counts: [90, 9, 1] },
      ],
    }),
  );
  const end = new Date(Math.ceil(Date.now() / 60_000) * 60_000 + 60_000);
  const edge = edgeKey("main", "shop/Cart", true);
  const latency = await readEdgeLatency(cw, [{ metric, edge }], end, 300);
  // The same query with a statistic moto computes: the percentile reads name the series the agents write.
  const count = await cw.send(
    new GetMetricStatisticsCommand({
      Namespace: metric.Namespace,
      MetricName: metric.MetricName,
      Dimensions: metric.Dimensions,
      StartTime: new Date(end.getTime() - 300_000),
      EndTime: end,
      Period: 300,
      Statistics: ["SampleCount"],
      ExtendedStatistics: ["p50", "p99"],
    }),
  );
  assert.deepEqual(
    count.Datapoints?.map((p) => p.SampleCount),
    [100],
    `SampleCount of ${JSON.stringify(metric.Dimensions)}`,
  );
  if (emu.moto) assert.equal(latency.get(edge), undefined, "moto answers ExtendedStatistics with a datapoint that has none");
  else {
    // A CloudWatch (or an emulator) that computes percentiles: p50 in the first bucket, p99 above it.
    const l = latency.get(edge);
    assert.ok(l?.p50Ms !== undefined && l.p99Ms !== undefined && l.p99Ms >= l.p50Ms, JSON.stringify(l));
  }
});

test("the app's own metrics: from the agents' EMF lines in CloudWatch to the page's charts, each kind its own way", async () => {
  const app = `usermetrics-${Date.now()}`;
  const cloudWatch = new CloudWatchClient({ ...clientConfig(emu.endpoint), disableRequestCompression: true });
  try {
    const now = Date.now();
    const update = (
      name: string,
      kind: MetricUpdate["kind"],
      labels: Record<string, string>,
      value: number,
      bounds: number[] = [],
      counts: number[] = [],
    ) => ({ name, kind, help: "", labels, value, bounds, counts: counts.map(String) }) satisfies MetricUpdate;
    // Two groups report the same counter; a gauge and a histogram from one.
    const lines = [
      ...emfLines([update("shop_orders_total", "COUNTER", { shop: "north" }, 6)], { app, group: "main", version: "v1" }, 15_000, now).lines,
      ...emfLines([update("shop_orders_total", "COUNTER", { shop: "north" }, 4)], { app, group: "cart", version: "v1" }, 15_000, now).lines,
      ...emfLines([update("shop_queue_depth", "GAUGE", {}, 7)], { app, group: "main", version: "v1" }, 15_000, now).lines,
      ...emfLines(
        [update("shop_basket_eur", "HISTOGRAM", {}, 90, [10, 100], [2, 1, 0])],
        { app, group: "main", version: "v1" },
        15_000,
        now,
      ).lines,
    ];
    const { datapoints, rejected } = extractEmf(lines);
    assert.deepEqual(rejected, []);
    await publishDatapoints(cloudWatch, datapoints);

    const { store } = await readMetricStore(cloudWatch, app, new Map(), 10);
    const byName = new Map(store.aggregate().map((s) => [s.name, s]));
    assert.deepEqual([...byName.keys()].filter((n) => !n.startsWith("tsweaver_")).sort(), [
      "shop_basket_eur",
      "shop_orders_total",
      "shop_queue_depth",
    ]);
    const orders = byName.get("shop_orders_total")!;
    assert.deepEqual(
      [orders.kind, orders.labels, orders.value],
      ["COUNTER", { shop: "north" }, 10],
      "both groups' counts, by the user's label",
    );
    const depth = byName.get("shop_queue_depth")!;
    assert.deepEqual([depth.kind, depth.value], ["GAUGE", 7]);
    const basket = byName.get("shop_basket_eur")!;
    // CloudWatch's sum of the value/count pairs: bucket midpoints 5 × 2 + 55 × 1 (the exact sum, 90, is not sent).
    assert.deepEqual([basket.kind, basket.value, basket.count], ["HISTOGRAM", 65, 3]);
    // The page's charts, as the multi page draws them: counters as rates, gauges as values, histograms as means.
    const titles = charts(store).map((c) => c.title);
    for (const t of ["shop_orders_total per second", "shop_queue_depth", "shop_basket_eur (mean)"])
      assert.ok(titles.includes(t), `${t} in ${titles.join("; ")}`);
    const mean = charts(store).find((c) => c.title === "shop_basket_eur (mean)")!;
    assert.deepEqual(
      mean.lines[0]?.points.map(([, v]) => Math.round(v * 100) / 100),
      [21.67],
    );
  } finally {
    cloudWatch.destroy();
  }
});
