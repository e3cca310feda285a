/**
 * `FargateSimulator`: plays ECS's service scheduler and Fargate on top of an AWS API emulator that runs
 * no containers (moto).
 *
 * Every `pollMs` it reads the cluster's services and tasks from the emulator and
 *  - as the service scheduler, keeps `desiredCount` tasks per service (moto's UpdateService only sets
 *    the counts): RunTask with the service's task definition, `group: "service:<name>"` and
 *    `startedBy: <the service's deployment id>`, as ECS does; StopTask for extra tasks and for tasks
 *    of an older task definition; restarts of a crashing service's tasks back off (250 ms doubling
 *    to 5 s), as ECS throttles them;
 *  - as Fargate, starts the essential container of every RUNNING task (whoever started it) as a local
 *    process: the container's entryPoint (default: the image's, `node dist/runtime/cli/main.js`, see
 *    infra/Dockerfile) and command, in `workdir`, with the container's environment and overrides, its
 *    secrets resolved from Secrets Manager, what ECS adds (`AWS_REGION`, `ECS_CONTAINER_METADATA_URI_V4`)
 *    and the emulator's endpoint and throwaway credentials. Each task gets its own loopback address
 *    (`<prefix>N`, N from 2 up, never reused) which its metadata endpoint reports as the task's awsvpc
 *    IPv4 address: processes must bind that address, not 0.0.0.0, since the tasks share one host;
 *  - when a process exits on its own: StopTask("Essential container in task exited (code X)"); when a
 *    task is stopped in the emulator (by anyone): SIGTERM to the process, SIGKILL to everything it
 *    started after `stopTimeoutMs` (like `docker stop`); whatever a task's main process leaves behind
 *    dies with it (the container's end);
 *  - as the awslogs driver, copies each process's output to CloudWatch Logs (the container's log group,
 *    stream `<prefix>/<container>/<task id>`) so `tsweaver aws logs` has something to read.
 *
 * The metadata endpoint (`http://127.0.0.1:<port>/v4/<task id>`) is served by the simulator: `GET <uri>`
 * gives the container's metadata, `GET <uri>/task` the task's, in the shape of ECS's task metadata v4
 * (a subset). Nothing is left running after `stop()`; processes are killed when the test process exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { CloudWatchLogsClient, CreateLogStreamCommand, PutLogEventsCommand } from "@aws-sdk/client-cloudwatch-logs";
import {
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  ListServicesCommand,
  ListTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
  type ContainerDefinition,
  type Service,
  type Task,
  type TaskDefinition,
} from "@aws-sdk/client-ecs";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { clientConfig, configureEmulator, DEFAULT_REGION, emulatorEnv, sleep } from "./moto.js";

/** The repository root (this file runs as dist/test/aws/fargate.js). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
/** The image's entrypoint (infra/Dockerfile): the tsweaver CLI. */
export const DEFAULT_ENTRYPOINT: readonly string[] = [process.execPath, path.join(ROOT, "dist/runtime/cli/main.js")];

/** Variables of the test process a task's process inherits (everything else comes from the task). */
const INHERITED_ENV = ["PATH", "HOME", "TMPDIR", "TMP", "TEMP", "LANG", "LC_ALL", "TZ", "SYSTEMROOT", "NODE_V8_COVERAGE", "TSWEAVER_TEST_VERBOSE", "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"];

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
  /** Address prefix of the tasks, e.g. "127.0.0." (then .2, .3, ...). Default: a random `127.a.b.`. */
  readonly ipPrefix?: string;
  /** Copy output to CloudWatch Logs for containers with the awslogs driver. Default true. */
  readonly awslogs?: boolean;
  /** Echo every output line to stderr. Default: TSWEAVER_TEST_VERBOSE=1. */
  readonly verbose?: boolean;
  /** Output lines kept per stream and task. Default 5000. */
  readonly maxLines?: number;
}

export type SimTaskState = "starting" | "running" | "stopping" | "exited" | "failed";

/** A task the simulator runs (or ran) a process for. */
export interface SimTask {
  readonly taskArn: string;
  readonly taskId: string;
  /** The ECS task group (`service:<name>` for a service's tasks, else what RunTask was given). */
  readonly group: string;
  /** The service, for a task of a service. */
  readonly service: string | undefined;
  readonly family: string;
  readonly taskDefinitionArn: string;
  readonly container: string;
  /** The task's loopback address (its "awsvpc IPv4 address"). */
  readonly ip: string;
  readonly metadataUri: string;
  readonly command: readonly string[];
  /** The process's environment (secrets included). */
  readonly env: Readonly<Record<string, string>>;
  readonly pid: number | undefined;
  readonly state: SimTaskState;
  /** Exit status; 128 + signal number for a process killed by a signal (as Docker reports it). */
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  /** Why the task stopped (the emulator's stoppedReason, or why the simulator stopped it). */
  readonly stoppedReason: string | undefined;
  readonly startedAt: number;
  readonly exitedAt: number | undefined;
  readonly stdout: readonly string[];
  readonly stderr: readonly string[];
}

interface TaskRecord {
  arn: string;
  id: string;
  group: string;
  service: string | undefined;
  family: string;
  revision: number;
  tdArn: string;
  container: string;
  image: string;
  ip: string;
  metadataUri: string;
  command: string[];
  env: Record<string, string>;
  child: ChildProcess | undefined;
  pid: number | undefined;
  state: SimTaskState;
  exitCode: number | undefined;
  signal: string | undefined;
  stoppedReason: string | undefined;
  /** The simulator is stopping the process (the task was stopped in the emulator, or by us). */
  stopping: boolean;
  killTimer: NodeJS.Timeout | undefined;
  exited: Promise<void>;
  startedAt: number;
  exitedAt: number | undefined;
  stdout: string[];
  stderr: string[];
  log: { group: string; stream: string; events: { timestamp: number; message: string }[]; ready: Promise<boolean> } | undefined;
  cpu: number;
  memory: number;
  logOptions: Record<string, string> | undefined;
  logDriver: string | undefined;
  containerUuid: string;
}

interface ServiceState {
  failures: number;
  nextStartAt: number;
}

/** Process groups of running tasks, of every simulator: killed when the test process exits. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = (): void => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    liveGroups.clear();
  };
  process.on("exit", killAll);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    if (process.listenerCount(sig) > 0) continue;
    process.once(sig, () => {
      killAll();
      process.kill(process.pid, sig);
    });
  }
}

export class FargateSimulator extends EventEmitter {
  readonly endpoint: string;
  readonly cluster: string;
  readonly region: string;
  readonly ipPrefix: string;
  private readonly opts: FargateSimulatorOptions;
  private readonly ecs: ECSClient;
  private readonly secrets: SecretsManagerClient;
  private readonly logs: CloudWatchLogsClient;
  private readonly records = new Map<string, TaskRecord>();
  private readonly taskDefs = new Map<string, Promise<TaskDefinition>>();
  private readonly serviceStates = new Map<string, ServiceState>();
  private nextHost = 2;
  private metadataServer: http.Server | undefined;
  private metadataPort = 0;
  private timer: NodeJS.Timeout | undefined;
  private logTimer: NodeJS.Timeout | undefined;
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
    this.logs = new CloudWatchLogsClient(cfg);
  }

  /** Starts the metadata endpoint and the poll loop; resolves after the first poll. */
  async start(): Promise<void> {
    if (this.running) return;
    installExitHook();
    await configureEmulator(this.endpoint).catch(() => {});
    this.metadataServer = http.createServer((req, res) => this.serveMetadata(req, res));
    await new Promise<void>((resolve, reject) => {
      this.metadataServer!.once("error", reject);
      this.metadataServer!.listen(0, "127.0.0.1", () => resolve());
    });
    this.metadataPort = (this.metadataServer.address() as { port: number }).port;
    this.running = true;
    await this.tick();
    this.schedule();
    this.logTimer = setInterval(() => void this.flushLogs(), 250);
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
    if (this.logTimer) clearInterval(this.logTimer);
    await this.ticking;
    const live = [...this.records.values()].filter((r) => r.state === "running" || r.state === "starting" || r.state === "stopping");
    for (const r of live) this.stopProcess(r, r.stoppedReason ?? "Fargate simulator stopped");
    await Promise.all(live.map((r) => r.exited));
    await Promise.all(
      live.map((r) => this.ecs.send(new StopTaskCommand({ cluster: this.cluster, task: r.arn, reason: "Fargate simulator stopped" })).catch(() => {})),
    );
    await this.flushLogs();
    const server = this.metadataServer;
    if (server !== undefined) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    }
    this.ecs.destroy();
    this.secrets.destroy();
    this.logs.destroy();
  }

  /** Every task the simulator ran a process for (or failed to), oldest first. */
  tasks(): SimTask[] {
    return [...this.records.values()].map((r) => this.snapshot(r));
  }

  /** The task (by ARN or id). */
  task(taskArnOrId: string): SimTask | undefined {
    const r = this.find(taskArnOrId);
    return r && this.snapshot(r);
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
    const r = this.find(taskArnOrId);
    if (r === undefined) throw new Error(`no simulated task ${taskArnOrId}`);
    if (r.pid === undefined || r.state === "exited" || r.state === "failed") throw new Error(`task ${r.id} has no running process (${r.state})`);
    process.kill(r.pid, signal);
  }

  /** Output of a task: stdout and stderr lines. */
  output(taskArnOrId: string): { stdout: string[]; stderr: string[] } {
    const r = this.find(taskArnOrId);
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
          .map((t) => `${t.service ?? t.group} ${t.taskId.slice(0, 8)} ${t.ip} ${t.state}${t.exitCode !== undefined ? ` code ${t.exitCode}` : ""}${t.stoppedReason ? ` (${t.stoppedReason})` : ""}`)
          .join("; ");
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; tasks: ${summary || "none"}${this.lastError ? `; last poll error: ${this.lastError.message}` : ""}`);
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
        if (this.lastError?.message !== err.message && this.verbose) process.stderr.write(`[fargate ${this.cluster}] poll failed: ${err.name}: ${err.message}\n`);
        this.lastError = err;
      })
      .finally(() => {
        this.ticks++;
      });
    this.ticking = p;
    return p;
  }

  private async poll(): Promise<void> {
    const [services, tasks] = await Promise.all([this.describeServices(), this.describeRunningTasks()]);
    if (!this.running && this.ticks > 0) return;
    const runningArns = new Set(tasks.map((t) => t.taskArn!));

    // Fargate: a process for every new RUNNING task; stop processes of tasks stopped in the emulator.
    for (const t of tasks) {
      if (!this.records.has(t.taskArn!) && t.lastStatus !== "STOPPED") void this.startTask(t).catch((err: Error) => {
          this.lastError = err;
        });
    }
    const gone = [...this.records.values()].filter((r) => !r.stopping && (r.state === "running" || r.state === "starting") && !runningArns.has(r.arn));
    if (gone.length > 0) {
      const reasons = new Map<string, string>();
      for (const batch of chunks(gone.map((r) => r.arn), 100)) {
        const d = await this.ecs.send(new DescribeTasksCommand({ cluster: this.cluster, tasks: batch })).catch(() => undefined);
        for (const t of d?.tasks ?? []) if (t.stoppedReason) reasons.set(t.taskArn!, t.stoppedReason);
      }
      for (const r of gone) this.stopProcess(r, reasons.get(r.arn) ?? "Task stopped");
    }

    // The service scheduler.
    const now = Date.now();
    for (const svc of services) {
      const name = svc.serviceName!;
      if (this.opts.services && !this.opts.services(name)) continue;
      const state = this.serviceState(name);
      const mine = tasks.filter((t) => t.group === `service:${name}` && t.desiredStatus === "RUNNING");
      // Healthy for a while: forget earlier crashes.
      if (mine.some((t) => {
        const r = this.records.get(t.taskArn!);
        return r !== undefined && r.state === "running" && now - r.startedAt > 5000;
      })) state.failures = 0;
      const deployment = svc.deployments?.find((d) => d.status === "PRIMARY")?.id ?? "ecs-svc/fargate-simulator";
      const scaling = `Scaling activity initiated by (deployment ${deployment})`;
      if (svc.status !== "ACTIVE") {
        for (const t of mine) await this.stopTask(t.taskArn!, `Service ${name} is ${svc.status}`);
        continue;
      }
      const desired = svc.desiredCount ?? 0;
      const current = mine.filter((t) => t.taskDefinitionArn === svc.taskDefinition);
      const old = mine.filter((t) => t.taskDefinitionArn !== svc.taskDefinition);
      const missing = desired - current.length;
      if (!this.running) return;
      if (missing > 0 && now >= state.nextStartAt) {
        for (let left = missing; left > 0; left -= 10) {
          await this.ecs.send(
            new RunTaskCommand({
              cluster: this.cluster,
              taskDefinition: svc.taskDefinition,
              count: Math.min(left, 10),
              group: `service:${name}`,
              startedBy: deployment,
              launchType: "FARGATE",
              networkConfiguration: svc.networkConfiguration?.awsvpcConfiguration ? svc.networkConfiguration : undefined,
            }),
          );
        }
      }
      if (current.length >= desired) for (const t of old) await this.stopTask(t.taskArn!, scaling);
      if (current.length > desired) {
        const started = (t: Task): number => this.records.get(t.taskArn!)?.startedAt ?? t.createdAt?.getTime() ?? Date.now();
        const newestFirst = [...current].sort((a, b) => started(b) - started(a));
        for (const t of newestFirst.slice(0, current.length - desired)) await this.stopTask(t.taskArn!, scaling);
      }
    }
  }

  private async describeServices(): Promise<Service[]> {
    const arns: string[] = [];
    let next: string | undefined;
    try {
      do {
        const page = await this.ecs.send(new ListServicesCommand({ cluster: this.cluster, maxResults: 100, nextToken: next }));
        arns.push(...(page.serviceArns ?? []));
        next = page.nextToken;
      } while (next);
    } catch (err) {
      if ((err as Error).name === "ClusterNotFoundException") return [];
      throw err;
    }
    const out: Service[] = [];
    for (const batch of chunks(arns, 10)) {
      const d = await this.ecs.send(new DescribeServicesCommand({ cluster: this.cluster, services: batch }));
      out.push(...(d.services ?? []));
    }
    return out;
  }

  private async describeRunningTasks(): Promise<Task[]> {
    const arns: string[] = [];
    let next: string | undefined;
    try {
      do {
        const page = await this.ecs.send(new ListTasksCommand({ cluster: this.cluster, desiredStatus: "RUNNING", maxResults: 100, nextToken: next }));
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

  private serviceState(name: string): ServiceState {
    let s = this.serviceStates.get(name);
    if (s === undefined) {
      s = { failures: 0, nextStartAt: 0 };
      this.serviceStates.set(name, s);
    }
    return s;
  }

  /** StopTask in the emulator, and stop the process right away (the next poll would too). */
  private async stopTask(taskArn: string, reason: string): Promise<void> {
    await this.ecs.send(new StopTaskCommand({ cluster: this.cluster, task: taskArn, reason }));
    const r = this.records.get(taskArn);
    if (r !== undefined) this.stopProcess(r, reason);
  }

  // ---- Tasks and processes ----------------------------------------------------------------------------

  private taskDefinition(arn: string): Promise<TaskDefinition> {
    let p = this.taskDefs.get(arn);
    if (p === undefined) {
      p = this.ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: arn })).then((d) => d.taskDefinition!);
      p.catch(() => this.taskDefs.delete(arn));
      this.taskDefs.set(arn, p);
    }
    return p;
  }

  private allocateIp(): string {
    if (this.nextHost > 254) throw new Error(`Fargate simulator ${this.cluster}: out of addresses in ${this.ipPrefix}0/24`);
    return `${this.ipPrefix}${this.nextHost++}`;
  }

  private async startTask(t: Task): Promise<void> {
    const arn = t.taskArn!;
    const id = arn.split("/").pop()!;
    const group = t.group ?? "";
    let resolveExited!: () => void;
    const r: TaskRecord = {
      arn,
      id,
      group,
      service: group.startsWith("service:") ? group.slice("service:".length) : undefined,
      family: "",
      revision: 0,
      tdArn: t.taskDefinitionArn!,
      container: "",
      image: "",
      ip: this.allocateIp(),
      metadataUri: `http://127.0.0.1:${this.metadataPort}/v4/${id}`,
      command: [],
      env: {},
      child: undefined,
      pid: undefined,
      state: "starting",
      exitCode: undefined,
      signal: undefined,
      stoppedReason: undefined,
      stopping: false,
      killTimer: undefined,
      exited: new Promise<void>((resolve) => (resolveExited = resolve)),
      startedAt: Date.now(),
      exitedAt: undefined,
      stdout: [],
      stderr: [],
      log: undefined,
      cpu: 0,
      memory: 0,
      logOptions: undefined,
      logDriver: undefined,
      containerUuid: randomUUID(),
    };
    this.records.set(arn, r);
    try {
      const td = await this.taskDefinition(r.tdArn);
      const containers = td.containerDefinitions ?? [];
      const c: ContainerDefinition | undefined = containers.find((x) => x.essential !== false) ?? containers[0];
      if (c === undefined) throw new Error(`task definition ${r.tdArn} has no container`);
      const override = t.overrides?.containerOverrides?.find((o) => o.name === c.name);
      r.family = td.family ?? "";
      r.revision = td.revision ?? 0;
      r.container = c.name ?? "";
      r.image = c.image ?? "";
      r.cpu = Number(td.cpu ?? c.cpu ?? 0);
      r.memory = Number(td.memory ?? c.memory ?? 0);
      r.logDriver = c.logConfiguration?.logDriver;
      r.logOptions = c.logConfiguration?.options;
      const entry = [...(c.entryPoint ?? this.opts.entrypoint ?? DEFAULT_ENTRYPOINT)];
      if (entry[0] === "node") entry[0] = process.execPath;
      r.command = [...entry, ...(override?.command ?? c.command ?? [])];

      const env: Record<string, string> = {};
      for (const k of INHERITED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k]!;
      for (const e of c.environment ?? []) env[e.name!] = e.value ?? "";
      for (const e of override?.environment ?? []) env[e.name!] = e.value ?? "";
      for (const s of c.secrets ?? []) env[s.name!] = await this.resolveSecret(s.valueFrom!);
      Object.assign(env, emulatorEnv(this.opts.processEndpoint ?? this.endpoint, this.region), {
        AWS_EXECUTION_ENV: "AWS_ECS_FARGATE",
        ECS_CONTAINER_METADATA_URI_V4: r.metadataUri,
        ECS_CONTAINER_METADATA_URI: r.metadataUri.replace("/v4/", "/v3/"),
      });
      r.env = env;
      Object.assign(env, this.opts.taskEnv?.(this.snapshot(r)) ?? {});
    } catch (err) {
      r.state = "failed";
      r.exitedAt = Date.now();
      r.stoppedReason = `ResourceInitializationError: ${(err as Error).message}`;
      resolveExited();
      await this.ecs.send(new StopTaskCommand({ cluster: this.cluster, task: arn, reason: r.stoppedReason })).catch(() => {});
      this.noteFailure(r);
      this.emit("task-exit", this.snapshot(r));
      return;
    }
    if (!this.running || r.stopping) {
      r.state = "exited";
      r.exitedAt = Date.now();
      resolveExited();
      if (!r.stopping) await this.ecs.send(new StopTaskCommand({ cluster: this.cluster, task: arn, reason: "Fargate simulator stopped" })).catch(() => {});
      return;
    }
    this.startLog(r);

    const child = spawn(r.command[0]!, r.command.slice(1), { cwd: this.opts.workdir ?? ROOT, env: r.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    r.child = child;
    r.pid = child.pid;
    r.state = "running";
    if (child.pid !== undefined) liveGroups.add(child.pid);
    const max = this.opts.maxLines ?? 5000;
    const label = `[${r.service ?? r.family} ${r.id.slice(0, 8)} ${r.ip}]`;
    const capture = (stream: NodeJS.ReadableStream, lines: string[], name: string): void => {
      readline.createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) => {
        lines.push(line);
        if (lines.length > max) lines.splice(0, lines.length - max);
        r.log?.events.push({ timestamp: Date.now(), message: line });
        if (this.verbose) process.stderr.write(`${label}${name === "stderr" ? "!" : ""} ${line}\n`);
      });
    };
    capture(child.stdout!, r.stdout, "stdout");
    capture(child.stderr!, r.stderr, "stderr");
    let done = false;
    const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
    const onExit = async (code: number | null, signal: NodeJS.Signals | null): Promise<void> => {
      if (done) return;
      done = true;
      if (r.killTimer) clearTimeout(r.killTimer);
      // The container is gone: so is whatever its main process started.
      if (r.pid !== undefined) {
        try {
          process.kill(-r.pid, "SIGKILL");
        } catch {
          // nothing left
        }
        liveGroups.delete(r.pid);
      }
      // Let the last output lines arrive (the pipes close once nothing in the task holds them).
      await Promise.race([closed, sleep(1000)]);
      r.exitCode = code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : undefined);
      r.signal = signal ?? undefined;
      r.state = "exited";
      r.exitedAt = Date.now();
      if (!r.stopping) {
        r.stoppedReason = `Essential container in task exited (code ${r.exitCode ?? "?"})`;
        this.noteFailure(r);
        void this.ecs.send(new StopTaskCommand({ cluster: this.cluster, task: r.arn, reason: r.stoppedReason })).catch((err: Error) => {
          if (this.verbose) process.stderr.write(`${label} StopTask failed: ${err.message}\n`);
        });
      }
      if (this.verbose) process.stderr.write(`${label} exited (code ${r.exitCode}${r.signal ? `, ${r.signal}` : ""})${r.stoppedReason ? `: ${r.stoppedReason}` : ""}\n`);
      resolveExited();
      this.emit("task-exit", this.snapshot(r));
    };
    child.once("exit", (code, signal) => void onExit(code, signal));
    child.once("error", (err) => {
      r.stderr.push(`fargate simulator: cannot start ${r.command[0]}: ${err.message}`);
      if (child.pid === undefined) void onExit(127, null); // never started: no "exit" event follows
    });
    if (this.verbose) process.stderr.write(`${label} started pid ${child.pid}: ${r.command.join(" ")}\n`);
    this.emit("task-start", this.snapshot(r));
  }

  private noteFailure(r: TaskRecord): void {
    if (r.service === undefined) return;
    const s = this.serviceState(r.service);
    s.failures++;
    s.nextStartAt = Date.now() + Math.min(250 * 2 ** (s.failures - 1), 5000);
  }

  /** SIGTERM to the main process; SIGKILL to everything in the task after the grace period. */
  private stopProcess(r: TaskRecord, reason: string): void {
    if (r.stopping) return;
    r.stopping = true;
    r.stoppedReason ??= reason;
    if (r.state !== "running") return;
    r.state = "stopping";
    try {
      r.child?.kill("SIGTERM");
    } catch {
      // already gone
    }
    r.killTimer = setTimeout(() => {
      if (r.pid === undefined) return;
      try {
        process.kill(-r.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }, this.opts.stopTimeoutMs ?? 5000);
    r.killTimer.unref();
  }

  private async resolveSecret(valueFrom: string): Promise<string> {
    // arn:aws:secretsmanager:region:account:secret:name[:json-key:version-stage:version-id]
    const parts = valueFrom.split(":");
    if (parts[2] !== "secretsmanager") throw new Error(`unable to resolve secret ${valueFrom}: only Secrets Manager secrets are simulated`);
    const [jsonKey, stage, version] = parts.slice(7);
    const out = await this.secrets.send(
      new GetSecretValueCommand({ SecretId: parts.slice(0, 7).join(":"), VersionStage: stage || undefined, VersionId: version || undefined }),
    );
    const value = out.SecretString ?? "";
    if (!jsonKey) return value;
    const v = (JSON.parse(value) as Record<string, unknown>)[jsonKey];
    if (v === undefined) throw new Error(`secret ${valueFrom} has no key ${jsonKey}`);
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  private find(taskArnOrId: string): TaskRecord | undefined {
    return this.records.get(taskArnOrId) ?? [...this.records.values()].find((r) => r.id === taskArnOrId);
  }

  private get verbose(): boolean {
    return this.opts.verbose ?? process.env["TSWEAVER_TEST_VERBOSE"] === "1";
  }

  private snapshot(r: TaskRecord): SimTask {
    return {
      taskArn: r.arn,
      taskId: r.id,
      group: r.group,
      service: r.service,
      family: r.family,
      taskDefinitionArn: r.tdArn,
      container: r.container,
      ip: r.ip,
      metadataUri: r.metadataUri,
      command: [...r.command],
      env: { ...r.env },
      pid: r.pid,
      state: r.state,
      exitCode: r.exitCode,
      signal: r.signal,
      stoppedReason: r.stoppedReason,
      startedAt: r.startedAt,
      exitedAt: r.exitedAt,
      stdout: [...r.stdout],
      stderr: [...r.stderr],
    };
  }

  // ---- awslogs ----------------------------------------------------------------------------------------

  private startLog(r: TaskRecord): void {
    if (this.opts.awslogs === false || r.logDriver !== "awslogs" || !r.logOptions?.["awslogs-group"]) return;
    const group = r.logOptions["awslogs-group"];
    const prefix = r.logOptions["awslogs-stream-prefix"];
    const stream = prefix ? `${prefix}/${r.container}/${r.id}` : r.id;
    const ready = this.logs
      .send(new CreateLogStreamCommand({ logGroupName: group, logStreamName: stream }))
      .then(() => true)
      .catch((err: Error) => {
        if (err.name === "ResourceAlreadyExistsException") return true;
        if (this.verbose) process.stderr.write(`[fargate ${this.cluster}] no CloudWatch logs for task ${r.id}: ${err.name}: ${err.message}\n`);
        return false;
      });
    r.log = { group, stream, events: [], ready };
  }

  private async flushLogs(): Promise<void> {
    await Promise.all(
      [...this.records.values()].map(async (r) => {
        const log = r.log;
        if (log === undefined || log.events.length === 0) return;
        if (!(await log.ready)) {
          log.events.length = 0;
          return;
        }
        const events = log.events.splice(0, log.events.length);
        for (const batch of chunks(events, 5000)) {
          await this.logs.send(new PutLogEventsCommand({ logGroupName: log.group, logStreamName: log.stream, logEvents: batch })).catch(() => {});
        }
      }),
    );
  }

  // ---- Task metadata endpoint v4 ----------------------------------------------------------------------

  private serveMetadata(req: http.IncomingMessage, res: http.ServerResponse): void {
    const m = /^\/v[34]\/([^/?]+)(\/task)?(\/stats)?\/?(?:\?.*)?$/.exec(req.url ?? "");
    const r = m ? this.find(m[1]!) : undefined;
    if (req.method !== "GET" || m === null || r === undefined) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    let body: unknown;
    if (m[3]) body = {};
    else body = m[2] ? this.taskMetadata(r) : this.containerMetadata(r);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  }

  private containerMetadata(r: TaskRecord): Record<string, unknown> {
    const status = r.state === "running" || r.state === "starting" ? "RUNNING" : "STOPPED";
    const accountAndRegion = /^arn:[^:]+:ecs:([^:]*):(\d+):/.exec(r.arn);
    const clusterName = this.cluster.split("/").pop()!;
    return {
      DockerId: `${r.id}-${r.container}`,
      Name: r.container,
      DockerName: `ecs-${r.family}-${r.revision}-${r.container}`,
      Image: r.image,
      ImageID: "sha256:0000000000000000000000000000000000000000000000000000000000000000",
      Labels: {
        "com.amazonaws.ecs.cluster": this.clusterArn(),
        "com.amazonaws.ecs.container-name": r.container,
        "com.amazonaws.ecs.task-arn": r.arn,
        "com.amazonaws.ecs.task-definition-family": r.family,
        "com.amazonaws.ecs.task-definition-version": String(r.revision),
      },
      DesiredStatus: status,
      KnownStatus: status,
      Limits: { CPU: r.cpu, Memory: r.memory },
      CreatedAt: new Date(r.startedAt).toISOString(),
      StartedAt: new Date(r.startedAt).toISOString(),
      Type: "NORMAL",
      ContainerARN: `arn:aws:ecs:${accountAndRegion?.[1] ?? this.region}:${accountAndRegion?.[2] ?? "123456789012"}:container/${clusterName}/${r.id}/${r.containerUuid}`,
      LogDriver: r.logDriver,
      LogOptions: r.log ? { "awslogs-group": r.log.group, "awslogs-region": this.region, "awslogs-stream": r.log.stream } : r.logOptions,
      Networks: [
        {
          NetworkMode: "awsvpc",
          IPv4Addresses: [r.ip],
          AttachmentIndex: 0,
          MACAddress: "0a:00:00:00:00:00",
          IPv4SubnetCIDRBlock: "127.0.0.0/8",
          PrivateDNSName: `ip-${r.ip.replace(/\./g, "-")}.ec2.internal`,
          SubnetGatewayIpv4Address: "127.0.0.1/8",
        },
      ],
    };
  }

  private taskMetadata(r: TaskRecord): Record<string, unknown> {
    const status = r.state === "running" || r.state === "starting" ? "RUNNING" : "STOPPED";
    return {
      Cluster: this.clusterArn(),
      TaskARN: r.arn,
      Family: r.family,
      Revision: String(r.revision),
      DesiredStatus: status,
      KnownStatus: status,
      Limits: { CPU: r.cpu / 1024, Memory: r.memory },
      PullStartedAt: new Date(r.startedAt).toISOString(),
      PullStoppedAt: new Date(r.startedAt).toISOString(),
      AvailabilityZone: `${this.region}a`,
      LaunchType: "FARGATE",
      Containers: [this.containerMetadata(r)],
    };
  }

  private isOurCluster(clusterArn: string | undefined): boolean {
    if (clusterArn === undefined) return true;
    return this.cluster.startsWith("arn:") ? clusterArn === this.cluster : clusterArn.endsWith(`:cluster/${this.cluster}`);
  }

  private clusterArn(): string {
    if (this.cluster.startsWith("arn:")) return this.cluster;
    const first = this.records.values().next().value as TaskRecord | undefined;
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

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

