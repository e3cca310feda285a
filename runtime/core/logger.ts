import { readFileSync } from "node:fs";
import { SourceMap, findSourceMap } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Severity of a log entry. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Attribute values a log call may carry; rendered as strings in the log entry. */
export type LogAttrs = Readonly<Record<string, string | number | boolean | bigint | null | undefined>>;

/** A structured logger; `ctx.logger` is one, labelled with its component. */
export interface Logger {
  debug(msg: string, attrs?: LogAttrs): void;
  info(msg: string, attrs?: LogAttrs): void;
  warn(msg: string, attrs?: LogAttrs): void;
  /**
   * Logs an error. `error(msg, attrs)` logs attributes only; `error(msg, err, attrs?)` adds `err` (an Error's
   * name, message and stack; anything else as a string). A plain object as the second argument is always
   * attributes: to log one as the error, pass it with attributes as the third (`error(msg, obj, {})`).
   */
  error(msg: string, attrs?: LogAttrs): void;
  error(msg: string, err: unknown, attrs?: LogAttrs): void;
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

// The caller's file:line: the frame just outside this module, read from V8's structured call sites (no stack
// string is formatted) and mapped back to the TypeScript source when the .js file has a source map.
function callSite(): { file: string; line: number } {
  const savedLimit = Error.stackTraceLimit;
  const savedPrepare = Error.prepareStackTrace;
  Error.stackTraceLimit = 4;
  Error.prepareStackTrace = (_, sites) => sites;
  const holder: { stack?: NodeJS.CallSite[] } = {};
  Error.captureStackTrace(holder, callSite);
  const sites = holder.stack;
  Error.prepareStackTrace = savedPrepare;
  Error.stackTraceLimit = savedLimit;
  // sites[0] is SinkLogger.emit, sites[1] the public method (info, error, ...), sites[2] the caller.
  const site = Array.isArray(sites) ? sites[2] : undefined;
  if (!site) return { file: "", line: 0 };
  const file = site.getFileName();
  const line = site.getLineNumber();
  if (!file || !line) return { file: "", line: 0 };
  return sourcePosition(file, line, site.getColumnNumber() ?? 1);
}

const positions = new Map<string, { file: string; line: number }>();
const sourceMaps = new Map<string, SourceMap | null>();
const MAX_CACHED_POSITIONS = 10_000;

/** file:line of a compiled position in its source (cached: log calls repeat the same sites). */
function sourcePosition(file: string, line: number, column: number): { file: string; line: number } {
  const key = `${file}:${line}:${column}`;
  const cached = positions.get(key);
  if (cached) return cached;
  const path = file.startsWith("file://") ? fileURLToPath(file) : file;
  let found = { file: basename(path), line };
  const map = sourceMapOf(path);
  if (map) {
    const entry = map.findEntry(line - 1, column - 1) as { originalSource?: string; originalLine?: number };
    if (entry.originalSource && entry.originalLine !== undefined) {
      found = { file: basename(entry.originalSource), line: entry.originalLine + 1 };
    }
  }
  if (positions.size >= MAX_CACHED_POSITIONS) positions.clear();
  positions.set(key, found);
  return found;
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** The source map a compiled file names in its `sourceMappingURL` comment, or null. */
function sourceMapOf(path: string): SourceMap | null {
  let map = sourceMaps.get(path);
  if (map !== undefined) return map;
  // Node has the map already when source maps are enabled (--enable-source-maps, or a loader such as tsx).
  map = findSourceMap(path) ?? null;
  if (map) {
    sourceMaps.set(path, map);
    return map;
  }
  try {
    const text = readFileSync(path, "utf8");
    const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(text)?.[1];
    if (url && !url.startsWith("data:")) map = new SourceMap(JSON.parse(readFileSync(resolve(dirname(path), url), "utf8")));
  } catch {
    map = null; // unreadable file or map: keep the compiled position
  }
  sourceMaps.set(path, map);
  return map;
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
  error(msg: string, errOrAttrs?: unknown, attrs?: LogAttrs): void {
    let err = errOrAttrs;
    if (attrs === undefined && isPlainObject(errOrAttrs)) {
      attrs = errOrAttrs as LogAttrs;
      err = undefined;
    }
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

function isPlainObject(v: unknown): boolean {
  if (typeof v !== "object" || v === null || v instanceof Error) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** A logger for `component` writing to `sink`. */
export function newLogger(component: string, sink: LogSink): Logger {
  return new SinkLogger(component, sink, {}, minLevel());
}
