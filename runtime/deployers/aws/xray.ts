import type { StoredSpan, TraceStore } from "../../telemetry/tracestore.js";
import { AwsCallError, type XRayApi, callAws } from "./clients.js";

/**
 * Recent traces of one app version from X-Ray (`[aws] tracing = "xray"`), as the spans the dashboard's
 * traces panel shows. The weavelets export OTLP to their task's collector sidecar, whose awsxray exporter
 * writes each span as a segment document: a server span (or a trace's root) becomes a segment named
 * after the resource's `service.name` (the app; a root client span is named after its callee) with the
 * resource's attributes in `metadata.default["otel.resource.*"]`; a client span inside a trace becomes a
 * subsegment (`namespace: "remote"`) of its parent; span attributes (rpc.service, rpc.method,
 * tsweaver.*) go to `metadata.default`. X-Ray returns subsegments embedded in their segment's document
 * (BatchGetTraces), and may add inferred segments for remote calls; both shapes convert here.
 */

/** What one read looks for. */
export interface XRayTraceQuery {
  /** The app's name: the weavelets' `service.name`, so the name of their server segments. */
  readonly app: string;
  /** The version: the weavelets' `service.namespace`. */
  readonly version: string;
}

export interface XRayReadOptions {
  /** How far back a read looks (minutes). @default 10 */
  windowMinutes?: number;
  /** Traces read (BatchGetTraces) per refresh, at most; the newest first. @default 50 */
  maxTraces?: number;
  /** GetTraceSummaries pages per refresh, at most. @default 3 */
  maxSummaryPages?: number;
}

/** BatchGetTraces takes at most this many trace ids a call. */
export const BATCH_GET_TRACES_IDS = 5;
/** BatchGetTraces pages (one trace's segments can span several) followed per call, at most. */
const MAX_TRACE_PAGES = 3;
/** Trace ids remembered as read (so a refresh reads only new traces); forgotten all at once past this. */
const MAX_SEEN = 10_000;

/**
 * The GetTraceSummaries filter: traces through a service node named after the app (the weavelets'
 * server segments). Segments carry the version only as metadata, which filters cannot see, so the
 * version is checked on each document ({@link spansOfTrace}); that check also keeps out another
 * deployment of an app of the same name.
 */
export function traceFilter(app: string): string {
  return `service(${JSON.stringify(app)})`;
}

/** An X-Ray trace id ("1-5f84c7a1-…", from the OpenTelemetry id's first 8 and last 24 hex digits) as the OpenTelemetry one. */
export function otelTraceId(xrayId: string): string {
  return xrayId.startsWith("1-") ? xrayId.slice(2).replace("-", "") : xrayId;
}

/** The fields of a segment or subsegment document this conversion reads. */
interface SegmentDoc {
  id?: unknown;
  name?: unknown;
  type?: unknown;
  parent_id?: unknown;
  namespace?: unknown;
  start_time?: unknown;
  end_time?: unknown;
  inferred?: unknown;
  fault?: unknown;
  error?: unknown;
  throttle?: unknown;
  cause?: { exceptions?: { message?: unknown }[] } | unknown;
  metadata?: { default?: Record<string, unknown> } | unknown;
  subsegments?: unknown;
}

const RESOURCE = "otel.resource.";

function defaultMetadata(doc: SegmentDoc): Record<string, unknown> {
  const m = doc.metadata as { default?: unknown } | undefined;
  return m && typeof m.default === "object" && m.default !== null ? (m.default as Record<string, unknown>) : {};
}

const str = (v: unknown): string => (typeof v === "string" ? v : v === undefined || v === null ? "" : JSON.stringify(v));

/**
 * The spans of this app version in one trace's segment documents (BatchGetTraces' `Segments[].Document`):
 * segments whose resource is the app's and the version's, their subsegments (embedded, or sent on their
 * own as X-Ray also stores them), and nothing of other apps or versions; inferred segments are skipped
 * (they repeat a client call). Names are `component.method` from the spans' rpc attributes, as the
 * multi deployer's; a remote (client) subsegment is a client span, the rest server spans.
 */
export function spansOfTrace(xrayTraceId: string, documents: readonly string[], want: XRayTraceQuery): StoredSpan[] {
  const traceId = otelTraceId(xrayTraceId);
  // Every (sub)segment with its parent: embedded ones under their enclosing document.
  const entries: { doc: SegmentDoc; parent: string; ours: boolean | undefined }[] = [];
  const walk = (doc: SegmentDoc, parent: string, ours: boolean | undefined) => {
    entries.push({ doc, parent, ours });
    if (Array.isArray(doc.subsegments))
      for (const sub of doc.subsegments as unknown[])
        if (typeof sub === "object" && sub !== null) walk(sub as SegmentDoc, str(doc.id), ours);
  };
  for (const text of documents) {
    let doc: SegmentDoc;
    try {
      doc = JSON.parse(text) as SegmentDoc;
    } catch {
      continue; // not a document: nothing to show of it
    }
    if (typeof doc !== "object" || doc === null || doc.inferred === true) continue;
    const md = defaultMetadata(doc);
    // A segment says whose it is (its resource); a subsegment sent on its own belongs where its parent does.
    const ours =
      doc.type === "subsegment"
        ? undefined
        : md[`${RESOURCE}service.name`] === want.app && md[`${RESOURCE}service.namespace`] === want.version;
    walk(doc, str(doc.parent_id), ours);
  }
  const owner = new Map<string, boolean>();
  for (const e of entries) if (e.ours !== undefined) owner.set(str(e.doc.id), e.ours);
  // Subsegments sent on their own: settle each from its parent (chains of them too).
  for (let changed = true; changed;) {
    changed = false;
    for (const e of entries) {
      if (e.ours !== undefined) continue;
      const o = owner.get(e.parent);
      if (o === undefined) continue;
      e.ours = o;
      owner.set(str(e.doc.id), o);
      changed = true;
    }
  }
  const spans: StoredSpan[] = [];
  for (const { doc, parent, ours } of entries) {
    if (ours !== true) continue;
    const md = defaultMetadata(doc);
    const attributes: Record<string, string> = {};
    for (const [k, v] of Object.entries(md)) if (!k.startsWith(RESOURCE)) attributes[k] = str(v);
    const service = attributes["rpc.service"];
    const method = attributes["rpc.method"];
    const start = typeof doc.start_time === "number" ? doc.start_time : 0;
    const end = typeof doc.end_time === "number" ? doc.end_time : start;
    const failed = doc.fault === true || doc.error === true || doc.throttle === true;
    const cause = doc.cause as { exceptions?: { message?: unknown }[] } | undefined;
    spans.push({
      traceId,
      spanId: str(doc.id),
      parentSpanId: parent,
      name: service && method ? `${service}.${method}` : str(doc.name),
      kind: doc.namespace === "remote" ? 2 : 1,
      startMicros: Math.round(start * 1e6),
      endMicros: Math.round(end * 1e6),
      attributes,
      statusCode: failed ? 2 : 0,
      statusMessage: failed ? str(cause?.exceptions?.[0]?.message) : "",
    });
  }
  return spans;
}

/** What a read did: its AWS calls and what it found. */
export interface XRayReadResult {
  summaryPages: number;
  batchCalls: number;
  /** Traces read this time that hold spans of the app version. */
  traces: number;
}

/**
 * Reads recent traces of one app version from X-Ray into a trace store: GetTraceSummaries over the last
 * `windowMinutes` with {@link traceFilter} (at most `maxSummaryPages` pages), then BatchGetTraces, 5 ids a
 * call, for the newest traces not read before (at most `maxTraces`). A trace is read once, when X-Ray no
 * longer calls it partial. Each read costs at most `maxSummaryPages` + ⌈maxTraces / 5⌉ × 3 calls.
 */
export class XRayTraceReader {
  private readonly seen = new Set<string>();
  private readonly opts: Required<XRayReadOptions>;

  constructor(
    private readonly xray: () => Promise<XRayApi>,
    options: XRayReadOptions = {},
  ) {
    this.opts = { windowMinutes: 10, maxTraces: 50, maxSummaryPages: 3, ...options };
  }

  async read(query: XRayTraceQuery, store: TraceStore, now = Date.now()): Promise<XRayReadResult> {
    const { sdk, client } = await this.xray();
    const filter = traceFilter(query.app);
    const found = new Map<string, number>();
    let token: string | undefined;
    let summaryPages = 0;
    do {
      const page = await callAws("xray:GetTraceSummaries", `traces of ${query.app} (${filter})`, () =>
        client.send(
          new sdk.GetTraceSummariesCommand({
            StartTime: new Date(now - this.opts.windowMinutes * 60_000),
            EndTime: new Date(now),
            FilterExpression: filter,
            Sampling: false,
            NextToken: token,
          }),
        ),
      );
      summaryPages++;
      for (const s of page.TraceSummaries ?? []) {
        if (!s.Id || s.IsPartial === true || this.seen.has(s.Id)) continue;
        found.set(s.Id, s.StartTime?.getTime() ?? 0);
      }
      token = page.NextToken;
    } while (token && summaryPages < this.opts.maxSummaryPages);
    const ids = [...found.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, this.opts.maxTraces)
      .map(([id]) => id);
    let batchCalls = 0;
    let traces = 0;
    for (let i = 0; i < ids.length; i += BATCH_GET_TRACES_IDS) {
      const batch = ids.slice(i, i + BATCH_GET_TRACES_IDS);
      const documents = new Map<string, string[]>();
      let next: string | undefined;
      let pages = 0;
      do {
        const out = await callAws("xray:BatchGetTraces", `traces ${batch.join(", ")}`, () =>
          client.send(new sdk.BatchGetTracesCommand({ TraceIds: batch, NextToken: next })),
        );
        batchCalls++;
        for (const t of out.Traces ?? []) {
          if (!t.Id) continue;
          const docs = documents.get(t.Id) ?? [];
          for (const s of t.Segments ?? []) if (s.Document) docs.push(s.Document);
          documents.set(t.Id, docs);
        }
        next = out.NextToken;
      } while (next && ++pages < MAX_TRACE_PAGES);
      if (this.seen.size + batch.length > MAX_SEEN) this.seen.clear();
      for (const [id, docs] of documents) {
        this.seen.add(id);
        const spans = spansOfTrace(id, docs, query);
        if (spans.length === 0) continue;
        store.add(spans);
        traces++;
      }
    }
    return { summaryPages, batchCalls, traces };
  }
}

/** A failed X-Ray read as the traces panel shows it: a denied call names the permissions to grant. */
export function xrayErrorMessage(err: unknown): string {
  if (err instanceof AwsCallError && /AccessDenied|NotAuthorized|UnauthorizedOperation/.test(err.awsError))
    return (
      `${err.api} was denied: the traces panel reads X-Ray with your AWS credentials, which need ` +
      `xray:GetTraceSummaries and xray:BatchGetTraces (${err.awsError})`
    );
  return (err as Error).message;
}
