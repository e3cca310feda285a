import { type LogAttrs, type Logger, type LogRecord, newLogger } from "../core/logger.js";
import type { LogEntry } from "../protos/runtime.js";
import type { RpcLogger } from "../rpc/logger.js";
import { capLogEntry } from "../telemetry/logfmt.js";

/** Where log entries come from: stamped on every entry. */
export interface LogOrigin {
  app: string;
  deploymentId: string;
  /** The weavelet id. */
  id: string;
}

/** Largest batch: a busy logger sends at once instead of waiting for the next turn of the event loop. */
const MAX_BATCH = 256;

/**
 * Turns the records of a weavelet's loggers into log entries and sends them in batches: one per turn
 * of the event loop, or sooner when MAX_BATCH entries are waiting.
 */
export class LogBatcher {
  private queue: LogEntry[] = [];
  private flushScheduled = false;

  constructor(
    private readonly origin: LogOrigin,
    private readonly send: (entries: LogEntry[]) => void,
  ) {}

  /** A logger whose records go out in batches, naming `component`. */
  loggerFor(component: string): Logger {
    return newLogger(component, (r) => this.enqueue(r));
  }

  /** Sends queued entries now. */
  flush(): void {
    this.flushScheduled = false;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.send(batch);
  }

  private enqueue(r: LogRecord): void {
    // A huge entry is cut here, before it costs the control pipe and the deployer its size.
    this.queue.push(
      capLogEntry({
        app: this.origin.app,
        version: this.origin.deploymentId,
        component: r.component,
        node: this.origin.id,
        timeMicros: String(r.timeMicros),
        level: r.level,
        file: r.file,
        line: r.line,
        msg: r.msg,
        attrs: r.attrs,
      }),
    );
    if (this.queue.length >= MAX_BATCH) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }
}

/** The RPC layer's logger on top of a component logger. */
export function rpcLogger(l: Logger): RpcLogger {
  return {
    error: (msg: string, attrs?: LogAttrs) => l.error(msg, undefined, attrs),
    warn: (msg: string, attrs?: LogAttrs) => l.warn(msg, attrs),
    // Connection chatter is debug-level for users: their own logs matter more.
    info: (msg: string, attrs?: LogAttrs) => l.debug(msg, attrs),
    debug: (msg: string, attrs?: LogAttrs) => l.debug(msg, attrs),
  };
}
