import {
  type CloudWatchClient,
  type Datapoint,
  GetMetricDataCommand,
  GetMetricStatisticsCommand,
  type MetricDataQuery,
  type Metric,
  paginateListMetrics,
} from "@aws-sdk/client-cloudwatch";
import { FilterLogEventsCommand } from "@aws-sdk/client-cloudwatch-logs";
import { DescribeTaskDefinitionCommand, DescribeTasksCommand, paginateListTasks, type Task } from "@aws-sdk/client-ecs";
import { DescribeTargetHealthCommand } from "@aws-sdk/client-elastic-load-balancing-v2";
import { ListInstancesCommand } from "@aws-sdk/client-servicediscovery";
import type { LogEntry, MetricUpdate } from "../../protos/runtime.js";
import type { AdminBackend, DashboardReplica, DashboardStatus, DeploymentSummary, TracesNote } from "../../telemetry/dashboard.js";
import { type EdgeLatency, edgeKey } from "../../telemetry/graph.js";
import { MetricStore } from "../../telemetry/metricstore.js";
import { METHOD_CALLS, METHOD_ERRORS, METHOD_LATENCY } from "../../telemetry/methods.js";
import { TraceStore } from "../../telemetry/tracestore.js";
import { eniAddress } from "./callers.js";
import { type AwsClients, callAws } from "./clients.js";
import { labelOfDimension } from "./emf.js";
import { AGENT_CONTAINER, ATTR, COLLECTOR_CONTAINER, ENV, METRICS, OTLP_ENDPOINT_ENV, parseServiceName } from "./contract.js";
import { Versions, type LiveVersion } from "./versions.js";
import { XRayTraceReader, type XRayReadOptions, traceFilter, xrayErrorMessage } from "./xray.js";

/** What the dashboard needs of the stack (its outputs, as `tsweaver aws` reads them). */
export interface DashboardStack {
  stack: string;
  cluster: string;
  /** The version the stack deployed last. */
  version: string;
  groups: Record<string, { readonly discoveryServiceId: string }>;
  listeners: Record<string, { readonly url: string; readonly listenerArn: string }>;
  logGroup: string;
}

export interface AwsDashboardOptions {
  /** Least time between two reads of ECS, Cloud Map and the load balancer (ms); the page asks every 2 s. @default 10000 */
  refreshMs?: number;
  /** Least time between two GetMetricData reads (ms); CloudWatch has a point a minute. @default 30000 */
  metricsRefreshMs?: number;
  /** How far back the charts and call totals reach (minutes). @default 60 */
  metricsWindowMinutes?: number;
  /** Log entries kept for the tail. @default 2000 */
  maxLogs?: number;
  /** How recent traces are read from X-Ray (`[aws] tracing = "xray"`), every `refreshMs`. */
  traces?: XRayReadOptions;
}

/** Where a task definition's weavelet sends its traces (`[aws] tracing`, as deployed). */
export type DeployedTracing = { mode: "xray" } | { mode: "otlp"; endpoint: string } | { mode: "off" };

/** A group task definition: the app's name, the group's components, where its traces go. */
interface TaskDefinitionInfo {
  app: string;
  components: string[];
  tracing: DeployedTracing;
}

/** CloudWatch's resolution of the agents' EMF metrics. */
const PERIOD_SEC = 60;
/** FilterLogEvents pages read per refresh, at most. */
const MAX_LOG_PAGES = 5;
/** GetMetricData takes at most this many queries a request. */
const MAX_QUERIES = 500;

/**
 * The dashboard's data from AWS (what `tsweaver aws dashboard` serves with the multi deployer's page):
 * groups and replicas from ECS tasks, Cloud Map registrations and the listeners' target health; the call
 * graph and charts from the agents' EMF metrics in CloudWatch (GetMetricData, a point a minute); the log
 * tail from CloudWatch Logs. Reads are cached (see {@link AwsDashboardOptions}) so an open page costs a
 * bounded number of AWS calls, whatever its refresh rate. The call graph's p50/p99 are CloudWatch's
 * percentiles of the EMF latency over the graph's window. Recent traces come from X-Ray when the deployed
 * task definitions have the collector sidecar (`[aws] tracing = "xray"`); otherwise the traces panel says
 * where they are (the OTLP endpoint, or nowhere).
 */
export class AwsDashboardSource implements AdminBackend {
  /** Rebuilt from CloudWatch on each read (see {@link collectMetrics}). */
  private store = new MetricStore();
  readonly traceStore = new TraceStore();
  /** Rates over five CloudWatch points. */
  readonly graphWindowSec = 5 * PERIOD_SEC;
  private readonly versions: Versions;
  private readonly opts: Required<Omit<AwsDashboardOptions, "traces">>;
  private cached: { at: number; status: DashboardStatus; versions: DeploymentSummary[] } | undefined;
  private statusRead: Promise<void> | undefined;
  private metricsAt = 0;
  private metricsRead: Promise<void> | undefined;
  /** Task definition ARN → its app name and group components (task definitions never change). */
  private readonly taskDefs = new Map<string, TaskDefinitionInfo>();
  /** Where the deployed version's traces go, from its task definitions (undefined until read). */
  private tracing: DeployedTracing | undefined;
  private readonly xrayTraces: XRayTraceReader;
  private readonly traceWindowMinutes: number;
  private tracesAt = 0;
  private tracesRead: Promise<void> | undefined;
  private tracesError: string | undefined;
  private logs: LogEntry[] = [];
  private logsAt = 0;
  private logsRead: Promise<void> | undefined;
  private logsFrom = Date.now() - 10 * 60_000;
  private readonly seenLogEvents = new Set<string>();
  private app = "";
  private latency = new Map<string, EdgeLatency>();

  constructor(
    private readonly aws: AwsClients,
    private readonly d: DashboardStack,
    options: AwsDashboardOptions = {},
  ) {
    this.versions = new Versions(aws, d.cluster, d.stack);
    const { traces, ...rest } = options;
    this.opts = { refreshMs: 10_000, metricsRefreshMs: 30_000, metricsWindowMinutes: 60, maxLogs: 2000, ...rest };
    this.xrayTraces = new XRayTraceReader(() => aws.xray(), traces);
    this.traceWindowMinutes = traces?.windowMinutes ?? 10;
  }

  /**
   * With X-Ray tracing, reads the version's recent traces into the trace store (at most every
   * `refreshMs`; a failure is kept for the panel, the traces read before stay); otherwise says where the
   * traces are.
   */
  async collectTraces(): Promise<TracesNote> {
    await this.refresh(); // the task definitions say where traces go, and the app's name
    const tracing = this.tracing;
    if (tracing === undefined) return { source: "no task definition of this version read yet: where its traces go is unknown" };
    if (tracing.mode === "otlp")
      return {
        source: `[aws] tracing = "otlp": the weavelets export their traces to ${tracing.endpoint}; see them in that collector's backend`,
      };
    if (tracing.mode === "off")
      return {
        source: '[aws] tracing = "off": spans are counted and dropped; set tracing = "xray" (or "otlp" with otlp_endpoint) to keep them',
      };
    if (Date.now() - this.tracesAt >= this.opts.refreshMs) {
      this.tracesRead ??= (async () => {
        try {
          await this.xrayTraces.read({ app: this.app, version: this.d.version }, this.traceStore);
          this.tracesError = undefined;
        } catch (err) {
          this.tracesError = xrayErrorMessage(err);
        } finally {
          this.tracesAt = Date.now();
          this.tracesRead = undefined;
        }
      })();
      await this.tracesRead;
    }
    return {
      source: `X-Ray: traces of ${this.app} version ${this.d.version} from the last ${this.traceWindowMinutes} minutes (filter ${traceFilter(this.app)}), read every ${Math.round(this.opts.refreshMs / 1000)} s`,
      ...(this.tracesError !== undefined ? { error: this.tracesError } : {}),
    };
  }

  get metricStore(): MetricStore {
    return this.store;
  }

  edgeLatency(): ReadonlyMap<string, EdgeLatency> {
    return this.latency;
  }

  async status(): Promise<DashboardStatus> {
    await this.refresh();
    return this.cached!.status;
  }

  async deployments(): Promise<DeploymentSummary[]> {
    await this.refresh();
    return this.cached!.versions;
  }

  async recentLogs(): Promise<readonly LogEntry[]> {
    if (Date.now() - this.logsAt >= this.opts.refreshMs) {
      this.logsRead ??= (async () => {
        try {
          await this.readLogs();
          this.logsAt = Date.now();
        } finally {
          this.logsRead = undefined;
        }
      })();
      await this.logsRead;
    }
    return this.logs;
  }

  /** Reads ECS, Cloud Map and the load balancer, unless the last read is recent enough. */
  private async refresh(): Promise<void> {
    if (this.cached && Date.now() - this.cached.at < this.opts.refreshMs) return;
    this.statusRead ??= (async () => {
      try {
        const [status, versions] = await this.readStatus();
        this.cached = { at: Date.now(), status, versions };
      } finally {
        this.statusRead = undefined;
      }
    })();
    await this.statusRead;
  }

  private async readStatus(): Promise<[DashboardStatus, DeploymentSummary[]]> {
    const d = this.d;
    // The reads do not depend on each other: concurrently, so a refresh takes about one round trip per kind.
    const instances = Promise.all(
      Object.entries(d.groups).map(([group, g]) =>
        callAws("servicediscovery:ListInstances", `service ${g.discoveryServiceId} (group ${group})`, () =>
          this.aws.serviceDiscovery.send(new ListInstancesCommand({ ServiceId: g.discoveryServiceId })),
        ),
      ),
    );
    const health = Promise.all(
      Object.entries(d.listeners).map(async ([name, l]) => {
        const rule = await this.versions.rule(l.listenerArn);
        const groups = await Promise.all(
          [...(rule?.weights ?? [])].map(async ([arn, weight]) => {
            const out = await callAws("elasticloadbalancing:DescribeTargetHealth", `target group ${arn}`, () =>
              this.aws.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn })),
            );
            return { weight, targets: out.TargetHealthDescriptions ?? [] };
          }),
        );
        return { name, url: l.url, groups };
      }),
    );
    const [live, tasks] = await Promise.all([this.versions.list(), this.runningTasks()]);
    // Registered replicas: task ARN → "ip:port".
    const registered = new Map<string, string>();
    for (const out of await instances) {
      for (const i of out.Instances ?? []) {
        const arn = i.Attributes?.[ATTR.TASK_ARN];
        if (arn) registered.set(arn, `${i.Attributes?.[ATTR.IPV4] ?? ""}:${i.Attributes?.[ATTR.PORT] ?? ""}`);
      }
    }
    // Target health by target address (ip), and each listener's healthy targets behind weighted target groups.
    const targetHealth = new Map<string, string>();
    const listeners: DashboardStatus["listeners"] = [];
    for (const l of await health) {
      let healthy = 0;
      for (const { weight, targets } of l.groups) {
        for (const t of targets) {
          const ip = t.Target?.Id ?? "";
          const state = t.TargetHealth?.State ?? "unknown";
          // A task behind several listeners is as healthy as its worst target.
          if (state !== "healthy" || !targetHealth.has(ip)) targetHealth.set(ip, state);
          if (weight > 0 && state === "healthy") healthy++;
        }
      }
      listeners.push({ name: l.name, address: hostPort(l.url), replicas: healthy });
    }
    // Task definitions (cached: they never change), all at once.
    await Promise.all(
      Object.keys(d.groups).map(async (name) => {
        const service = live.get(d.version)?.services.get(name) ?? [...live.values()].map((v) => v.services.get(name)).find((x) => x);
        if (service) await this.taskDefinition(service.taskDefinition);
      }),
    );
    const groups: DashboardStatus["groups"] = [];
    const deployed = live.get(d.version);
    for (const name of Object.keys(d.groups).sort()) {
      const service = deployed?.services.get(name) ?? [...live.values()].map((v) => v.services.get(name)).find((s) => s);
      const def = service ? await this.taskDefinition(service.taskDefinition) : undefined;
      const replicas: DashboardReplica[] = tasks
        .filter((t) => parseServiceName((t.group ?? "").replace(/^service:/, ""))?.group === name)
        .map((t) => {
          const ip = eniAddress(t) ?? "";
          const address = registered.get(t.taskArn ?? "") ?? ip;
          const target = targetHealth.get(ip);
          const stopping = t.desiredStatus === "STOPPED";
          const health = stopping
            ? "UNHEALTHY"
            : !registered.has(t.taskArn ?? "")
              ? "STARTING"
              : target === undefined || target === "healthy"
                ? "HEALTHY"
                : target === "initial"
                  ? "STARTING"
                  : "UNHEALTHY";
          const version = parseServiceName((t.group ?? "").replace(/^service:/, ""))?.version ?? "";
          const state = (t.lastStatus ?? "unknown").toLowerCase();
          return {
            id: shortTaskId(t.taskArn ?? ""),
            pid: 0,
            address,
            health,
            restarts: 0,
            state: live.size > 1 ? `${state} ${version}` : state,
          };
        })
        .sort((a, b) => a.id.localeCompare(b.id));
      groups.push({
        name,
        components: def?.components ?? [],
        started: [...live.values()].some((v) => (v.services.get(name)?.desired ?? 0) > 0),
        replicas,
      });
      if (def && !this.app) this.app = def.app;
      if (def && service && (deployed?.services.get(name) === service || this.tracing === undefined)) this.tracing = def.tracing;
    }
    const now = new Date().toISOString();
    const status: DashboardStatus = {
      deploymentId: d.version,
      app: this.app || d.stack,
      config: `stack ${d.stack}`,
      deployerPid: 0,
      startedAt: deployed ? new Date(createdAt(deployed)).toISOString() : now,
      updatedAt: now,
      state: groups.some((g) => g.started) ? "running" : "stopped",
      groups,
      listeners,
    };
    const versions = [...live.values()]
      .map((v) => ({
        deploymentId: v.version,
        app: `${this.app || d.stack} (${v.rollout.phase ?? "new"})`,
        startedAt: new Date(createdAt(v)).toISOString(),
        live: [...v.services.values()].some((s) => s.desired > 0) ? "running" : "stopped",
        admin: undefined,
      }))
      .sort((a, b) => b.startedAt.localeCompare(a.startedAt));
    return [status, versions];
  }

  /** Every task of the cluster that is not stopped. */
  private async runningTasks(): Promise<Task[]> {
    const arns: string[] = [];
    for await (const page of paginateListTasks({ client: this.aws.ecs }, { cluster: this.d.cluster, desiredStatus: "RUNNING" }))
      arns.push(...(page.taskArns ?? []));
    const tasks: Task[] = [];
    for (let i = 0; i < arns.length; i += 100) {
      const out = await callAws("ecs:DescribeTasks", `cluster ${this.d.cluster}`, () =>
        this.aws.ecs.send(new DescribeTasksCommand({ cluster: this.d.cluster, tasks: arns.slice(i, i + 100) })),
      );
      tasks.push(...(out.tasks ?? []));
    }
    return tasks;
  }

  /**
   * The app name and components a group's task definition gives its agent (TSWEAVER_APP,
   * TSWEAVER_COMPONENTS), and where its traces go: X-Ray when it has the collector sidecar, the agent's
   * OTLP endpoint otherwise, else nowhere.
   */
  private async taskDefinition(arn: string): Promise<TaskDefinitionInfo | undefined> {
    if (!arn) return undefined;
    let def = this.taskDefs.get(arn);
    if (!def) {
      const out = await callAws("ecs:DescribeTaskDefinition", `task definition ${arn}`, () =>
        this.aws.ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: arn })),
      );
      const containers = out.taskDefinition?.containerDefinitions ?? [];
      const env = new Map(
        (containers.find((c) => c.name === AGENT_CONTAINER) ?? containers[0])?.environment?.map((e) => [e.name ?? "", e.value ?? ""]) ?? [],
      );
      const endpoint = env.get(OTLP_ENDPOINT_ENV);
      def = {
        tracing: containers.some((c) => c.name === COLLECTOR_CONTAINER)
          ? { mode: "xray" }
          : endpoint
            ? { mode: "otlp", endpoint }
            : { mode: "off" },
        app: env.get(ENV.APP) ?? "",
        components: (env.get(ENV.COMPONENTS) ?? "")
          .split(",")
          .filter((c) => c !== "")
          .sort(),
      };
      this.taskDefs.set(arn, def);
    }
    return def;
  }

  /** Appends the log group's new entries (EMF metric lines skipped) to the tail. */
  private async readLogs(): Promise<void> {
    let token: string | undefined;
    let newest = this.logsFrom;
    const fresh: LogEntry[] = [];
    let pages = 0;
    do {
      const page = await callAws("logs:FilterLogEvents", `log group ${this.d.logGroup}`, () =>
        this.aws.logs.send(new FilterLogEventsCommand({ logGroupName: this.d.logGroup, startTime: this.logsFrom, nextToken: token })),
      );
      for (const ev of page.events ?? []) {
        const id = ev.eventId ?? "";
        if (this.seenLogEvents.has(id)) continue;
        this.seenLogEvents.add(id);
        newest = Math.max(newest, ev.timestamp ?? 0);
        const entry = logEntryOf(ev.message ?? "", ev.timestamp ?? 0, ev.logStreamName ?? "");
        if (entry) fresh.push(entry);
      }
      token = page.nextToken;
      pages++;
      // At most MAX_LOG_PAGES a refresh (the metric lines count too): the next refresh goes on from the newest seen.
    } while (token && pages < MAX_LOG_PAGES);
    // Events of the newest millisecond may still arrive: read from it again, skipping the ones seen.
    this.logsFrom = newest;
    if (this.seenLogEvents.size > 4 * this.opts.maxLogs) this.seenLogEvents.clear();
    fresh.sort((a, b) => Number(a.timeMicros) - Number(b.timeMicros));
    this.logs = [...this.logs, ...fresh].slice(-this.opts.maxLogs);
  }

  /**
   * Rebuilds the metric store from CloudWatch: per caller → component.method edge (and version), calls,
   * errors and latency (sum and count: the mean) per minute over the window, as a history of totals the
   * page's call graph and charts read like the multi deployer's.
   */
  async collectMetrics(): Promise<void> {
    if (Date.now() - this.metricsAt < this.opts.metricsRefreshMs) return;
    this.metricsRead ??= (async () => {
      try {
        await this.readMetrics();
        this.metricsAt = Date.now();
      } finally {
        this.metricsRead = undefined;
      }
    })();
    await this.metricsRead;
  }

  private async readMetrics(): Promise<void> {
    await this.refresh(); // the app name, from a task definition
    const groupOf = new Map<string, string>();
    for (const g of this.cached?.status.groups ?? []) for (const c of g.components) groupOf.set(c, g.name);
    const read = await readMetricStore(this.aws.cloudWatch, this.app, groupOf, this.opts.metricsWindowMinutes);
    this.store = read.store;
    this.latency = await readEdgeLatency(this.aws.cloudWatch, read.latencySeries, read.end, this.graphWindowSec);
  }
}

/**
 * The app's metrics in CloudWatch as a metric store the page reads like the multi deployer's: per caller →
 * component.method edge (and version), calls, errors and latency (sum and count: the mean), and the app's
 * own metrics (by their `Kind` dimension: counters' sums, gauges' averages, histograms' sums and counts),
 * per minute over the last `windowMinutes`, as a history of totals. `groupOf` (component → group) tells
 * local calls from remote ones; the latency series are returned for their percentiles.
 */
export async function readMetricStore(
  cloudWatch: CloudWatchClient,
  app: string,
  groupOf: ReadonlyMap<string, string>,
  windowMinutes: number,
): Promise<{ store: MetricStore; latencySeries: LatencySeries[]; end: Date }> {
  const D = METRICS.DIM;
  const edges: Metric[] = [];
  const user: Metric[] = [];
  const listed = new Set<string>();
  const wanted = new Set<string>([METRICS.CALLS, METRICS.ERRORS, METRICS.LATENCY]);
  for await (const page of paginateListMetrics(
    { client: cloudWatch },
    { Namespace: METRICS.NAMESPACE, Dimensions: [{ Name: D.APP, Value: app }] },
  )) {
    for (const m of page.Metrics ?? []) {
      const dims = m.Dimensions ?? [];
      // Each metric once, whatever the listing repeats (moto lists a value/count metric once per value and again).
      const id = JSON.stringify([m.MetricName, dims.map((x) => [x.Name, x.Value]).sort()]);
      if (listed.has(id)) continue;
      listed.add(id);
      if (wanted.has(m.MetricName ?? "") && dims.some((x) => x.Name === D.CALLER)) edges.push(m);
      else if (dims.some((x) => x.Name === D.KIND)) user.push(m);
    }
  }
  // One query per series and statistic; latency needs its sum and its count.
  type Kind = MetricUpdate["kind"];
  const queries: { query: MetricDataQuery; name: string; kind: Kind; labels: Record<string, string>; part: "value" | "count" }[] = [];
  const add = (m: Metric, name: string, kind: Kind, labels: Record<string, string>) => {
    const stats: ["Sum" | "SampleCount" | "Average", "value" | "count"][] =
      kind === "HISTOGRAM"
        ? [
            ["Sum", "value"],
            ["SampleCount", "count"],
          ]
        : kind === "GAUGE"
          ? [["Average", "value"]]
          : [["Sum", "value"]];
    for (const [stat, part] of stats)
      queries.push({
        query: { Id: `m${queries.length}`, MetricStat: { Metric: m, Period: PERIOD_SEC, Stat: stat }, ReturnData: true },
        name,
        kind,
        labels,
        part,
      });
  };
  const latencySeries: LatencySeries[] = [];
  for (const m of edges) {
    const dims = Object.fromEntries((m.Dimensions ?? []).map((x) => [x.Name ?? "", x.Value ?? ""]));
    const caller = dims[D.CALLER] ?? "";
    const component = dims[D.COMPONENT] ?? "";
    // EMF drops the runtime's "remote" label: a call is remote when caller and callee run in different groups.
    const remote = String(groupOf.get(caller) === undefined || groupOf.get(caller) !== groupOf.get(component));
    const labels = { caller, component, method: dims[D.METHOD] ?? "", remote, version: dims[D.VERSION] ?? "" };
    const name = m.MetricName === METRICS.CALLS ? METHOD_CALLS : m.MetricName === METRICS.ERRORS ? METHOD_ERRORS : METHOD_LATENCY;
    if (name === METHOD_LATENCY) latencySeries.push({ metric: m, edge: edgeKey(caller, component, remote === "true") });
    add(m, name, name === METHOD_LATENCY ? "HISTOGRAM" : "COUNTER", labels);
  }
  // The app's own metrics: their labels are the dimensions past App, Group, Version and Kind (a label of one
  // of those names comes back from its renamed dimension); groups and versions add up.
  const base = new Set<string>([D.APP, D.GROUP, D.VERSION, D.KIND]);
  for (const m of user) {
    const dims = m.Dimensions ?? [];
    const kind = dims.find((x) => x.Name === D.KIND)?.Value;
    if (kind !== "COUNTER" && kind !== "GAUGE" && kind !== "HISTOGRAM") continue;
    const labels = Object.fromEntries(
      dims.filter((x) => !base.has(x.Name ?? "")).map((x) => [labelOfDimension(x.Name ?? ""), x.Value ?? ""]),
    );
    add(m, m.MetricName ?? "", kind, labels);
  }
  const now = Date.now();
  const end = new Date(Math.ceil(now / (PERIOD_SEC * 1000)) * PERIOD_SEC * 1000);
  const start = new Date(end.getTime() - windowMinutes * 60_000);
  // Per period start (ms) → per query index → value.
  const byTime = new Map<number, Map<number, number>>();
  for (let i = 0; i < queries.length; i += MAX_QUERIES) {
    const batch = queries.slice(i, i + MAX_QUERIES);
    let token: string | undefined;
    do {
      const out = await callAws("cloudwatch:GetMetricData", `namespace ${METRICS.NAMESPACE} (app ${app})`, () =>
        cloudWatch.send(
          new GetMetricDataCommand({ MetricDataQueries: batch.map((q) => q.query), StartTime: start, EndTime: end, NextToken: token }),
        ),
      );
      for (const r of out.MetricDataResults ?? []) {
        const index = Number((r.Id ?? "").slice(1));
        (r.Timestamps ?? []).forEach((t, k) => {
          const at = t.getTime();
          const values = byTime.get(at) ?? new Map<number, number>();
          values.set(index, (values.get(index) ?? 0) + (r.Values?.[k] ?? 0));
          byTime.set(at, values);
        });
      }
      token = out.NextToken;
    } while (token);
  }
  // Totals from the window's start: a zero point, then one point at the end of each period (never past now).
  const store = new MetricStore(windowMinutes + 2);
  const times = [...byTime.keys()].sort((a, b) => a - b);
  if (times.length > 0) store.snapshot(times[0]!, 0);
  for (const t of times) {
    const values = byTime.get(t)!;
    const updates = new Map<string, MetricUpdate>();
    for (const [index, v] of values) {
      const q = queries[index]!;
      const key = `${q.name}\u0000${JSON.stringify(q.labels)}`;
      let u = updates.get(key);
      if (!u) {
        const kind = q.kind;
        // A latency without buckets: CloudWatch gives its sum and count (the mean); its percentiles come apart (edgeLatency).
        u = { name: q.name, kind, help: "", labels: q.labels, value: 0, bounds: [], counts: kind === "HISTOGRAM" ? ["0"] : [] };
        updates.set(key, u);
      }
      if (q.part === "value") u.value += v;
      else u.counts = [String(Number(u.counts[0] ?? 0) + v)];
    }
    store.add([...updates.values()], {});
    store.snapshot(Math.min(t + PERIOD_SEC * 1000, now), 0);
  }
  return { store, latencySeries, end };
}

/** One EMF latency series of the call graph and its edge ({@link edgeKey}). */
export interface LatencySeries {
  metric: Metric;
  edge: string;
}

const PERCENTILES = { p50: "p50Ms", p99: "p99Ms" } as const;
/** GetMetricStatistics calls in flight at once. */
const PERCENTILE_READS = 8;

/**
 * CloudWatch's p50 and p99 of each latency series over the `periodSec` before `end` (EMF histograms are
 * stored as value/count pairs, so CloudWatch computes percentiles from them), per call-graph edge.
 * GetMetricStatistics' ExtendedStatistics, a call per series (priced per metric like GetMetricData).
 */
export async function readEdgeLatency(
  cloudWatch: CloudWatchClient,
  series: readonly LatencySeries[],
  end: Date,
  periodSec: number,
): Promise<Map<string, EdgeLatency>> {
  const start = new Date(end.getTime() - periodSec * 1000);
  const answers: Datapoint[][] = new Array<Datapoint[]>(series.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < series.length; i = next++) {
      const m = series[i]!.metric;
      const out = await callAws("cloudwatch:GetMetricStatistics", `${METRICS.NAMESPACE} ${m.MetricName} (latency percentiles)`, () =>
        cloudWatch.send(
          new GetMetricStatisticsCommand({
            Namespace: m.Namespace,
            MetricName: m.MetricName,
            Dimensions: m.Dimensions,
            StartTime: start,
            EndTime: end,
            Period: periodSec,
            ExtendedStatistics: Object.keys(PERCENTILES),
          }),
        ),
      );
      answers[i] = out.Datapoints ?? [];
    }
  };
  await Promise.all(Array.from({ length: Math.min(PERCENTILE_READS, series.length) }, worker));
  return edgeLatencyOf(series, answers);
}

/**
 * GetMetricStatistics' answers (one per series, in order) as percentiles per edge: each series' newest
 * datapoint; an edge with several methods (or versions) takes the slowest one's, since percentiles of
 * separate series do not combine. A series without percentiles leaves its edge's undefined.
 */
export function edgeLatencyOf(series: readonly LatencySeries[], answers: readonly (readonly Datapoint[])[]): Map<string, EdgeLatency> {
  const out = new Map<string, EdgeLatency>();
  series.forEach((s, i) => {
    let newest: Datapoint | undefined;
    for (const p of answers[i] ?? [])
      if (p.ExtendedStatistics && (!newest || (p.Timestamp?.getTime() ?? 0) > (newest.Timestamp?.getTime() ?? 0))) newest = p;
    for (const [stat, field] of Object.entries(PERCENTILES)) {
      const v = newest?.ExtendedStatistics?.[stat];
      if (typeof v !== "number" || !Number.isFinite(v)) continue;
      const e = out.get(s.edge) ?? { p50Ms: undefined, p99Ms: undefined };
      e[field] = Math.max(e[field] ?? -Infinity, v);
      out.set(s.edge, e);
    }
  });
  return out;
}

/** A log event as a LogEntry: the agents' JSON lines, or a plain line as a stdout entry; undefined for an EMF metric line. */
function logEntryOf(message: string, timestamp: number, stream: string): LogEntry | undefined {
  try {
    const parsed = JSON.parse(message) as Partial<LogEntry> & { _aws?: unknown };
    if (parsed._aws !== undefined) return undefined;
    if (typeof parsed.msg === "string")
      return {
        app: "",
        version: "",
        component: "",
        node: "",
        timeMicros: String(timestamp * 1000),
        level: "info",
        file: "",
        line: 0,
        ...parsed,
        attrs: parsed.attrs ?? {},
      } as LogEntry;
  } catch {
    // not JSON: a plain line
  }
  return {
    app: "",
    version: "",
    component: "stdout",
    node: stream.split("/").pop() ?? "",
    timeMicros: String(timestamp * 1000),
    level: "info",
    file: "",
    line: 0,
    msg: message,
    attrs: {},
  };
}

/** "http://name:80/" → "name:80" (the page links to http://<address>/). */
function hostPort(url: string): string {
  try {
    const u = new URL(url);
    return u.port ? `${u.hostname}:${u.port}` : u.hostname;
  } catch {
    return url;
  }
}

/** When a version's services appeared: the rollout's start, else now. */
function createdAt(v: LiveVersion): number {
  return v.rollout.since || Date.now();
}

/** A task ARN's id, shortened for the groups table. */
function shortTaskId(arn: string): string {
  return (arn.split("/").pop() ?? "").slice(0, 12);
}
