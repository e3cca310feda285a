import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { ConfigError } from "../core/errors.js";
import type { RpcLogger } from "./logger.js";

/** Default process-wide bound on inbound bytes held in partly received frames (see {@link InboundBudget}). */
export const DEFAULT_INBOUND_BUDGET_BYTES = 128 * 1024 * 1024;

/**
 * Inbound bytes released by closed connections (partial frames that never completed) after which the
 * process runs one garbage collection (see {@link InboundBudget}).
 */
export const DEFAULT_RECLAIM_AFTER_BYTES = 32 * 1024 * 1024;
/** The collection waits until connections have stopped releasing bytes for this long (the flood is over)... */
const RECLAIM_QUIET_MS = 1000;
/** ...and runs at most this often... */
const RECLAIM_MIN_INTERVAL_MS = 10_000;
/** ...except for one later try, this long after, when it left more than this much of the heap unused. */
const RECLAIM_FOLLOW_UP_MS = 3000;
const RECLAIM_HEAP_SLACK = 16 * 1024 * 1024;

/**
 * Default per-server limits, chosen like gRPC's and Envoy's: a 10 s handshake (gRPC's connection
 * timeout is 20 s, ours only covers HELLO on an established socket), 30 s for a whole frame and 10 s
 * without progress inside one (Envoy's request-headers and stream-idle timeouts, scaled to one frame of at
 * most 16 MiB), 5 min idle (Envoy's stream idle timeout; gRPC's MAX_CONNECTION_IDLE is off by default,
 * but a peer that vanished without a FIN must not keep an fd forever) and 10,000 connections.
 */
export const DEFAULT_SERVER_LIMITS = {
  handshakeTimeoutMs: 10_000,
  frameTimeoutMs: 30_000,
  frameProgressTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
  maxConnections: 10_000,
} as const;

/** Environment variables that override the server limits of a weavelet (set them with `[tsweaver] env`). */
export const SERVER_LIMIT_ENV = {
  maxConnections: "TSWEAVER_RPC_MAX_CONNECTIONS",
  idleTimeoutMs: "TSWEAVER_RPC_IDLE_TIMEOUT_MS",
  frameTimeoutMs: "TSWEAVER_RPC_FRAME_TIMEOUT_MS",
  inboundBudgetBytes: "TSWEAVER_RPC_INBOUND_BUDGET_BYTES",
} as const;

/** Server limits read from the environment (see {@link SERVER_LIMIT_ENV}); absent ones keep their defaults. */
export interface EnvServerLimits {
  maxConnections?: number;
  idleTimeoutMs?: number;
  frameTimeoutMs?: number;
  inboundBudgetBytes?: number;
}

/** Reads {@link SERVER_LIMIT_ENV} from `env`; a value that is not a positive integer is an error naming it. */
export function serverLimitsFromEnv(env: NodeJS.ProcessEnv): EnvServerLimits {
  const out: EnvServerLimits = {};
  for (const [key, name] of Object.entries(SERVER_LIMIT_ENV) as [keyof EnvServerLimits, string][]) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n <= 0) {
      throw new ConfigError(`environment variable ${name}: must be a positive integer (found ${JSON.stringify(raw)})`);
    }
    out[key] = n;
  }
  return out;
}

/** A connection that can stop and resume reading its socket. */
export interface Pausable {
  /** Stops reading (the kernel's receive window then pushes back on the peer). */
  pause(): void;
  /** Reads again. */
  resume(): void;
}

/**
 * A process-wide budget of inbound bytes held in buffers of frames still arriving. Connections report
 * what they hold; one that grows its holding while the budget is spent is paused (its peer sees TCP
 * backpressure) and resumed, oldest first, as other frames complete or connections close. So many
 * connections sending huge frames slowly cost at most the budget plus one frame, not the sum of the
 * lengths they declared. One connection always keeps reading when every other holder is paused, so
 * frames larger than the budget still get through and the budget can never deadlock.
 */
export class InboundBudget {
  /** Bytes currently held by all connections. */
  held = 0;
  /** Connections paused by this budget, oldest first. */
  private readonly paused = new Set<Pausable>();
  /** Connections holding bytes and reading. */
  private readingHolders = 0;
  /** Connections paused so far (a counter, for stats and tests). */
  pauses = 0;
  /** Bytes released by closed connections since the last collection. */
  private released = 0;
  private reclaimTimer: NodeJS.Timeout | undefined;
  private lastReclaimAt = 0;
  /** The next collection is the single later try after one that left much of the heap unused. */
  private followUp = false;
  /** Collections run to reclaim released bytes (a counter, for stats and tests). */
  reclaims = 0;

  constructor(
    /** Bytes that may be held before growing connections are paused. */
    readonly limit: number = DEFAULT_INBOUND_BUDGET_BYTES,
    /** Bytes released by closed connections after which one collection runs (0: never). */
    readonly reclaimAfter: number = DEFAULT_RECLAIM_AFTER_BYTES,
  ) {}

  /** True while the held bytes exceed the limit. */
  get exhausted(): boolean {
    return this.held > this.limit;
  }

  /**
   * A connection's holding changed from `before` to `after` bytes. Returns true when it must pause: it
   * grew while the budget is spent and another holder can still make progress.
   */
  update(conn: Pausable, before: number, after: number): boolean {
    this.held += after - before;
    if (before === 0 && after > 0) this.readingHolders++;
    else if (before > 0 && after === 0) this.readingHolders--;
    if (after < before) this.resumeWaiting();
    if (after > before && this.held > this.limit && this.readingHolders > 1) {
      if (after > 0) this.readingHolders--;
      this.paused.add(conn);
      this.pauses++;
      conn.pause();
      return true;
    }
    return false;
  }

  /** A connection closed while holding `held` bytes (and maybe paused). */
  remove(conn: Pausable, held: number): void {
    const wasPaused = this.paused.delete(conn);
    this.held -= held;
    if (held > 0 && !wasPaused) this.readingHolders--;
    this.resumeWaiting();
    if (held > 0) this.noteReleased(held);
  }

  /** Paused connections waiting for budget. */
  get waiting(): number {
    return this.paused.size;
  }

  /**
   * The chunks of a partial frame become garbage when its connection closes, but a process that goes
   * quiet after a flood allocates nothing that would make V8 collect them: up to the whole budget would
   * stay resident. Once enough was released and the releases have stopped for a moment, one full
   * collection gives it back (a few ms on a weavelet's heap; at most once per 10 s, and one later try).
   */
  private noteReleased(bytes: number): void {
    if (this.reclaimAfter === 0) return;
    this.released += bytes;
    if (this.released < this.reclaimAfter) return;
    if (this.reclaimTimer !== undefined) {
      this.reclaimTimer.refresh();
      return;
    }
    const wait = Math.max(RECLAIM_QUIET_MS, this.lastReclaimAt + RECLAIM_MIN_INTERVAL_MS - Date.now());
    this.reclaimTimer = setTimeout(reclaimBudget, wait, this);
    this.reclaimTimer.unref();
  }

  /** @internal Runs the collection {@link noteReleased} scheduled. */
  reclaim(): void {
    this.reclaimTimer = undefined;
    this.released = 0;
    this.lastReclaimAt = Date.now();
    this.reclaims++;
    collectGarbage();
    // V8 gives back the young generation a flood grew only when a collection finds the process
    // allocating little; one that ran while calls were still busy gets one later try, after they calmed.
    if (this.followUp) {
      this.followUp = false;
      return;
    }
    const { heapTotal, heapUsed } = process.memoryUsage();
    if (heapTotal - heapUsed < RECLAIM_HEAP_SLACK) return;
    this.followUp = true;
    this.reclaimTimer = setTimeout(reclaimBudget, RECLAIM_FOLLOW_UP_MS, this);
    this.reclaimTimer.unref();
  }

  private resumeWaiting(): void {
    for (const conn of this.paused) {
      // Under the limit everyone waiting may read again; over it, one at a time when nobody else reads.
      if (this.held > this.limit && this.readingHolders > 0) return;
      this.paused.delete(conn);
      this.readingHolders++;
      conn.resume();
    }
  }
}

function reclaimBudget(budget: InboundBudget): void {
  budget.reclaim();
}

let gc: (() => void) | undefined;

/**
 * Runs a full garbage collection. Node offers no call for it without `--expose-gc`; that flag, set at
 * run time, exposes `gc` to contexts created afterwards, so it is taken from a fresh context and the
 * app's own global is left as it was.
 */
function collectGarbage(): void {
  if (gc === undefined) {
    const own = (globalThis as { gc?: unknown }).gc;
    if (typeof own === "function") gc = own as () => void;
    else {
      setFlagsFromString("--expose-gc");
      gc = runInNewContext("gc") as () => void;
    }
  }
  gc();
}

/** The budget shared by every RPC server of this process unless a server is given its own. */
export const processInboundBudget = new InboundBudget();

/** Why the server closed or refused a connection; each has one phrase in the summary line. */
export type ConnectionCloseReason = "idle" | "frame-timeout" | "handshake-timeout" | "protocol-error" | "over-limit";

const PHRASES: Record<ConnectionCloseReason, string> = {
  idle: "closed for idling",
  "frame-timeout": "closed for a frame not completed in time",
  "handshake-timeout": "closed for not sending HELLO in time",
  "protocol-error": "closed after a protocol error",
  "over-limit": "refused: too many connections",
};

/** Default length of the window over which closed connections are summarized. */
export const DEFAULT_CLOSE_LOG_WINDOW_MS = 10_000;

/**
 * Logs connections the server closed or refused without letting a flood of them flood the log: the
 * first event of a window is logged at once with its details; the others are counted and reported as
 * one line when the window ends ("1,000 connections closed for idling in the last 10 s"). So a single
 * misbehaving peer is visible immediately and a thousand cost one line per window, never one each.
 */
export class ConnectionCloseLog {
  private readonly counts = new Map<ConnectionCloseReason, number>();
  private lastRemote = "";
  private timer: NodeJS.Timeout | undefined;
  /** Lines written so far (for stats and tests). */
  lines = 0;

  constructor(
    private readonly logger: RpcLogger,
    private readonly windowMs: number = DEFAULT_CLOSE_LOG_WINDOW_MS,
  ) {}

  /** Records one closed or refused connection. */
  note(reason: ConnectionCloseReason, remote: string, detail?: string): void {
    if (this.timer === undefined) {
      this.lines++;
      const attrs: Record<string, unknown> = { remote, reason };
      if (detail !== undefined) attrs.detail = detail;
      const msg = `rpc: connection ${PHRASES[reason]}`;
      if (reason === "protocol-error") this.logger.error(msg, attrs);
      else this.logger.warn(msg, attrs);
      this.timer = setTimeout(flushCloseLog, this.windowMs, this);
      this.timer.unref();
      return;
    }
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    this.lastRemote = remote;
  }

  /** Writes the summary of the window now (at the end of a window, or when the server closes). */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.counts.size === 0) return;
    const secs = Math.round(this.windowMs / 1000);
    const parts = [...this.counts].map(
      ([reason, n]) => `${n.toLocaleString("en-US")} ${n === 1 ? "connection" : "connections"} ${PHRASES[reason]}`,
    );
    const total = [...this.counts.values()].reduce((a, b) => a + b, 0);
    const attrs: Record<string, unknown> = { total, lastRemote: this.lastRemote };
    for (const [reason, n] of this.counts) attrs[reason] = n;
    this.counts.clear();
    this.lines++;
    this.logger.warn(`rpc: ${parts.join(", ")} in the last ${secs} s`, attrs);
    // The next event opens a new window; keeping one open now would only delay its first line.
  }
}

function flushCloseLog(log: ConnectionCloseLog): void {
  log.flush();
}
