/**
 * The deployer API: what you need to write your own deployer. Start weavelets with `Envelope.start`,
 * answer their requests with an `EnvelopeHandler`, and tell them where components run with
 * `updateRoutingInfo`. See examples/deployers/simple for a complete deployer in about 100 lines.
 */
export { Envelope } from "./envelope/envelope.js";
export type { EnvelopeHandler, EnvelopeOptions, ExitInfo } from "./envelope/envelope.js";
export { PROTOCOL_VERSION } from "./protos/runtime.js";
export type {
  ActivateComponentRequest,
  Assignment,
  ComponentLoad,
  ExportListenerReply,
  ExportListenerRequest,
  GetListenerAddressReply,
  GetListenerAddressRequest,
  HealthStatus,
  LogEntry,
  LogEntryBatch,
  MetricUpdate,
  RoutingInfo,
  Slice,
  Span,
  TraceSpans,
  WeaveletArgs,
} from "./protos/runtime.js";
export { formatLogEntry } from "./telemetry/logfmt.js";
export { loadConfig, groupsOf, MAIN_COMPONENT } from "./core/config.js";
export type { AppConfig, Group } from "./core/config.js";
