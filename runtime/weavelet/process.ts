import { Socket } from "node:net";
// The control protocol both ends speak (not the envelope itself): the weavelet serves WeaveletControl and
// calls its EnvelopeHandler through a stub.
import { ControlChannel, controlStub, serveRequests } from "../control/channel.js";
import { ENVELOPE_HANDLER, WEAVELET_CONTROL, type WeaveletControl } from "../control/control.js";
import { CONTROL_PROTOCOL_VERSION, decodeWeaveletArgs, type RpcCertificate } from "../protos/runtime.js";
import type { RpcTls } from "../rpc/tls.js";
import { registeredComponents, methodTable } from "../core/component.js";
import { Weavelet, checkValuesSetting, type WeaveletHost } from "./weavelet.js";

/** Environment variable through which an envelope passes WeaveletArgs (base64 protobuf). */
export const WEAVELET_ARGS_ENV = "TSWEAVER_WEAVELET_ARGS";
/** File descriptor of the control pipe an envelope gives its weavelet. */
export const CONTROL_FD = 3;

/**
 * Runs this process as a weavelet under an envelope: connects the control pipe, starts the RPC server,
 * answers the envelope and runs main() if asked. The process exits when the envelope goes away.
 */
export async function runWeaveletProcess(): Promise<void> {
  const args = decodeWeaveletArgs(process.env[WEAVELET_ARGS_ENV] ?? "");
  const pipe = new Socket({ fd: CONTROL_FD, readable: true, writable: true });
  const config: Record<string, Record<string, unknown>> = {};
  for (const [name, json] of Object.entries(args.config)) config[name] = JSON.parse(json) as Record<string, unknown>;

  let weavelet: Weavelet | undefined;
  let initialized: () => void;
  const init = new Promise<void>((r) => (initialized = r));

  const control: WeaveletControl = {
    async initWeavelet(req) {
      if (req.protocolVersion !== CONTROL_PROTOCOL_VERSION) {
        // Exit after replying: a weavelet of another protocol version must not run.
        setTimeout(() => process.exit(1), 50);
        throw new Error(
          `protocol version mismatch: envelope speaks version ${req.protocolVersion}, weavelet speaks version ${CONTROL_PROTOCOL_VERSION}; run the app with the tsweaver version it was built with`,
        );
      }
      const callers: Record<string, string[]> = {};
      for (const [component, list] of Object.entries(req.callers)) callers[component] = list.groups;
      const tls = req.certificate ? rpcTls(req.certificate) : undefined;
      if (req.requireTls && tls === undefined)
        throw new Error(
          "the deployer requires TLS for component calls but handed over no certificate: refusing to serve component calls in plaintext",
        );
      const dialAddress = await weavelet!.start({ key: req.rpcKey, callers, tls });
      initialized();
      return {
        protocolVersion: CONTROL_PROTOCOL_VERSION,
        dialAddress,
        components: registeredComponents(),
        pid: process.pid,
        methodTableHash: methodTable().hash,
      };
    },
    async updateComponents({ components }) {
      weavelet!.updateComponents(components);
    },
    async updateRoutingInfo({ routingInfo }) {
      if (!routingInfo) throw new Error("updateRoutingInfo without routingInfo");
      weavelet!.updateRoutingInfo(routingInfo);
    },
    async getHealth() {
      return { status: weavelet!.health() };
    },
    async getLoad() {
      return { loads: weavelet!.load() };
    },
    async getMetrics() {
      return { updates: weavelet!.metrics() };
    },
    async getProfile({ kind, durationMs }) {
      return { profile: await weavelet!.profile(kind, durationMs) };
    },
    async updateCertificate({ certificate }) {
      if (!certificate) throw new Error("updateCertificate without a certificate");
      weavelet!.updateTls(rpcTls(certificate));
    },
    async stop({ graceMs }) {
      setImmediate(() => void stop(0, graceMs || undefined));
    },
  };

  const rpcTls = (c: RpcCertificate): RpcTls => ({
    cert: c.certificatePem,
    key: c.privateKeyPem,
    ca: c.caPem,
    identity: { deploymentId: args.deploymentId, group: args.group },
  });

  const channel = new ControlChannel(pipe, serveRequests(WEAVELET_CONTROL, control, "weavelet"), "envelope");
  const envelope = controlStub(channel, ENVELOPE_HANDLER);
  const host: WeaveletHost = {
    async activateComponent(component, routed) {
      await envelope.activateComponent({ component, routed });
    },
    async getListenerAddress(name) {
      return (await envelope.getListenerAddress({ name })).address;
    },
    async exportListener(listener, address) {
      const reply = await envelope.exportListener({ listener, address });
      if (reply.error) throw new Error(`listener ${listener}: ${reply.error}`);
      return reply.proxyAddress;
    },
    // Not awaited: a lost batch only matters if the channel is gone, and then the process is stopping.
    logBatch(entries) {
      envelope.handleLogEntries({ entries }).catch(() => {});
    },
    traceSpans(spans) {
      envelope.handleTraceSpans({ spans }).catch(() => {});
    },
  };

  weavelet = new Weavelet({
    app: args.app,
    deploymentId: args.deploymentId,
    id: args.id,
    group: args.group,
    hostable: args.components,
    runMain: args.runMain,
    internalAddress: args.internalAddress || "127.0.0.1:0",
    config,
    callTimeoutMs: args.callTimeoutMs,
    checkValues: checkValuesSetting(false),
    host,
  });

  let stopping = false;
  const stop = async (code: number, graceMs?: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    try {
      await weavelet!.shutdown(graceMs);
    } finally {
      // Give the last log batch a moment to reach the envelope.
      setTimeout(() => process.exit(code), 20);
    }
  };
  // The envelope is gone (deployer stopped or crashed): leave no orphan behind.
  channel.onClose(() => void stop(0));
  process.on("SIGTERM", () => void stop(0));
  // Ctrl-C reaches the deployer, which stops its weavelets in order; the weavelet ignores it.
  process.on("SIGINT", () => {});

  await init;
  try {
    await weavelet.runMain();
  } catch (err) {
    weavelet.logger.error("main failed", err);
    weavelet.flushLogs();
    await stop(1);
  }
}
