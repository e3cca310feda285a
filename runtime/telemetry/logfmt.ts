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

/** Largest log entry kept whole (bytes of its message and attribute values, UTF-8). */
export const MAX_LOG_ENTRY_BYTES = 64 * 1024;

/**
 * The entry itself if its message and attribute values fit in `maxBytes` (UTF-8); otherwise a copy with
 * the message and the longest values cut to fit, ending in a marker that says how much was dropped,
 * and the attribute `truncated` set to the original size in bytes.
 */
export function capLogEntry(e: LogEntry, maxBytes = MAX_LOG_ENTRY_BYTES): LogEntry {
  const attrs = e.attrs ?? {};
  let total = Buffer.byteLength(e.msg);
  for (const v of Object.values(attrs)) total += Buffer.byteLength(v);
  if (total <= maxBytes) return e;
  // Share the budget: every part keeps up to an equal share, and what short parts leave goes to long ones.
  const parts = [e.msg, ...Object.values(attrs)];
  const sizes = parts.map((p) => Buffer.byteLength(p));
  let budget = maxBytes;
  let left = parts.length;
  const allowed = new Array<number>(parts.length).fill(0);
  for (const i of sizes.map((_, i) => i).sort((a, b) => sizes[a]! - sizes[b]!)) {
    allowed[i] = Math.min(sizes[i]!, Math.floor(budget / left));
    budget -= allowed[i]!;
    left--;
  }
  const cut = (s: string, i: number): string =>
    sizes[i]! <= allowed[i]! ? s : `${truncateUtf8(s, allowed[i]!)}… [truncated: ${sizes[i]! - allowed[i]!} of ${sizes[i]} bytes dropped]`;
  const out: Record<string, string> = {};
  Object.keys(attrs).forEach((k, j) => (out[k] = cut(attrs[k]!, j + 1)));
  out["truncated"] = String(total);
  return { ...e, msg: cut(e.msg, 0), attrs: out };
}

/** The longest prefix of `s` of at most `maxBytes` UTF-8 bytes that does not split a character. */
function truncateUtf8(s: string, maxBytes: number): string {
  const buf = Buffer.from(s);
  if (buf.length <= maxBytes) return s;
  let end = maxBytes;
  while (end > 0 && (buf[end]! & 0xc0) === 0x80) end--; // back off a continuation byte
  return buf.subarray(0, end).toString("utf8");
}
