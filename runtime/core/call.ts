import { AsyncLocalStorage } from "node:async_hooks";
import type { CallTimeout } from "./deadlines.js";
import { CallCancelledError, DeadlineExceededError } from "./errors.js";
import { type CallObserver, turnClock, turnNow } from "./observer.js";

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

/**
 * The traceparent of a root call that was not sampled: W3C-valid ids (the same everywhere: nothing is
 * recorded under them) with the sampled flag off. It travels with the call so that the callee and
 * everything it calls stay untraced, instead of starting traces of their own mid-way; on the wire it is
 * one flag bit (frames.ts), not the 55 characters.
 */
export const UNSAMPLED_TRACEPARENT = "00-7473776561766572756e73616d706c65-7473776561766572-00";

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
 * A call with at least this long to its deadline gets no timer of its own, in process and over RPC alike:
 * a sweep every {@link DEADLINE_SWEEP_MS} (one shared by the in-process calls, one per RPC connection)
 * fails it once its deadline passed (at most 10% late). Every call carries the default 30 s deadline, and
 * a timer armed and cleared per call cost more than a colocated call itself and a measurable part of a
 * small remote call's CPU; short deadlines keep a precise timer.
 */
export const SWEPT_DEADLINE_MS = 5000;
export const DEADLINE_SWEEP_MS = 500;

/**
 * The in-process calls whose deadline the sweep enforces: a list linked through the calls themselves
 * (adding and removing one is a few field writes), and the sweep's timer, armed while the list is not empty.
 */
let sweptHead: InProcessCall | undefined;
let sweepTimer: NodeJS.Timeout | undefined;

function sweepInProcessCalls(): void {
  sweepTimer = undefined;
  const now = Date.now();
  for (let call = sweptHead; call !== undefined;) {
    const next = call.sweptNext;
    if (call.deadline! <= now) call.expire(); // unlinks it
    call = next;
  }
  if (sweptHead !== undefined) sweepTimer = setTimeout(sweepInProcessCalls, DEADLINE_SWEEP_MS);
}

/**
 * Calls `fn(self, args)`, the method `method` ("app/Component.method") of an instance in this process,
 * with the meaning a remote call has: when the caller's context carries a deadline or a signal, the
 * caller gets DeadlineExceededError at the deadline and CallCancelledError when its signal aborts
 * (without waiting for the callee), and the callee runs in its own context whose signal aborts with
 * that same error. A context without a deadline gets the method's default deadline `timeout` (see
 * deadlines.ts), as a remote call does. With neither deadline nor signal it is a direct call, so a
 * colocated call costs one context lookup. `observer` (the caller's per-method metrics) is told the
 * outcome when the caller sees it.
 */
export function callInProcess(
  method: string,
  fn: (self: object, args: unknown[]) => unknown,
  self: object,
  args: unknown[],
  timeout?: CallTimeout,
  observer?: CallObserver,
): unknown {
  const outer = callStorage.getStore();
  if (timeout !== undefined && outer?.deadline === undefined) {
    if (outer !== undefined && isCancelled(outer))
      return rejectObserved(observer, new CallCancelledError(`${method}: cancelled before it was sent`));
    const ms = timeout.ms;
    return new InProcessCall(method, outer, turnNow() + ms, timeout, observer).run(fn, self, args, ms);
  }
  if (outer === undefined) return observer === undefined ? fn(self, args) : observed(observer, fn, self, args);
  const signal = signalToFollow(outer);
  if (outer.deadline === undefined && signal === undefined)
    return observer === undefined ? fn(self, args) : observed(observer, fn, self, args);
  if (isCancelled(outer)) return rejectObserved(observer, new CallCancelledError(`${method}: cancelled before it was sent`));
  const remaining = outer.deadline === undefined ? undefined : outer.deadline - Date.now();
  if (remaining !== undefined && remaining <= 0) {
    return rejectObserved(observer, new DeadlineExceededError(`${method}: deadline exceeded before the call was sent`));
  }
  return new InProcessCall(method, outer, outer.deadline, undefined, observer).run(fn, self, args, remaining);
}

/** A call that fails before it starts: observed as failed, as a remote call would be. */
function rejectObserved(observer: CallObserver | undefined, err: Error): Promise<never> {
  observer?.fail(0);
  return Promise.reject(err);
}

/** `fn(self, args)` run directly, its outcome told to `observer` (synchronous results included). */
function observed(observer: CallObserver, fn: (self: object, args: unknown[]) => unknown, self: object, args: unknown[]): unknown {
  const t0 = turnClock();
  let r: unknown;
  try {
    r = fn(self, args);
  } catch (err) {
    observer.fail(turnClock() - t0);
    throw err;
  }
  if (!isThenable(r)) {
    observer.ok(turnClock() - t0);
    return r;
  }
  return Promise.resolve(r).then(
    (v) => {
      observer.ok(turnClock() - t0);
      return v;
    },
    (err: unknown) => {
      observer.fail(turnClock() - t0);
      throw err;
    },
  );
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}

/** True if `ctx`'s call has ended early (deadline passed or cancelled): calls made in it fail before they start. */
function isCancelled(ctx: CallContext): boolean {
  return ctx instanceof InProcessCall ? ctx.ended : ctx.signal?.aborted === true;
}

/**
 * The signal a call made in `ctx` must follow to end when `ctx`'s call is cancelled. An in-process call
 * ends early only by its deadline, which the calls made in it inherit and enforce themselves, or by its
 * own caller's signal: that one, then, without creating the in-process call's own signal.
 */
function signalToFollow(ctx: CallContext): AbortSignal | undefined {
  return ctx instanceof InProcessCall ? ctx.callerSignal : ctx.signal;
}

/**
 * The callee's side of an in-process call with a deadline or a signal: its CallContext. Its own signal
 * (`currentCall().signal`) is created only when someone asks for it, already aborted if the call has
 * ended early by then.
 */
class InProcessCall implements CallContext {
  readonly traceparent: string | undefined;
  readonly metadata: Readonly<Record<string, string>> | undefined;
  /** The signal this call follows (its caller's, see {@link signalToFollow}). */
  readonly callerSignal: AbortSignal | undefined;
  private controller: AbortController | undefined = undefined;
  /** Why the call ended early, once it did. */
  private reason: Error | undefined = undefined;
  private timer: NodeJS.Timeout | undefined = undefined;
  private inSweep = false;
  /** @internal Links of the sweep's list. */
  sweptNext: InProcessCall | undefined = undefined;
  /** @internal */
  sweptPrev: InProcessCall | undefined = undefined;
  private resolve: ((v: unknown) => void) | undefined = undefined;
  private reject: ((err: Error) => void) | undefined = undefined;
  private onAbort: (() => void) | undefined = undefined;
  private t0 = 0;

  constructor(
    private readonly method: string,
    outer: CallContext | undefined,
    readonly deadline: number | undefined,
    /** The default deadline that set `deadline`, if one did: its error names the key to change. */
    private readonly timeout: CallTimeout | undefined,
    private readonly observer: CallObserver | undefined,
  ) {
    this.traceparent = outer?.traceparent;
    this.metadata = outer?.metadata;
    this.callerSignal = outer === undefined ? undefined : signalToFollow(outer);
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** True once the call ended early (its deadline passed or its caller cancelled). */
  get ended(): boolean {
    return this.reason !== undefined;
  }

  /** Runs the callee in this context; `remaining`: ms to the deadline (undefined: none). */
  run(fn: (self: object, args: unknown[]) => unknown, self: object, args: unknown[], remaining: number | undefined): Promise<unknown> {
    const p = new Promise<unknown>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    if (this.observer !== undefined) this.t0 = turnClock();
    if (remaining !== undefined) {
      if (remaining < SWEPT_DEADLINE_MS) this.timer = setTimeout(expireInProcessCall, remaining, this);
      else if (remaining <= MAX_TIMER_MS) {
        this.inSweep = true;
        linkSwept(this);
      }
    }
    const signal = this.callerSignal;
    if (signal !== undefined) {
      this.onAbort = () => this.fail(new CallCancelledError(`${this.method}: cancelled by the caller`));
      signal.addEventListener("abort", this.onAbort, { once: true });
    }
    let r: unknown;
    try {
      r = callStorage.run(this, fn, self, args);
    } catch (err) {
      this.settle(false, err);
      return p;
    }
    Promise.resolve(r).then(
      (v) => this.settle(true, v),
      (err: unknown) => this.settle(false, err),
    );
    return p;
  }

  /** The callee finished: its outcome goes to the caller (unless the call already ended early). */
  private settle(ok: boolean, value: unknown): void {
    const resolve = this.resolve;
    if (resolve === undefined) return;
    const reject = this.reject!;
    this.done();
    if (ok) {
      this.observer?.ok(turnClock() - this.t0);
      resolve(value);
    } else {
      this.observer?.fail(turnClock() - this.t0);
      reject(value as Error);
    }
  }

  expire(): void {
    this.fail(this.timeout?.exceeded(this.method) ?? new DeadlineExceededError(`${this.method}: deadline exceeded`));
  }

  /** The deadline passed or the caller cancelled: the caller gets `err` now, the callee's signal aborts. */
  fail(err: Error): void {
    const reject = this.reject;
    if (reject === undefined) return;
    this.done();
    this.reason = err;
    this.controller?.abort(err);
    this.observer?.fail(turnClock() - this.t0);
    reject(err);
  }

  private done(): void {
    this.resolve = undefined;
    this.reject = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.inSweep) {
      this.inSweep = false;
      unlinkSwept(this);
    }
    if (this.onAbort !== undefined) this.callerSignal!.removeEventListener("abort", this.onAbort);
  }
}

function linkSwept(call: InProcessCall): void {
  call.sweptNext = sweptHead;
  if (sweptHead !== undefined) sweptHead.sweptPrev = call;
  sweptHead = call;
  sweepTimer ??= setTimeout(sweepInProcessCalls, DEADLINE_SWEEP_MS);
}

function unlinkSwept(call: InProcessCall): void {
  const prev = call.sweptPrev;
  const next = call.sweptNext;
  if (prev === undefined) sweptHead = next;
  else prev.sweptNext = next;
  if (next !== undefined) next.sweptPrev = prev;
  call.sweptPrev = call.sweptNext = undefined;
}

function expireInProcessCall(call: InProcessCall): void {
  call.expire();
}
