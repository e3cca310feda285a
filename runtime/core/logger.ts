/** Severity of a log entry. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Attribute values a log call may carry; rendered as strings in the log entry. */
export type LogAttrs = Readonly<Record<string, string | number | boolean | bigint | null | undefined>>;

/** A structured logger; `ctx.logger` is one, labelled with its component. */
export interface Logger {
  debug(msg: string, attrs?: LogAttrs): void;
  info(msg: string, attrs?: LogAttrs): void;
  warn(msg: string, attrs?: LogAttrs): void;
  /** Logs an error; an Error value in `err` adds its message and stack as attributes. */
  error(msg: string, err?: unknown, attrs?: LogAttrs): void;
  /** A logger whose entries also carry `attrs`. */
  with(attrs: LogAttrs): Logger;
}

/** One log entry as produced in a process, before the deployer stores or prints it. */
export interface LogRecord {
  timeMicros: number;
  level: LogLevel;
  component: string;
  file: string;
  line: number;
  msg: string;
  attrs: Record<string, string>;
}

/** Where a process's log records go (the weavelet batches them to its envelope). */
export type LogSink = (record: LogRecord) => void;

const LEVELS: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Minimum level from TSWEAVER_LOG_LEVEL (default info). */
function minLevel(): number {
  const v = process.env["TSWEAVER_LOG_LEVEL"] as LogLevel | undefined;
  return v && v in LEVELS ? LEVELS[v] : LEVELS.info;
}

// The caller's file:line, found from a short stack: the frame just outside this module.
function callSite(): { file: string; line: number } {
  const saved = Error.stackTraceLimit;
  Error.stackTraceLimit = 4;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = saved;
  const frame = stack.split("\n")[4] ?? "";
  const m = /\(?([^()\s]+):(\d+):\d+\)?$/.exec(frame);
  if (!m) return { file: "", line: 0 };
  const file = m[1]!.replace(/^file:\/\//, "");
  return { file: file.slice(file.lastIndexOf("/") + 1), line: Number(m[2]) };
}

function render(attrs: LogAttrs | undefined, into: Record<string, string>): void {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) into[k] = String(v);
}

class SinkLogger implements Logger {
  constructor(
    private readonly component: string,
    private readonly sink: LogSink,
    private readonly base: Record<string, string>,
    private readonly min: number,
  ) {}

  debug(msg: string, attrs?: LogAttrs): void {
    this.emit("debug", msg, attrs);
  }
  info(msg: string, attrs?: LogAttrs): void {
    this.emit("info", msg, attrs);
  }
  warn(msg: string, attrs?: LogAttrs): void {
    this.emit("warn", msg, attrs);
  }
  error(msg: string, err?: unknown, attrs?: LogAttrs): void {
    const extra: Record<string, string> = {};
    if (err instanceof Error) {
      extra["err"] = `${err.name}: ${err.message}`;
      if (err.stack) extra["stack"] = err.stack;
    } else if (err !== undefined) {
      extra["err"] = String(err);
    }
    this.emit("error", msg, attrs, extra);
  }
  with(attrs: LogAttrs): Logger {
    const base = { ...this.base };
    render(attrs, base);
    return new SinkLogger(this.component, this.sink, base, this.min);
  }

  private emit(level: LogLevel, msg: string, attrs: LogAttrs | undefined, extra?: Record<string, string>): void {
    if (LEVELS[level] < this.min) return;
    const all: Record<string, string> = { ...this.base };
    render(attrs, all);
    if (extra) Object.assign(all, extra);
    const { file, line } = callSite();
    this.sink({ timeMicros: Date.now() * 1000, level, component: this.component, file, line, msg, attrs: all });
  }
}

/** A logger for `component` writing to `sink`. */
export function newLogger(component: string, sink: LogSink): Logger {
  return new SinkLogger(component, sink, {}, minLevel());
}
