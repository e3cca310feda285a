import type { CallObserver } from "../core/observer.js";
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
 * call costs a few additions: the observer the RPC client and server and in-process calls tell each
 * call's outcome and latency.
 */
export class MethodStats implements CallObserver {
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
}
