import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { checkComponentNames, componentConfigs, groupsOf, MAIN_COMPONENT, type AppConfig, type Group } from "../../core/config.js";
import { Envelope, type EnvelopeHandler, type RpcSecurity } from "../../envelope/envelope.js";
import { listAppComponents } from "../../core/components.js";
import { computeAssignment } from "../../core/routing.js";
import type { ComponentLoad, LogEntry, RoutingInfo, RpcCertificate, Span } from "../../protos/runtime.js";
import { formatLogEntry } from "../../telemetry/logfmt.js";
import { GROUP_LABEL, MetricStore, REPLICA_LABEL } from "../../telemetry/metricstore.js";
import { storedSpan, TraceStore } from "../../telemetry/tracestore.js";
import { AdminServer, newAdminToken, type AdminBackend, type DeploymentSummary, type ReplicaProfile } from "./admin.js";
import { multiConfig, type MultiConfig } from "./config.js";
import { ListenerProxy } from "./proxy.js";
import { DeploymentDir, listDeployments, observedStatus, stateRoot, type DeploymentStatus } from "./state.js";

/** Options of a multiprocess deployment beyond weaver.toml. */
export interface MultiOptions {
  /** Where deployment state (status, logs) is kept; default `stateRoot()`. */
  stateDir?: string;
  /** Print log entries to stdout (default true). */
  printLogs?: boolean;
  /** Receives progress lines (default: stderr). */
  progress?: (line: string) => void;
  /** Where the admin server listens (default `[multi] admin` in weaver.toml, else 127.0.0.1:0). */
  adminAddress?: string;
  /**
   * Component calls without authentication (default false: every connection between weavelets proves
   * the deployment key). Only for measuring what authentication costs (`npm run bench`).
   */
  plaintextCalls?: boolean;
  /**
   * Component calls over loopback TCP instead of Unix domain sockets (default false). Only for measuring
   * what the socket kind costs (`npm run bench`).
   */
  tcpCalls?: boolean;
  /**
   * Component calls over TLS 1.3 with the certificates this returns per weavelet (deployment id and
   * group), and no deployment key: what the AWS deployer does. Needs `tcpCalls`. Only for measuring what
   * TLS costs through real weavelets and stubs (`npm run bench`).
   */
  tlsCalls?: (deploymentId: string, group: string) => Promise<RpcCertificate>;
}

/** Log entries the deployer keeps in memory for the dashboard. */
const RECENT_LOGS = 2000;

interface Replica {
  readonly id: string;
  readonly group: GroupState;
  envelope: Envelope | undefined;
  address: string;
  health: string;
  /** Restarts since the deployment began (shown in status). */
  restarts: number;
  /** Crashes in a row without a stable run; sets the restart backoff. */
  crashStreak: number;
  /** Since when (ms) its health checks answer HEALTHY without a break; undefined when they do not. */
  healthySince: number | undefined;
  /** Since when (ms) its health checks answer anything but HEALTHY. */
  unhealthySince: number | undefined;
  /** Healthy for SUSTAINED_HEALTH_MS since it last started: a crash now is not part of a crash loop. */
  stable: boolean;
  /** Being stopped to be replaced (it stayed UNHEALTHY): its exit starts a new process at once. */
  replacing: boolean;
  state: "starting" | "running" | "restarting" | "stopped";
  /** Components of other groups this replica activated: it gets their routing updates. */
  readonly activated: Set<string>;
  /** Listener name → address it exported. */
  readonly exported: Map<string, string>;
}

interface GroupState {
  readonly group: Group;
  readonly replicas: Replica[];
  started: boolean;
  /** When its replicas crashed, within the crash-loop window. */
  crashes: number[];
}

const RESTART_BACKOFF_MIN_MS = 100;
const RESTART_BACKOFF_MAX_MS = 10_000;
/**
 * A replica whose health checks answered HEALTHY for this long without a break is stable: its restart
 * backoff resets, and its next crash does not count towards a crash loop. Shorter than the poll period:
 * two HEALTHY answers in a row are enough.
 */
const SUSTAINED_HEALTH_MS = 1_500;
/**
 * How often the deployer checks health and collects metrics while anything changes (a replica starting,
 * not yet stable, or not HEALTHY) or someone watches ...
 */
const POLL_MS = 2_000;
/**
 * ... and at most this often once every replica is stable and HEALTHY (the period doubles from POLL_MS):
 * an idle deployment's processes then wake for a health check every 10 s, not every 2 s. A crash is seen
 * at once either way (the process exits); a replica turning UNHEALTHY within 10 s.
 */
const CALM_POLL_MS = 10_000;
/** Metrics are collected every poll for this long after someone asked for them (dashboard, CLI)... */
const WATCHED_MS = 60_000;
/** ... and this often otherwise (rates over longer windows stay exact). */
const IDLE_METRICS_MS = 20_000;
/** How long a replica being replaced gets to finish its calls (it gets no new ones). */
const REPLACE_GRACE_MS = 2_000;
/** Least time a weavelet gets to stop before it is killed, even when the drain period is spent. */
const MIN_STOP_GRACE_MS = 100;

/**
 * The multiprocess deployer: every group of components runs as N replica processes on this machine,
 * started when first needed, restarted with backoff when they crash; exported listeners sit behind a
 * local HTTP proxy.
 */
export class MultiDeployer implements AdminBackend {
  readonly deploymentId = randomUUID().slice(0, 8);
  /**
   * The key every weavelet of this deployment proves it holds when it connects to another (handed over
   * each control pipe, never written anywhere): no other process can call a component.
   */
  private readonly rpcKey = randomBytes(32);
  /** Metric totals of every replica (fed by GetMetrics deltas). */
  readonly metricStore = new MetricStore();
  /** Recent trace spans of every replica (the newest 20,000; also appended to traces.jsonl). */
  readonly traceStore = new TraceStore();
  /** Required on every admin server request; written to the state directory (mode 0600) for the CLI. */
  readonly adminToken = newAdminToken();
  private readonly admin = new AdminServer(this, this.adminToken);
  private collecting: Promise<void> | undefined;
  private logRing: LogEntry[] = [];
  private readonly multi: MultiConfig;
  private groups: GroupState[] = [];
  private readonly byComponent = new Map<string, GroupState>();
  private readonly proxies = new Map<string, Promise<ListenerProxy>>();
  private readonly dir: DeploymentDir;
  private stopping = false;
  private stopped = false;
  private statusTimer: NodeJS.Timeout | undefined;
  /** When the admin server last asked for metrics. */
  private watchedAt = 0;
  /** status.json as last written, without its time stamp: an unchanged status is not rewritten. */
  private lastStatus = "";
  /** Directory of the weavelets' RPC sockets (created with the first one), and how many were handed out. */
  private socketDir: string | undefined;
  private socketCount = 0;
  private readonly startedAt = new Date().toISOString();
  private readonly color = process.stdout.isTTY === true;
  private failWith: ((err: Error) => void) | undefined;
  /**
   * Settles with the reason when the deployment fails on its own (a group crash-looping); `deploy`
   * callers that run until stopped wait on it, stop the deployment and report the error.
   */
  readonly failed: Promise<Error> = new Promise((resolve) => (this.failWith = resolve));
  /** Routed components (they asked for an assignment) and their assignment versions. */
  private readonly routed = new Map<string, { version: bigint; replicas: string }>();

  constructor(
    private readonly config: AppConfig,
    private readonly options: MultiOptions = {},
  ) {
    this.multi = multiConfig(config);
    this.dir = new DeploymentDir(options.stateDir ?? stateRoot(), this.deploymentId);
  }

  private progress(line: string): void {
    (this.options.progress ?? ((l: string) => process.stderr.write(l + "\n")))(line);
  }

  /** Validates the app against its config and starts main's group. */
  async deploy(): Promise<void> {
    const components = listAppComponents(this.config);
    if (!components.includes(MAIN_COMPONENT)) {
      throw new Error(`app ${this.config.binary} registers no main component; its entry file must call run(App)`);
    }
    checkComponentNames(this.config, components);
    this.groups = groupsOf(this.config, components).map((group) => ({ group, replicas: [], started: false, crashes: [] }));
    for (const g of this.groups) for (const c of g.group.components) this.byComponent.set(c, g);
    this.dir.create();
    this.dir.writeAdminToken(this.adminToken);
    await this.admin.listen(this.options.adminAddress ?? this.multi.admin);
    this.metricStore.snapshot(); // the zero point: rates before the first collection count from here
    this.progress(
      `tsweaver: deploying ${this.config.name} (deployment ${this.deploymentId}): ${this.groups.length} groups × ${this.multi.replicas} replicas; state in ${this.dir.dir}`,
    );
    this.writeStatus();
    this.schedulePoll(POLL_MS);
    await this.startGroup(this.byComponent.get(MAIN_COMPONENT)!);
  }

  /** Addresses of the listener proxies, by listener name (once exported). */
  async listenerAddresses(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const [name, p] of this.proxies) out.set(name, (await p).address);
    return out;
  }

  /** Current status (also written to the deployment directory). */
  status(): DeploymentStatus {
    return {
      deploymentId: this.deploymentId,
      app: this.config.name,
      config: this.config.file,
      deployerPid: process.pid,
      startedAt: this.startedAt,
      updatedAt: new Date().toISOString(),
      state: this.stopped ? "stopped" : this.stopping ? "stopping" : "running",
      groups: this.groups.map((g) => ({
        name: g.group.name,
        components: [...g.group.components],
        started: g.started,
        replicas: g.replicas.map((r) => ({
          id: r.id,
          pid: r.envelope?.pid ?? 0,
          address: r.address,
          health: r.health,
          healthySince: r.healthySince === undefined ? undefined : new Date(r.healthySince).toISOString(),
          restarts: r.restarts,
          state: r.state,
        })),
      })),
      listeners: [...this.proxiesNow()].map((p) => ({ name: p.listener, address: p.address, replicas: p.backendCount })),
      admin: this.admin.address,
    };
  }

  /** The replicas' process ids, by group name (for tests and tools). */
  pids(): Map<string, number[]> {
    return new Map(this.groups.map((g) => [g.group.name, g.replicas.filter((r) => r.envelope?.running).map((r) => r.envelope!.pid)]));
  }

  /** A one-time URL that logs a browser in to the dashboard (see AdminServer). */
  dashboardLoginUrl(): string {
    return this.admin.loginUrl();
  }

  /** "host:port" of the admin server (dashboard, /metrics, APIs); "" before deploy(). */
  get adminAddress(): string {
    return this.admin.address;
  }

  /**
   * Fetches metric deltas from every running replica into `metricStore` and records a history point.
   * Concurrent calls share one collection.
   */
  collectMetrics(): Promise<void> {
    this.watchedAt = Date.now();
    return this.collect();
  }

  private collect(): Promise<void> {
    this.collecting ??= (async () => {
      try {
        await Promise.all(
          this.groups.flatMap((g) =>
            g.replicas.map(async (r) => {
              if (!r.envelope?.running) return;
              const updates = await r.envelope.getMetrics().catch(() => []);
              this.metricStore.add(updates, { [GROUP_LABEL]: g.group.name, [REPLICA_LABEL]: r.id });
            }),
          ),
        );
        this.metricStore.snapshot();
      } finally {
        this.collecting = undefined;
      }
    })();
    return this.collecting;
  }

  /** Every deployment in this deployment's state root (this one from memory), newest first. */
  deployments(): DeploymentSummary[] {
    const root = this.options.stateDir ?? stateRoot();
    const out: DeploymentSummary[] = [];
    for (const d of listDeployments(root)) {
      const s = d.deploymentId === this.deploymentId ? this.status() : d.readStatus();
      if (!s) continue;
      const live = observedStatus(s).state;
      out.push({ deploymentId: s.deploymentId, app: s.app, startedAt: s.startedAt, live, admin: s.admin });
    }
    return out.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
  }

  /** Profiles every running replica of the named groups at once. */
  async profile(kind: "CPU" | "HEAP", durationMs: number, groups: readonly string[]): Promise<ReplicaProfile[]> {
    const replicas = this.groups.filter((g) => groups.includes(g.group.name)).flatMap((g) => g.replicas.filter((r) => r.envelope?.running));
    return Promise.all(
      replicas.map(async (r) => {
        const envelope = r.envelope!;
        const bytes = await envelope.getProfile(kind, durationMs).catch((err: Error) => {
          throw new Error(`profiling replica ${r.id} (pid ${envelope.pid}) failed: ${err.message}`);
        });
        return { group: r.group.group.name, replica: r.id, pid: envelope.pid, profile: Buffer.from(bytes).toString("utf8") };
      }),
    );
  }

  /** The newest log entries (up to 2000), oldest first. */
  recentLogs(): readonly LogEntry[] {
    return this.logRing;
  }

  /**
   * Drains and stops the deployment within `graceMs` (default `[multi] drain_seconds`): the listener
   * proxies refuse new connections and finish the requests they have; then main's replicas stop (their
   * listeners and RPC servers drain), so no new work enters; then the other groups, each once every
   * group that calls it has stopped (all remaining at once where calls form a cycle). Whatever still runs
   * at the end of the grace period is killed.
   */
  async stop(graceMs = this.multi.drainMs): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const deadline = Date.now() + graceMs;
    // First of all: the listeners refuse new connections.
    const proxies = this.proxiesNow();
    const busy = proxies.reduce((n, p) => n + p.inflightRequests, 0);
    const drained = Promise.all(proxies.map((p) => p.drain(deadline)));
    clearTimeout(this.statusTimer);
    this.admin.close();
    this.progress(`tsweaver: stopping deployment ${this.deploymentId} (draining for up to ${graceMs / 1000} s)`);
    this.writeStatus();
    if (busy > 0) this.progress(`tsweaver: listeners refuse new connections; waiting for ${busy} requests in flight`);
    await drained;
    for (const wave of this.stopOrder()) {
      await Promise.all(
        wave.flatMap((g) =>
          g.replicas.map(async (r) => {
            r.state = "stopped";
            // The weavelet drains within what is left; the envelope kills it if it overruns.
            await r.envelope?.stop(Math.max(MIN_STOP_GRACE_MS, deadline - Date.now()));
          }),
        ),
      );
    }
    for (const p of proxies) p.close();
    if (this.socketDir !== undefined) rmSync(this.socketDir, { recursive: true, force: true });
    this.stopped = true;
    this.writeStatus();
    await this.dir.close();
  }

  /** A weavelet's TLS credentials ({@link MultiOptions.tlsCalls}), handed over like the AWS agent's. */
  private async tlsSecurity(group: string, callers: Record<string, string[]>): Promise<RpcSecurity> {
    if (this.options.tcpCalls !== true) throw new Error("MultiOptions.tlsCalls needs tcpCalls: TLS runs over TCP only");
    const certificate = await this.options.tlsCalls!(this.deploymentId, group);
    return { key: new Uint8Array(0), callers, certificate, requireTls: true };
  }

  /**
   * Where the next weavelet serves component calls: a Unix domain socket in a directory only this user
   * can enter (a kernel-local path: no TCP/IP stack, no port anyone on the host can connect to; the
   * deployment key still authenticates every connection). In the temp dir, not the state dir: a socket
   * path must fit in 108 bytes.
   */
  private rpcAddress(): string {
    if (this.options.tcpCalls === true || process.platform === "win32") return "127.0.0.1:0";
    this.socketDir ??= mkdtempSync(path.join(os.tmpdir(), "tsw-")); // mode 0700
    return `unix:${path.join(this.socketDir, `${this.socketCount++}.sock`)}`;
  }

  /**
   * Groups in the order they stop: main's first, then each group once all groups that call it (as far
   * as activations tell) have stopped; groups left in a cycle stop together.
   */
  private stopOrder(): GroupState[][] {
    const main = this.byComponent.get(MAIN_COMPONENT);
    const callers = new Map<GroupState, Set<GroupState>>();
    for (const g of this.groups) callers.set(g, new Set());
    for (const caller of this.groups)
      for (const r of caller.replicas)
        for (const c of r.activated) {
          const callee = this.byComponent.get(c);
          if (callee && callee !== caller) callers.get(callee)!.add(caller);
        }
    const waves: GroupState[][] = [];
    const stopped = new Set<GroupState>();
    let left = this.groups.filter((g) => g !== main);
    if (main) {
      waves.push([main]);
      stopped.add(main);
    }
    while (left.length > 0) {
      const ready = left.filter((g) => [...callers.get(g)!].every((c) => stopped.has(c)));
      const wave = ready.length > 0 ? ready : left;
      waves.push(wave);
      for (const g of wave) stopped.add(g);
      left = left.filter((g) => !stopped.has(g));
    }
    return waves;
  }

  private resolvedProxies: ListenerProxy[] = [];
  private proxiesNow(): ListenerProxy[] {
    return this.resolvedProxies;
  }

  private async startGroup(g: GroupState): Promise<void> {
    if (g.started) return;
    g.started = true;
    this.progress(`tsweaver: starting group ${g.group.name} (${g.group.components.join(", ")})`);
    for (let i = 0; i < this.multi.replicas; i++) {
      const replica: Replica = {
        id: `${g.group.name}-${i}`,
        group: g,
        envelope: undefined,
        address: "",
        health: "STARTING",
        restarts: 0,
        crashStreak: 0,
        healthySince: undefined,
        unhealthySince: undefined,
        stable: false,
        replacing: false,
        state: "starting",
        activated: new Set(),
        exported: new Map(),
      };
      g.replicas.push(replica);
    }
    const results = await Promise.allSettled(g.replicas.map((r) => this.startReplica(r)));
    const failed = results.find((r) => r.status === "rejected");
    if (failed && results.every((r) => r.status === "rejected")) {
      throw (failed as PromiseRejectedResult).reason;
    }
  }

  private async startReplica(r: Replica): Promise<void> {
    const g = r.group;
    const weaveletId = `${r.id}-${randomUUID().slice(0, 6)}`;
    const config = componentConfigs(this.config, g.group.components);
    // The groups allowed to call each of this group's components that restricts its callers.
    const callers: Record<string, string[]> = {};
    for (const c of g.group.components) {
      const list = this.config.callers[c];
      if (list !== undefined) callers[c] = [...new Set(list.map((caller) => this.byComponent.get(caller)!.group.name))].sort();
    }
    r.state = r.restarts > 0 ? "restarting" : "starting";
    const envelope = new Envelope({
      binary: this.config.binary,
      args: this.config.args,
      env: this.config.env,
      nodeArgs: this.config.nodeArgs,
      weaveletArgs: {
        app: this.config.name,
        deploymentId: this.deploymentId,
        id: weaveletId,
        runMain: g.group.components.includes(MAIN_COMPONENT),
        internalAddress: this.rpcAddress(),
        group: g.group.name,
        components: [...g.group.components],
        config,
        callTimeoutMs: { ...this.config.callTimeoutMs },
      },
      ...(this.options.plaintextCalls === true ? {} : { rpcSecurity: { key: this.rpcKey, callers } }),
      ...(this.options.tlsCalls === undefined ? {} : { rpcSecurity: await this.tlsSecurity(g.group.name, callers) }),
    });
    await envelope.serve(this.handlerFor(r, envelope));
    if (this.stopping) {
      await envelope.stop();
      return;
    }
    r.envelope = envelope;
    r.address = envelope.dialAddress;
    r.state = "running";
    r.health = "HEALTHY";
    r.healthySince = undefined; // counts from its first answered health check
    r.unhealthySince = undefined;
    r.stable = false;
    await envelope.updateComponents(g.group.components).catch(() => {});
    this.publishRoutes(g);
    this.writeStatus();
    void envelope.exited.then((info) => this.onExit(r, envelope, info.requested, info.code, info.signal));
  }

  private onExit(r: Replica, envelope: Envelope, requested: boolean, code: number | null, signal: string | null): void {
    if (r.envelope !== envelope) return;
    r.envelope = undefined;
    r.address = "";
    r.health = "TERMINATED";
    r.healthySince = undefined;
    r.unhealthySince = undefined;
    for (const [listener, address] of r.exported) void this.proxies.get(listener)?.then((p) => p.remove(address));
    r.exported.clear();
    this.publishRoutes(r.group);
    if (r.replacing && !this.stopping) {
      r.replacing = false;
      r.restarts++;
      this.writeStatus();
      this.startReplica(r).catch((err: Error) => {
        this.progress(`tsweaver: replacing replica ${r.id} failed: ${err.message}`);
        this.onExitFailedStart(r);
      });
      return;
    }
    if (this.stopping || requested) {
      r.state = "stopped";
      this.writeStatus();
      return;
    }
    if (!r.stable && this.crashLooping(r.group)) {
      const window = this.multi.crashLoopWindowMs / 1000;
      const err = new Error(
        `group ${r.group.group.name} crash-loops: its replicas exited ${r.group.crashes.length} times within ${window} s ` +
          `(the last, ${r.id}: code ${code}, signal ${signal}); see its log lines above (tsweaver multi logs). ` +
          `The limit is [multi] crash_loop_restarts = ${this.multi.crashLoopRestarts} within crash_loop_window_s = ${window}.`,
      );
      this.progress(`tsweaver: ${err.message}`);
      r.state = "stopped";
      this.writeStatus();
      this.failWith?.(err);
      return;
    }
    const delay = this.backoff(r);
    r.state = "restarting";
    this.progress(`tsweaver: replica ${r.id} exited (code ${code}, signal ${signal}); restart ${r.restarts} in ${delay} ms`);
    this.writeStatus();
    setTimeout(() => {
      if (this.stopping) return;
      this.startReplica(r).catch((err: Error) => {
        this.progress(`tsweaver: restarting replica ${r.id} failed: ${err.message}`);
        this.onExitFailedStart(r);
      });
    }, delay);
  }

  /** Counts a crash of one of `g`'s replicas; true once they crashed too often within the window. */
  private crashLooping(g: GroupState): boolean {
    const now = Date.now();
    g.crashes.push(now);
    while (g.crashes.length > 0 && g.crashes[0]! <= now - this.multi.crashLoopWindowMs) g.crashes.shift();
    return g.crashes.length >= this.multi.crashLoopRestarts;
  }

  /** Counts a restart and returns how long to wait before it. */
  private backoff(r: Replica): number {
    const delay = Math.min(RESTART_BACKOFF_MIN_MS * 2 ** r.crashStreak, RESTART_BACKOFF_MAX_MS);
    r.crashStreak++;
    r.restarts++;
    return delay;
  }

  // A restart that failed before its handshake counts as another crash.
  private onExitFailedStart(r: Replica): void {
    if (r.envelope || this.stopping) return;
    if (this.crashLooping(r.group)) {
      const err = new Error(
        `group ${r.group.group.name} crash-loops: its replicas failed to start or exited ${r.group.crashes.length} times within ${this.multi.crashLoopWindowMs / 1000} s; see its log lines above (tsweaver multi logs)`,
      );
      this.progress(`tsweaver: ${err.message}`);
      r.state = "stopped";
      this.writeStatus();
      this.failWith?.(err);
      return;
    }
    const delay = this.backoff(r);
    this.writeStatus();
    setTimeout(() => {
      if (!this.stopping) this.startReplica(r).catch(() => this.onExitFailedStart(r));
    }, delay);
  }

  private routingInfo(component: string, local = false): RoutingInfo {
    const g = this.byComponent.get(component)!;
    const running = g.replicas.filter((r) => r.state === "running" && r.address);
    // UNHEALTHY replicas get no calls, unless none is healthy: then trying them beats failing for sure.
    const healthy = running.filter((r) => r.health !== "UNHEALTHY");
    const replicas = (healthy.length > 0 ? healthy : running).map((r) => r.address);
    const routed = this.routed.get(component);
    if (!routed) return { component, local, replicas };
    // A new replica set gets a new assignment version; an unchanged one keeps its version.
    const key = replicas.join(",");
    if (routed.replicas !== key) {
      routed.version++;
      routed.replicas = key;
    }
    const a = computeAssignment(replicas, routed.version);
    return {
      component,
      local,
      replicas,
      assignment: { version: String(a.version), slices: a.slices.map((x) => ({ start: String(x.start), replicas: [x.replica] })) },
    };
  }

  /**
   * Sends every subscriber the current replica addresses of each of the group's components, and the
   * group's own replicas the assignment of its routed components (for their load reports).
   */
  private publishRoutes(g: GroupState): void {
    for (const component of g.group.components) {
      const info = this.routingInfo(component);
      for (const other of this.groups) {
        for (const sub of other.replicas) {
          if (sub.envelope?.running && sub.activated.has(component)) sub.envelope.updateRoutingInfo(info).catch(() => {});
        }
      }
      if (info.assignment) {
        for (const own of g.replicas) own.envelope?.updateRoutingInfo({ ...info, local: true }).catch(() => {});
      }
    }
  }

  /** Load reports of every running replica, by replica id (per component, per slice for routed ones). */
  async loads(): Promise<Map<string, ComponentLoad[]>> {
    const out = new Map<string, ComponentLoad[]>();
    await Promise.all(
      this.groups.flatMap((g) =>
        g.replicas.map(async (r) => {
          if (r.envelope?.running) out.set(r.id, await r.envelope.getLoad().catch(() => []));
        }),
      ),
    );
    return out;
  }

  /** Serves the requests of replica `r`'s weavelet, run by `envelope`. */
  private handlerFor(r: Replica, envelope: Envelope): EnvelopeHandler {
    return {
      activateComponent: async ({ component, routed }) => {
        const target = this.byComponent.get(component);
        if (!target) throw new Error(`unknown component ${component}: it is not registered in ${this.config.binary}`);
        if (routed && !this.routed.has(component)) this.routed.set(component, { version: 0n, replicas: "" });
        r.activated.add(component);
        await this.startGroup(target);
        this.publishRoutes(target);
        // The caller may still be in its handshake (not yet r.envelope, so publishRoutes skipped it).
        if (r.envelope !== envelope) await envelope.updateRoutingInfo(this.routingInfo(component));
      },
      getListenerAddress: async () => ({ address: "127.0.0.1:0" }),
      exportListener: async ({ listener, address }) => {
        let proxy = this.proxies.get(listener);
        if (!proxy) {
          const p = new ListenerProxy(listener);
          proxy = p.listen(this.multi.listeners.get(listener) ?? "localhost:0").then((addr) => {
            this.resolvedProxies.push(p);
            this.progress(`tsweaver: listener ${listener} available on http://${addr}`);
            return p;
          });
          this.proxies.set(listener, proxy);
          proxy.catch(() => this.proxies.delete(listener));
        }
        try {
          const p = await proxy;
          p.add(address);
          r.exported.set(listener, address);
          this.writeStatus();
          return { proxyAddress: p.address, error: "" };
        } catch (err) {
          return { proxyAddress: "", error: (err as Error).message };
        }
      },
      handleLogEntries: ({ entries }) => this.logs(entries),
      handleTraceSpans: ({ spans }) => this.spans(spans),
    };
  }

  private spans(spans: Span[]): void {
    const stored = spans.map(storedSpan);
    this.traceStore.add(stored);
    try {
      this.dir.appendTraces(stored);
    } catch {
      // The state dir vanished; the in-memory store still serves the dashboard.
    }
  }

  private logs(entries: LogEntry[]): void {
    this.logRing.push(...entries);
    if (this.logRing.length > RECENT_LOGS) this.logRing = this.logRing.slice(-RECENT_LOGS);
    try {
      this.dir.appendLogs(entries);
    } catch {
      // The state dir vanished (deleted by hand); printing still works.
    }
    if (this.options.printLogs !== false) process.stdout.write(entries.map((e) => formatLogEntry(e, this.color)).join("\n") + "\n");
  }

  private polling = false;
  private metricsAt = 0;

  private schedulePoll(ms: number): void {
    if (this.stopping) return;
    this.statusTimer = setTimeout(() => void this.poll(ms), ms);
    this.statusTimer.unref();
  }

  /** One poll: health, and metrics when due; the next one comes sooner when something changes. */
  private async poll(lastMs: number): Promise<void> {
    const now = Date.now();
    const watched = now - this.watchedAt < WATCHED_MS;
    // Metrics feed the dashboard's history: every poll while someone looks, else every IDLE_METRICS_MS.
    if (watched || now - this.metricsAt >= IDLE_METRICS_MS - POLL_MS / 2) {
      this.metricsAt = now;
      void this.collect();
    }
    // The next poll is scheduled whatever this one met: polling must never stop.
    const calm = await this.pollHealth().catch(() => false);
    this.schedulePoll(calm && !watched ? Math.min(CALM_POLL_MS, lastMs * 2) : POLL_MS);
  }

  /**
   * Asks every running replica for its health. A change between HEALTHY and UNHEALTHY reroutes calls
   * and listener traffic around it (or back to it); sustained health resets its restart backoff; a
   * replica UNHEALTHY for `[multi] unhealthy_replace_s` is replaced.
   */
  private async pollHealth(): Promise<boolean> {
    if (this.polling) return false; // a stuck replica holds a poll up to the health timeout
    this.polling = true;
    const before = this.lastStatus;
    try {
      await Promise.all(this.groups.flatMap((g) => g.replicas.map((r) => this.checkHealth(r))));
    } finally {
      this.polling = false;
    }
    this.writeStatus();
    // Calm: nothing changed since the last poll, and every replica started is running, stable and HEALTHY.
    return (
      before === this.lastStatus &&
      this.groups.every((g) => g.replicas.every((r) => r.envelope?.running === true && r.stable && r.health === "HEALTHY" && !r.replacing))
    );
  }

  private async checkHealth(r: Replica): Promise<void> {
    const envelope = r.envelope;
    if (!envelope?.running || r.replacing) return;
    const health = await envelope.getHealth().catch(() => "UNHEALTHY");
    if (r.envelope !== envelope || this.stopping) return;
    const now = Date.now();
    const wasUnhealthy = r.health === "UNHEALTHY";
    r.health = health;
    if (health === "HEALTHY") {
      r.unhealthySince = undefined;
      r.healthySince ??= now;
      if (now - r.healthySince >= SUSTAINED_HEALTH_MS) {
        r.crashStreak = 0;
        r.stable = true;
      }
    } else {
      r.healthySince = undefined;
      r.unhealthySince ??= now;
    }
    const isUnhealthy = health === "UNHEALTHY";
    if (isUnhealthy !== wasUnhealthy) {
      this.progress(`tsweaver: replica ${r.id} is ${health}${isUnhealthy ? ": no new calls or requests go to it" : " again"}`);
      this.publishRoutes(r.group);
      for (const [listener, address] of r.exported) void this.proxies.get(listener)?.then((p) => p.setHealthy(address, !isUnhealthy));
    }
    if (r.unhealthySince !== undefined && now - r.unhealthySince >= this.multi.unhealthyReplaceMs) this.replace(r, envelope);
  }

  /** Stops a replica that stayed unhealthy; its exit starts a fresh one (see onExit). */
  private replace(r: Replica, envelope: Envelope): void {
    r.replacing = true;
    const forS = ((Date.now() - (r.unhealthySince ?? Date.now())) / 1000).toFixed(0);
    this.progress(
      `tsweaver: replacing replica ${r.id} (pid ${envelope.pid}): UNHEALTHY for ${forS} s ([multi] unhealthy_replace_s = ${this.multi.unhealthyReplaceMs / 1000})`,
    );
    void envelope.stop(REPLACE_GRACE_MS);
  }

  private writeStatus(): void {
    try {
      const status = this.status();
      const same = JSON.stringify({ ...status, updatedAt: "" });
      if (same === this.lastStatus) return;
      this.lastStatus = same;
      this.dir.writeStatus(status);
    } catch {
      // Status is best effort; the deployment itself keeps running.
    }
  }
}
