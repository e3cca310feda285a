import { Socket } from "node:net";
import { ControlChannel, type ControlReply } from "../protos/channel.js";
import {
  PROTOCOL_VERSION,
  type BodyKind,
  type ControlBodies,
  type GetListenerAddressReply,
  type ExportListenerReply,
  decodeWeaveletArgs,
} from "../protos/runtime.js";
import { registeredComponents, methodTable } from "../core/component.js";
import { Weavelet, type WeaveletHost } from "./weavelet.js";

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

  const handle = async (kind: BodyKind, body: ControlBodies[BodyKind]): Promise<ControlReply> => {
    switch (kind) {
      case "initWeavelet": {
        const req = body as ControlBodies["initWeavelet"];
        if (req.protocolVersion !== PROTOCOL_VERSION) {
          // Exit after replying: a weavelet of another protocol version must not run.
          setTimeout(() => process.exit(1), 50);
          throw new Error(`protocol version mismatch: envelope speaks version ${req.protocolVersion}, weavelet speaks version ${PROTOCOL_VERSION}; run the app with the tsweaver version it was built with`);
        }
        const dialAddress = await weavelet!.start();
        initialized();
        return ["initWeaveletReply", { protocolVersion: PROTOCOL_VERSION, dialAddress, components: registeredComponents(), pid: process.pid, methodTableHash: methodTable().hash }];
      }
      case "updateComponents":
        weavelet!.updateComponents((body as ControlBodies["updateComponents"]).components);
        return ["empty", {}];
      case "updateRoutingInfo":
        weavelet!.updateRoutingInfo((body as ControlBodies["updateRoutingInfo"]).routingInfo);
        return ["empty", {}];
      case "getHealth":
        return ["getHealthReply", { status: "HEALTHY" }];
      case "getLoad":
        return ["loadReport", { loads: weavelet!.load() }];
      case "getMetrics":
        return ["getMetricsReply", { updates: weavelet!.metrics() }];
      case "getProfile": {
        const req = body as ControlBodies["getProfile"];
        return ["getProfileReply", { profile: await weavelet!.profile(req.kind, req.durationMs) }];
      }
      case "stop":
        setImmediate(() => void stop(0));
        return ["empty", {}];
      default:
        throw new Error(`weavelet cannot handle control request ${kind}`);
    }
  };

  const channel = new ControlChannel(pipe, handle, "envelope");
  const host: WeaveletHost = {
    async activateComponent(component, routed) {
      await channel.request("activateComponent", { component, routed });
    },
    async getListenerAddress(name) {
      const reply = await channel.request("getListenerAddress", { name });
      return (reply.body as GetListenerAddressReply).address;
    },
    async exportListener(listener, address) {
      const reply = await channel.request("exportListener", { listener, address });
      const body = reply.body as ExportListenerReply;
      if (body.error) throw new Error(`listener ${listener}: ${body.error}`);
      return body.proxyAddress;
    },
    logBatch(entries) {
      channel.notify("logBatch", { entries });
    },
    traceSpans(spans) {
      channel.notify("traceSpans", { spans });
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
    host,
  });

  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    try {
      await weavelet!.shutdown();
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
