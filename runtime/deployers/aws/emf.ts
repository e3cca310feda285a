import type { MetricUpdate } from "../../protos/runtime.js";
import { METHOD_CALLS, METHOD_ERRORS, METHOD_LATENCY, SERVED_CALLS, SERVED_ERRORS, SERVED_LATENCY } from "../../telemetry/methods.js";
import { METRICS } from "./contract.js";

/** Where a task's metrics come from: the dimensions every line carries. */
export interface EmfSource {
  app: string;
  group: string;
  version: string;
}

/** Limits that keep a task's metrics cheap and bounded whatever the app does. */
export const EMF_LIMITS = {
  /** User metric series published per report; the rest are counted in `dropped`. */
  userSeries: 200,
  /** A user metric's labels become dimensions only up to this many (CloudWatch allows 30 per set). */
  userLabels: 3,
  /** CloudWatch takes at most 100 values per histogram line. */
  histogramValues: 100,
};

/** The dimensions every user metric line carries; a label of one of these names is renamed on export ({@link labelDimension}). */
export const RESERVED_DIMENSIONS: readonly string[] = [METRICS.DIM.APP, METRICS.DIM.GROUP, METRICS.DIM.VERSION, METRICS.DIM.KIND];

// A reserved name followed by zero or more underscores: the names the renaming moves by one underscore.
const RESERVED_RE = new RegExp(`^(${RESERVED_DIMENSIONS.join("|")})_*$`);

/**
 * The dimension name of a user metric's label: the label's own name, except that a reserved dimension's
 * name (App, Group, Version, Kind) gets an underscore appended — and so does any such name already
 * ending in underscores, so the renaming never merges two labels (`Kind` → `Kind_`, `Kind_` → `Kind__`).
 * {@link labelOfDimension} undoes it.
 */
export function labelDimension(label: string): string {
  return RESERVED_RE.test(label) ? `${label}_` : label;
}

/** A user metric dimension's label name (the inverse of {@link labelDimension}). */
export function labelOfDimension(dimension: string): string {
  return RESERVED_RE.test(dimension) && dimension.endsWith("_") ? dimension.slice(0, -1) : dimension;
}

type Unit = "Count" | "Milliseconds" | "Count/Second" | "None";
interface Directive {
  Namespace: string;
  Dimensions: string[][];
  Metrics: { Name: string; Unit: Unit }[];
}
type Value = number | { Values: number[]; Counts: number[]; Sum: number; Count: number; Min: number; Max: number };

/**
 * CloudWatch Embedded Metric Format lines for one report of a weavelet's metric deltas (GetMetrics):
 * per-method calls, errors and latency by caller (the call graph), served calls by group and by method,
 * the replica's load (served calls per second over `intervalMs`), and the app's own metrics (labels as
 * dimensions, bounded, with their kind; a label named like a dimension every line carries is renamed,
 * see {@link labelDimension}). awslogs ships the lines; CloudWatch turns them into metrics, no API call per
 * report. Histograms become value/count pairs at bucket midpoints, so percentiles are bucket estimates.
 */
export function emfLines(
  updates: readonly MetricUpdate[],
  source: EmfSource,
  intervalMs: number,
  nowMs = Date.now(),
): { lines: string[]; dropped: number } {
  const D = METRICS.DIM;
  const base = { [D.APP]: source.app, [D.GROUP]: source.group, [D.VERSION]: source.version };
  const lines: string[] = [];
  const line = (dims: string[][], metrics: [string, Unit, Value][], props: Record<string, string>) => {
    const directive: Directive = {
      Namespace: METRICS.NAMESPACE,
      Dimensions: dims,
      Metrics: metrics.map(([Name, Unit]) => ({ Name, Unit })),
    };
    const doc: Record<string, unknown> = { _aws: { Timestamp: nowMs, CloudWatchMetrics: [directive] }, ...base, ...props };
    for (const [name, , value] of metrics) doc[name] = value;
    lines.push(JSON.stringify(doc));
  };

  // Per series key, the three method metrics travel together on one line.
  const calls = new Map<string, { labels: Record<string, string>; m: [string, Unit, Value][] }>();
  const served = new Map<string, { labels: Record<string, string>; m: [string, Unit, Value][] }>();
  let servedTotal = 0;
  const user: MetricUpdate[] = [];
  // Adds one metric of the series `u` to its line in `map`.
  const to = (map: typeof calls, u: MetricUpdate, name: string, unit: Unit, value: Value) => {
    const key = JSON.stringify(u.labels);
    let entry = map.get(key);
    if (!entry) map.set(key, (entry = { labels: u.labels, m: [] }));
    entry.m.push([name, unit, value]);
  };
  for (const u of updates) {
    switch (u.name) {
      case METHOD_CALLS:
        to(calls, u, METRICS.CALLS, "Count", u.value);
        break;
      case METHOD_ERRORS:
        to(calls, u, METRICS.ERRORS, "Count", u.value);
        break;
      case METHOD_LATENCY: {
        const h = histogram(u);
        if (h) to(calls, u, METRICS.LATENCY, "Milliseconds", h);
        break;
      }
      case SERVED_CALLS:
        to(served, u, METRICS.SERVED_CALLS, "Count", u.value);
        servedTotal += u.value;
        break;
      case SERVED_ERRORS:
        to(served, u, METRICS.SERVED_ERRORS, "Count", u.value);
        break;
      case SERVED_LATENCY: {
        const h = histogram(u);
        if (h) to(served, u, METRICS.SERVED_LATENCY, "Milliseconds", h);
        break;
      }
      default:
        if (!u.name.startsWith("tsweaver_")) user.push(u);
    }
  }
  for (const { labels, m } of calls.values()) {
    line([[D.APP, D.COMPONENT, D.METHOD, D.CALLER, D.VERSION]], m, {
      [D.COMPONENT]: labels["component"] ?? "",
      [D.METHOD]: labels["method"] ?? "",
      [D.CALLER]: labels["caller"] ?? "",
    });
  }
  for (const { labels, m } of served.values()) {
    line(
      [
        [D.APP, D.GROUP, D.VERSION],
        [D.APP, D.COMPONENT, D.METHOD, D.VERSION],
      ],
      m,
      { [D.COMPONENT]: labels["component"] ?? "", [D.METHOD]: labels["method"] ?? "" },
    );
  }
  // Every report carries the load, zero included: an idle replica pulls the group's average down.
  line([[D.APP, D.GROUP, D.VERSION]], [[METRICS.LOAD, "Count/Second", intervalMs > 0 ? (servedTotal * 1000) / intervalMs : 0]], {});

  let dropped = 0;
  for (const [i, u] of user.entries()) {
    if (i >= EMF_LIMITS.userSeries) {
      dropped++;
      continue;
    }
    const labels = Object.entries(u.labels)
      .slice(0, EMF_LIMITS.userLabels)
      .map(([k, v]) => [labelDimension(k), v] as const);
    const value = u.kind === "HISTOGRAM" ? histogram(u) : u.value;
    if (value === undefined) continue;
    line([[D.APP, D.GROUP, D.VERSION, D.KIND, ...labels.map(([k]) => k)]], [[u.name, u.kind === "COUNTER" ? "Count" : "None", value]], {
      [D.KIND]: u.kind,
      ...Object.fromEntries(labels),
    });
  }
  return { lines, dropped };
}

/** A histogram delta as CloudWatch values (bucket midpoints; above the last bound, twice it) and counts. */
function histogram(u: MetricUpdate): Value | undefined {
  const values: number[] = [];
  const counts: number[] = [];
  let count = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const [i, c] of u.counts.entries()) {
    const n = Number(c);
    if (!(n > 0)) continue;
    const lo = i === 0 ? 0 : (u.bounds[i - 1] ?? 0);
    const hi = u.bounds[i];
    const v = hi === undefined ? lo * 2 : (lo + hi) / 2;
    values.push(v);
    counts.push(n);
    count += n;
    min = Math.min(min, i === 0 ? 0 : lo);
    max = Math.max(max, hi ?? lo * 2);
  }
  if (count === 0) return undefined;
  if (values.length > EMF_LIMITS.histogramValues) return undefined;
  return { Values: values, Counts: counts, Sum: u.value, Count: count, Min: min, Max: max };
}

/**
 * One EMF line per group and version: how many replicas the control plane's reconcile found registered
 * in Cloud Map (the dashboard's "registered" beside ECS's running tasks). Counts come from the listing
 * the reconcile makes anyway, so the metric costs no API call.
 */
export function registeredReplicasLines(
  app: string,
  counts: readonly { readonly group: string; readonly version: string; readonly replicas: number }[],
  nowMs = Date.now(),
): string[] {
  const D = METRICS.DIM;
  const directive: Directive = {
    Namespace: METRICS.NAMESPACE,
    Dimensions: [[D.APP, D.GROUP, D.VERSION]],
    Metrics: [{ Name: METRICS.REGISTERED_REPLICAS, Unit: "Count" }],
  };
  return counts.map((c) =>
    JSON.stringify({
      _aws: { Timestamp: nowMs, CloudWatchMetrics: [directive] },
      [D.APP]: app,
      [D.GROUP]: c.group,
      [D.VERSION]: c.version,
      [METRICS.REGISTERED_REPLICAS]: c.replicas,
    }),
  );
}

/** One EMF line counting a failed control-plane reconcile pass (the dashboard's and an alarm's metric). */
export function reconcileErrorLine(app: string, nowMs = Date.now()): string {
  const directive: Directive = {
    Namespace: METRICS.NAMESPACE,
    Dimensions: [[METRICS.DIM.APP]],
    Metrics: [{ Name: METRICS.RECONCILE_ERRORS, Unit: "Count" }],
  };
  return JSON.stringify({
    _aws: { Timestamp: nowMs, CloudWatchMetrics: [directive] },
    [METRICS.DIM.APP]: app,
    [METRICS.RECONCILE_ERRORS]: 1,
  });
}
