import { AsyncLocalStorage } from "node:async_hooks";
import type { CallTimeout } from "./deadlines.js";
import { CallCancelledError, DeadlineExceededError } from "./errors.js";

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

  /**
   * Calls `fn()` with no context current, in its synchronous part and its continuations: work started on
   * behalf of no particular call (a component's construction) must not be cut by the deadline or signal of
   * the call that happened to trigger it, nor be traced as part of it.
   */
  outside<R>(fn: () => R): R {
    const outer = this.pinned;
    this.pinned = undefined;
    try {
      return this.exit(fn);
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

/** `outer` (possibly no context) with the deadline `deadline`: the context of a call given a default deadline. */
export function withDeadline(outer: CallContext | undefined, deadline: number): CallContext {
  return { deadline, signal: outer?.signal, traceparent: outer?.traceparent, metadata: outer?.metadata };
}

// setTimeout's longest delay; a later deadline needs no timer within any realistic call.
const MAX_TIMER_MS = 0x7fffffff;

/**
 * Calls `fn(self, args)`, the method `method` ("app/Component.method") of an instance in this process,
 * with the meaning a remote call has: when the caller's context carries a deadline or a signal, the
 * caller gets DeadlineExceededError at the deadline and CallCancelledError when its signal aborts
 * (without waiting for the callee), and the callee runs in its own context whose signal aborts with
 * that same error. A context without a deadline gets the method's default deadline `timeout` (see
 * deadlines.ts), as a remote call does. With neither deadline nor signal it is a direct call, so a
 * colocated call costs one context lookup.
 */
export function callInProcess(
  method: string,
  fn: (self: object, args: unknown[]) => unknown,
  self: object,
  args: unknown[],
  timeout?: CallTimeout,
): unknown {
  const outer = callStorage.getStore();
  if (timeout !== undefined && outer?.deadline === undefined) {
    if (outer?.signal?.aborted) return Promise.reject(new CallCancelledError(`${method}: cancelled before it was sent`));
    return new InProcessCall(method, withDeadline(outer, Date.now() + timeout.ms), timeout).run(fn, self, args);
  }
  if (outer === undefined || (outer.deadline === undefined && outer.signal === undefined)) return fn(self, args);
  if (outer.signal?.aborted) return Promise.reject(new CallCancelledError(`${method}: cancelled before it was sent`));
  if (outer.deadline !== undefined && outer.deadline - Date.now() <= 0) {
    return Promise.reject(new DeadlineExceededError(`${method}: deadline exceeded before the call was sent`));
  }
  return new InProcessCall(method, outer).run(fn, self, args);
}

/** The callee's side of an in-process call with a deadline or a signal: its CallContext. */
class InProcessCall implements CallContext {
  readonly deadline: number | undefined;
  readonly traceparent: string | undefined;
  readonly metadata: Readonly<Record<string, string>> | undefined;
  private readonly controller = new AbortController();
  private readonly callerSignal: AbortSignal | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reject: ((err: Error) => void) | undefined;
  private readonly onAbort = (): void => this.fail(new CallCancelledError(`${this.method}: cancelled by the caller`));

  constructor(
    private readonly method: string,
    outer: CallContext,
    /** The default deadline that set `outer.deadline`, if one did: its error names the key to change. */
    private readonly timeout?: CallTimeout,
  ) {
    this.deadline = outer.deadline;
    this.traceparent = outer.traceparent;
    this.metadata = outer.metadata;
    this.callerSignal = outer.signal;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  run(fn: (self: object, args: unknown[]) => unknown, self: object, args: unknown[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.reject = reject;
      if (this.deadline !== undefined) {
        const ms = this.deadline - Date.now();
        if (ms <= MAX_TIMER_MS) this.timer = setTimeout(expireInProcessCall, ms, this);
      }
      this.callerSignal?.addEventListener("abort", this.onAbort, { once: true });
      let r: unknown;
      try {
        r = callStorage.run(this, fn, self, args);
      } catch (err) {
        this.done();
        reject(err);
        return;
      }
      Promise.resolve(r).then(
        (v) => {
          this.done();
          resolve(v);
        },
        (err: unknown) => {
          this.done();
          reject(err);
        },
      );
    });
  }

  expire(): void {
    this.fail(this.timeout?.exceeded(this.method) ?? new DeadlineExceededError(`${this.method}: deadline exceeded`));
  }

  /** The deadline passed or the caller cancelled: the caller gets `err` now, the callee's signal aborts. */
  fail(err: Error): void {
    const reject = this.reject;
    if (reject === undefined) return;
    this.done();
    this.controller.abort(err);
    reject(err);
  }

  private done(): void {
    this.reject = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.callerSignal?.removeEventListener("abort", this.onAbort);
  }
}

function expireInProcessCall(call: InProcessCall): void {
  call.expire();
}
