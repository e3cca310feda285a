import { type CallContext, callStorage, withDeadline } from "../core/call.js";
import type { CallTimeout } from "../core/deadlines.js";
import { CallCancelledError, DeadlineExceededError, TransportError } from "../core/errors.js";
import { findSlice, type KeyAssignment } from "../core/routing.js";
import type { Connection, ConnectionPool } from "./client.js";
import { type CallObserver, turnClock } from "./observer.js";

/** Tuning for a {@link Balancer}. */
export interface BalancerOptions {
  /** Attempts per retryable call, the first included (default 4). */
  maxAttempts?: number;
  /** How long a call waits for the first replicas when there are none (default 30 s; the deadline wins). */
  replicaWaitMs?: number;
  /** Delay before the first retry (default 5 ms); doubles per retry, with jitter. */
  retryBackoffMs?: number;
  /** A replica whose calls failed this many times in a row (transport failure or timeout) is ejected (default 5). */
  ejectAfterFailures?: number;
  /** First ejection period (default 30 s); doubles with each ejection in a row, up to `maxEjectionMs`. */
  ejectionMs?: number;
  /** Longest ejection period (default 300 s). */
  maxEjectionMs?: number;
}

/** Outlier state of one replica connection (Envoy's outlier detection, consecutive failures only). */
interface Outlier {
  /** Transport failures and timeouts in a row. */
  failures: number;
  /** Ejected until then (ms since epoch; 0: not ejected). */
  until: number;
  /** Ejections in a row without a success in between (sets the next period). */
  ejections: number;
}

/** Per-call routing options. */
export interface RouteOptions {
  /** Retry on TransportError (on another replica when there is one). Default true. */
  retryable?: boolean;
  /** Affinity key for routed components: the call goes to the replica owning the key's slice. */
  shardKey?: bigint;
  /** The method's default deadline, for a call whose context carries none (undefined: no default). */
  timeout?: CallTimeout | undefined;
  /** Told each call's outcome and latency, retries included (the caller's per-method metrics). */
  observer?: CallObserver | undefined;
}

interface ReplicaWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * Spreads one remote component's calls over its replicas: round-robin among healthy connections
 * (falling back to any when none is healthy yet), retrying transport failures of retryable calls on
 * another replica, and holding calls while the component has no replicas at all.
 */
export class Balancer {
  private readonly byAddress = new Map<string, Connection>();
  /** Replica connections in routing order; rebuilt on update. */
  protected replicas: Connection[] = [];
  private next = 0;
  private readonly waiters = new Set<ReplicaWaiter>();
  private readonly maxAttempts: number;
  private readonly replicaWaitMs: number;
  private readonly retryBackoffMs: number;
  private readonly ejectAfter: number;
  private readonly ejectionMs: number;
  private readonly maxEjectionMs: number;
  /** Replicas with failures on record (only these are looked up on the success path). */
  private readonly outliers = new Map<Connection, Outlier>();
  /** Replicas ejected now or recently (pick checks the clock only while there are any). */
  private ejected = 0;
  /** Ejections so far (for tests and metrics). */
  ejections = 0;
  private closed = false;
  /** Slice starts and owners of the current assignment (routed components only). */
  private sliceStarts: BigUint64Array | undefined;
  private sliceOwners: string[] = [];
  /** Version of the current assignment (0: none). */
  assignmentVersion = 0n;

  constructor(
    /** The component's name, for error messages. */
    readonly component: string,
    private readonly pool: ConnectionPool,
    opts: BalancerOptions = {},
  ) {
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 4);
    this.replicaWaitMs = opts.replicaWaitMs ?? 30_000;
    this.retryBackoffMs = opts.retryBackoffMs ?? 5;
    this.ejectAfter = Math.max(1, opts.ejectAfterFailures ?? 5);
    this.ejectionMs = opts.ejectionMs ?? 30_000;
    this.maxEjectionMs = opts.maxEjectionMs ?? 300_000;
  }

  /** The current replica addresses. */
  get addresses(): string[] {
    return [...this.byAddress.keys()];
  }

  /**
   * Replaces the replica set. Connections to addresses that left are released to the pool (which drains
   * them: their in-flight calls finish); new ones start connecting right away so they can turn healthy.
   */
  update(addresses: readonly string[]): void {
    if (this.closed) return;
    const wanted = new Set(addresses);
    for (const [addr] of this.byAddress) {
      if (!wanted.has(addr)) {
        this.forget(this.byAddress.get(addr)!);
        this.byAddress.delete(addr);
        this.pool.release(addr);
      }
    }
    for (const addr of wanted) {
      if (this.byAddress.has(addr)) continue;
      const conn = this.pool.acquire(addr);
      this.byAddress.set(addr, conn);
      conn.connect();
    }
    this.replicas = [...this.byAddress.values()];
    if (this.replicas.length > 0 && this.waiters.size > 0) {
      const ws = [...this.waiters];
      this.waiters.clear();
      for (const w of ws) {
        settleWaiter(w);
        w.resolve();
      }
    }
  }

  /**
   * Installs a slice assignment (from the deployer) for affinity routing; undefined or empty: calls with
   * a shard key fall back to round-robin. Older versions than the current one are ignored.
   */
  setAssignment(assignment: KeyAssignment | undefined): void {
    if (!assignment || assignment.slices.length === 0) {
      this.sliceStarts = undefined;
      this.sliceOwners = [];
      this.assignmentVersion = 0n;
      return;
    }
    if (assignment.version < this.assignmentVersion) return;
    this.sliceStarts = BigUint64Array.from(assignment.slices.map((s) => s.start));
    this.sliceOwners = assignment.slices.map((s) => s.replica);
    this.assignmentVersion = assignment.version;
  }

  /**
   * Calls a method on some replica. Deadline, cancellation, trace context and metadata come from the
   * caller's CallContext `outer` (default: the current one, `callStorage`). Rejects like {@link Connection.call}.
   */
  call(
    methodId: number,
    methodName: string,
    args: readonly unknown[],
    opts: RouteOptions = {},
    outer: CallContext | undefined = callStorage.getStore(),
  ): Promise<unknown> {
    const t0 = opts.observer === undefined ? 0 : turnClock();
    const timeout = opts.timeout;
    if (timeout === undefined || outer?.deadline !== undefined) return this.send(methodId, methodName, args, opts, outer, undefined, t0);
    return this.send(methodId, methodName, args, opts, withDeadline(outer, Date.now() + timeout.ms), timeout, t0);
  }

  /**
   * One call, retried as `opts` allow. `defaultTimeout`: the default deadline that set ctx's deadline, whose
   * expiry error names it. One async function per call: metrics and the error's explanation are recorded
   * here rather than in wrapper promises, which would cost an allocation and a microtask hop each.
   */
  private async send(
    methodId: number,
    methodName: string,
    args: readonly unknown[],
    opts: RouteOptions,
    ctx: CallContext | undefined,
    defaultTimeout: CallTimeout | undefined,
    t0: number,
  ): Promise<unknown> {
    try {
      const retryable = opts.retryable ?? true;
      let previous: Connection | undefined;
      for (let attempt = 1; ; attempt++) {
        let conn = this.pick(opts.shardKey, previous);
        while (conn === undefined) {
          await this.waitForReplicas(methodName, ctx);
          conn = this.pick(opts.shardKey, previous);
        }
        try {
          const v = await conn.call(methodId, methodName, args, ctx);
          if (this.outliers.size > 0) this.succeeded(conn);
          opts.observer?.ok(turnClock() - t0);
          return v;
        } catch (err) {
          if (err instanceof TransportError || (err instanceof DeadlineExceededError && !ctx?.signal?.aborted)) this.failed(conn);
          else if (this.outliers.size > 0) this.succeeded(conn); // the replica answered
          // A call that was never sent did not run: retrying it is safe for every method.
          if (!(err instanceof TransportError) || !(retryable || err.notSent) || attempt >= this.maxAttempts) throw err;
          const delay = this.retryBackoffMs * 2 ** (attempt - 1) * (0.5 + Math.random());
          if (ctx?.deadline !== undefined && Date.now() + delay >= ctx.deadline) throw err;
          if (delay >= 1) await sleep(delay);
          if (ctx?.signal?.aborted) throw new CallCancelledError(`${methodName}: cancelled by the caller`);
          previous = conn;
        }
      }
    } catch (err) {
      opts.observer?.fail(turnClock() - t0);
      throw defaultTimeout === undefined ? err : defaultTimeout.explain(methodName, err);
    }
  }

  /** True while `conn` is ejected (its period not over yet). */
  isEjected(conn: Connection): boolean {
    if (this.ejected === 0) return false;
    const o = this.outliers.get(conn);
    return o !== undefined && o.until > Date.now();
  }

  /**
   * A call on `conn` failed with a transport failure or a timeout. After `ejectAfterFailures` in a row the
   * replica is ejected: calls avoid it for the ejection period, after which the next call to it is a probe
   * (one more failure ejects it again, for twice as long; a success clears its record).
   */
  private failed(conn: Connection): void {
    let o = this.outliers.get(conn);
    if (o === undefined) {
      o = { failures: 0, until: 0, ejections: 0 };
      this.outliers.set(conn, o);
    }
    if (o.until > Date.now()) return; // a call sent before the ejection
    if (++o.failures < this.ejectAfter) return;
    if (o.until === 0) this.ejected++;
    const period = Math.min(this.maxEjectionMs, this.ejectionMs * 2 ** Math.min(o.ejections, 20));
    o.until = Date.now() + period;
    o.ejections++;
    o.failures = this.ejectAfter - 1; // when the period is over, one failed probe ejects it again
    this.ejections++;
  }

  /** A call on `conn` got an answer: its failure record is cleared. */
  private succeeded(conn: Connection): void {
    const o = this.outliers.get(conn);
    if (o === undefined) return;
    this.forget(conn);
  }

  private forget(conn: Connection): void {
    const o = this.outliers.get(conn);
    if (o === undefined) return;
    if (o.until !== 0) this.ejected--;
    this.outliers.delete(conn);
  }

  /**
   * Chooses the replica for a call; `avoid` is the one that just failed (avoided when another exists).
   * Round-robin over healthy replicas that are not ejected, else over ones still connecting, else any
   * (an ejected replica still serves when nothing else can). Override (or extend with `shardKey`) for
   * affinity routing.
   */
  protected pick(shardKey: bigint | undefined, avoid: Connection | undefined): Connection | undefined {
    if (shardKey !== undefined && this.sliceStarts !== undefined) {
      // The slice's owner, unless it just failed or is known down: then any replica will do.
      const owner = this.byAddress.get(this.sliceOwners[findSlice(this.sliceStarts, shardKey)]!);
      if (
        owner !== undefined &&
        owner !== avoid &&
        !this.isEjected(owner) &&
        (owner.healthy || owner.state === "idle" || owner.state === "connecting")
      )
        return owner;
    }
    const rs = this.replicas;
    const n = rs.length;
    if (n <= 1) return rs[0];
    let connecting: Connection | undefined;
    let other: Connection | undefined;
    let ejected: Connection | undefined;
    for (let i = 0; i < n; i++) {
      const idx = (this.next + i) % n;
      const c = rs[idx]!;
      if (c === avoid) continue;
      if (this.ejected > 0 && this.isEjected(c)) {
        ejected ??= c;
        continue;
      }
      if (c.healthy) {
        this.next = idx + 1;
        return c;
      }
      if (c.state === "idle" || c.state === "connecting") connecting ??= c;
      else other ??= c;
    }
    this.next++;
    return connecting ?? ejected ?? other ?? avoid;
  }

  /** Releases every replica connection; calls waiting for replicas fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const addr of this.byAddress.keys()) this.pool.release(addr);
    this.byAddress.clear();
    this.outliers.clear();
    this.ejected = 0;
    this.replicas = [];
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) {
      settleWaiter(w);
      w.reject(new TransportError(`balancer for ${this.component} closed`));
    }
  }

  private waitForReplicas(methodName: string, ctx: CallContext | undefined): Promise<void> {
    if (this.closed) return Promise.reject(new TransportError(`${methodName}: balancer for ${this.component} is closed`));
    const signal = ctx?.signal;
    if (signal?.aborted) return Promise.reject(new CallCancelledError(`${methodName}: cancelled by the caller`));
    const now = Date.now();
    const byDeadline = ctx?.deadline !== undefined && ctx.deadline - now <= this.replicaWaitMs;
    const waitMs = Math.max(0, byDeadline ? ctx!.deadline! - now : this.replicaWaitMs);
    return new Promise<void>((resolve, reject) => {
      const w: ReplicaWaiter = {
        resolve,
        reject,
        signal,
        onAbort: undefined,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          settleWaiter(w);
          reject(
            byDeadline
              ? new DeadlineExceededError(`${methodName}: deadline exceeded while waiting for replicas of ${this.component}`)
              : new TransportError(`${methodName}: no replicas of ${this.component} became available within ${this.replicaWaitMs} ms`),
          );
        }, waitMs),
      };
      if (signal !== undefined) {
        w.onAbort = () => {
          this.waiters.delete(w);
          settleWaiter(w);
          reject(new CallCancelledError(`${methodName}: cancelled by the caller`));
        };
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      this.waiters.add(w);
    });
  }
}

function settleWaiter(w: ReplicaWaiter): void {
  clearTimeout(w.timer);
  if (w.signal !== undefined && w.onAbort !== undefined) w.signal.removeEventListener("abort", w.onAbort);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
