// The two interfaces of the control protocol (protos/runtime.proto), like Service Weaver's
// runtime/control.go: what the envelope asks of the weavelet (WeaveletControl) and what the weavelet asks
// of its deployer (EnvelopeHandler). Each side serves one with `serveRequests` and calls the other through
// a `controlStub` built from the same table, so neither side dispatches or casts by hand.
import type {
  ActivateComponentRequest,
  ExportListenerReply,
  ExportListenerRequest,
  GetHealthReply,
  GetHealthRequest,
  GetListenerAddressReply,
  GetListenerAddressRequest,
  GetLoadRequest,
  GetMetricsReply,
  GetMetricsRequest,
  GetProfileReply,
  GetProfileRequest,
  InitWeaveletReply,
  InitWeaveletRequest,
  LoadReport,
  LogEntryBatch,
  StopRequest,
  TraceSpans,
  UpdateCertificate,
  UpdateComponents,
  UpdateRoutingInfo,
} from "../protos/runtime.js";
import type { Routes } from "./channel.js";

/**
 * What a deployer implements to serve its weavelets' requests. Errors thrown reach the weavelet as failed
 * requests (e.g. `ctx.get()` rejects with the message). Give each envelope its own handler (or close over
 * it) to know which weavelet is asking: `envelope.serve(handler)` delivers every request from the first.
 */
export interface EnvelopeHandler {
  /** The weavelet needs `component`: start it somewhere (if not yet) and send routing info for it. */
  activateComponent(request: ActivateComponentRequest): Promise<void>;
  /** Where the weavelet should listen for the named listener. */
  getListenerAddress(request: GetListenerAddressRequest): Promise<GetListenerAddressReply>;
  /** The weavelet listens at `request.address`; expose it (proxy, load balancer) and say where. */
  exportListener(request: ExportListenerRequest): Promise<ExportListenerReply>;
  /** A batch of log entries (the weavelet's structured logs and its stdout/stderr lines). */
  handleLogEntries(batch: LogEntryBatch): Promise<void> | void;
  /** Finished trace spans. */
  handleTraceSpans(spans: TraceSpans): Promise<void> | void;
}

/** The requests an EnvelopeHandler serves: request kind → [method, reply kind]. */
export const ENVELOPE_HANDLER = {
  activateComponent: ["activateComponent", "activateComponentReply"],
  getListenerAddress: ["getListenerAddress", "getListenerAddressReply"],
  exportListener: ["exportListener", "exportListenerReply"],
  logBatch: ["handleLogEntries", "empty"],
  traceSpans: ["handleTraceSpans", "empty"],
} as const satisfies Routes;

/**
 * What a weavelet serves to its envelope (the mirror of EnvelopeHandler). The envelope calls it through
 * its methods (`Envelope.getHealth()`, ...); the weavelet process implements it.
 */
export interface WeaveletControl {
  /** The handshake: checks the protocol version, starts the RPC server, says where it listens. */
  initWeavelet(request: InitWeaveletRequest): Promise<InitWeaveletReply>;
  /** Sets the components the weavelet hosts (it starts those it does not run yet). */
  updateComponents(request: UpdateComponents): Promise<void>;
  /** Where the replicas of a component the weavelet calls (or hosts, for routed ones) are. */
  updateRoutingInfo(request: UpdateRoutingInfo): Promise<void>;
  /** The weavelet's health. */
  getHealth(request: GetHealthRequest): Promise<GetHealthReply>;
  /** Per-component load since the previous call. */
  getLoad(request: GetLoadRequest): Promise<LoadReport>;
  /** Metric changes since the previous call. */
  getMetrics(request: GetMetricsRequest): Promise<GetMetricsReply>;
  /** A CPU profile or a heap snapshot. */
  getProfile(request: GetProfileRequest): Promise<GetProfileReply>;
  /** Stops gracefully: runs every component's shutdown(), then the process exits. */
  stop(request: StopRequest): Promise<void>;
  /** New TLS credentials for component calls (a renewal): new connections, in and out, use them. */
  updateCertificate(request: UpdateCertificate): Promise<void>;
}

/** The requests a WeaveletControl serves: request kind → [method, reply kind]. */
export const WEAVELET_CONTROL = {
  initWeavelet: ["initWeavelet", "initWeaveletReply"],
  updateComponents: ["updateComponents", "empty"],
  updateRoutingInfo: ["updateRoutingInfo", "empty"],
  getHealth: ["getHealth", "getHealthReply"],
  getLoad: ["getLoad", "loadReport"],
  getMetrics: ["getMetrics", "getMetricsReply"],
  getProfile: ["getProfile", "getProfileReply"],
  stop: ["stop", "empty"],
  updateCertificate: ["updateCertificate", "empty"],
} as const satisfies Routes;
