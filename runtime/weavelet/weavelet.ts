import { createServer, type Server } from "node:net";
import { Session } from "node:inspector";
import {
  type ComponentRef,
  type Context,
  type Implementation,
  type Lifecycle,
  type Listener,
  type Registration,
  methodTable,
  registration,
  registeredComponents,
} from "../core/component.js";
import { ConfigError } from "../core/errors.js";
import { type LogAttrs, type Logger, type LogRecord, newLogger } from "../core/logger.js";
import { MAIN_COMPONENT, isTable } from "../core/config.js";
import { findSlice, shardKey, type KeyAssignment, type RoutingKey } from "../core/routing.js";
import type { Assignment, ComponentLoad, LogEntry, MetricUpdate, RoutingInfo, Span } from "../protos/runtime.js";
import { Balancer, ConnectionPool } from "../rpc/client.js";
import { RpcServer, type MethodHandler } from "../rpc/server.js";
import { collectMetricDeltas, counterSeries } from "../telemetry/metrics.js";
import { MethodStats } from "../telemetry/methods.js";
import { ActiveSpan, Tracing } from "../telemetry/tracing.js";
import { callStorage } from "../core/call.js";

/** What a weavelet asks of the deployer that runs it (over the control pipe, or in-process for single). */
export interface WeaveletHost {
  activateComponent(component: string, routed: boolean): Promise<void>;
  getListenerAddress(name: string): Promise<string>;
  /** Returns the address users reach the listener at ("" if not exported). */
  exportListener(listener: string, address: string): Promise<string>;
  logBatch(entries: LogEntry[]): void;
  traceSpans(spans: Span[]): void;
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
  /** Measure calls (per-method metrics); `TSWEAVER_METRICS=0` hands out bare local instances instead. */
  private readonly measure = process.env["TSWEAVER_METRICS"] !== "0";
  private readonly pool: ConnectionPool;
  private server: RpcServer | undefined;
  private dialAddress = "";
  private logQueue: LogEntry[] = [];
  private flushScheduled = false;
  private lastLoadAt = Date.now();
  private readonly listeners: Server[] = [];
  private stopped = false;

  /** Spans of component calls (`undefined` when tracing is off: TSWEAVER_TRACING=0 or sample 0). */
  private readonly tracing: Tracing | undefined;
  private readonly tracingAll: Tracing;

  constructor(private readonly opts: WeaveletOptions) {
    this.logger = this.loggerFor("weavelet");
    // The deployment id names the version: peers of another version refuse each other at HELLO.
    this.pool = new ConnectionPool({ methodTableHash: methodTable().hash, deploymentId: opts.deploymentId });
    this.tracingAll = new Tracing({ app: opts.app, deploymentId: opts.deploymentId, weaveletId: opts.id, group: opts.group, sink: (spans) => opts.host.traceSpans(spans) });
    this.tracing = this.tracingAll.enabled ? this.tracingAll : undefined;
  }

  /** Starts the RPC server (if this weavelet serves remote calls); returns its dial address. */
  async start(): Promise<string> {
    const table = methodTable();
    if (this.opts.internalAddress !== undefined) {
      this.server = new RpcServer({
        methodTableHash: table.hash,
        deploymentId: this.opts.deploymentId,
        lookup: (id) => this.methodHandler(id),
        logger: this.rpcLogger(),
      });
      this.dialAddress = await this.server.listen(this.opts.internalAddress || "127.0.0.1:0");
    }
    await this.tracingAll.ready();
    return this.dialAddress;
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
        h.slices = { version: assignment.version, starts: BigUint64Array.from(assignment.slices.map((x) => x.start)), calls: assignment.slices.map(() => 0) };
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
      counterSeries("tsweaver_rpc_bytes_received_total", "Bytes received on component RPC connections", labels).add(Math.max(0, now.bytesIn - seen.in));
      counterSeries("tsweaver_rpc_bytes_sent_total", "Bytes sent on component RPC connections", labels).add(Math.max(0, now.bytesOut - seen.out));
      this.reportedBytes.set(key, { in: now.bytesIn, out: now.bytesOut });
    };
    for (const c of this.pool.connections()) add("client", c, c.stats);
    if (this.server) add("server", this.server, this.server.stats);
  }

  /** A CPU profile (`.cpuprofile` JSON) over `durationMs`, or a heap snapshot. */
  async profile(kind: "CPU" | "HEAP", durationMs: number): Promise<Uint8Array> {
    const session = new Session();
    session.connect();
    const post = <R>(method: string, params?: object): Promise<R> =>
      new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as R))));
    try {
      if (kind === "HEAP") {
        const chunks: string[] = [];
        session.on("HeapProfiler.addHeapSnapshotChunk", (m) => chunks.push((m.params as { chunk: string }).chunk));
        await post("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
        return Buffer.from(chunks.join(""));
      }
      await post("Profiler.enable");
      await post("Profiler.start");
      await new Promise((r) => setTimeout(r, Math.max(1, durationMs)));
      const { profile } = await post<{ profile: object }>("Profiler.stop");
      return Buffer.from(JSON.stringify(profile));
    } finally {
      session.disconnect();
    }
  }

  /** Graceful stop: listeners close, components shut down in reverse order, connections close. */
  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const s of this.listeners) s.close();
    await this.server?.close();
    for (const h of [...this.constructionOrder].reverse()) {
      try {
        await h.ready?.shutdown?.();
      } catch (err) {
        this.logger.error(`shutdown of ${h.reg.ref.name} failed`, err);
      }
    }
    this.pool.close();
    await this.tracingAll.shutdown();
    this.flushLogs();
  }

  /** A logger whose records go to the host in batches. */
  loggerFor(component: string): Logger {
    return newLogger(component, (r) => this.enqueueLog(r));
  }

  // ---- components ----

  private canHost(name: string): boolean {
    return this.opts.hostable === undefined || this.opts.hostable.includes(name);
  }

  private getByName(name: string, caller: string): Promise<object> {
    const reg = registration(name);
    if (!reg) {
      return Promise.reject(new ConfigError(`unknown component ${name}: it is not registered in this binary (registered: ${registeredComponents().join(", ")}); import the module that calls register()`));
    }
    const local = this.canHost(name);
    if (local && !this.measure) return this.getLocal(name);
    const key = `${caller}\u0000${name}`;
    let stub = this.stubs.get(key);
    if (!stub) {
      if (local) {
        stub = this.getLocal(name).then((inst) => makeLocalStub(reg, inst, caller));
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
        stub = remote.ready.then(() => makeStub(reg, balancer, caller, this.measure, this.tracing));
      }
      this.stubs.set(key, stub);
      stub.catch(() => this.stubs.delete(key));
    }
    return stub;
  }

  private getLocal(name: string): Promise<object> {
    const existing = this.hosted.get(name);
    if (existing) return existing.instance;
    const reg = registration(name);
    if (!reg) return Promise.reject(new ConfigError(`unknown component ${name}`));
    const hosted: Hosted = { reg, instance: undefined as unknown as Promise<object>, ready: undefined, calls: 0, slices: undefined };
    hosted.instance = this.construct(reg).then((inst) => {
      hosted.ready = inst;
      return inst;
    });
    this.hosted.set(name, hosted);
    this.constructionOrder.push(hosted);
    hosted.instance.catch((err) => {
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

  private methodHandler(id: number): MethodHandler | undefined {
    const entry = methodTable().byId[id];
    if (!entry || !this.canHost(entry.component)) return undefined;
    return this.handlerFor(entry.component, entry.method);
  }

  private readonly handlers = new Map<string, MethodHandler>();

  private handlerFor(component: string, method: string): MethodHandler {
    const key = `${component}.${method}`;
    let handler = this.handlers.get(key);
    if (handler) return handler;
    const weavelet = this;
    const keyOf = registration(component)?.ref.router?.[method] as ((...a: unknown[]) => RoutingKey) | undefined;
    const stats = this.measure ? MethodStats.served(component, method) : undefined;
    const invoke = (inst: object, args: unknown[]): unknown => (inst as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!(...args);
    const tracing = this.tracing;
    // The RPC server runs `fn` inside the call's context: its traceparent is the caller's client span.
    const serve = (inst: object, args: unknown[]): unknown => {
      const span = tracing?.startServer(callStorage.getStore(), component, method);
      if (span === undefined) return stats === undefined ? invoke(inst, args) : stats.measure(invoke, inst, args);
      const t0 = performance.now();
      let r: unknown;
      try {
        r = callStorage.run(span.ctx, invoke, inst, args);
      } catch (err) {
        stats?.fail(performance.now() - t0);
        span.end(err);
        throw err;
      }
      const traced = endSpan(r, span);
      return stats === undefined ? traced : stats.track(traced, t0);
    };
    handler = {
      name: key,
      fn(args: unknown[]): unknown {
        let h = weavelet.hosted.get(component);
        if (h?.ready) {
          h.calls++;
          if (keyOf !== undefined && h.slices !== undefined) h.slices.calls[findSlice(h.slices.starts, shardKey(keyOf(...args)))]!++;
          return serve(h.ready, args);
        }
        return weavelet.getLocal(component).then((inst) => {
          h = weavelet.hosted.get(component);
          if (h) h.calls++;
          return serve(inst, args);
        });
      },
    };
    this.handlers.set(key, handler);
    return handler;
  }

  // ---- listeners ----

  async listener<S extends Server>(name: string, server?: S): Promise<Listener<S>> {
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new ConfigError(`listener name ${JSON.stringify(name)}: use letters, digits, '-' and '_'`);
    const srv = (server ?? createServer()) as S;
    const want = await this.opts.host.getListenerAddress(name);
    const { host, port } = splitHostPort(want);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new Error(`listener ${name}: cannot listen on ${want}: ${err.message}`));
      srv.once("error", onError);
      srv.listen(port, host, () => {
        srv.off("error", onError);
        resolve();
      });
    });
    this.listeners.push(srv);
    const bound = srv.address();
    const address = typeof bound === "object" && bound ? `${formatHost(bound.address)}:${bound.port}` : want;
    const publicAddress = (await this.opts.host.exportListener(name, address)) || address;
    return { name, server: srv, address, publicAddress };
  }

  // ---- logs ----

  private enqueueLog(r: LogRecord): void {
    this.logQueue.push({
      app: this.opts.app,
      version: this.opts.deploymentId,
      component: r.component,
      node: this.opts.id,
      timeMicros: String(r.timeMicros),
      level: r.level,
      file: r.file,
      line: r.line,
      msg: r.msg,
      attrs: r.attrs,
    });
    if (this.logQueue.length >= 256) this.flushLogs();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flushLogs());
    }
  }

  /** Sends queued log entries to the host now. */
  flushLogs(): void {
    this.flushScheduled = false;
    if (this.logQueue.length === 0) return;
    const batch = this.logQueue;
    this.logQueue = [];
    this.opts.host.logBatch(batch);
  }

  private rpcLogger() {
    const l = this.loggerFor("rpc");
    return {
      error: (msg: string, attrs?: LogAttrs) => l.error(msg, undefined, attrs),
      warn: (msg: string, attrs?: LogAttrs) => l.warn(msg, attrs),
      // Connection chatter is debug-level for users: their own logs matter more.
      info: (msg: string, attrs?: LogAttrs) => l.debug(msg, attrs),
      debug: (msg: string, attrs?: LogAttrs) => l.debug(msg, attrs),
    };
  }
}

/**
 * A remote stub: one method per implementation method, each a call through the component's balancer,
 * measured (per-method metrics of `caller`) unless `measure` is off.
 */
function makeStub(reg: Registration, balancer: Balancer, caller: string, measure: boolean, tracing: Tracing | undefined): object {
  const first = methodTable().firstIds.get(reg.ref.name)!;
  const stub: Record<string, (...args: unknown[]) => Promise<unknown>> = {};
  reg.methods.forEach((method, i) => {
    const id = first + i;
    const name = `${reg.ref.name}.${method}`;
    const retryable = !reg.ref.noRetry.has(method);
    const keyOf = reg.ref.router?.[method] as ((...a: unknown[]) => RoutingKey) | undefined;
    const stats = measure ? MethodStats.caller(caller, reg.ref.name, method, true) : undefined;
    const fixed = { retryable };
    const untraced = (args: unknown[]): Promise<unknown> => balancer.call(id, name, args, keyOf === undefined ? fixed : { retryable, shardKey: shardKey(keyOf(...args)) });
    // A client span when the call is traced; its traceparent goes out in the request header.
    const call =
      tracing === undefined
        ? untraced
        : (args: unknown[]): Promise<unknown> => {
            const span = tracing.startClient(callStorage.getStore(), reg.ref.name, method, caller);
            if (span === undefined) return untraced(args);
            // pin, not run: the balancer reads the context when the call starts and carries it from there.
            if (!(span instanceof ActiveSpan)) return callStorage.pin(span, untraced, args); // an unsampled root
            return endSpan(callStorage.pin(span.ctx, untraced, args), span);
          };
    stub[method] =
      stats === undefined
        ? (...args: unknown[]) => call(args)
        : (...args: unknown[]) => {
            const t0 = performance.now();
            return stats.track(call(args), t0);
          };
  });
  return Object.freeze(stub);
}

/**
 * A local stub: the colocated instance's methods called directly (no encoding, same `this`), measured
 * for the per-method metrics of `caller`. A method that returns a plain value still returns it as is.
 */
function makeLocalStub(reg: Registration, inst: object, caller: string): object {
  const stub: Record<string, (...args: unknown[]) => unknown> = {};
  for (const method of reg.methods) {
    const fn = (inst as Record<string, unknown>)[method];
    if (typeof fn !== "function") continue;
    const stats = MethodStats.caller(caller, reg.ref.name, method, false);
    const apply = (self: object, args: unknown[]): unknown => (fn as (...a: unknown[]) => unknown).apply(self, args);
    stub[method] = (...args: unknown[]): unknown => stats.measure(apply, inst, args);
  }
  return Object.freeze(stub);
}

/** Ends `span` when `r` settles (failed if it rejects) and passes the outcome on. */
async function endSpan(r: unknown, span: ActiveSpan): Promise<unknown> {
  try {
    const v = await r;
    span.end();
    return v;
  } catch (err) {
    span.end(err);
    throw err;
  }
}


function toKeyAssignment(a: Assignment | null | undefined): KeyAssignment | undefined {
  if (!a || a.slices.length === 0) return undefined;
  return { version: BigInt(a.version), slices: a.slices.map((x) => ({ start: BigInt(x.start), replica: x.replicas[0] ?? "" })) };
}

class ComponentContext implements Context {
  readonly logger: Logger;
  constructor(
    private readonly weavelet: Weavelet,
    readonly name: string,
    private readonly section: Record<string, unknown>,
  ) {
    this.logger = weavelet.loggerFor(name);
  }
  get<T extends object>(ref: ComponentRef<T>): Promise<T> {
    return this.weavelet.get(ref, this.name);
  }
  listener<S extends Server = Server>(name: string, server?: S): Promise<Listener<S>> {
    return this.weavelet.listener(name, server);
  }
  config<C extends Record<string, unknown>>(defaults: C): C {
    const out: Record<string, unknown> = { ...defaults };
    for (const [key, value] of Object.entries(this.section)) {
      if (!(key in defaults)) {
        throw new ConfigError(`config ["${this.name}"].${key}: unknown key (known keys: ${Object.keys(defaults).join(", ") || "none"})`);
      }
      const want = defaults[key];
      const same = Array.isArray(want) ? Array.isArray(value) : isTable(want) ? isTable(value) : typeof want === typeof value;
      if (!same) {
        throw new ConfigError(`config ["${this.name}"].${key}: expected ${Array.isArray(want) ? "an array" : typeof want}, got ${JSON.stringify(value)}`);
      }
      out[key] = value;
    }
    return out as C;
  }
}

export function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(":");
  if (i < 0) throw new ConfigError(`address ${JSON.stringify(address)} must be "host:port"`);
  const host = address.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`address ${JSON.stringify(address)}: bad port`);
  return { host: host || "0.0.0.0", port };
}

function formatHost(h: string): string {
  return h.includes(":") ? `[${h}]` : h;
}
