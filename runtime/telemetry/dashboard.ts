/**
 * What the dashboard page (runtime/deployers/multi/dashboard/) and the admin server's JSON APIs read,
 * whichever deployer feeds them: the multi deployer from its own processes, `tsweaver aws dashboard`
 * from what AWS reports. Deployers do not import each other, so the shapes they share live here.
 */
import type { LogEntry } from "../protos/runtime.js";
import type { EdgeLatency } from "./graph.js";
import type { MetricStore } from "./metricstore.js";
import type { TraceStore } from "./tracestore.js";

/** One replica of a group, as the page's groups table shows it. */
export interface DashboardReplica {
  /** A process id (multi) or a shortened ECS task id (aws). */
  id: string;
  /** The operating system's process id; 0 where the replica is not a local process. */
  pid: number;
  /** host:port it serves component calls on. */
  address: string;
  /** HEALTHY, STARTING, UNHEALTHY, ... */
  health: string;
  /** Since when its health checks answer HEALTHY without a break (absent when they do not). */
  healthySince?: string | undefined;
  restarts: number;
  /** running, starting, stopped, ... (the AWS deployer adds the version when several run). */
  state: string;
}

/** A deployment as /api/status answers it and the page draws it. */
export interface DashboardStatus {
  deploymentId: string;
  app: string;
  /** Where its configuration comes from: a weaver.toml path, or `stack <name>`. */
  config: string;
  /** The deployer's process id; 0 where there is no local deployer process. */
  deployerPid: number;
  startedAt: string;
  updatedAt: string;
  /** running, stopping, stopped, dead (the multi deployer's states; AWS: running or stopped). */
  state: string;
  groups: { name: string; components: string[]; started: boolean; replicas: DashboardReplica[] }[];
  listeners: { name: string; address: string; replicas: number }[];
  /** "host:port" of the deployer's admin server, where it has one. */
  admin?: string;
}

/** A deployment as the dashboard lists it. */
export interface DeploymentSummary {
  deploymentId: string;
  app: string;
  startedAt: string;
  /** "running", "stopped", or "dead" (its deployer is gone). */
  live: string;
  admin: string | undefined;
}

/** One replica's profile, as /api/profile returns it. */
export interface ReplicaProfile {
  group: string;
  replica: string;
  pid: number;
  /** A .cpuprofile or .heapsnapshot document (JSON text). */
  profile: string;
}

/** What the traces panel says beside its traces when they come from elsewhere than the deployer's own processes. */
export interface TracesNote {
  /** Where the traces come from, or where they are when the page cannot show them. */
  source: string;
  /** Why the last read failed (the panel keeps the traces read before it). */
  error?: string;
}

/**
 * What the admin server shows: the multi deployer implements it from its own processes, `tsweaver aws
 * dashboard` from what AWS reports (which is why answers may come asynchronously).
 */
export interface AdminBackend {
  status(): DashboardStatus | Promise<DashboardStatus>;
  /** Every deployment in the state directory (this one included), newest first. */
  deployments(): DeploymentSummary[] | Promise<DeploymentSummary[]>;
  /** Fetches fresh metric deltas from every running replica into `metricStore`. */
  collectMetrics(): Promise<void>;
  readonly metricStore: MetricStore;
  readonly traceStore: TraceStore;
  /** Reads recent traces into `traceStore` (AWS: from X-Ray, at most once a refresh) and says where they come from. */
  collectTraces?(): Promise<TracesNote>;
  /** The newest log entries kept in memory, oldest first. */
  recentLogs(): readonly LogEntry[] | Promise<readonly LogEntry[]>;
  /** A CPU profile over `durationMs` (or a heap snapshot) of every running replica of `groups`; absent where replicas cannot be profiled. */
  profile?(kind: "CPU" | "HEAP", durationMs: number, groups: readonly string[]): Promise<ReplicaProfile[]>;
  /** Latency percentiles per call-graph edge (by `edgeKey`) for a metric store without latency buckets (AWS: CloudWatch's p50/p99). */
  edgeLatency?(): ReadonlyMap<string, EdgeLatency>;
  /** Default window of the call graph's rates (s; default 30): metrics that come a minute apart need a longer one. */
  readonly graphWindowSec?: number;
}
