/**
 * The deployer API: what you need to write your own deployer. Construct an `Envelope` per weavelet, then
 * `serve` it an `EnvelopeHandler` that answers the weavelet's requests, and tell weavelets where
 * components run with `updateRoutingInfo`. See examples/deployers/simple for a complete deployer in
 * about 100 lines.
 */
export { Envelope } from "./envelope/envelope.js";
export type { EnvelopeOptions, ExitInfo, RpcSecurity } from "./envelope/envelope.js";
export type { EnvelopeHandler, WeaveletControl } from "./control/control.js";
export { CONTROL_PROTOCOL_VERSION } from "./protos/runtime.js";
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
  RpcCertificate,
  Slice,
  Span,
  TraceSpans,
  WeaveletArgs,
} from "./protos/runtime.js";
export { formatLogEntry } from "./telemetry/logfmt.js";
export { loadConfig, groupsOf, componentConfigs, MAIN_COMPONENT } from "./core/config.js";
export type { AppConfig, Group } from "./core/config.js";
