import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

/**
 * The control protocol version. An envelope and a weavelet refuse each other unless they agree.
 * Bump on any incompatible change to protos/runtime.proto or to its framing.
 */
export const PROTOCOL_VERSION = 1;

// protos/ sits at the package root; this file runs from runtime/protos (sources) or dist/runtime/protos.
function protoFile(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, "protos", "runtime.proto");
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error("tsweaver: protos/runtime.proto not found next to the package; the installation is incomplete");
}

const root = protobuf.loadSync(protoFile());
const ControlMessageType = root.lookupType("tsweaver.runtime.ControlMessage");
const WeaveletArgsType = root.lookupType("tsweaver.runtime.WeaveletArgs");

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, defaults: true, arrays: true, objects: true, oneofs: true };

// TypeScript views of the messages (field names as protobufjs camelCases them). 64-bit integers travel
// as decimal strings.
export interface WeaveletArgs {
  app: string;
  deploymentId: string;
  id: string;
  runMain: boolean;
  internalAddress: string;
  group: string;
  components: string[];
  protocolVersion: number;
  config: Record<string, string>;
}
export interface InitWeaveletRequest { protocolVersion: number }
export interface InitWeaveletReply { protocolVersion: number; dialAddress: string; components: string[]; pid: number; methodTableHash: string }
export interface UpdateComponents { components: string[] }
export interface Slice { start: string; replicas: string[] }
export interface Assignment { slices: Slice[]; version: string }
export interface RoutingInfo { component: string; local: boolean; replicas: string[]; assignment?: Assignment | null }
export interface UpdateRoutingInfo { routingInfo: RoutingInfo }
export type HealthStatus = "HEALTH_UNKNOWN" | "HEALTHY" | "UNHEALTHY" | "TERMINATED";
export interface GetHealthReply { status: HealthStatus }
export interface SliceLoad { start: string; callsPerSecond: number }
export interface ComponentLoad { component: string; callsPerSecond: number; slices: SliceLoad[]; assignmentVersion: string }
export interface LoadReport { loads: ComponentLoad[] }
export interface MetricUpdate {
  name: string;
  kind: "COUNTER" | "GAUGE" | "HISTOGRAM";
  labels: Record<string, string>;
  value: number;
  bounds: number[];
  counts: string[];
  help: string;
}
export interface GetMetricsReply { updates: MetricUpdate[] }
export interface GetProfileRequest { kind: "CPU" | "HEAP"; durationMs: number }
export interface GetProfileReply { profile: Uint8Array }
export interface StopRequest { graceMs: number }
export interface ActivateComponentRequest { component: string; routed: boolean }
export interface GetListenerAddressRequest { name: string }
export interface GetListenerAddressReply { address: string }
export interface ExportListenerRequest { listener: string; address: string }
export interface ExportListenerReply { proxyAddress: string; error: string }
export interface LogEntry {
  app: string;
  version: string;
  component: string;
  node: string;
  timeMicros: string;
  level: string;
  file: string;
  line: number;
  msg: string;
  attrs: Record<string, string>;
}
export interface LogEntryBatch { entries: LogEntry[] }
export interface Span {
  name: string;
  traceId: Uint8Array;
  spanId: Uint8Array;
  parentSpanId: Uint8Array;
  kind: number;
  startMicros: string;
  endMicros: string;
  attributes: Record<string, string>;
  statusCode: number;
  statusMessage: string;
}
export interface TraceSpans { spans: Span[] }

/** The bodies a ControlMessage can carry, by oneof field name. */
export interface ControlBodies {
  initWeavelet: InitWeaveletRequest;
  initWeaveletReply: InitWeaveletReply;
  updateComponents: UpdateComponents;
  updateRoutingInfo: UpdateRoutingInfo;
  getHealth: Record<string, never>;
  getHealthReply: GetHealthReply;
  getLoad: Record<string, never>;
  loadReport: LoadReport;
  getMetrics: Record<string, never>;
  getMetricsReply: GetMetricsReply;
  getProfile: GetProfileRequest;
  getProfileReply: GetProfileReply;
  stop: StopRequest;
  activateComponent: ActivateComponentRequest;
  activateComponentReply: Record<string, never>;
  getListenerAddress: GetListenerAddressRequest;
  getListenerAddressReply: GetListenerAddressReply;
  exportListener: ExportListenerRequest;
  exportListenerReply: ExportListenerReply;
  logBatch: LogEntryBatch;
  traceSpans: TraceSpans;
  empty: Record<string, never>;
}
export type BodyKind = keyof ControlBodies;

/** One decoded control frame. */
export interface ControlMessage {
  id: number;
  reply: boolean;
  error: string;
  kind: BodyKind | undefined;
  body: ControlBodies[BodyKind] | undefined;
}

export function encodeControl<K extends BodyKind>(id: number, reply: boolean, error: string, kind: K | undefined, body: ControlBodies[K] | undefined): Uint8Array {
  const obj: Record<string, unknown> = { id, reply, error };
  if (kind !== undefined) obj[kind] = body ?? {};
  // fromObject, not verify(): verify rejects the decimal strings we use for 64-bit integers.
  return ControlMessageType.encode(ControlMessageType.fromObject(obj)).finish();
}

/** Decodes a control frame; throws on malformed input (the caller closes the channel). */
export function decodeControl(bytes: Uint8Array): ControlMessage {
  const msg = ControlMessageType.decode(bytes);
  const obj = ControlMessageType.toObject(msg, TO_OBJECT) as Record<string, unknown>;
  const kind = obj["body"] as BodyKind | undefined;
  return {
    id: Number(obj["id"]),
    reply: Boolean(obj["reply"]),
    error: String(obj["error"] ?? ""),
    kind,
    body: kind ? (obj[kind] as ControlBodies[BodyKind]) : undefined,
  };
}

export function encodeWeaveletArgs(args: WeaveletArgs): string {
  return Buffer.from(WeaveletArgsType.encode(WeaveletArgsType.fromObject(args)).finish()).toString("base64");
}

export function decodeWeaveletArgs(b64: string): WeaveletArgs {
  const msg = WeaveletArgsType.decode(Buffer.from(b64, "base64"));
  return WeaveletArgsType.toObject(msg, TO_OBJECT) as WeaveletArgs;
}
