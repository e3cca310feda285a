import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import type { Duplex } from "node:stream";
import { ControlChannel, type ControlReply } from "../protos/channel.js";
import {
  PROTOCOL_VERSION,
  encodeWeaveletArgs,
  type ActivateComponentRequest,
  type BodyKind,
  type ComponentLoad,
  type ControlBodies,
  type ExportListenerReply,
  type ExportListenerRequest,
  type GetListenerAddressReply,
  type GetListenerAddressRequest,
  type HealthStatus,
  type InitWeaveletReply,
  type LogEntry,
  type LogEntryBatch,
  type MetricUpdate,
  type RoutingInfo,
  type TraceSpans,
  type WeaveletArgs,
} from "../protos/runtime.js";

/**
 * What a deployer implements to serve its weavelets' requests. One handler may serve many envelopes.
 * Errors thrown reach the weavelet as failed requests (e.g. `ctx.get()` rejects with the message).
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

/** How to start a weavelet. */
export interface EnvelopeOptions {
  /** The app's entry file (the same for every weavelet). */
  binary: string;
  /** Arguments after the entry file. */
  args?: readonly string[];
  /** Extra environment for the process (on top of this process's environment). */
  env?: Readonly<Record<string, string>>;
  /** Node.js flags before the entry file (e.g. `--cpu-prof`). */
  nodeArgs?: readonly string[];
  /** What the weavelet is told at start; the protocol version is filled in by the envelope. */
  weaveletArgs: Omit<WeaveletArgs, "protocolVersion">;
  /** Receives the weavelet's requests. */
  handler: EnvelopeHandler;
  /** How long the handshake may take (ms, default 30 s). */
  startTimeoutMs?: number;
}

/** Why a weavelet process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True if `stop()` asked for it. */
  requested: boolean;
}

/**
 * The deployer's handle on one weavelet: starts the app's entry file as a child process, performs the
 * versioned handshake over a control pipe, forwards the weavelet's requests to an EnvelopeHandler, and
 * turns the child's stdout/stderr lines into log entries.
 */
export class Envelope {
  /** The weavelet's process id. */
  readonly pid: number;
  /** The weavelet's RPC address ("host:port" or "unix:/path"). */
  readonly dialAddress: string;
  /** Every component registered in the app binary. */
  readonly components: readonly string[];
  /** Resolves when the process has exited. */
  readonly exited: Promise<ExitInfo>;

  private stopRequested = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly channel: ControlChannel,
    reply: InitWeaveletReply,
    exited: Promise<ExitInfo>,
    private readonly markStopRequested: () => void,
  ) {
    this.pid = reply.pid;
    this.dialAddress = reply.dialAddress;
    this.components = reply.components;
    this.exited = exited;
  }

  /** Starts a weavelet and completes the handshake. Rejects with the reason if the process cannot start. */
  static async start(opts: EnvelopeOptions): Promise<Envelope> {
    const args: WeaveletArgs = { ...opts.weaveletArgs, protocolVersion: PROTOCOL_VERSION };
    const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), opts.binary, ...(opts.args ?? [])], {
      stdio: ["ignore", "pipe", "pipe", "pipe"],
      env: { ...process.env, ...opts.env, TSWEAVER_WEAVELET_ARGS: encodeWeaveletArgs(args) },
      // Own process group: Ctrl-C reaches only the deployer, which stops weavelets in order.
      detached: true,
    });
    let requested = false;
    const recentStderr: string[] = [];
    const exited = new Promise<ExitInfo>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal, requested }));
    });
    const spawnError = new Promise<never>((_, reject) => child.once("error", (err) => reject(new Error(`cannot start ${opts.binary}: ${err.message}`))));
    spawnError.catch(() => {});

    const toEntry = (component: string, level: string, msg: string): LogEntry => ({
      app: args.app,
      version: args.deploymentId,
      component,
      node: args.id,
      timeMicros: String(Date.now() * 1000),
      level,
      file: "",
      line: 0,
      msg,
      attrs: {},
    });
    const pump = (stream: NodeJS.ReadableStream, name: "stdout" | "stderr") => {
      const rl = createInterface({ input: stream, crlfDelay: Infinity });
      rl.on("line", (line) => {
        if (name === "stderr") {
          recentStderr.push(line);
          if (recentStderr.length > 20) recentStderr.shift();
        }
        void Promise.resolve(opts.handler.handleLogEntries({ entries: [toEntry(name, name === "stderr" ? "error" : "info", line)] })).catch(() => {});
      });
    };
    pump(child.stdout!, "stdout");
    pump(child.stderr!, "stderr");

    const channel = new ControlChannel(child.stdio[3] as Duplex, (kind, body) => serveWeavelet(opts.handler, kind, body), `weavelet ${args.id} (pid ${child.pid})`);
    const earlyExit = exited.then((info): never => {
      const tail = recentStderr.length ? `:\n${recentStderr.join("\n")}` : "";
      throw new Error(`weavelet ${opts.binary} exited (code ${info.code}, signal ${info.signal}) before its handshake${tail}`);
    });
    earlyExit.catch(() => {});
    const timeoutMs = opts.startTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`weavelet ${opts.binary} did not complete its handshake within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      // A child that dies early closes the pipe before its exit is seen; prefer the exit's explanation.
      const handshake = channel.request("initWeavelet", { protocolVersion: PROTOCOL_VERSION }).catch(async (err: Error) => {
        if (!channel.closed) throw err; // the weavelet answered with an error: that is the reason
        const gone = await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000, undefined))]);
        if (gone) await earlyExit;
        throw err;
      });
      const msg = await Promise.race([handshake, earlyExit, spawnError, timeout]);
      const reply = msg.body as InitWeaveletReply;
      if (reply.protocolVersion !== PROTOCOL_VERSION) {
        throw new Error(`protocol version mismatch: envelope speaks version ${PROTOCOL_VERSION}, weavelet speaks version ${reply.protocolVersion}; rebuild the app with this tsweaver version`);
      }
      return new Envelope(child, channel, reply, exited, () => (requested = true));
    } catch (err) {
      channel.close();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      // An error reply from the weavelet names the problem; keep it but say where it came from.
      throw err instanceof Error ? err : new Error(String(err));
    } finally {
      clearTimeout(timer);
    }
  }

  /** Tells the weavelet where a component's replicas are. */
  async updateRoutingInfo(info: RoutingInfo): Promise<void> {
    await this.channel.request("updateRoutingInfo", { routingInfo: info });
  }

  /** Tells the weavelet which components to host (it starts them). */
  async updateComponents(components: readonly string[]): Promise<void> {
    await this.channel.request("updateComponents", { components: [...components] });
  }

  /** The weavelet's health; UNHEALTHY if it does not answer within `timeoutMs` (a stuck event loop). */
  async getHealth(timeoutMs = 5_000): Promise<HealthStatus> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<HealthStatus>((resolve) => (timer = setTimeout(resolve, timeoutMs, "UNHEALTHY")));
    try {
      return await Promise.race([this.channel.request("getHealth", {}).then((reply) => (reply.body as ControlBodies["getHealthReply"]).status), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Metric changes since the previous call. */
  async getMetrics(): Promise<MetricUpdate[]> {
    const reply = await this.channel.request("getMetrics", {});
    return (reply.body as ControlBodies["getMetricsReply"]).updates;
  }

  /** Per-component load since the previous call. */
  async getLoad(): Promise<ComponentLoad[]> {
    const reply = await this.channel.request("getLoad", {});
    return (reply.body as ControlBodies["loadReport"]).loads;
  }

  /** A CPU profile over `durationMs` (a .cpuprofile JSON document) or a heap snapshot. */
  async getProfile(kind: "CPU" | "HEAP", durationMs = 0): Promise<Uint8Array> {
    const reply = await this.channel.request("getProfile", { kind, durationMs });
    return (reply.body as ControlBodies["getProfileReply"]).profile;
  }

  /** True until the process exits. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Stops the weavelet: it runs its components' shutdown() and exits; after `graceMs` it is killed.
   */
  async stop(graceMs = 5_000): Promise<ExitInfo> {
    if (!this.stopRequested) {
      this.stopRequested = true;
      this.markStopRequested();
      if (this.running) {
        this.channel.request("stop", { graceMs }).catch(() => {});
        const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
        void this.exited.finally(() => clearTimeout(timer));
      }
    }
    const info = await this.exited;
    this.channel.close();
    return info;
  }

  /** Kills the process at once (SIGKILL), as a crash would. */
  kill(): void {
    this.child.kill("SIGKILL");
  }
}

async function serveWeavelet(handler: EnvelopeHandler, kind: BodyKind, body: ControlBodies[BodyKind]): Promise<ControlReply> {
  switch (kind) {
    case "activateComponent":
      await handler.activateComponent(body as ActivateComponentRequest);
      return ["activateComponentReply", {}];
    case "getListenerAddress":
      return ["getListenerAddressReply", await handler.getListenerAddress(body as GetListenerAddressRequest)];
    case "exportListener":
      return ["exportListenerReply", await handler.exportListener(body as ExportListenerRequest)];
    case "logBatch":
      await handler.handleLogEntries(body as LogEntryBatch);
      return ["empty", {}];
    case "traceSpans":
      await handler.handleTraceSpans(body as TraceSpans);
      return ["empty", {}];
    default:
      throw new Error(`envelope cannot handle control request ${kind}`);
  }
}
