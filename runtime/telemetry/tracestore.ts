import type { Span } from "../protos/runtime.js";

/**
 * The deployer side of traces: recent spans kept in memory, grouped by trace, bounded by a span count
 * (the oldest traces go first). Deployer-agnostic.
 */

/** A span as stored and served as JSON: hex ids, times in µs since the epoch. */
export interface StoredSpan {
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  /** OpenTelemetry SpanKind: 1 server, 2 client. */
  kind: number;
  startMicros: number;
  endMicros: number;
  attributes: Record<string, string>;
  /** OpenTelemetry status: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  statusMessage: string;
}

/** One trace at a glance. */
export interface TraceSummary {
  traceId: string;
  /** Name of the root span (or of the earliest span if the root is missing). */
  root: string;
  /** True if the root span (the one without a parent) is in. */
  complete: boolean;
  startMicros: number;
  durationMicros: number;
  spans: number;
  errors: number;
  /** Components the trace went through (rpc.service of its spans). */
  components: string[];
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Converts a control-protocol span for storage. */
export function storedSpan(s: Span): StoredSpan {
  return {
    traceId: hex(s.traceId),
    spanId: hex(s.spanId),
    parentSpanId: hex(s.parentSpanId),
    name: s.name,
    kind: s.kind,
    startMicros: Number(s.startMicros),
    endMicros: Number(s.endMicros),
    attributes: { ...s.attributes },
    statusCode: s.statusCode,
    statusMessage: s.statusMessage,
  };
}

// On equal start times a client span goes before the server span it caused.
const clientFirst = (s: StoredSpan) => (s.kind === 2 ? 0 : 1);

/** Recent traces of a deployment. */
export class TraceStore {
  /** Traces by id, in order of their first span's arrival. */
  private readonly traces = new Map<string, StoredSpan[]>();
  private count = 0;

  /** @param maxSpans spans kept; older traces are dropped whole. */
  constructor(private readonly maxSpans = 20_000) {}

  add(spans: readonly StoredSpan[]): void {
    for (const s of spans) {
      let list = this.traces.get(s.traceId);
      if (!list) {
        list = [];
        this.traces.set(s.traceId, list);
      }
      list.push(s);
      this.count++;
    }
    for (const [id, list] of this.traces) {
      if (this.count <= this.maxSpans) break;
      this.traces.delete(id);
      this.count -= list.length;
    }
  }

  /** Spans held. */
  get size(): number {
    return this.count;
  }

  /** The spans of one trace (by id or unique id prefix), sorted by start time; undefined if unknown. */
  trace(id: string): StoredSpan[] | undefined {
    let list = this.traces.get(id);
    if (!list && id.length >= 4) {
      const matches = [...this.traces.keys()].filter((k) => k.startsWith(id));
      if (matches.length === 1) list = this.traces.get(matches[0]!);
    }
    return list ? [...list].sort((a, b) => a.startMicros - b.startMicros || clientFirst(a) - clientFirst(b)) : undefined;
  }

  /** The newest traces first (by start time), up to `limit`, optionally only those through `component`. */
  recent(limit = 50, component?: string): TraceSummary[] {
    const out: TraceSummary[] = [];
    for (const [traceId, spans] of this.traces) {
      const components = [...new Set(spans.map((s) => s.attributes["rpc.service"]).filter((c): c is string => !!c))].sort();
      if (component && !components.includes(component)) continue;
      const ids = new Set(spans.map((s) => s.spanId));
      const start = Math.min(...spans.map((s) => s.startMicros));
      const end = Math.max(...spans.map((s) => s.endMicros));
      const top = spans.find((s) => !s.parentSpanId);
      const root = top ?? spans.find((s) => !ids.has(s.parentSpanId)) ?? spans[0]!;
      out.push({
        traceId,
        root: root.name,
        complete: top !== undefined,
        startMicros: start,
        durationMicros: end - start,
        spans: spans.length,
        errors: spans.filter((s) => s.statusCode === 2).length,
        components,
      });
    }
    return out.sort((a, b) => b.startMicros - a.startMicros).slice(0, limit);
  }
}
