/**
 * Fargate's part of the simulator: one local process per RUNNING task.
 *
 * A task's process is the essential container's entryPoint (default: the image's, `node
 * dist/runtime/cli/main.js`, see infra/Dockerfile) and command, in `workdir`, with the container's
 * environment and overrides, its secrets resolved from Secrets Manager, what ECS adds (`AWS_REGION`,
 * `ECS_CONTAINER_METADATA_URI_V4`) and the emulator's endpoint and throwaway credentials. Each task gets
 * its own loopback address: the ENI address the emulator reports for it (a loopback address with moto as
 * test/aws/moto.ts starts it), else `<prefix>N` (N from 2 up, never reused). A process that exits on its own
 * stops its task in the emulator ("Essential container in task exited (code X)"); a stopped task's
 * process gets SIGTERM, and everything it started SIGKILL after `stopTimeoutMs` (like `docker stop`);
 * whatever a task's main process leaves behind dies with it. Processes are killed when the test
 * process exits.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import {
  DescribeTaskDefinitionCommand,
  StopTaskCommand,
  type ContainerDefinition,
  type ECSClient,
  type Task,
  type TaskDefinition,
} from "@aws-sdk/client-ecs";
import { GetSecretValueCommand, type SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { ROOT } from "../../support/index.js";
import { emulatorEnv, sleep } from "../moto.js";
import type { AwsLogsShipper, LogStream } from "./logs.js";

/** The image's entrypoint (infra/Dockerfile): the tsweaver CLI. */
export const DEFAULT_ENTRYPOINT: readonly string[] = [process.execPath, path.join(ROOT, "dist/runtime/cli/main.js")];

/** Variables of the test process a task's process inherits (everything else comes from the task). */
const INHERITED_ENV = [
  "PATH",
  "HOME",
  "TMPDIR",
  "TMP",
  "TEMP",
  "LANG",
  "LC_ALL",
  "TZ",
  "SYSTEMROOT",
  "NODE_V8_COVERAGE",
  "TSWEAVER_TEST_VERBOSE",
  "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED",
];

/**
 * The image's own environment (infra/Dockerfile's ENV) as far as the runtime reads it: the user the agent
 * runs the app as. The image's is `node`; here it is `nobody`, an unprivileged user every Linux has (it
 * only counts when the tests run as root, as a task's agent does: the agent then starts the app as it).
 */
const IMAGE_ENV: Readonly<Record<string, string>> = { TSWEAVER_APP_USER: "nobody" };

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

/** The runner's mutable record of a task (the metadata endpoint reads it too). */
export interface TaskRecord {
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
  log: LogStream | undefined;
  cpu: number;
  memory: number;
  logOptions: Record<string, string> | undefined;
  logDriver: string | undefined;
  containerUuid: string;
}

export interface TaskRunnerConfig {
  readonly ecs: ECSClient;
  readonly secrets: SecretsManagerClient;
  readonly logs: AwsLogsShipper;
  readonly cluster: string;
  readonly region: string;
  /** `AWS_ENDPOINT_URL` of the processes. */
  readonly processEndpoint: string;
  /** Address prefix of the tasks, "127.x.y.". */
  readonly ipPrefix: string;
  readonly workdir?: string;
  readonly entrypoint?: readonly string[];
  readonly taskEnv?: (task: SimTask) => Record<string, string> | undefined;
  readonly maxLines?: number;
  readonly stopTimeoutMs?: number;
  readonly verbose: () => boolean;
  /** The simulator still runs (a task that finished preparing after `stop()` gets no process). */
  readonly isRunning: () => boolean;
  readonly metadataUri: (taskId: string) => string;
  /** A task of a service crashed or could not start (the scheduler backs off its restarts). */
  readonly onFailure: (r: TaskRecord) => void;
  readonly emit: (event: "task-start" | "task-exit", task: SimTask) => void;
}

/** Process groups of running tasks, of every simulator: killed when the test process exits. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;
export function installExitHook(): void {
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

export class TaskRunner {
  /** Every task a process was started for (or failed to be), oldest first. */
  readonly records = new Map<string, TaskRecord>();
  private readonly taskDefs = new Map<string, Promise<TaskDefinition>>();
  private nextHost = 2;

  constructor(private readonly cfg: TaskRunnerConfig) {}

  find(taskArnOrId: string): TaskRecord | undefined {
    return this.records.get(taskArnOrId) ?? [...this.records.values()].find((r) => r.id === taskArnOrId);
  }

  private taskDefinition(arn: string): Promise<TaskDefinition> {
    let p = this.taskDefs.get(arn);
    if (p === undefined) {
      p = this.cfg.ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: arn })).then((d) => d.taskDefinition!);
      p.catch(() => this.taskDefs.delete(arn));
      this.taskDefs.set(arn, p);
    }
    return p;
  }

  /**
   * The task's address: the ENI address the emulator reports for it when that is a loopback address
   * (moto as test/aws/moto.ts starts it), so the process binds what DescribeTasks says; otherwise the
   * next address of `ipPrefix`.
   */
  private allocateIp(t: Task): string {
    const eni = t.attachments
      ?.find((a) => a.type === "ElasticNetworkInterface")
      ?.details?.find((d) => d.name === "privateIPv4Address")?.value;
    if (eni !== undefined && /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(eni)) return eni;
    if (this.nextHost > 254) throw new Error(`Fargate simulator ${this.cfg.cluster}: out of addresses in ${this.cfg.ipPrefix}0/24`);
    return `${this.cfg.ipPrefix}${this.nextHost++}`;
  }

  async start(t: Task): Promise<void> {
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
      ip: this.allocateIp(t),
      metadataUri: this.cfg.metadataUri(id),
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
      const entry = [...(c.entryPoint ?? this.cfg.entrypoint ?? DEFAULT_ENTRYPOINT)];
      if (entry[0] === "node") entry[0] = process.execPath;
      r.command = [...entry, ...(override?.command ?? c.command ?? [])];

      const env: Record<string, string> = { ...IMAGE_ENV };
      for (const k of INHERITED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k]!;
      for (const e of c.environment ?? []) env[e.name!] = e.value ?? "";
      for (const e of override?.environment ?? []) env[e.name!] = e.value ?? "";
      for (const s of c.secrets ?? []) env[s.name!] = await this.resolveSecret(s.valueFrom!);
      Object.assign(env, emulatorEnv(this.cfg.processEndpoint, this.cfg.region), {
        AWS_EXECUTION_ENV: "AWS_ECS_FARGATE",
        ECS_CONTAINER_METADATA_URI_V4: r.metadataUri,
        ECS_CONTAINER_METADATA_URI: r.metadataUri.replace("/v4/", "/v3/"),
      });
      r.env = env;
      Object.assign(env, this.cfg.taskEnv?.(snapshot(r)) ?? {});
    } catch (err) {
      r.state = "failed";
      r.exitedAt = Date.now();
      r.stoppedReason = `ResourceInitializationError: ${(err as Error).message}`;
      resolveExited();
      await this.cfg.ecs.send(new StopTaskCommand({ cluster: this.cfg.cluster, task: arn, reason: r.stoppedReason })).catch(() => {});
      this.cfg.onFailure(r);
      this.cfg.emit("task-exit", snapshot(r));
      return;
    }
    if (!this.cfg.isRunning() || r.stopping) {
      r.state = "exited";
      r.exitedAt = Date.now();
      resolveExited();
      if (!r.stopping)
        await this.cfg.ecs
          .send(new StopTaskCommand({ cluster: this.cfg.cluster, task: arn, reason: "Fargate simulator stopped" }))
          .catch(() => {});
      return;
    }
    r.log = this.cfg.logs.open(r);

    const child = spawn(r.command[0]!, r.command.slice(1), {
      cwd: this.cfg.workdir ?? ROOT,
      env: r.env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    r.child = child;
    r.pid = child.pid;
    r.state = "running";
    if (child.pid !== undefined) liveGroups.add(child.pid);
    const max = this.cfg.maxLines ?? 5000;
    const label = `[${r.service ?? r.family} ${r.id.slice(0, 8)} ${r.ip}]`;
    const capture = (stream: NodeJS.ReadableStream, lines: string[], name: string): void => {
      readline.createInterface({ input: stream, crlfDelay: Infinity }).on("line", (line) => {
        lines.push(line);
        if (lines.length > max) lines.splice(0, lines.length - max);
        r.log?.events.push({ timestamp: Date.now(), message: line });
        if (this.cfg.verbose()) process.stderr.write(`${label}${name === "stderr" ? "!" : ""} ${line}\n`);
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
        this.cfg.onFailure(r);
        void this.cfg.ecs
          .send(new StopTaskCommand({ cluster: this.cfg.cluster, task: r.arn, reason: r.stoppedReason }))
          .catch((err: Error) => {
            if (this.cfg.verbose()) process.stderr.write(`${label} StopTask failed: ${err.message}\n`);
          });
      }
      if (this.cfg.verbose())
        process.stderr.write(
          `${label} exited (code ${r.exitCode}${r.signal ? `, ${r.signal}` : ""})${r.stoppedReason ? `: ${r.stoppedReason}` : ""}\n`,
        );
      resolveExited();
      this.cfg.emit("task-exit", snapshot(r));
    };
    child.once("exit", (code, signal) => void onExit(code, signal));
    child.once("error", (err) => {
      r.stderr.push(`fargate simulator: cannot start ${r.command[0]}: ${err.message}`);
      if (child.pid === undefined) void onExit(127, null); // never started: no "exit" event follows
    });
    if (this.cfg.verbose()) process.stderr.write(`${label} started pid ${child.pid}: ${r.command.join(" ")}\n`);
    this.cfg.emit("task-start", snapshot(r));
  }

  /** SIGTERM to the main process; SIGKILL to everything in the task after the grace period. */
  stop(r: TaskRecord, reason: string): void {
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
    }, this.cfg.stopTimeoutMs ?? 5000);
    r.killTimer.unref();
  }

  private async resolveSecret(valueFrom: string): Promise<string> {
    // arn:aws:secretsmanager:region:account:secret:name[:json-key:version-stage:version-id]
    const parts = valueFrom.split(":");
    if (parts[2] !== "secretsmanager") throw new Error(`unable to resolve secret ${valueFrom}: only Secrets Manager secrets are simulated`);
    const [jsonKey, stage, version] = parts.slice(7);
    const out = await this.cfg.secrets.send(
      new GetSecretValueCommand({
        SecretId: parts.slice(0, 7).join(":"),
        VersionStage: stage || undefined,
        VersionId: version || undefined,
      }),
    );
    const value = out.SecretString ?? "";
    if (!jsonKey) return value;
    const v = (JSON.parse(value) as Record<string, unknown>)[jsonKey];
    if (v === undefined) throw new Error(`secret ${valueFrom} has no key ${jsonKey}`);
    return typeof v === "string" ? v : JSON.stringify(v);
  }
}

/** A read-only copy of a task record. */
export function snapshot(r: TaskRecord): SimTask {
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
