/**
 * Who is calling the control plane: every agent request is bound to a real task of this deployment's
 * cluster. The connection's source address must be the ENI address ECS reports for the task the agent
 * names, and the task must be a group task of a version (started by that version's service); what the
 * request claims about itself is then checked against that task (controlplane.ts).
 */
import { DescribeTasksCommand, type Task } from "@aws-sdk/client-ecs";
import { parseServiceName } from "./contract.js";
import { ControlApiError, type Rejection } from "./protocol.js";

/** A task as ECS describes it, reduced to what a caller check needs. */
export interface KnownTask {
  readonly taskArn: string;
  readonly taskId: string;
  /** The private IPv4 address of its ENI (awsvpc). */
  readonly ip: string;
  /** Its group and version, from the service that started it (`service:<group>-<version>`). */
  readonly group: string;
  readonly version: string;
  readonly taskDefinitionArn: string;
  readonly lastStatus: string;
}

/** The private IPv4 address of a task's ENI, as DescribeTasks reports it. */
export function eniAddress(task: Task): string | undefined {
  return task.attachments?.find((a) => a.type === "ElasticNetworkInterface")?.details?.find((d) => d.name === "privateIPv4Address")?.value;
}

export interface TaskDirectoryOptions {
  /** DescribeTasks of up to 100 task ARNs in the deployment's cluster (tasks of other clusters come back as failures). */
  readonly describe: (taskArns: string[]) => Promise<Task[]>;
  /** The task definition a group's tasks of a version run (undefined: no such group in that version). */
  readonly taskDefinitionOf: (group: string, version: string) => Promise<string | undefined>;
  /** How long a described task is trusted before it is described again. Default 60 s. */
  readonly ttlMs?: number;
  /** Tasks remembered at most (the oldest are forgotten first). Default 4096. */
  readonly maxEntries?: number;
  /** A task that did not match is described again at most this often. Default 2 s. */
  readonly minRefreshMs?: number;
}

interface Entry {
  task: KnownTask | undefined;
  /** Why the task is no caller (not in the cluster, not a group task); undefined for a caller. */
  unknown: string | undefined;
  at: number;
}

/**
 * DescribeTasks, cached: a task is described when first seen, again after `ttlMs`, and again when a
 * request does not match what is cached (a new address, a new status) but no more often than
 * `minRefreshMs` per task, so forged requests cannot turn into a stream of AWS calls.
 */
export class TaskDirectory {
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<Entry>>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly minRefreshMs: number;

  constructor(private readonly opts: TaskDirectoryOptions) {
    this.ttlMs = opts.ttlMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 4096;
    this.minRefreshMs = opts.minRefreshMs ?? 2_000;
  }

  /**
   * The task `taskArn`, verified to be the caller at `sourceIp`: a running group task of the cluster
   * (or a stopped one, when `stoppedMayCall`) whose ENI address is `sourceIp`. Throws a 403
   * ControlApiError saying what did not match.
   */
  async verify(taskArn: string, sourceIp: string, stoppedMayCall: boolean): Promise<KnownTask> {
    let entry = this.cache.get(taskArn);
    const now = Date.now();
    const stale = entry === undefined || now - entry.at >= this.ttlMs;
    const mismatch = entry !== undefined && this.problem(entry, taskArn, sourceIp, stoppedMayCall) !== undefined;
    if (stale || (mismatch && now - entry!.at >= this.minRefreshMs)) entry = await this.refresh(taskArn);
    const why = this.problem(entry!, taskArn, sourceIp, stoppedMayCall);
    if (why !== undefined) throw new ControlApiError(`forbidden: ${why}`, 403);
    return entry!.task!;
  }

  /**
   * Takes tasks as the control plane's listing of the whole cluster described them (every reconcile),
   * so agents' requests are verified without a DescribeTasks per task: at scale those would be most
   * of the control plane's AWS calls. Tasks not yet cached are added too (the listing is this cluster's).
   */
  async prime(tasks: readonly Task[]): Promise<void> {
    for (const t of tasks) {
      if (!t.taskArn || this.inflight.has(t.taskArn)) continue;
      this.remember(t.taskArn, await this.toEntry(t.taskArn, t));
    }
  }

  /** Forgets a task (it stopped and deregistered). */
  forget(taskArn: string): void {
    this.cache.delete(taskArn);
  }

  private problem(entry: Entry, taskArn: string, sourceIp: string, stoppedMayCall: boolean): string | undefined {
    if (entry.unknown !== undefined) return entry.unknown;
    const t = entry.task!;
    if (t.ip !== sourceIp) return `the request comes from ${sourceIp}, not from the ENI address of task ${taskArn}`;
    if (t.lastStatus === "STOPPED" && !stoppedMayCall) return `task ${taskArn} is stopped`;
    if (t.lastStatus === "DELETED") return `task ${taskArn} is gone`;
    return undefined;
  }

  private refresh(taskArn: string): Promise<Entry> {
    let p = this.inflight.get(taskArn);
    if (p === undefined) {
      p = this.describe(taskArn).finally(() => this.inflight.delete(taskArn));
      this.inflight.set(taskArn, p);
    }
    return p;
  }

  private async describe(taskArn: string): Promise<Entry> {
    let tasks: Task[];
    try {
      tasks = await this.opts.describe([taskArn]);
    } catch (err) {
      throw new ControlApiError(`cannot verify task ${taskArn} now (${(err as Error).message}); retry`, 503);
    }
    const entry = await this.toEntry(
      taskArn,
      tasks.find((t) => t.taskArn === taskArn),
    );
    this.remember(taskArn, entry);
    return entry;
  }

  private remember(taskArn: string, entry: Entry): void {
    this.cache.delete(taskArn); // re-inserted last: the map's order is the eviction order
    this.cache.set(taskArn, entry);
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
  }

  private async toEntry(taskArn: string, t: Task | undefined): Promise<Entry> {
    const at = Date.now();
    if (t === undefined) return { task: undefined, unknown: `task ${taskArn} is not a task of this deployment's cluster`, at };
    const service = t.group?.startsWith("service:") ? parseServiceName(t.group.slice("service:".length)) : undefined;
    if (service === undefined)
      return { task: undefined, unknown: `task ${taskArn} was not started by a group's service (group ${t.group ?? "none"})`, at };
    const expected = await this.opts.taskDefinitionOf(service.group, service.version);
    if (expected === undefined || expected !== t.taskDefinitionArn)
      return {
        task: undefined,
        unknown: `task ${taskArn} runs ${t.taskDefinitionArn ?? "no task definition"}, not the task definition of group ${service.group} in version ${service.version}`,
        at,
      };
    const ip = eniAddress(t);
    if (ip === undefined) return { task: undefined, unknown: `task ${taskArn} has no ENI address (yet)`, at: at - this.ttlMs };
    return {
      task: {
        taskArn,
        taskId: taskArn.split("/").pop()!,
        ip,
        group: service.group,
        version: service.version,
        taskDefinitionArn: t.taskDefinitionArn!,
        lastStatus: t.lastStatus ?? "",
      },
      unknown: undefined,
      at,
    };
  }
}

/** DescribeTasks in a cluster, as {@link TaskDirectoryOptions.describe} wants it. */
export function describeTasksIn(
  send: (cmd: DescribeTasksCommand) => Promise<{ tasks?: Task[] | undefined }>,
  clusterArn: string,
): (taskArns: string[]) => Promise<Task[]> {
  return async (taskArns) => (await send(new DescribeTasksCommand({ cluster: clusterArn, tasks: taskArns }))).tasks ?? [];
}

/**
 * Logs refused requests, at most `perMinute` lines a minute; the rest are counted and reported in one
 * line when logging resumes, so a flood of forged requests cannot flood the logs.
 */
export class RejectionLog {
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(
    private readonly write: (msg: string, attrs: Record<string, string>) => void,
    private readonly perMinute = 20,
  ) {}

  record(r: Rejection): void {
    const now = Date.now();
    if (now - this.windowStart >= 60_000) {
      if (this.suppressed > 0) this.write("rejected agent requests not logged", { count: String(this.suppressed) });
      this.windowStart = now;
      this.logged = 0;
      this.suppressed = 0;
    }
    if (this.logged >= this.perMinute) {
      this.suppressed++;
      return;
    }
    this.logged++;
    this.write("rejected an agent request", { status: String(r.status), why: r.why, peer: r.peer, method: r.method, task: r.task });
  }
}
