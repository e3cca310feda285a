import type { MetricUpdate } from "../protos/runtime.js";

/**
 * Metrics of one process: the user API (`counter`, `gauge`, `histogram`, exported from "tsweaver") and
 * the runtime's own per-method metrics share one registry. The weavelet reports changes since its last
 * report as deltas (`collectMetricDeltas`) when its deployer asks (GetMetrics); the deployer adds them up.
 *
 * Updating a metric is a few number operations on a series object. Label sets are resolved to a series
 * through a map lookup; on hot paths, resolve once with `.with(labels)` and keep the bound series.
 */

/** Label names and values of one series (`{ method: "GET", path: "/cart" }`). */
export type Labels = Readonly<Record<string, string>>;

/** A monotonically increasing count (requests, errors, bytes). */
export interface Counter {
  readonly name: string;
  /** Adds `value` (default 1; must be >= 0) to the series with these labels. */
  add(value?: number, labels?: Labels): void;
  /** The series with these labels, to update without a lookup. */
  with(labels: Labels): BoundCounter;
}
export interface BoundCounter {
  add(value?: number): void;
}

/** A value that goes up and down (queue length, cache size, temperature). */
export interface Gauge {
  readonly name: string;
  /** Sets the series with these labels to `value`. */
  set(value: number, labels?: Labels): void;
  /** Adds `delta` (may be negative) to the series with these labels. */
  add(delta: number, labels?: Labels): void;
  /** The series with these labels, to update without a lookup. */
  with(labels: Labels): BoundGauge;
}
export interface BoundGauge {
  set(value: number): void;
  add(delta: number): void;
}

/** A distribution of observed values (latencies, sizes) in buckets with fixed upper bounds. */
export interface Histogram {
  readonly name: string;
  readonly bounds: readonly number[];
  /** Records one observation in the series with these labels. */
  observe(value: number, labels?: Labels): void;
  /** The series with these labels, to update without a lookup. */
  with(labels: Labels): BoundHistogram;
}
export interface BoundHistogram {
  observe(value: number): void;
}

/** Options of `histogram()`. */
export interface HistogramOptions {
  /**
   * Bucket upper bounds, increasing. Values above the last bound land in an overflow bucket.
   * @default LATENCY_MS_BOUNDS (0.1 ms to 10 s)
   */
  bounds?: readonly number[];
}

/** Default histogram bounds, suited to latencies in milliseconds. */
export const LATENCY_MS_BOUNDS: readonly number[] = Object.freeze([
  0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
]);

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const EMPTY: Labels = Object.freeze({});

/** The registry key of a label set: names sorted, so `{a,b}` and `{b,a}` are one series. */
export function labelsKey(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  if (keys.length > 1) keys.sort();
  let out = "";
  for (const k of keys) out += `${k}\u0000${labels[k]}\u0001`;
  return out;
}

/** @internal One time series of a counter. */
export class CounterSeries implements BoundCounter {
  value = 0;
  reported = 0;
  constructor(readonly labels: Labels) {}
  add(value = 1): void {
    if (!(value >= 0)) throw new RangeError(`counter increments must be >= 0 (got ${value}); use a gauge for values that go down`);
    this.value += value;
  }
}

/** @internal One time series of a gauge. */
export class GaugeSeries implements BoundGauge {
  value = 0;
  changed = false;
  constructor(readonly labels: Labels) {}
  set(value: number): void {
    this.value = value;
    this.changed = true;
  }
  add(delta: number): void {
    this.value += delta;
    this.changed = true;
  }
}

/** @internal One time series of a histogram: counts per bucket (the last one is the overflow). */
export class HistogramSeries implements BoundHistogram {
  sum = 0;
  count = 0;
  readonly counts: number[];
  private reportedSum = 0;
  private reportedCount = 0;
  private readonly reportedCounts: number[];
  constructor(
    readonly labels: Labels,
    readonly bounds: readonly number[],
  ) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
    this.reportedCounts = new Array<number>(bounds.length + 1).fill(0);
  }
  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
  /** The change since the previous call, or undefined if nothing was observed. */
  delta(): { sum: number; counts: number[] } | undefined {
    if (this.count === this.reportedCount) return undefined;
    const counts = this.counts.map((c, i) => c - this.reportedCounts[i]!);
    const sum = this.sum - this.reportedSum;
    for (let i = 0; i < counts.length; i++) this.reportedCounts[i] = this.counts[i]!;
    this.reportedSum = this.sum;
    this.reportedCount = this.count;
    return { sum, counts };
  }
}

type Kind = MetricUpdate["kind"];
type AnySeries = CounterSeries | GaugeSeries | HistogramSeries;

abstract class Metric<S extends AnySeries> {
  readonly series = new Map<string, S>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly kind: Kind,
  ) {}
  with(labels: Labels): S {
    const key = labelsKey(labels);
    let s = this.series.get(key);
    if (s === undefined) {
      for (const k of Object.keys(labels)) {
        if (!LABEL_RE.test(k)) throw new Error(`metric ${this.name}: label name ${JSON.stringify(k)} must match ${LABEL_RE}`);
        if (typeof labels[k] !== "string") throw new Error(`metric ${this.name}: label ${k} must be a string`);
      }
      s = this.newSeries(Object.freeze({ ...labels }));
      this.series.set(key, s);
    }
    return s;
  }
  protected abstract newSeries(labels: Labels): S;
}

class CounterMetric extends Metric<CounterSeries> implements Counter {
  constructor(name: string, help: string) {
    super(name, help, "COUNTER");
  }
  add(value = 1, labels: Labels = EMPTY): void {
    this.with(labels).add(value);
  }
  protected newSeries(labels: Labels): CounterSeries {
    return new CounterSeries(labels);
  }
}

class GaugeMetric extends Metric<GaugeSeries> implements Gauge {
  constructor(name: string, help: string) {
    super(name, help, "GAUGE");
  }
  set(value: number, labels: Labels = EMPTY): void {
    this.with(labels).set(value);
  }
  add(delta: number, labels: Labels = EMPTY): void {
    this.with(labels).add(delta);
  }
  protected newSeries(labels: Labels): GaugeSeries {
    return new GaugeSeries(labels);
  }
}

class HistogramMetric extends Metric<HistogramSeries> implements Histogram {
  constructor(
    name: string,
    help: string,
    readonly bounds: readonly number[],
  ) {
    super(name, help, "HISTOGRAM");
  }
  observe(value: number, labels: Labels = EMPTY): void {
    this.with(labels).observe(value);
  }
  protected newSeries(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }
}

const registry = new Map<string, CounterMetric | GaugeMetric | HistogramMetric>();

function declare<M extends CounterMetric | GaugeMetric | HistogramMetric>(name: string, kind: Kind, make: () => M): M {
  const existing = registry.get(name);
  if (existing) {
    if (existing.kind !== kind) throw new Error(`metric ${name} is already declared as a ${existing.kind.toLowerCase()}`);
    return existing as M;
  }
  if (!NAME_RE.test(name)) throw new Error(`metric name ${JSON.stringify(name)} must match ${NAME_RE} (e.g. "shop_orders_total")`);
  const m = make();
  registry.set(name, m);
  return m;
}

/**
 * Declares a counter (or returns the one already declared under this name). Call it once, at module
 * level: `const orders = counter("shop_orders_total", "Orders placed")`, then `orders.add(1, { kind })`.
 */
export function counter(name: string, help: string): Counter {
  return declare(name, "COUNTER", () => new CounterMetric(name, help));
}

/** Declares a gauge (or returns the one already declared under this name). */
export function gauge(name: string, help: string): Gauge {
  return declare(name, "GAUGE", () => new GaugeMetric(name, help));
}

/** Declares a histogram (or returns the one already declared under this name). */
export function histogram(name: string, help: string, options: HistogramOptions = {}): Histogram {
  const bounds = options.bounds ?? LATENCY_MS_BOUNDS;
  for (let i = 1; i < bounds.length; i++) {
    if (!(bounds[i]! > bounds[i - 1]!)) throw new Error(`histogram ${name}: bounds must increase (got ${bounds.join(", ")})`);
  }
  return declare(name, "HISTOGRAM", () => new HistogramMetric(name, help, Object.freeze([...bounds])));
}

/** @internal The series of a counter/gauge/histogram, for the runtime's own hot paths. */
export function counterSeries(name: string, help: string, labels: Labels): CounterSeries {
  return (counter(name, help) as CounterMetric).with(labels);
}
/** @internal */
export function histogramSeries(name: string, help: string, labels: Labels, bounds?: readonly number[]): HistogramSeries {
  return (histogram(name, help, bounds ? { bounds } : {}) as HistogramMetric).with(labels);
}

/**
 * Every change since the previous call: counter increments, current values of gauges set since then,
 * histogram sum and bucket increments. Series without changes are left out.
 */
export function collectMetricDeltas(): MetricUpdate[] {
  const out: MetricUpdate[] = [];
  for (const m of registry.values()) {
    for (const s of m.series.values()) {
      if (s instanceof CounterSeries) {
        if (s.value === s.reported) continue;
        out.push({ name: m.name, kind: "COUNTER", labels: s.labels, value: s.value - s.reported, bounds: [], counts: [], help: m.help });
        s.reported = s.value;
      } else if (s instanceof GaugeSeries) {
        if (!s.changed) continue;
        s.changed = false;
        out.push({ name: m.name, kind: "GAUGE", labels: s.labels, value: s.value, bounds: [], counts: [], help: m.help });
      } else {
        const d = s.delta();
        if (!d) continue;
        out.push({
          name: m.name,
          kind: "HISTOGRAM",
          labels: s.labels,
          value: d.sum,
          bounds: [...s.bounds],
          counts: d.counts.map(String),
          help: m.help,
        });
      }
    }
  }
  return out;
}
