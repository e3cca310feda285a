import { METHOD_CALLS, METHOD_ERRORS, METHOD_LATENCY, SERVED_BYTES, SERVED_CALLS } from "./methods.js";
import { type HistoryPoint, type MetricStore, type StoredSeries, quantile, seriesKey } from "./metricstore.js";

/**
 * Views computed from a deployment's metric totals and their history: the component call graph with
 * per-edge rates, and the time series the dashboard charts.
 */

/** Calls from one component to another over the window (or since the start, if that is shorter). */
export interface Edge {
  caller: string;
  callee: string;
  /** True if the calls crossed processes. */
  remote: boolean;
  /** Calls and errors since the deployment started. */
  calls: number;
  errors: number;
  /** Over the window: calls per second, errors / calls, mean and estimated p50 and p99 latency (ms). */
  callsPerSec: number;
  /**
   * Estimated request + response bytes per second over the window: each method's calls on this edge
   * times that method's mean bytes per served remote call. Undefined when no method called on this
   * edge has been served remotely yet (e.g. an edge inside one process).
   */
  bytesPerSec: number | undefined;
  errorRate: number;
  meanMs: number | undefined;
  p50Ms: number | undefined;
  p99Ms: number | undefined;
}

/** An edge's latency percentiles measured where the metric store has no buckets (CloudWatch's percentile statistics). */
export interface EdgeLatency {
  p50Ms: number | undefined;
  p99Ms: number | undefined;
}

/** The key of an edge in {@link callGraph}'s `latency` argument. */
export function edgeKey(caller: string, callee: string, remote: boolean): string {
  return `${caller}\u0000${callee}\u0000${remote}`;
}

export interface CallGraph {
  /** Length of the window the rates are over (s); 0 before there are two history points. */
  windowSec: number;
  components: string[];
  edges: Edge[];
}

/** The latest point and the oldest one within `windowMs` of it. */
function window(points: readonly HistoryPoint[], windowMs: number): { from: HistoryPoint | undefined; to: HistoryPoint | undefined } {
  const to = points[points.length - 1];
  if (!to) return { from: undefined, to };
  let from: HistoryPoint | undefined;
  for (let i = points.length - 2; i >= 0; i--) {
    if (to.t - points[i]!.t > windowMs) break;
    from = points[i];
  }
  return { from, to };
}

/**
 * The call graph: every caller → callee pair seen in the per-method metrics. Percentiles are estimated
 * from the latency buckets; an edge whose series have none (CloudWatch gives sums and counts) takes them
 * from `latency`, by {@link edgeKey}.
 */
export function callGraph(
  store: MetricStore,
  windowMs = 30_000,
  components: readonly string[] = [],
  latency?: ReadonlyMap<string, EdgeLatency>,
): CallGraph {
  const { from, to } = window(store.points(), windowMs);
  const secs = from && to ? (to.t - from.t) / 1000 : 0;
  const edges = new Map<
    string,
    Edge & {
      dCalls: number;
      dErrors: number;
      dSum: number;
      dCount: number;
      dCounts: number[];
      bounds: number[];
      dBytes: number | undefined;
    }
  >();
  const nodes = new Set(components);
  const current = store.aggregate();
  // Mean bytes per served call, per component.method (served totals; the callee side knows the sizes).
  const served = new Map<string, { calls: number; bytes: number }>();
  for (const s of current) {
    if (s.name !== SERVED_CALLS && s.name !== SERVED_BYTES) continue;
    const key = `${s.labels["component"] ?? ""}.${s.labels["method"] ?? ""}`;
    const m = served.get(key) ?? { calls: 0, bytes: 0 };
    if (s.name === SERVED_CALLS) m.calls += s.value;
    else m.bytes += s.value;
    served.set(key, m);
  }
  const bytesPerCall = (s: StoredSeries): number | undefined => {
    const m = served.get(`${s.labels["component"] ?? ""}.${s.labels["method"] ?? ""}`);
    return m && m.calls > 0 && m.bytes > 0 ? m.bytes / m.calls : undefined;
  };
  const edgeOf = (s: StoredSeries) => {
    const caller = s.labels["caller"] ?? "";
    const callee = s.labels["component"] ?? "";
    const remote = s.labels["remote"] === "true";
    const key = edgeKey(caller, callee, remote);
    let e = edges.get(key);
    if (!e) {
      e = {
        caller,
        callee,
        remote,
        calls: 0,
        errors: 0,
        callsPerSec: 0,
        bytesPerSec: undefined,
        errorRate: 0,
        meanMs: undefined,
        p50Ms: undefined,
        p99Ms: undefined,
        dCalls: 0,
        dErrors: 0,
        dSum: 0,
        dCount: 0,
        dCounts: [],
        bounds: [],
        dBytes: undefined,
      };
      edges.set(key, e);
      nodes.add(caller);
      nodes.add(callee);
    }
    return e;
  };
  const delta = (s: StoredSeries) => {
    const key = seriesKey(s.name, s.labels);
    const before = from?.values.get(key);
    const now = to?.values.get(key);
    if (!now) return { value: 0, count: 0, counts: undefined };
    return {
      value: now.value - (before?.value ?? 0),
      count: now.count - (before?.count ?? 0),
      counts: now.counts?.map((c, i) => c - (before?.counts?.[i] ?? 0)),
    };
  };
  for (const s of current) {
    if (s.name === METHOD_CALLS) {
      const e = edgeOf(s);
      e.calls += s.value;
      const d = from ? delta(s).value : 0;
      e.dCalls += d;
      const size = bytesPerCall(s);
      if (size !== undefined) e.dBytes = (e.dBytes ?? 0) + d * size;
    } else if (s.name === METHOD_ERRORS) {
      const e = edgeOf(s);
      e.errors += s.value;
      e.dErrors += from ? delta(s).value : 0;
    } else if (s.name === METHOD_LATENCY) {
      const e = edgeOf(s);
      const d = from ? delta(s) : { value: s.value, count: s.count, counts: s.counts };
      // Idle over the window: fall back to the totals so an edge still shows its latency.
      const use = d.count > 0 ? d : { value: s.value, count: s.count, counts: s.counts };
      e.dSum += use.value;
      e.dCount += use.count;
      e.bounds = s.bounds;
      const counts = use.counts ?? [];
      if (e.dCounts.length === 0) e.dCounts = new Array<number>(counts.length).fill(0);
      counts.forEach((c, i) => (e.dCounts[i] = (e.dCounts[i] ?? 0) + c));
    } else if (s.name === SERVED_CALLS && s.labels["component"]) {
      nodes.add(s.labels["component"]);
    }
  }
  const out: Edge[] = [];
  for (const [key, e] of edges) {
    const measured = latency?.get(key);
    out.push({
      caller: e.caller,
      callee: e.callee,
      remote: e.remote,
      calls: e.calls,
      errors: e.errors,
      callsPerSec: secs > 0 ? e.dCalls / secs : 0,
      bytesPerSec: e.dBytes === undefined ? undefined : secs > 0 ? e.dBytes / secs : 0,
      errorRate: e.dCalls > 0 ? e.dErrors / e.dCalls : e.calls > 0 ? e.errors / e.calls : 0,
      meanMs: e.dCount > 0 ? e.dSum / e.dCount : undefined,
      p50Ms: quantile(e.bounds, e.dCounts, 0.5) ?? measured?.p50Ms,
      p99Ms: quantile(e.bounds, e.dCounts, 0.99) ?? measured?.p99Ms,
    });
  }
  out.sort((a, b) => a.caller.localeCompare(b.caller) || a.callee.localeCompare(b.callee));
  return { windowSec: secs, components: [...nodes].filter((n) => n !== "").sort(), edges: out };
}

/** One chart: named lines of [time ms, value] points. */
export interface Chart {
  title: string;
  unit: string;
  lines: { label: string; points: [number, number][] }[];
}

/**
 * Time series for charts, from the history: calls/s, errors/s and mean latency per called component
 * (from the caller side), then one chart per user metric (counters as rates, gauges as values,
 * histograms as mean per observation).
 */
export function charts(store: MetricStore): Chart[] {
  const points = store.points();
  const series = store.aggregate();
  type Acc = Map<string, { keys: string[]; mode: "rate" | "value" | "mean" }>;
  const grouped = (filter: (s: StoredSeries) => boolean, label: (s: StoredSeries) => string, mode: "rate" | "value" | "mean"): Acc => {
    const acc: Acc = new Map();
    for (const s of series) {
      if (!filter(s)) continue;
      const l = label(s);
      const e = acc.get(l) ?? { keys: [], mode };
      e.keys.push(seriesKey(s.name, s.labels));
      acc.set(l, e);
    }
    return acc;
  };
  const lines = (acc: Acc): Chart["lines"] =>
    [...acc.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([label, { keys, mode }]) => {
        const pts: [number, number][] = [];
        for (let i = mode === "value" ? 0 : 1; i < points.length; i++) {
          const p = points[i]!;
          const prev = points[i - 1];
          // The newest point may be milliseconds after the one before: too short for a rate.
          if (mode !== "value" && prev && p.t - prev.t < 500) continue;
          let v = 0;
          let c = 0;
          for (const k of keys) {
            const now = p.values.get(k);
            const before = prev?.values.get(k);
            if (mode === "value") v += now?.value ?? 0;
            else {
              v += (now?.value ?? 0) - (before?.value ?? 0);
              c += (now?.count ?? 0) - (before?.count ?? 0);
            }
          }
          if (mode === "rate") v = prev && p.t > prev.t ? v / ((p.t - prev.t) / 1000) : 0;
          if (mode === "mean") {
            if (c <= 0) continue; // no observations in the interval: no point (not a zero)
            v /= c;
          }
          pts.push([p.t, v]);
        }
        return { label, points: pts };
      });
  const byCallee = (s: StoredSeries) => s.labels["component"] ?? "";
  const out: Chart[] = [
    { title: "calls per second, by component called", unit: "/s", lines: lines(grouped((s) => s.name === METHOD_CALLS, byCallee, "rate")) },
    {
      title: "errors per second, by component called",
      unit: "/s",
      lines: lines(grouped((s) => s.name === METHOD_ERRORS, byCallee, "rate")),
    },
    {
      title: "mean call latency, by component called",
      unit: "ms",
      lines: lines(grouped((s) => s.name === METHOD_LATENCY, byCallee, "mean")),
    },
  ];
  const user = [...new Set(series.filter((s) => !s.name.startsWith("tsweaver_")).map((s) => s.name))].sort();
  for (const name of user) {
    const kind = series.find((s) => s.name === name)!.kind;
    const mode = kind === "COUNTER" ? "rate" : kind === "GAUGE" ? "value" : "mean";
    const label = (s: StoredSeries) =>
      Object.entries(s.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(",") || name;
    out.push({
      title: `${name}${mode === "rate" ? " per second" : mode === "mean" ? " (mean)" : ""}`,
      unit: mode === "rate" ? "/s" : "",
      lines: lines(grouped((s) => s.name === name, label, mode)),
    });
  }
  return out;
}
