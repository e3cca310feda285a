import type { LogEntry } from "../protos/runtime.js";

const COLORS: Record<string, string> = { debug: "\x1b[90m", info: "\x1b[36m", warn: "\x1b[33m", error: "\x1b[31m" };

/** One human-readable line for a log entry: `I 12:00:00.123 hello/Reverser hello-reverser-0-a1b2c3 main.ts:12] msg k=v` (file:line of the source, via its source map). */
export function formatLogEntry(e: LogEntry, color = false): string {
  const t = new Date(Number(e.timeMicros) / 1000);
  const time = t.toISOString().slice(11, 23);
  const lvl = (e.level || "info")[0]!.toUpperCase();
  const where = e.file ? ` ${e.file}:${e.line}` : "";
  const attrs = Object.entries(e.attrs ?? {})
    .filter(([k]) => k !== "stack")
    .map(([k, v]) => ` ${k}=${/[\s"=]/.test(v) ? JSON.stringify(v) : v}`)
    .join("");
  const stack = e.attrs?.["stack"] ? `\n${e.attrs["stack"]}` : "";
  const head = `${lvl} ${time} ${e.component} ${e.node}${where}]`;
  const line = `${head} ${e.msg}${attrs}${stack}`;
  if (!color) return line;
  return `${COLORS[e.level] ?? ""}${head}\x1b[0m ${e.msg}${attrs}${stack}`;
}

/** "10m", "2h", "30s", "1d" or an ISO time → epoch micros. */
export function parseSince(since: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(since);
  if (m) return (Date.now() - Number(m[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[m[2] as "s"]) * 1000;
  const t = Date.parse(since);
  if (Number.isNaN(t)) throw new Error(`--since ${since}: use a duration like 10m, 2h, 1d or an ISO time`);
  return t * 1000;
}
