import type { MetricUpdate } from "../protos/runtime.js";
import { labelsKey, type Labels } from "./metrics.js";

/**
 * The deployer side of metrics: adds up the deltas weavelets report (GetMetrics), keeps a short history
 * of the totals for rates and charts, and renders the Prometheus text format. Deployer-agnostic.
 */

/** Labels a deployer adds to every series of a weavelet: its group and replica. */
export const GROUP_LABEL = "tsweaver_group";
export const REPLICA_LABEL = "tsweaver_replica";

/** One series with its running total (counters, histograms) or latest value (gauges). */
export interface StoredSeries {
  name: string;
  kind: MetricUpdate["kind"];
  help: string;
  labels: Record<string, string>;
  /** Counter: total. Gauge: latest value (summed over sources when aggregated). Histogram: sum. */
  value: number;
  /** Histogram: number of observations. */
  count: number;
  /** Histogram: bucket upper bounds. */
  bounds: number[];
  /** Histogram: count per bucket (bounds.length + 1 entries, the last one is the overflow). */
  counts: number[];
}

/** A point of the history: aggregated totals at time `t` (ms since the epoch), by series key. */
export interface HistoryPoint {
  t: number;
  values: Map<string, { value: number; count: number; counts: number[] | undefined }>;
}

/** The key of a series: name and sorted labels. */
export function seriesKey(name: string, labels: Labels): string {
  return `${name}\u0002${labelsKey(labels)}`;
}

/** Estimates quantile `q` (0..1) of a histogram by linear interpolation inside its bucket. */
export function quantile(bounds: readonly number[], counts: readonly number[], q: number): number | undefined {
  const total = counts.reduce((a, b) => a + b, 0);
  // No bounds (only a sum and a count, as CloudWatch gives them): no quantile to estimate.
  if (total <= 0 || bounds.length === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (seen + c >= rank && c > 0) {
      const lo = i === 0 ? 0 : bounds[i - 1]!;
      if (i >= bounds.length) return lo; // overflow bucket: the last bound is all we know
      const hi = bounds[i]!;
      return lo + ((hi - lo) * (rank - seen)) / c;
    }
    seen += c;
  }
  return bounds[bounds.length - 1];
}

function copy(s: StoredSeries, labels: Record<string, string>): StoredSeries {
  return { ...s, labels, bounds: [...s.bounds], counts: [...s.counts] };
}

/** Metric totals of a deployment, fed with weavelets' deltas. */
export class MetricStore {
  private readonly series = new Map<string, StoredSeries>();
  private readonly history: HistoryPoint[] = [];

  /** @param maxHistory points of history kept (one per `snapshot()`). */
  constructor(private readonly maxHistory = 180) {}

  /** Adds one weavelet's deltas; `source` labels (group, replica) are added to each series. */
  add(updates: readonly MetricUpdate[], source: Labels): void {
    for (const u of updates) {
      const labels = { ...u.labels, ...source };
      const key = seriesKey(u.name, labels);
      let s = this.series.get(key);
      if (s === undefined || s.kind !== u.kind) {
        s = {
          name: u.name,
          kind: u.kind,
          help: u.help,
          labels,
          value: 0,
          count: 0,
          bounds: [...u.bounds],
          counts: new Array<number>(u.bounds.length + 1).fill(0),
        };
        this.series.set(key, s);
      }
      if (u.kind === "GAUGE") s.value = u.value;
      else s.value += u.value;
      if (u.kind === "HISTOGRAM") {
        if (u.bounds.length !== s.bounds.length) continue; // bounds changed across versions: keep the first
        for (let i = 0; i < u.counts.length && i < s.counts.length; i++) {
          const c = Number(u.counts[i]);
          s.counts[i]! += c;
          s.count += c;
        }
      }
    }
  }

  /** Every series, with the source labels. */
  all(): StoredSeries[] {
    return [...this.series.values()].map((s) => copy(s, { ...s.labels }));
  }

  /** Series summed over sources (the source labels dropped); gauges are summed too. */
  aggregate(): StoredSeries[] {
    const out = new Map<string, StoredSeries>();
    for (const s of this.series.values()) {
      const labels = { ...s.labels };
      delete labels[GROUP_LABEL];
      delete labels[REPLICA_LABEL];
      const key = seriesKey(s.name, labels);
      const a = out.get(key);
      if (a === undefined) {
        out.set(key, copy(s, labels));
        continue;
      }
      a.value += s.value;
      a.count += s.count;
      if (a.counts.length === s.counts.length) for (let i = 0; i < a.counts.length; i++) a.counts[i]! += s.counts[i]!;
    }
    return [...out.values()];
  }

  /**
   * Records the current aggregated totals as a history point. On-demand collections (a dashboard
   * refresh, a Prometheus scrape) would crowd the history with points milliseconds apart; see below.
   */
  snapshot(now = Date.now(), minIntervalMs = 1000): void {
    const values: HistoryPoint["values"] = new Map();
    for (const s of this.aggregate())
      values.set(seriesKey(s.name, s.labels), { value: s.value, count: s.count, counts: s.kind === "HISTOGRAM" ? s.counts : undefined });
    const h = this.history;
    // The newest point, while closer than minIntervalMs to its predecessor, is provisional: the next
    // snapshot moves it forward instead of adding one. So every point but the newest is at
    // least minIntervalMs after the one before, whatever the rate of snapshots.
    const n = h.length;
    if (n >= 2 && h[n - 1]!.t - h[n - 2]!.t < minIntervalMs) h[n - 1] = { t: now, values };
    else h.push({ t: now, values });
    if (h.length > this.maxHistory) h.shift();
  }

  /** The history, oldest first. */
  points(): readonly HistoryPoint[] {
    return this.history;
  }

  /** The Prometheus text exposition format (version 0.0.4) of every series. */
  prometheus(): string {
    const byName = new Map<string, StoredSeries[]>();
    for (const s of this.series.values()) {
      const list = byName.get(s.name) ?? [];
      list.push(s);
      byName.set(s.name, list);
    }
    const lines: string[] = [];
    for (const name of [...byName.keys()].sort()) {
      const list = byName.get(name)!;
      const first = list[0]!;
      lines.push(`# HELP ${name} ${escapeHelp(first.help)}`);
      lines.push(`# TYPE ${name} ${first.kind.toLowerCase()}`);
      for (const s of list) {
        if (s.kind !== "HISTOGRAM") {
          lines.push(`${name}${labelText(s.labels)} ${num(s.value)}`);
          continue;
        }
        let cumulative = 0;
        for (let i = 0; i < s.counts.length; i++) {
          cumulative += s.counts[i]!;
          const le = i < s.bounds.length ? num(s.bounds[i]!) : "+Inf";
          lines.push(`${name}_bucket${labelText({ ...s.labels, le })} ${cumulative}`);
        }
        lines.push(`${name}_sum${labelText(s.labels)} ${num(s.value)}`);
        lines.push(`${name}_count${labelText(s.labels)} ${s.count}`);
      }
    }
    return lines.join("\n") + "\n";
  }
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function escapeHelp(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function labelText(labels: Readonly<Record<string, string>>): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}="${labels[k]!.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`).join(",")}}`;
}
