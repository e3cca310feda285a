import type { Server, Socket } from "node:net";
import {
  type ComponentRef,
  type Implementation,
  type Lifecycle,
  type Listener,
  type Registration,
  methodTable,
  registration,
  registeredComponents,
} from "../core/component.js";
import { callStorage } from "../core/call.js";
import { callTimeoutOf, checkCallTimeoutKeys, type CallTimeout } from "../core/deadlines.js";
import { ConfigError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";
import { MAIN_COMPONENT } from "../core/config.js";
import { findSlice, shardKey, type KeyAssignment, type RoutingKey } from "../core/routing.js";
import type { Assignment, ComponentLoad, LogEntry, MetricUpdate, RoutingInfo, Span } from "../protos/runtime.js";
import { Balancer } from "../rpc/balancer.js";
import { InboundBudget, serverLimitsFromEnv } from "../rpc/budget.js";
import { ConnectionPool } from "../rpc/client.js";
import type { PeerIdentity, RpcAuth } from "../rpc/auth.js";
import { RpcServer, type MethodHandler } from "../rpc/server.js";
import { checkOwnCertificate, type RpcTls } from "../rpc/tls.js";
import { collectMetricDeltas, counterSeries } from "../telemetry/metrics.js";
import { MethodStats, servedBytes } from "../telemetry/methods.js";
import { Tracing } from "../telemetry/tracing.js";
import { ComponentContext } from "./context.js";
import { drainListener, openListener, trackConnections } from "./listeners.js";
import { LogBatcher, rpcLogger } from "./logs.js";
import { takeProfile } from "./profile.js";
import { localStub, remoteStub, servedCall } from "./stubs.js";

/** How long a stop waits for in-flight work when the deployer names no grace period. */
const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** Part of the grace period kept for components' shutdown() and flushing logs and traces. */
const SHUTDOWN_RESERVE_MS = 500;

/** What a weavelet asks of the deployer that runs it (over the control pipe, or in-process for single). */
export interface WeaveletHost {
  activateComponent(component: string, routed: boolean): Promise<void>;
  getListenerAddress(name: string): Promise<string>;
  /** Returns the address users reach the listener at ("" if not exported). */
  exportListener(listener: string, address: string): Promise<string>;
  logBatch(entries: LogEntry[]): void;
  traceSpans(spans: Span[]): void;
}

/** How a weavelet authenticates component calls (from the deployer, over the control pipe). */
export interface WeaveletSecurity {
  /** The deployment key every weavelet of the deployment holds. */
  key: Uint8Array;
  /** Component → groups allowed to call it remotely; components not listed accept every group. */
  callers: Readonly<Record<string, readonly string[]>>;
  /** TLS credentials: component calls, in and out, use TLS 1.3 (see rpc/tls.ts). */
  tls?: RpcTls | undefined;
}

/** How a weavelet is set up; filled from WeaveletArgs or by the single-process deployer. */
export interface WeaveletOptions {
  app: string;
  deploymentId: string;
  id: string;
  group: string;
  /** Components this process may host; `undefined` = all (single process). */
  hostable: readonly string[] | undefined;
  runMain: boolean;
  /** Where the RPC server listens; undefined: no RPC server (single process). */
  internalAddress: string | undefined;
  /** Per-component config sections. */
  config: Readonly<Record<string, Record<string, unknown>>>;
  /**
   * Default deadlines of the component calls this weavelet makes (weaver.toml [tsweaver.call_timeout_ms];
   * see runtime/core/deadlines.ts). Default: the built-in default deadline for every call.
   */
  callTimeoutMs?: Readonly<Record<string, number>>;
  /** Check that local calls' arguments and results could cross a process (see {@link checkValuesSetting}). */
  checkValues: boolean;
  host: WeaveletHost;
}

interface Hosted {
  reg: Registration;
  instance: Promise<object>;
  /** Set once the instance is ready, so calls skip awaiting the promise. */
  ready: (object & Lifecycle) | undefined;
  /** Calls since the last load report. */
  calls: number;
  /** For routed components: the deployer's current assignment and calls per slice since the last report. */
  slices: { version: bigint; starts: BigUint64Array; calls: number[] } | undefined;
}

/**
 * The process-side runtime: hosts the components of one group, serves their methods over RPC, gives
 * components their context (other components, listeners, config, logger) and answers the deployer.
 * It never knows which deployer runs it.
 */
export class Weavelet {
  readonly logger: Logger;
  private readonly hosted = new Map<string, Hosted>();
  private readonly constructionOrder: Hosted[] = [];
  /** Remote components this process calls: their balancer, ready once the deployer activated them. */
  private readonly remotes = new Map<string, { ready: Promise<void>; balancer: Balancer }>();
  /** Stubs by caller and callee (`caller\0callee`): each stub's metrics carry its caller. */
  private readonly stubs = new Map<string, Promise<object>>();
  /** Measure calls (per-method metrics); `TSWEAVER_METRICS=0` turns it off. */
  private readonly measure = process.env["TSWEAVER_METRICS"] !== "0";
  private pool: ConnectionPool;
  /** Component → groups allowed to call it (only components that restrict their callers). */
  private readonly callers = new Map<string, ReadonlySet<string>>();
  private server: RpcServer | undefined;
  /** The current TLS credentials (replaced on renewal); undefined: calls are not over TLS. */
  private tls: RpcTls | undefined;
  private dialAddress = "";
  private readonly logs: LogBatcher;
  private lastLoadAt = Date.now();
  private readonly listeners: { server: Server; sockets: Set<Socket> }[] = [];
  private stopped = false;

  /** Spans of component calls (`undefined` when tracing is off: TSWEAVER_TRACING=0 or sample 0). */
  private readonly tracing: Tracing | undefined;
  private readonly tracingAll: Tracing;
  private readonly callTimeouts: Readonly<Record<string, number>>;

  constructor(private readonly opts: WeaveletOptions) {
    this.logs = new LogBatcher(opts, (entries) => opts.host.logBatch(entries));
    this.logger = this.loggerFor("weavelet");
    // The deployment id names the version: peers of another version refuse each other at HELLO.
    this.pool = new ConnectionPool({ methodTableHash: methodTable().hash, deploymentId: opts.deploymentId });
    this.tracingAll = new Tracing({
      app: opts.app,
      deploymentId: opts.deploymentId,
      weaveletId: opts.id,
      group: opts.group,
      sink: (spans) => opts.host.traceSpans(spans),
    });
    this.tracing = this.tracingAll.enabled ? this.tracingAll : undefined;
    this.callTimeouts = opts.callTimeoutMs ?? {};
  }

  /**
   * Starts the RPC server (if this weavelet serves remote calls); returns its dial address. With
   * `security`, every connection, in and out, is mutually authenticated with the deployment key or over
   * TLS with the weavelet's certificate, and components that restrict their callers serve only the
   * groups allowed.
   */
  async start(security?: WeaveletSecurity): Promise<string> {
    // A misspelt method in [tsweaver.call_timeout_ms] would silently leave it at the default.
    checkCallTimeoutKeys(this.callTimeouts, (c) => registration(c)?.methods, registeredComponents(), "weaver.toml");
    const table = methodTable();
    let auth: RpcAuth | undefined;
    if (security !== undefined && security.key.length > 0)
      auth = { key: security.key, identity: { deploymentId: this.opts.deploymentId, group: this.opts.group } };
    if (security?.tls !== undefined) {
      checkOwnCertificate(security.tls, { deploymentId: this.opts.deploymentId, group: this.opts.group });
      this.tls = security.tls;
    }
    if (auth !== undefined || this.tls !== undefined) {
      // Asked per connection attempt: a renewed certificate reaches every new connection.
      const tls = this.tls === undefined ? undefined : () => this.tls!;
      this.pool = new ConnectionPool({ methodTableHash: table.hash, deploymentId: this.opts.deploymentId, auth, tls });
      for (const [component, groups] of Object.entries(security!.callers)) this.callers.set(component, new Set(groups));
    }
    if (this.opts.internalAddress !== undefined) {
      // Operators tune the server's limits through the environment (`[tsweaver] env` in weaver.toml).
      const { inboundBudgetBytes, ...limits } = serverLimitsFromEnv(process.env);
      this.server = new RpcServer({
        methodTableHash: table.hash,
        deploymentId: this.opts.deploymentId,
        lookup: (id) => this.methodHandler(id),
        auth,
        tls: this.tls,
        authorize: this.callers.size === 0 ? undefined : (id, caller) => this.refuseCaller(id, caller),
        logger: rpcLogger(this.loggerFor("rpc")),
        ...limits,
        ...(inboundBudgetBytes !== undefined ? { inboundBudget: new InboundBudget(inboundBudgetBytes) } : {}),
      });
      this.dialAddress = await this.server.listen(this.opts.internalAddress || "127.0.0.1:0");
    }
    await this.tracingAll.ready();
    return this.dialAddress;
  }

  /**
   * Renewed TLS credentials: connections opened from now on, in and out, use them; open ones keep
   * theirs. Only for a weavelet started with TLS.
   */
  updateTls(tls: RpcTls): void {
    if (this.tls === undefined) throw new Error("updateCertificate: this weavelet was started without TLS; it cannot switch to TLS");
    checkOwnCertificate(tls, { deploymentId: this.opts.deploymentId, group: this.opts.group });
    this.tls = tls;
    this.server?.updateTls(tls);
    this.logger.info("TLS certificate renewed", {});
  }

  /** Runs main() if this weavelet was asked to. */
  async runMain(): Promise<void> {
    if (!this.opts.runMain) return;
    const main = (await this.getLocal(MAIN_COMPONENT)) as { main(): Promise<void> };
    await main.main();
  }

  /** The deployer changed the components this weavelet serves (used to start them eagerly). */
  updateComponents(components: readonly string[]): void {
    for (const c of components) {
      if (this.canHost(c) && registration(c)) void this.getLocal(c).catch(() => {});
    }
  }

  /**
   * New replicas (and optional assignment) for a component this weavelet calls; or, with `local`, the
   * assignment of a routed component it hosts (for per-slice load reports).
   */
  updateRoutingInfo(info: RoutingInfo): void {
    const assignment = toKeyAssignment(info.assignment);
    if (info.local) {
      if (!this.canHost(info.component)) return;
      void this.getLocal(info.component).catch(() => {});
      const h = this.hosted.get(info.component);
      if (h && assignment && assignment.slices.length > 0) {
        h.slices = {
          version: assignment.version,
          starts: BigUint64Array.from(assignment.slices.map((x) => x.start)),
          calls: assignment.slices.map(() => 0),
        };
      }
      return;
    }
    const entry = this.remotes.get(info.component);
    if (!entry) return;
    entry.balancer.update(info.replicas);
    entry.balancer.setAssignment(assignment);
  }

  /** Component `ref` as seen by component `caller` (whose calls its metrics and spans name). */
  get<T extends object>(ref: ComponentRef<T>, caller = MAIN_COMPONENT): Promise<T> {
    return this.getByName(ref.name, caller) as Promise<T>;
  }

  /** Per-component load since the last report. */
  load(): ComponentLoad[] {
    const now = Date.now();
    const secs = Math.max((now - this.lastLoadAt) / 1000, 1e-3);
    this.lastLoadAt = now;
    const loads: ComponentLoad[] = [];
    for (const [name, h] of this.hosted) {
      const sl = h.slices;
      loads.push({
        component: name,
        callsPerSecond: h.calls / secs,
        slices: sl ? Array.from(sl.starts, (start, i) => ({ start: String(start), callsPerSecond: sl.calls[i]! / secs })) : [],
        assignmentVersion: String(sl?.version ?? 0n),
      });
      h.calls = 0;
      if (sl) sl.calls.fill(0);
    }
    return loads;
  }

  /**
   * Metric changes since the previous call: the user's metrics, the per-method metrics of calls made and
   * served, and the RPC bytes sent and received.
   */
  metrics(): MetricUpdate[] {
    this.countRpcBytes();
    return collectMetricDeltas();
  }

  private readonly reportedBytes = new WeakMap<object, { in: number; out: number }>();

  // Connection and server byte counters are cumulative; add what is new since the last look.
  private countRpcBytes(): void {
    const add = (side: "client" | "server", key: object, now: { bytesIn: number; bytesOut: number }) => {
      const seen = this.reportedBytes.get(key) ?? { in: 0, out: 0 };
      const labels = { side };
      counterSeries("tsweaver_rpc_bytes_received_total", "Bytes received on component RPC connections", labels).add(
        Math.max(0, now.bytesIn - seen.in),
      );
      counterSeries("tsweaver_rpc_bytes_sent_total", "Bytes sent on component RPC connections", labels).add(
        Math.max(0, now.bytesOut - seen.out),
      );
      this.reportedBytes.set(key, { in: now.bytesIn, out: now.bytesOut });
    };
    for (const c of this.pool.connections()) add("client", c, c.stats);
    if (this.server) add("server", this.server, this.server.stats);
  }

  /** A CPU profile (`.cpuprofile` JSON) over `durationMs`, or a heap snapshot. */
  profile(kind: "CPU" | "HEAP", durationMs: number): Promise<Uint8Array> {
    return takeProfile(kind, durationMs);
  }

  /**
   * Graceful stop within `graceMs`: listeners refuse new connections and finish the requests they have,
   * the RPC server sends GOAWAY and finishes its calls, then components shut down in reverse order and
   * connections close. Work still running at the end of the grace period is aborted.
   */
  async shutdown(graceMs = DEFAULT_SHUTDOWN_GRACE_MS): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Leave a little of the grace period for components' shutdown() and the last log batch.
    const deadline = Date.now() + Math.max(0, graceMs - SHUTDOWN_RESERVE_MS);
    await Promise.all(this.listeners.map((l) => drainListener(l.server, l.sockets, deadline)));
    await this.server?.close(Math.max(1, deadline - Date.now()));
    for (const h of [...this.constructionOrder].reverse()) {
      try {
        await h.ready?.shutdown?.();
      } catch (err) {
        this.logger.error(`shutdown of ${h.reg.ref.name} failed`, err);
      }
    }
    void this.pool.close(); // sockets close in the background; tracing and logs flush meanwhile
    await this.tracingAll.shutdown();
    this.flushLogs();
  }

  /** A logger whose records go to the host in batches. */
  loggerFor(component: string): Logger {
    return this.logs.loggerFor(component);
  }

  /** Sends queued log entries to the host now. */
  flushLogs(): void {
    this.logs.flush();
  }

  // ---- components ----

  private canHost(name: string): boolean {
    return this.opts.hostable === undefined || this.opts.hostable.includes(name);
  }

  private getByName(name: string, caller: string): Promise<object> {
    const reg = registration(name);
    if (!reg) {
      return Promise.reject(
        new ConfigError(
          `unknown component ${name}: it is not registered in this binary (registered: ${registeredComponents().join(", ")}); import the module that calls register()`,
        ),
      );
    }
    const local = this.canHost(name);
    const timeouts = (method: string): CallTimeout | undefined => callTimeoutOf(this.callTimeouts, name, method);
    const key = `${caller}\u0000${name}`;
    let stub = this.stubs.get(key);
    if (!stub) {
      if (local) {
        stub = this.getLocal(name).then((inst) => localStub(reg, inst, caller, this.measure, this.opts.checkValues, timeouts));
      } else {
        let remote = this.remotes.get(name);
        if (!remote) {
          const balancer = new Balancer(name, this.pool);
          const entry = { ready: this.opts.host.activateComponent(name, reg.ref.router !== undefined), balancer };
          this.remotes.set(name, entry);
          entry.ready.catch(() => this.remotes.delete(name));
          remote = entry;
        }
        const balancer = remote.balancer;
        stub = remote.ready.then(() => remoteStub(reg, balancer, caller, this.measure, this.tracing, timeouts));
      }
      this.stubs.set(key, stub);
      stub.catch(() => this.stubs.delete(key));
    }
    return stub;
  }

  /** Hosted components whose latest construction failed (a later call retries it). */
  private readonly failedConstructions = new Set<string>();

  /** UNHEALTHY while a component this weavelet hosts failed to construct (e.g. a config error). */
  health(): "HEALTHY" | "UNHEALTHY" {
    return this.failedConstructions.size === 0 ? "HEALTHY" : "UNHEALTHY";
  }

  private getLocal(name: string): Promise<object> {
    const existing = this.hosted.get(name);
    if (existing) return existing.instance;
    const reg = registration(name);
    if (!reg) return Promise.reject(new ConfigError(`unknown component ${name}`));
    const hosted: Hosted = { reg, instance: undefined as unknown as Promise<object>, ready: undefined, calls: 0, slices: undefined };
    // Outside the triggering call's context: its deadline, signal and trace are not the construction's.
    hosted.instance = callStorage
      .outside(() => this.construct(reg))
      .then((inst) => {
        hosted.ready = inst;
        this.failedConstructions.delete(name);
        return inst;
      });
    this.hosted.set(name, hosted);
    this.constructionOrder.push(hosted);
    hosted.instance.catch((err) => {
      this.failedConstructions.add(name);
      this.logger.error(`component ${name} failed to start`, err);
      this.hosted.delete(name);
      this.constructionOrder.splice(this.constructionOrder.indexOf(hosted), 1);
    });
    return hosted.instance;
  }

  private async construct(reg: Registration): Promise<object & Lifecycle> {
    const ctx = new ComponentContext(this, reg.ref.name, this.opts.config[reg.ref.name] ?? {});
    const Impl = reg.impl as Implementation<object>;
    const inst = new Impl(ctx);
    await inst.init?.();
    return inst;
  }

  /** Why `caller` may not call method `id` (weaver.toml [tsweaver.callers]), or undefined if it may. */
  private refuseCaller(id: number, caller: PeerIdentity | undefined): string | undefined {
    const entry = methodTable().byId[id];
    const allowed = entry === undefined ? undefined : this.callers.get(entry.component);
    if (allowed === undefined || (caller !== undefined && allowed.has(caller.group))) return undefined;
    return (
      `${entry!.component}.${entry!.method}: group ${JSON.stringify(caller?.group ?? "")} may not call ${entry!.component} ` +
      `(weaver.toml [tsweaver.callers] allows only the groups ${[...allowed].sort().join(", ") || "(none)"})`
    );
  }

  private methodHandler(id: number): MethodHandler | undefined {
    // Looked up for every request: by id, without building the method's name each time.
    const table = methodTable();
    if (table !== this.handlersTable) {
      this.handlersTable = table;
      this.handlersById = [];
    }
    const known = this.handlersById[id];
    if (known !== undefined) return known;
    const entry = table.byId[id];
    if (!entry || !this.canHost(entry.component)) return undefined;
    const handler = this.handlerFor(entry.component, entry.method);
    this.handlersById[id] = handler;
    return handler;
  }

  /** The handlers of the method ids served so far, by id in `handlersTable` (what this weavelet hosts is fixed). */
  private handlersById: MethodHandler[] = [];
  private handlersTable: ReturnType<typeof methodTable> | undefined;

  private readonly handlers = new Map<string, MethodHandler>();

  private handlerFor(component: string, method: string): MethodHandler {
    const key = `${component}.${method}`;
    let handler = this.handlers.get(key);
    if (handler) return handler;
    const keyOf = registration(component)?.ref.router?.[method] as ((...a: unknown[]) => RoutingKey) | undefined;
    const serve = servedCall(component, method, this.tracing);
    const bytes = this.measure ? servedBytes(component, method) : undefined;
    handler = {
      name: key,
      countBytes: bytes && ((n: number) => void (bytes.value += n)),
      observer: this.measure ? MethodStats.served(component, method) : undefined,
      fn: (args: unknown[]): unknown => {
        let h = this.hosted.get(component);
        if (h?.ready) {
          h.calls++;
          if (keyOf !== undefined && h.slices !== undefined) h.slices.calls[findSlice(h.slices.starts, shardKey(keyOf(...args)))]!++;
          return serve(h.ready, args);
        }
        return this.getLocal(component).then((inst) => {
          h = this.hosted.get(component);
          if (h) h.calls++;
          return serve(inst, args);
        });
      },
    };
    this.handlers.set(key, handler);
    return handler;
  }

  // ---- listeners ----

  /** Opens the named listener where the deployer says, and exports it (closed at shutdown). */
  async listener<S extends Server>(name: string, server?: S): Promise<Listener<S>> {
    return openListener(name, server, this.opts.host, (srv) => this.listeners.push({ server: srv, sockets: trackConnections(srv) }));
  }
}

/** The variable that turns the value check of local calls on (`1`) or off (`0`). */
export const CHECK_VALUES_ENV = "TSWEAVER_CHECK_VALUES";

/**
 * Whether local calls check their values: `TSWEAVER_CHECK_VALUES=1`/`0`, else `byDefault` (on for
 * single-process runs outside production, off in deployed processes, where it would cost an encoding
 * per call and the remote calls check anyway).
 */
export function checkValuesSetting(byDefault: boolean): boolean {
  const v = process.env[CHECK_VALUES_ENV];
  return v === undefined || v === "" ? byDefault : v !== "0";
}

/** The routing layer's view of an assignment from the deployer (none without slices). */
function toKeyAssignment(a: Assignment | null | undefined): KeyAssignment | undefined {
  if (!a || a.slices.length === 0) return undefined;
  return { version: BigInt(a.version), slices: a.slices.map((x) => ({ start: BigInt(x.start), replica: x.replicas[0] ?? "" })) };
}
