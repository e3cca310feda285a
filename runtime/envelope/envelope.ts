import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import type { Duplex } from "node:stream";
import {
  CONTROL_PROTOCOL_VERSION,
  encodeWeaveletArgs,
  type ComponentLoad,
  type HealthStatus,
  type InitWeaveletReply,
  type InitWeaveletRequest,
  type LogEntry,
  type MetricUpdate,
  type RoutingInfo,
  type RpcCertificate,
  type WeaveletArgs,
} from "../protos/runtime.js";
import { ControlChannel, controlStub, serveRequests, type ControlStub } from "../control/channel.js";
import { ENVELOPE_HANDLER, WEAVELET_CONTROL, type EnvelopeHandler } from "../control/control.js";

export type { EnvelopeHandler } from "../control/control.js";

/** How to start a weavelet. */
export interface EnvelopeOptions {
  /** The app's entry file (the same for every weavelet). */
  binary: string;
  /** Arguments after the entry file. */
  args?: readonly string[];
  /**
   * The environment the weavelet starts from, before `env`. Default: this process's environment. A
   * deployer holding credentials or secrets passes only what the app may see: whatever is here is
   * readable by every dependency of the app.
   */
  baseEnv?: Readonly<Record<string, string | undefined>>;
  /** Extra environment for the process (on top of `baseEnv`). */
  env?: Readonly<Record<string, string>>;
  /** Node.js flags before the entry file (e.g. `--cpu-prof`). */
  nodeArgs?: readonly string[];
  /**
   * What the weavelet is told at start; the protocol version is filled in by the envelope. Without
   * `callTimeoutMs` the weavelet's calls get the built-in default deadline.
   */
  weaveletArgs: Omit<WeaveletArgs, "protocolVersion" | "callTimeoutMs"> & Partial<Pick<WeaveletArgs, "callTimeoutMs">>;
  /** How long the handshake may take (ms, default 30 s). */
  startTimeoutMs?: number;
  /**
   * How the weavelet authenticates its component calls, handed over the control pipe at the handshake
   * (never in its environment or argv): the deployment key and, per component it may host that
   * restricts its callers, the groups allowed to call it. Default: calls are not authenticated.
   */
  rpcSecurity?: RpcSecurity;
  /**
   * The user and group the weavelet runs as (the deployer must be root, or hold CAP_SETUID/CAP_SETGID;
   * supplementary groups are dropped). A weavelet of another user than its deployer cannot read the
   * deployer's memory or initial environment. Default: the deployer's own.
   */
  user?: { readonly uid: number; readonly gid: number };
}

/** The deployment's component-call credentials for one weavelet (see EnvelopeOptions.rpcSecurity). */
export interface RpcSecurity {
  /** The deployment key (32 random bytes, the same for every weavelet of the deployment). */
  readonly key: Uint8Array;
  /** Component → groups allowed to call it; components not listed accept every group. */
  readonly callers?: Readonly<Record<string, readonly string[]>>;
  /**
   * The weavelet's TLS credentials: its component calls, in and out, then use TLS 1.3 with them;
   * {@link Envelope.updateCertificate} renews them. Default: no TLS.
   */
  readonly certificate?: RpcCertificate;
  /** Refuse to run the weavelet's RPC server without a certificate (fail closed). Default false. */
  readonly requireTls?: boolean;
}

/** Why a weavelet process ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True if `stop()` asked for it. */
  requested: boolean;
}

/**
 * The deployer's handle on one weavelet, like Service Weaver's envelope: construct it, then `serve` a
 * handler. `serve` starts the app's entry file as a child process, performs the versioned handshake over
 * a control pipe, and from then on forwards the weavelet's requests to the handler (from the very first
 * one, even if it arrives during the handshake) and turns the child's stdout/stderr lines into log
 * entries. Because the envelope exists before its weavelet does, a handler can close over the envelope
 * it serves: `const e = new Envelope(opts); await e.serve(handlerFor(e));`.
 */
export class Envelope {
  /** Resolves when the process has exited (never, if `serve` was not called or failed to spawn it). */
  readonly exited: Promise<ExitInfo>;

  private child: ChildProcess | undefined;
  private channel: ControlChannel | undefined;
  private weavelet: ControlStub<typeof WEAVELET_CONTROL> | undefined;
  private reply: InitWeaveletReply | undefined;
  private serving = false;
  private stopRequested = false;
  private resolveExited: (info: ExitInfo) => void = () => {};

  constructor(private readonly opts: EnvelopeOptions) {
    this.exited = new Promise<ExitInfo>((resolve) => (this.resolveExited = resolve));
  }

  /** The weavelet's process id (0 until `serve` resolves). */
  get pid(): number {
    return this.reply?.pid ?? 0;
  }

  /** The weavelet's RPC address, "host:port" or "unix:/path" ("" until `serve` resolves). */
  get dialAddress(): string {
    return this.reply?.dialAddress ?? "";
  }

  /** Every component registered in the app binary (empty until `serve` resolves). */
  get components(): readonly string[] {
    return this.reply?.components ?? [];
  }

  /**
   * Starts the weavelet and serves its requests with `handler` until it exits. Resolves once the
   * handshake completed; rejects with the reason if the process cannot start, dies first, or speaks
   * another protocol version. Call it once.
   */
  async serve(handler: EnvelopeHandler): Promise<void> {
    if (this.serving) throw new Error("Envelope.serve: already called; construct an Envelope per weavelet");
    this.serving = true;
    const opts = this.opts;
    const args: WeaveletArgs = { callTimeoutMs: {}, ...opts.weaveletArgs, protocolVersion: CONTROL_PROTOCOL_VERSION };
    const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), opts.binary, ...(opts.args ?? [])], {
      stdio: ["ignore", "pipe", "pipe", "pipe"],
      env: { ...(opts.baseEnv ?? process.env), ...opts.env, TSWEAVER_WEAVELET_ARGS: encodeWeaveletArgs(args) },
      // Own process group: Ctrl-C reaches only the deployer, which stops weavelets in order.
      detached: true,
      ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
    });
    this.child = child;
    const recentStderr: string[] = [];
    child.once("exit", (code, signal) => this.resolveExited({ code, signal, requested: this.stopRequested }));
    const spawnError = new Promise<never>((_, reject) =>
      child.once("error", (err) => reject(new Error(`cannot start ${opts.binary}: ${err.message}`))),
    );
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
        void Promise.resolve(handler.handleLogEntries({ entries: [toEntry(name, name === "stderr" ? "error" : "info", line)] })).catch(
          () => {},
        );
      });
    };
    pump(child.stdout!, "stdout");
    pump(child.stderr!, "stderr");

    const channel = new ControlChannel(
      child.stdio[3] as Duplex,
      serveRequests(ENVELOPE_HANDLER, handler, "envelope"),
      `weavelet ${args.id} (pid ${child.pid})`,
    );
    this.channel = channel;
    // Usable at once: a handler may answer a request that raced the handshake reply (frames stay ordered).
    const weavelet = controlStub(channel, WEAVELET_CONTROL);
    this.weavelet = weavelet;
    const earlyExit = this.exited.then((info): never => {
      const tail = recentStderr.length ? `:\n${recentStderr.join("\n")}` : "";
      throw new Error(`weavelet ${opts.binary} exited (code ${info.code}, signal ${info.signal}) before its handshake${tail}`);
    });
    earlyExit.catch(() => {});
    const timeoutMs = opts.startTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`weavelet ${opts.binary} did not complete its handshake within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      // A child that dies early closes the pipe before its exit is seen; prefer the exit's explanation.
      const handshake = weavelet.initWeavelet(initRequest(opts.rpcSecurity)).catch(async (err: Error) => {
        if (!channel.closed) throw err; // the weavelet answered with an error: that is the reason
        const gone = await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2_000, undefined))]);
        if (gone) await earlyExit;
        throw err;
      });
      const reply = await Promise.race([handshake, earlyExit, spawnError, timeout]);
      if (reply.protocolVersion !== CONTROL_PROTOCOL_VERSION) {
        throw new Error(
          `protocol version mismatch: envelope speaks version ${CONTROL_PROTOCOL_VERSION}, weavelet speaks version ${reply.protocolVersion}; rebuild the app with this tsweaver version`,
        );
      }
      this.reply = reply;
    } catch (err) {
      channel.close();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      // An error reply from the weavelet names the problem; keep it but say where it came from.
      throw err instanceof Error ? err : new Error(String(err));
    } finally {
      clearTimeout(timer);
    }
  }

  /** The weavelet's control interface; throws before `serve` was called. */
  private control(): ControlStub<typeof WEAVELET_CONTROL> {
    if (!this.weavelet) throw new Error(`weavelet ${this.opts.weaveletArgs.id} is not started: call envelope.serve(handler) first`);
    return this.weavelet;
  }

  /** Tells the weavelet where a component's replicas are. */
  async updateRoutingInfo(info: RoutingInfo): Promise<void> {
    await this.control().updateRoutingInfo({ routingInfo: info });
  }

  /** Gives the weavelet renewed TLS credentials; new connections use them, open ones keep theirs. */
  async updateCertificate(certificate: RpcCertificate): Promise<void> {
    await this.control().updateCertificate({ certificate });
  }

  /** Tells the weavelet which components to host (it starts them). */
  async updateComponents(components: readonly string[]): Promise<void> {
    await this.control().updateComponents({ components: [...components] });
  }

  /** The weavelet's health; UNHEALTHY if it does not answer within `timeoutMs` (a stuck event loop). */
  async getHealth(timeoutMs = 5_000): Promise<HealthStatus> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<HealthStatus>((resolve) => (timer = setTimeout(resolve, timeoutMs, "UNHEALTHY")));
    try {
      return await Promise.race([
        this.control()
          .getHealth({})
          .then((reply) => reply.status),
        late,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Metric changes since the previous call. */
  async getMetrics(): Promise<MetricUpdate[]> {
    return (await this.control().getMetrics({})).updates;
  }

  /** Per-component load since the previous call. */
  async getLoad(): Promise<ComponentLoad[]> {
    return (await this.control().getLoad({})).loads;
  }

  /** A CPU profile over `durationMs` (a .cpuprofile JSON document) or a heap snapshot. */
  async getProfile(kind: "CPU" | "HEAP", durationMs = 0): Promise<Uint8Array> {
    return (await this.control().getProfile({ kind, durationMs })).profile;
  }

  /** True until the process exits. */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Stops the weavelet: it runs its components' shutdown() and exits; after `graceMs` it is killed.
   */
  async stop(graceMs = 5_000): Promise<ExitInfo> {
    const child = this.child;
    if (!child) return { code: null, signal: null, requested: true }; // never started
    if (!this.stopRequested) {
      this.stopRequested = true;
      if (this.running) {
        this.channel?.request("stop", { graceMs }).catch(() => {});
        const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
        void this.exited.finally(() => clearTimeout(timer));
      }
    }
    const info = await this.exited;
    this.channel?.close();
    return info;
  }

  /** Kills the process at once (SIGKILL), as a crash would. */
  kill(): void {
    this.child?.kill("SIGKILL");
  }
}

/** The handshake's first message, with the weavelet's component-call credentials if there are any. */
function initRequest(security: RpcSecurity | undefined): InitWeaveletRequest {
  const callers: InitWeaveletRequest["callers"] = {};
  for (const [component, groups] of Object.entries(security?.callers ?? {})) callers[component] = { groups: [...groups] };
  return {
    protocolVersion: CONTROL_PROTOCOL_VERSION,
    sections: [],
    rpcKey: security?.key ?? new Uint8Array(0),
    callers,
    certificate: security?.certificate ?? null,
    requireTls: security?.requireTls ?? false,
  };
}
