import {
  appendFileSync,
  chmodSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  type WriteStream,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import type { LogEntry } from "../../protos/runtime.js";
import type { DashboardStatus } from "../../telemetry/dashboard.js";
import { capLogEntry } from "../../telemetry/logfmt.js";

/** Root of the multi deployer's state: $TSWEAVER_STATE_DIR, else ~/.tsweaver/multi. */
export function stateRoot(): string {
  return process.env["TSWEAVER_STATE_DIR"] ?? path.join(os.homedir(), ".tsweaver", "multi");
}

/** What `tsweaver multi status` shows; written by the running deployer. */
export interface DeploymentStatus extends DashboardStatus {
  /** "dead": the deployer is gone without stopping (seen by {@link observedStatus}, never written). */
  state: "running" | "stopping" | "stopped" | "dead";
}

/** Log and trace files rotate at this size (bytes on disk). */
export const MAX_LOG_BYTES = 10 * 1024 * 1024;
/** Rotated files kept per kind (logs.1.jsonl is the newest of them); older ones are deleted. */
export const KEPT_LOG_FILES = 3;

/** Size limits of a deployment's files (defaults: MAX_LOG_BYTES, KEPT_LOG_FILES). */
export interface FileLimits {
  maxFileBytes?: number;
  keptFiles?: number;
}

/**
 * One deployment's directory: status.json, logs.jsonl and traces.jsonl; a full file is renamed to
 * logs.1.jsonl (logs.1 to logs.2, ...), keeping at most KEPT_LOG_FILES rotated files per kind.
 */
export class DeploymentDir {
  readonly dir: string;
  private readonly maxFileBytes: number;
  private readonly keptFiles: number;
  private logBytes = 0;
  private traceBytes = 0;
  private traceStream: WriteStream | undefined;
  private closed = false;

  constructor(
    root: string,
    readonly deploymentId: string,
    limits: FileLimits = {},
  ) {
    this.dir = path.join(root, deploymentId);
    this.maxFileBytes = limits.maxFileBytes ?? MAX_LOG_BYTES;
    this.keptFiles = limits.keptFiles ?? KEPT_LOG_FILES;
  }

  create(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** The admin server's token (mode 0600): whoever can read it can use the deployment's admin API. */
  get adminTokenFile(): string {
    return path.join(this.dir, "admin-token");
  }

  writeAdminToken(token: string): void {
    writeFileSync(this.adminTokenFile, token + "\n", { mode: 0o600 });
    chmodSync(this.adminTokenFile, 0o600); // a file left by an earlier run keeps its mode otherwise
  }

  /** The admin token; the error names the file and the fix. */
  readAdminToken(): string {
    try {
      return readFileSync(this.adminTokenFile, "utf8").trim();
    } catch (err) {
      throw new Error(
        `cannot read the admin token ${this.adminTokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (run tsweaver as the user who started the deployment)`,
      );
    }
  }

  get statusFile(): string {
    return path.join(this.dir, "status.json");
  }

  get logFile(): string {
    return path.join(this.dir, "logs.jsonl");
  }

  writeStatus(status: DeploymentStatus): void {
    // Write then rename: a reader never sees half a file.
    const tmp = `${this.statusFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(status, null, 2));
    renameSync(tmp, this.statusFile);
  }

  readStatus(): DeploymentStatus | undefined {
    try {
      return JSON.parse(readFileSync(this.statusFile, "utf8")) as DeploymentStatus;
    } catch {
      return undefined;
    }
  }

  /** Appends entries (each cut to MAX_LOG_ENTRY_BYTES, marked), rotating the file when it is full. */
  appendLogs(entries: readonly LogEntry[]): void {
    const text = entries.map((e) => JSON.stringify(capLogEntry(e))).join("\n") + "\n";
    const bytes = Buffer.byteLength(text);
    if (this.logBytes > 0 && this.logBytes + bytes > this.maxFileBytes && existsSync(this.logFile)) {
      this.rotate("logs");
      this.logBytes = 0;
    }
    appendFileSync(this.logFile, text);
    this.logBytes += bytes;
  }

  /** `kind`.jsonl → `kind`.1.jsonl, `kind`.1 → `kind`.2, ...; the oldest beyond keptFiles is deleted. */
  private rotate(kind: "logs" | "traces"): void {
    const file = (n: number) => path.join(this.dir, n === 0 ? `${kind}.jsonl` : `${kind}.${n}.jsonl`);
    rmSync(file(this.keptFiles), { force: true });
    for (let n = this.keptFiles - 1; n >= 0; n--) if (existsSync(file(n))) renameSync(file(n), file(n + 1));
    // Files beyond the limit (left by a larger limit before) go too.
    for (let n = this.keptFiles + 1; existsSync(file(n)); n++) rmSync(file(n), { force: true });
  }

  /** Finished spans, one JSON object a line (rotated like the logs). */
  get traceFile(): string {
    return path.join(this.dir, "traces.jsonl");
  }

  /** Appends spans without blocking (spans can come by the thousand per second when every call is traced). */
  appendTraces(spans: readonly object[]): void {
    if (this.closed) return;
    let text = "";
    for (const s of spans) text += JSON.stringify(s) + "\n";
    const bytes = Buffer.byteLength(text);
    if (this.traceBytes > 0 && this.traceBytes + bytes > this.maxFileBytes && this.traceStream) {
      this.traceStream.end(); // the open file follows the rename; its pending writes land in traces.1.jsonl
      this.rotate("traces");
      this.traceStream = undefined;
      this.traceBytes = 0;
    }
    this.traceStream ??= createWriteStream(this.traceFile, { flags: "a" }).on("error", () => {});
    this.traceStream.write(text);
    this.traceBytes += bytes;
  }

  /** Flushes and closes the trace file. */
  async close(): Promise<void> {
    this.closed = true;
    const s = this.traceStream;
    this.traceStream = undefined;
    if (s) await new Promise<void>((resolve) => s.end(resolve));
  }

  /** Log files oldest first. */
  logFiles(): string[] {
    if (!existsSync(this.dir)) return [];
    const rotated = readdirSync(this.dir)
      .map((f) => /^logs\.(\d+)\.jsonl$/.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .sort((a, b) => Number(b[1]) - Number(a[1]))
      .map((m) => path.join(this.dir, m[0]));
    return [...rotated, this.logFile].filter((f) => existsSync(f));
  }
}

/** All deployments under the state root, newest first. */
export function listDeployments(root = stateRoot()): DeploymentDir[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((id) => new DeploymentDir(root, id))
    .filter((d) => existsSync(d.statusFile))
    .sort((a, b) => statSync(b.statusFile).mtimeMs - statSync(a.statusFile).mtimeMs);
}

/** True if the process is alive (the deployer of a "running" deployment may have been killed). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** True while the deployer that wrote `status` still runs (it may have been killed without a word). */
export function deployerAlive(status: DeploymentStatus): boolean {
  return status.state !== "stopped" && processAlive(status.deployerPid);
}

/**
 * The status as it is now, not as last written: when the deployer is gone (kill -9, a crash), its
 * replicas are reported "gone" (their processes exit with their control pipe), or "orphaned" should
 * one still run, and their health as unknown.
 */
export function observedStatus(status: DeploymentStatus): DeploymentStatus {
  if (status.state === "stopped" || deployerAlive(status)) return status;
  return {
    ...status,
    state: "dead",
    groups: status.groups.map((g) => ({
      ...g,
      replicas: g.replicas.map((r) => {
        const running = r.pid > 0 && processAlive(r.pid);
        return { ...r, state: running ? "orphaned" : "gone", health: "UNKNOWN", healthySince: undefined, pid: running ? r.pid : 0 };
      }),
    })),
  };
}
