import { type CounterSeries, type HistogramSeries, counterSeries, histogramSeries } from "./metrics.js";

/**
 * The runtime's automatic per-method metrics. Caller side (in every stub, local or remote):
 *   tsweaver_method_calls_total, tsweaver_method_errors_total, tsweaver_method_latency_ms
 *     {caller, component, method, remote="true"|"false"}
 * Serving side (in the weavelet's RPC handler, remote calls only):
 *   tsweaver_method_served_total, tsweaver_method_served_errors_total, tsweaver_method_served_latency_ms
 *     {component, method}
 *   tsweaver_method_served_bytes_total {component, method}: request + response payload bytes, so the
 *     call graph can estimate bytes/s per edge (calls of the edge × the method's mean bytes per call)
 * The call graph (edges caller → component) comes from the caller side.
 */
export const METHOD_CALLS = "tsweaver_method_calls_total";
export const METHOD_ERRORS = "tsweaver_method_errors_total";
export const METHOD_LATENCY = "tsweaver_method_latency_ms";
export const SERVED_CALLS = "tsweaver_method_served_total";
export const SERVED_ERRORS = "tsweaver_method_served_errors_total";
export const SERVED_LATENCY = "tsweaver_method_served_latency_ms";
export const SERVED_BYTES = "tsweaver_method_served_bytes_total";

/** The counter of request + response payload bytes of remote calls served for `component.method`. */
export function servedBytes(component: string, method: string): CounterSeries {
  return counterSeries(SERVED_BYTES, "Request and response payload bytes of remote calls served", { component, method });
}

/**
 * The series one stub method (or one served method) updates, resolved once when the stub is built so a
 * call costs two clock reads and a few additions.
 */
export class MethodStats {
  constructor(
    private readonly calls: CounterSeries,
    private readonly errors: CounterSeries,
    private readonly latency: HistogramSeries,
  ) {}

  /** Stats of calls made by `caller` to `component.method`. */
  static caller(caller: string, component: string, method: string, remote: boolean): MethodStats {
    const labels = { caller, component, method, remote: String(remote) };
    return new MethodStats(
      counterSeries(METHOD_CALLS, "Component method calls made, by caller", labels),
      counterSeries(METHOD_ERRORS, "Component method calls that failed, by caller", labels),
      histogramSeries(METHOD_LATENCY, "Component method call latency seen by the caller (ms)", labels),
    );
  }

  /** Stats of remote calls served for `component.method`. */
  static served(component: string, method: string): MethodStats {
    const labels = { component, method };
    return new MethodStats(
      counterSeries(SERVED_CALLS, "Remote component method calls served", labels),
      counterSeries(SERVED_ERRORS, "Remote component method calls served that failed", labels),
      histogramSeries(SERVED_LATENCY, "Time to serve a remote component method call (ms)", labels),
    );
  }

  ok(ms: number): void {
    this.calls.value++;
    this.latency.observe(ms);
  }

  fail(ms: number): void {
    this.calls.value++;
    this.errors.value++;
    this.latency.observe(ms);
  }

  /**
   * Runs `fn(a, b)` and records its outcome and latency, whether it returns, throws or returns a
   * promise. Two fixed arguments rather than a closure or an argument array: nothing is allocated per call.
   */
  measure<A, B>(fn: (a: A, b: B) => unknown, a: A, b: B): unknown {
    const t0 = performance.now();
    let r: unknown;
    try {
      r = fn(a, b);
    } catch (err) {
      this.fail(performance.now() - t0);
      throw err;
    }
    if (isThenable(r)) return this.track(r, t0);
    this.ok(performance.now() - t0);
    return r;
  }

  /** Records the outcome of `p` (started at `t0`, a `performance.now()`) and passes it on. */
  async track<T>(p: PromiseLike<T>, t0: number): Promise<T> {
    try {
      const v = await p;
      this.ok(performance.now() - t0);
      return v;
    } catch (err) {
      this.fail(performance.now() - t0);
      throw err;
    }
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}
