/**
 * Told the outcome and latency (ms) of each call: how the per-method metrics hook into the RPC client
 * (the balancer) and server without a wrapper promise per call. The telemetry's MethodStats is one.
 */
export interface CallObserver {
  ok(ms: number): void;
  fail(ms: number): void;
}
