import { AsyncLocalStorage } from "node:async_hooks";

/**
 * What travels with a component call besides its arguments: the deadline, the cancellation signal, the
 * trace context and user metadata. Inside an implementation, `currentCall()` returns it; outgoing calls
 * made from there inherit the deadline (as remaining time) and trace context.
 */
export interface CallContext {
  /** Absolute deadline in ms since the epoch (Date.now() clock), or undefined for none. */
  readonly deadline: number | undefined;
  /** Aborted when the caller cancels or the deadline passes. */
  readonly signal: AbortSignal | undefined;
  /** W3C traceparent of the caller's span, if tracing is on. */
  readonly traceparent: string | undefined;
  /** Small string key/values the caller attached (`withCallOptions({ metadata })`). */
  readonly metadata: Readonly<Record<string, string>> | undefined;
}

/** Options a caller can put on the calls made inside `withCallOptions`. */
export interface CallOptions {
  /** Give up after this many ms. The callee sees the remaining time and its signal aborts at expiry. */
  timeoutMs?: number;
  /** Abort the calls; the callee is told through a cancellation message. */
  signal?: AbortSignal;
  /** Key/values carried in the request header to the callee's `currentCall().metadata`. */
  metadata?: Record<string, string>;
}

/**
 * The current CallContext. `pin` makes a context current for the synchronous part of a function only
 * (the RPC client reads the context synchronously when a call starts and passes it on explicitly), which
 * spares a process that never serves calls the cost of `run`: the first `run` turns on async hooks for
 * every promise the process creates from then on.
 */
class CallStorage extends AsyncLocalStorage<CallContext> {
  private pinned: CallContext | undefined = undefined;

  override getStore(): CallContext | undefined {
    return this.pinned ?? super.getStore();
  }

  /** Calls `fn(...args)` with `ctx` current during its synchronous execution (not in its continuations). */
  pin<R, A extends unknown[]>(ctx: CallContext, fn: (...args: A) => R, ...args: A): R {
    const outer = this.pinned;
    this.pinned = ctx;
    try {
      return fn(...args);
    } finally {
      this.pinned = outer;
    }
  }
}

export const callStorage = new CallStorage();

/** The context of the component call being served or made, or undefined outside any call. */
export function currentCall(): CallContext | undefined {
  return callStorage.getStore();
}

/**
 * Runs `fn` with the given options applied to every component call it makes (directly or through
 * awaited helpers). A tighter enclosing deadline wins.
 */
export function withCallOptions<T>(options: CallOptions, fn: () => T): T {
  const outer = callStorage.getStore();
  let deadline = outer?.deadline;
  if (options.timeoutMs !== undefined) {
    const own = Date.now() + options.timeoutMs;
    deadline = deadline === undefined ? own : Math.min(deadline, own);
  }
  const signal = options.signal && outer?.signal ? AbortSignal.any([options.signal, outer.signal]) : (options.signal ?? outer?.signal);
  const metadata = options.metadata ? { ...outer?.metadata, ...options.metadata } : outer?.metadata;
  return callStorage.run({ deadline, signal, traceparent: outer?.traceparent, metadata }, fn);
}
