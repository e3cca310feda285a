import {
  appendFileSync,
  chmodSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
  type WriteStream,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import type { LogEntry } from "../../protos/runtime.js";

/** Root of the multi deployer's state: $TSWEAVER_STATE_DIR, else ~/.tsweaver/multi. */
export function stateRoot(): string {
  return process.env["TSWEAVER_STATE_DIR"] ?? path.join(os.homedir(), ".tsweaver", "multi");
}

/** What `tsweaver multi status` shows; written by the running deployer. */
export interface DeploymentStatus {
  deploymentId: string;
  app: string;
  config: string;
  deployerPid: number;
  startedAt: string;
  updatedAt: string;
  state: "running" | "stopping" | "stopped";
  groups: {
    name: string;
    components: string[];
    started: boolean;
    replicas: { id: string; pid: number; address: string; health: string; restarts: number; state: string }[];
  }[];
  listeners: { name: string; address: string; replicas: number }[];
  /** "host:port" of the deployer's admin server (dashboard, /metrics, the APIs the CLI uses). */
  admin?: string;
}

/** Log files rotate at this size; one previous file is kept. */
export const MAX_LOG_BYTES = 10 * 1024 * 1024;

/** One deployment's directory: status.json and logs.jsonl (+ logs.1.jsonl after rotation). */
export class DeploymentDir {
  readonly dir: string;
  private logBytes = 0;
  private traceBytes = 0;
  private traceStream: WriteStream | undefined;
  private closed = false;

  constructor(
    root: string,
    readonly deploymentId: string,
  ) {
    this.dir = path.join(root, deploymentId);
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

  appendLogs(entries: readonly LogEntry[]): void {
    const text = entries.map((e) => JSON.stringify(e)).join("\n") + "\n";
    if (this.logBytes + text.length > MAX_LOG_BYTES && existsSync(this.logFile)) {
      renameSync(this.logFile, path.join(this.dir, "logs.1.jsonl"));
      this.logBytes = 0;
    }
    appendFileSync(this.logFile, text);
    this.logBytes += text.length;
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
    if (this.traceBytes + text.length > MAX_LOG_BYTES && this.traceStream) {
      this.traceStream.end(); // the open file follows the rename; its pending writes land in traces.1.jsonl
      renameSync(this.traceFile, path.join(this.dir, "traces.1.jsonl"));
      this.traceStream = undefined;
      this.traceBytes = 0;
    }
    this.traceStream ??= createWriteStream(this.traceFile, { flags: "a" }).on("error", () => {});
    this.traceStream.write(text);
    this.traceBytes += text.length;
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
    return [path.join(this.dir, "logs.1.jsonl"), this.logFile].filter((f) => existsSync(f));
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
