// The two kinds of stub a component gets for another: a remote stub (calls through the RPC balancer) and
// a local stub (direct calls on the colocated instance); and how a served remote call runs. All three
// are measured and traced alike.
import { Writer, encodeValue, encodeValues } from "../codec/codec.js";
import { methodTable, type Registration } from "../core/component.js";
import { callInProcess, callStorage } from "../core/call.js";
import type { CallTimeout } from "../core/deadlines.js";
import { shardKey, type RoutingKey } from "../core/routing.js";
import type { Balancer, RouteOptions } from "../rpc/balancer.js";
import { MethodStats } from "../telemetry/methods.js";
import { ActiveSpan, type Tracing } from "../telemetry/tracing.js";

/**
 * A remote stub: one method per implementation method, each a call through the component's balancer,
 * measured (per-method metrics of `caller`) unless `measure` is off; a call without a deadline gets
 * its method's default deadline (`timeouts`).
 */
export function remoteStub(
  reg: Registration,
  balancer: Balancer,
  caller: string,
  measure: boolean,
  tracing: Tracing | undefined,
  timeouts: (method: string) => CallTimeout | undefined,
): object {
  const first = methodTable().firstIds.get(reg.ref.name)!;
  const stub: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  reg.methods.forEach((method, i) => {
    const id = first + i;
    const name = `${reg.ref.name}.${method}`;
    const retryable = !reg.ref.noRetry.has(method);
    const keyOf = reg.ref.router?.[method] as ((...a: unknown[]) => RoutingKey) | undefined;
    // Per-method metrics are recorded by the balancer as the call settles: no wrapper promise per call.
    const observer = measure ? MethodStats.caller(caller, reg.ref.name, method, true) : undefined;
    const timeout = timeouts(method);
    const fixed = { retryable, timeout, observer };
    const route = (args: unknown[]): RouteOptions =>
      keyOf === undefined ? fixed : { retryable, timeout, observer, shardKey: shardKey(keyOf(...args)) };
    stub[method] =
      tracing === undefined
        ? (...args: unknown[]) => balancer.call(id, name, args, route(args))
        : (...args: unknown[]) => {
            // A client span when the call is traced; its traceparent goes out in the request header.
            const outer = callStorage.getStore();
            const span = tracing.startClient(outer, reg.ref.name, method, caller);
            if (span === undefined) return balancer.call(id, name, args, route(args), outer);
            // An unsampled root: the call carries the unsampled context, so the callee does not start a trace.
            if (!(span instanceof ActiveSpan)) return balancer.call(id, name, args, route(args), span);
            return endSpan(balancer.call(id, name, args, route(args), span.ctx), span);
          };
  });
  return Object.freeze(stub);
}

/**
 * A local stub: the colocated instance's methods called directly (no encoding, same `this`) with a remote
 * call's deadline, default deadline (`timeouts`) and cancellation (`callInProcess`), measured for the
 * per-method metrics of `caller` unless `measure` is off. With `checkValues`, arguments and results must
 * be encodable, as for a remote call (the same CodecError naming the path); the values passed on are
 * still the caller's own.
 */
export function localStub(
  reg: Registration,
  inst: object,
  caller: string,
  measure: boolean,
  checkValues: boolean,
  timeouts: (method: string) => CallTimeout | undefined,
): object {
  const stub: Record<string, (...args: unknown[]) => unknown> = {};
  for (const method of reg.methods) {
    const fn = (inst as Record<string, unknown>)[method];
    if (typeof fn !== "function") continue;
    const name = `${reg.ref.name}.${method}`;
    const apply = (self: object, args: unknown[]): unknown => (fn as (...a: unknown[]) => unknown).apply(self, args);
    const timeout = timeouts(method);
    // Per-method metrics are recorded by callInProcess as the call settles: no wrapper promise per call.
    const observer = measure ? MethodStats.caller(caller, reg.ref.name, method, false) : undefined;
    const direct = (self: object, args: unknown[]): unknown => callInProcess(name, apply, self, args, timeout, observer);
    const call = checkValues ? checked(direct) : direct;
    stub[method] = (...args: unknown[]): unknown => call(inst, args);
  }
  return Object.freeze(stub);
}

// One scratch buffer for every check: encoding is synchronous, so checks never overlap.
const scratch = new Writer();

/** `call` with its arguments and result encoded (and dropped) first, failing as a remote call would. */
function checked(call: (self: object, args: unknown[]) => unknown): (self: object, args: unknown[]) => unknown {
  const checkResult = (v: unknown): unknown => {
    scratch.reset();
    encodeValue(scratch, v, "result");
    return v;
  };
  return (self, args) => {
    let r: unknown;
    try {
      scratch.reset();
      encodeValues(args, scratch, "args");
      r = call(self, args);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return Promise.resolve(r).then(checkResult);
  };
}

/**
 * How a served call of `component.method` runs on the hosting instance: inside a server span whose parent
 * is the caller's client span, when the caller's trace is sampled. The RPC server runs it inside the
 * call's context, which carries the caller's traceparent, and measures it (the handler's `observer`).
 */
export function servedCall(component: string, method: string, tracing: Tracing | undefined): (inst: object, args: unknown[]) => unknown {
  const invoke = (inst: object, args: unknown[]): unknown =>
    (inst as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!(...args);
  if (tracing === undefined) return invoke;
  return (inst, args) => {
    const span = tracing.startServer(callStorage.getStore(), component, method);
    if (span === undefined) return invoke(inst, args);
    let r: unknown;
    try {
      r = callStorage.run(span.ctx, invoke, inst, args);
    } catch (err) {
      span.end(err);
      throw err;
    }
    return endSpan(r, span);
  };
}

/** Ends `span` when `r` settles (failed if it rejects) and passes the outcome on. */
async function endSpan(r: unknown, span: ActiveSpan): Promise<unknown> {
  try {
    const v = await r;
    span.end();
    return v;
  } catch (err) {
    span.end(err);
    throw err;
  }
}
