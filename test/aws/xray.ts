/**
 * The harness's part of `[aws] tracing = "xray"`: it plays the group tasks' collector sidecar (the AWS
 * Distro for OpenTelemetry collector: OTLP/HTTP in, the `awsxray` exporter out), which the Fargate
 * simulator cannot run. The weavelets' OTLP/HTTP JSON requests arrive on a loopback port; each span becomes
 * the segment document the exporter writes (opentelemetry-collector-contrib,
 * exporter/awsxrayexporter/internal/translator/segment.go, with its default configuration: no indexed
 * attributes) and goes to the emulator's X-Ray with PutTraceSegments, as the sidecar sends it:
 *   - a server span, or a span without a parent, is a segment; any other span a subsegment
 *     (`type: "subsegment"`, `parent_id`), sent on its own;
 *   - the name: a server span's is the resource's `service.name`, another's its `rpc.service` (else the
 *     span's name);
 *   - a client span has `namespace: "remote"`;
 *   - the trace id `1-<first 8 hex digits>-<the other 24>`; times in seconds (floats);
 *   - `fault` for an error status, with the status message as the cause's exception;
 *   - span attributes in `metadata.default`, and on segments only the resource's attributes there too,
 *     as `otel.resource.<name>`.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import { PutTraceSegmentsCommand, type XRayClient } from "@aws-sdk/client-xray";

/** An OTLP attribute value (JSON encoding). */
interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: AnyValue[] };
}
interface KeyValue {
  key: string;
  value: AnyValue;
}
/** One span of an OTLP/HTTP JSON export request (ids in hex, times in ns as strings). */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: KeyValue[];
  status?: { code?: number; message?: string };
}
/** An OTLP/HTTP JSON export request (ExportTraceServiceRequest). */
export interface OtlpTraceRequest {
  resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[];
}

const SERVER = 2;
const CLIENT = 3;

function raw(v: AnyValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(raw);
  return undefined;
}

const seconds = (nanos: string) => Number(BigInt(nanos) / 1000n) / 1e6;

/** The segment document the awsxray exporter writes for one span of a resource (see the file comment). */
export function segmentDocument(span: OtlpSpan, resource: readonly KeyValue[]): Record<string, unknown> {
  const attrs = new Map((span.attributes ?? []).map((a) => [a.key, raw(a.value)]));
  const res = new Map(resource.map((a) => [a.key, raw(a.value)]));
  const parent = span.parentSpanId ?? "";
  const subsegment = span.kind !== SERVER && parent !== "";
  const name = (span.kind === SERVER ? res.get("service.name") : undefined) ?? attrs.get("rpc.service") ?? span.name;
  const failed = span.status?.code === 2;
  const metadata: Record<string, unknown> = Object.fromEntries(attrs);
  if (!subsegment) for (const [k, v] of res) metadata[`otel.resource.${k}`] = v;
  return {
    id: span.spanId,
    name,
    start_time: seconds(span.startTimeUnixNano),
    trace_id: `1-${span.traceId.slice(0, 8)}-${span.traceId.slice(8)}`,
    end_time: seconds(span.endTimeUnixNano),
    ...(parent ? { parent_id: parent } : {}),
    fault: failed,
    error: false,
    throttle: false,
    ...(failed ? { cause: { exceptions: [{ id: span.spanId, message: span.status?.message ?? "" }] } } : {}),
    ...(span.kind === CLIENT ? { namespace: "remote" } : {}),
    aws: {
      xray: { sdk: `${String(res.get("telemetry.sdk.name") ?? "opentelemetry")} for ${String(res.get("telemetry.sdk.language") ?? "")}` },
    },
    metadata: { default: metadata },
    ...(subsegment ? { type: "subsegment" } : {}),
  };
}

/** The segment documents of an OTLP/HTTP JSON export request, one per span. */
export function segmentDocuments(request: OtlpTraceRequest): string[] {
  const docs: string[] = [];
  for (const rs of request.resourceSpans ?? [])
    for (const ss of rs.scopeSpans ?? [])
      for (const span of ss.spans ?? []) docs.push(JSON.stringify(segmentDocument(span, rs.resource?.attributes ?? [])));
  return docs;
}

/** PutTraceSegments, at most 50 documents a call (X-Ray's limit per request is by size; the sidecar batches like this). */
export async function putSegments(xray: XRayClient, documents: readonly string[]): Promise<string[]> {
  const unprocessed: string[] = [];
  for (let i = 0; i < documents.length; i += 50) {
    const out = await xray.send(new PutTraceSegmentsCommand({ TraceSegmentDocuments: documents.slice(i, i + 50) }));
    for (const u of out.UnprocessedTraceSegments ?? []) unprocessed.push(`${u.Id ?? "?"}: ${u.ErrorCode ?? ""} ${u.Message ?? ""}`);
  }
  return unprocessed;
}

export interface XRayCollector {
  /** `http://127.0.0.1:<port>`: the weavelets' OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string;
  /** Spans received so far. */
  readonly spans: number;
  /** Segments X-Ray did not take, and the last failure of a request. */
  readonly unprocessed: readonly string[];
  readonly lastError: string | undefined;
  stop(): Promise<void>;
}

/** Starts the played collector sidecar on a free loopback port: OTLP/HTTP JSON on /v1/traces in, PutTraceSegments out. */
export async function startXRayCollector(xray: XRayClient): Promise<XRayCollector> {
  let spans = 0;
  let lastError: string | undefined;
  const unprocessed: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      void (async () => {
        try {
          if (req.method !== "POST" || req.url !== "/v1/traces") throw new Error(`${req.method} ${req.url}: only POST /v1/traces`);
          if (!/json/.test(req.headers["content-type"] ?? ""))
            throw new Error(`content-type ${req.headers["content-type"]}: only OTLP/HTTP JSON`);
          let body = Buffer.concat(chunks);
          if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
          const docs = segmentDocuments(JSON.parse(body.toString("utf8")) as OtlpTraceRequest);
          spans += docs.length;
          unprocessed.push(...(await putSegments(xray, docs)));
          res.writeHead(200, { "content-type": "application/json" }).end("{}");
        } catch (err) {
          lastError = (err as Error).message;
          res.writeHead(400, { "content-type": "text/plain" }).end(lastError);
        }
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get spans() {
      return spans;
    },
    unprocessed,
    get lastError() {
      return lastError;
    },
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
