/**
 * `FargateSimulator`: plays ECS's service scheduler and Fargate on top of an AWS API emulator that runs
 * no containers (moto).
 *
 * Every `pollMs` it reads the cluster's services and tasks from the emulator and
 *  - as the service scheduler (scheduler.ts), keeps `desiredCount` tasks per service;
 *  - as Fargate (task-runner.ts), starts the essential container of every RUNNING task (whoever started
 *    it) as a local process on its own loopback address, which its metadata endpoint (metadata.ts)
 *    reports as the task's awsvpc IPv4 address: processes must bind that address, not 0.0.0.0, since the
 *    tasks share one host; stops the process of a task stopped in the emulator (by anyone), and stops
 *    the task of a process that exits on its own;
 *  - as the awslogs driver (logs.ts), copies each process's output to CloudWatch Logs so `tsweaver aws
 *    logs` has something to read.
 * Nothing is left running after `stop()`; processes are killed when the test process exits.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { CloudWatchLogsClient } from "@aws-sdk/client-cloudwatch-logs";
import { DescribeTasksCommand, ECSClient, ListTasksCommand, StopTaskCommand, type Task } from "@aws-sdk/client-ecs";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { clientConfig, configureEmulator, DEFAULT_REGION, sleep } from "../moto.js";
import { chunks } from "./chunks.js";
import { AwsLogsShipper } from "./logs.js";
import { MetadataEndpoint } from "./metadata.js";
import { ServiceScheduler } from "./scheduler.js";
import { installExitHook, snapshot, TaskRunner, type SimTask, type TaskRecord } from "./task-runner.js";

export { DEFAULT_ENTRYPOINT, type SimTask, type SimTaskState } from "./task-runner.js";

export interface FargateSimulatorOptions {
  /** Emulator endpoint the simulator talks to. */
  readonly endpoint: string;
  /** Cluster name or ARN. */
  readonly cluster: string;
  readonly region?: string;
  /** Working directory of every process (the image's WORKDIR). Default: the repository root. */
  readonly workdir?: string;
  /** The image's entrypoint, for containers without one. Default: {@link DEFAULT_ENTRYPOINT}. */
  readonly entrypoint?: readonly string[];
  /** `AWS_ENDPOINT_URL` of the processes. Default: `endpoint` (e.g. a throttling proxy instead). */
  readonly processEndpoint?: string;
  /** Extra environment of a task's process (applied last). */
  readonly taskEnv?: (task: SimTask) => Record<string, string> | undefined;
  /** Which services to play the scheduler for (all by default). Tasks are run whoever started them. */
  readonly services?: (serviceName: string) => boolean;
  /** Poll interval. Default 150 ms. */
  readonly pollMs?: number;
  /** SIGTERM → SIGKILL grace when a task is stopped. Default 5000 ms (ECS: 30 s). */
  readonly stopTimeoutMs?: number;
  /**
   * Address prefix of tasks the emulator reports no loopback ENI address for, e.g. "127.0.0." (then .2,
   * .3, ...). Default: a random `127.a.b.`.
   */
  readonly ipPrefix?: string;
  /** Copy output to CloudWatch Logs for containers with the awslogs driver. Default true. */
  readonly awslogs?: boolean;
  /** Echo every output line to stderr. Default: TSWEAVER_TEST_VERBOSE=1. */
  readonly verbose?: boolean;
  /** Output lines kept per stream and task. Default 5000. */
  readonly maxLines?: number;
}

export class FargateSimulator extends EventEmitter {
  readonly endpoint: string;
  readonly cluster: string;
  readonly region: string;
  readonly ipPrefix: string;
  private readonly opts: FargateSimulatorOptions;
  private readonly ecs: ECSClient;
  private readonly secrets: SecretsManagerClient;
  private readonly logClient: CloudWatchLogsClient;
  private readonly logs: AwsLogsShipper;
  private readonly metadata: MetadataEndpoint;
  private readonly runner: TaskRunner;
  private readonly scheduler: ServiceScheduler;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private running = false;
  private ticks = 0;
  /** The last error a poll ran into (the simulator keeps polling). */
  lastError: Error | undefined;

  constructor(opts: FargateSimulatorOptions) {
    super();
    this.opts = opts;
    this.endpoint = opts.endpoint;
    this.cluster = opts.cluster;
    this.region = opts.region ?? process.env["AWS_REGION"] ?? DEFAULT_REGION;
    this.ipPrefix = opts.ipPrefix ?? `127.${1 + (randomBytes(1)[0]! % 254)}.${randomBytes(1)[0]!}.`;
    if (!/^127\.\d{1,3}\.\d{1,3}\.$/.test(this.ipPrefix)) throw new Error(`ipPrefix must look like "127.x.y." (got ${this.ipPrefix})`);
    const cfg = { ...clientConfig(opts.endpoint, this.region), maxAttempts: 5 };
    this.ecs = new ECSClient(cfg);
    this.secrets = new SecretsManagerClient(cfg);
    this.logClient = new CloudWatchLogsClient(cfg);
    const verbose = (): boolean => this.verbose;
    this.logs = new AwsLogsShipper(this.logClient, this.cluster, opts.awslogs !== false, verbose);
    this.metadata = new MetadataEndpoint(
      (id) => this.runner.find(id),
      () => this.clusterArn(),
      this.cluster,
      this.region,
    );
    this.runner = new TaskRunner({
      ecs: this.ecs,
      secrets: this.secrets,
      logs: this.logs,
      cluster: this.cluster,
      region: this.region,
      processEndpoint: opts.processEndpoint ?? this.endpoint,
      ipPrefix: this.ipPrefix,
      workdir: opts.workdir,
      entrypoint: opts.entrypoint,
      taskEnv: opts.taskEnv,
      maxLines: opts.maxLines,
      stopTimeoutMs: opts.stopTimeoutMs,
      verbose,
      isRunning: () => this.running,
      metadataUri: (id) => this.metadata.uriOf(id),
      onFailure: (r) => this.scheduler.noteFailure(r),
      emit: (event, task) => this.emit(event, task),
    });
    this.scheduler = new ServiceScheduler({
      ecs: this.ecs,
      cluster: this.cluster,
      services: opts.services,
      isRunning: () => this.running,
      record: (arn) => this.runner.records.get(arn),
      stopProcess: (r, reason) => this.runner.stop(r, reason),
    });
  }

  /** Starts the metadata endpoint and the poll loop; resolves after the first poll. */
  async start(): Promise<void> {
    if (this.running) return;
    installExitHook();
    await configureEmulator(this.endpoint).catch(() => {});
    await this.metadata.start();
    this.running = true;
    await this.tick();
    this.schedule();
    this.logs.start();
  }

  /**
   * Stops polling, stops every process (SIGTERM, SIGKILL after `stopTimeoutMs`), stops their tasks in
   * the emulator (reason "Fargate simulator stopped") and closes the metadata endpoint. A stopped
   * simulator cannot be started again (make a new one: task addresses stay unique per simulator).
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking;
    const live = [...this.runner.records.values()].filter((r) => r.state === "running" || r.state === "starting" || r.state === "stopping");
    for (const r of live) this.runner.stop(r, r.stoppedReason ?? "Fargate simulator stopped");
    await Promise.all(live.map((r) => r.exited));
    await Promise.all(
      live.map((r) =>
        this.ecs.send(new StopTaskCommand({ cluster: this.cluster, task: r.arn, reason: "Fargate simulator stopped" })).catch(() => {}),
      ),
    );
    await this.logs.stop();
    await this.metadata.stop();
    this.ecs.destroy();
    this.secrets.destroy();
    this.logClient.destroy();
  }

  /** Every task the simulator ran a process for (or failed to), oldest first. */
  tasks(): SimTask[] {
    return [...this.runner.records.values()].map((r) => snapshot(r));
  }

  /** The task (by ARN or id). */
  task(taskArnOrId: string): SimTask | undefined {
    const r = this.runner.find(taskArnOrId);
    return r && snapshot(r);
  }

  /** Tasks whose process runs, optionally of one service only. */
  runningTasks(service?: string): SimTask[] {
    return this.tasks().filter((t) => t.state === "running" && (service === undefined || t.service === service));
  }

  /**
   * Sends `signal` to a task's main process (default SIGKILL), as a crash would: the simulator notices
   * the exit and stops the task in the emulator; its service then gets a replacement.
   */
  kill(taskArnOrId: string, signal: NodeJS.Signals = "SIGKILL"): void {
    const r = this.runner.find(taskArnOrId);
    if (r === undefined) throw new Error(`no simulated task ${taskArnOrId}`);
    if (r.pid === undefined || r.state === "exited" || r.state === "failed")
      throw new Error(`task ${r.id} has no running process (${r.state})`);
    process.kill(r.pid, signal);
  }

  /** Output of a task: stdout and stderr lines. */
  output(taskArnOrId: string): { stdout: string[]; stderr: string[] } {
    const r = this.runner.find(taskArnOrId);
    if (r === undefined) throw new Error(`no simulated task ${taskArnOrId}`);
    return { stdout: [...r.stdout], stderr: [...r.stderr] };
  }

  /** Polls `fn` over the task list until it returns a truthy value. */
  async waitFor<T>(what: string, fn: (tasks: SimTask[]) => T, timeoutMs = 20_000): Promise<NonNullable<T>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = fn(this.tasks());
      if (v) return v as NonNullable<T>;
      if (Date.now() > deadline) {
        const summary = this.tasks()
          .map(
            (t) =>
              `${t.service ?? t.group} ${t.taskId.slice(0, 8)} ${t.ip} ${t.state}${t.exitCode !== undefined ? ` code ${t.exitCode}` : ""}${t.stoppedReason ? ` (${t.stoppedReason})` : ""}`,
          )
          .join("; ");
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}; tasks: ${summary || "none"}${this.lastError ? `; last poll error: ${this.lastError.message}` : ""}`,
        );
      }
      await sleep(50);
    }
  }

  /** Resolves after `n` complete polls (e.g. to let the simulator see a change). */
  async polls(n = 2): Promise<void> {
    const target = this.ticks + n;
    while (this.ticks < target && this.running) await sleep(20);
  }

  // ---- Poll loop ------------------------------------------------------------------------------------

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      void this.tick().finally(() => this.schedule());
    }, this.opts.pollMs ?? 150);
  }

  private tick(): Promise<void> {
    const p = this.poll()
      .then(() => {
        this.lastError = undefined;
      })
      .catch((err: Error) => {
        if (this.lastError?.message !== err.message && this.verbose)
          process.stderr.write(`[fargate ${this.cluster}] poll failed: ${err.name}: ${err.message}\n`);
        this.lastError = err;
      })
      .finally(() => {
        this.ticks++;
      });
    this.ticking = p;
    return p;
  }

  private async poll(): Promise<void> {
    const [services, tasks] = await Promise.all([this.scheduler.describeServices(), this.describeRunningTasks()]);
    if (!this.running && this.ticks > 0) return;
    const runningArns = new Set(tasks.map((t) => t.taskArn!));
    const records = this.runner.records;

    // Fargate: a process for every new RUNNING task; stop processes of tasks stopped in the emulator.
    for (const t of tasks) {
      if (!records.has(t.taskArn!) && t.lastStatus !== "STOPPED")
        void this.runner.start(t).catch((err: Error) => {
          this.lastError = err;
        });
    }
    const gone = [...records.values()].filter(
      (r: TaskRecord) => !r.stopping && (r.state === "running" || r.state === "starting") && !runningArns.has(r.arn),
    );
    if (gone.length > 0) {
      const reasons = new Map<string, string>();
      for (const batch of chunks(
        gone.map((r) => r.arn),
        100,
      )) {
        const d = await this.ecs.send(new DescribeTasksCommand({ cluster: this.cluster, tasks: batch })).catch(() => undefined);
        for (const t of d?.tasks ?? []) if (t.stoppedReason) reasons.set(t.taskArn!, t.stoppedReason);
      }
      for (const r of gone) this.runner.stop(r, reasons.get(r.arn) ?? "Task stopped");
    }

    await this.scheduler.reconcile(services, tasks);
  }

  private async describeRunningTasks(): Promise<Task[]> {
    const arns: string[] = [];
    let next: string | undefined;
    try {
      do {
        const page = await this.ecs.send(
          new ListTasksCommand({ cluster: this.cluster, desiredStatus: "RUNNING", maxResults: 100, nextToken: next }),
        );
        arns.push(...(page.taskArns ?? []));
        next = page.nextToken;
      } while (next);
    } catch (err) {
      if ((err as Error).name === "ClusterNotFoundException") return [];
      throw err;
    }
    const out: Task[] = [];
    for (const batch of chunks(arns, 100)) {
      const d = await this.ecs.send(new DescribeTasksCommand({ cluster: this.cluster, tasks: batch }));
      // moto matches clusters by substring and DescribeTasks searches every cluster: keep ours only.
      out.push(...(d.tasks ?? []).filter((t) => t.desiredStatus === "RUNNING" && this.isOurCluster(t.clusterArn)));
    }
    return out;
  }

  private get verbose(): boolean {
    return this.opts.verbose ?? process.env["TSWEAVER_TEST_VERBOSE"] === "1";
  }

  private isOurCluster(clusterArn: string | undefined): boolean {
    if (clusterArn === undefined) return true;
    return this.cluster.startsWith("arn:") ? clusterArn === this.cluster : clusterArn.endsWith(`:cluster/${this.cluster}`);
  }

  private clusterArn(): string {
    if (this.cluster.startsWith("arn:")) return this.cluster;
    const first = this.runner.records.values().next().value as TaskRecord | undefined;
    const m = first ? /^(arn:[^:]+:ecs:[^:]*:\d+):/.exec(first.arn) : null;
    return `${m?.[1] ?? `arn:aws:ecs:${this.region}:123456789012`}:cluster/${this.cluster}`;
  }
}

/** Starts a simulator (convenience: `new FargateSimulator(opts)` + `start()`). */
export async function startFargate(opts: FargateSimulatorOptions): Promise<FargateSimulator> {
  const sim = new FargateSimulator(opts);
  await sim.start();
  return sim;
}
