import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { DeploymentDir, observedStatus, type DeploymentStatus } from "../../../runtime/deployers/multi/state.js";
import type { LogEntry } from "../../../runtime/protos/runtime.js";
import { MAX_LOG_ENTRY_BYTES, capLogEntry } from "../../../runtime/telemetry/logfmt.js";
import { LogBatcher } from "../../../runtime/weavelet/logs.js";
import { runCli, tempDir } from "../../support/index.js";

const entry = (msg: string, attrs: Record<string, string> = {}): LogEntry => ({
  app: "a",
  version: "v",
  component: "c",
  node: "n",
  timeMicros: "1",
  level: "info",
  file: "",
  line: 0,
  msg,
  attrs,
});

/** A pid that belonged to a process which has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((r) => child.once("exit", r));
  return child.pid!;
}

function status(
  id: string,
  deployerPid: number,
  state: DeploymentStatus["state"],
  updatedAt: string,
  replicaPid: number,
): DeploymentStatus {
  return {
    deploymentId: id,
    app: "app",
    config: "weaver.toml",
    deployerPid,
    startedAt: updatedAt,
    updatedAt,
    state,
    groups: [
      {
        name: "g",
        components: ["c/C"],
        started: true,
        replicas: [{ id: "g-0", pid: replicaPid, address: "127.0.0.1:1", health: "HEALTHY", restarts: 0, state: "running" }],
      },
    ],
    listeners: [],
  };
}

test("log files rotate by bytes (multi-byte text counts as its bytes) and only the newest rotated files are kept", () => {
  const d = new DeploymentDir(tempDir(), "dep", { maxFileBytes: 4096, keptFiles: 2 });
  d.create();
  const text = "é€😀".repeat(40); // 160 UTF-16 code units, 360 bytes: counting characters would overrun
  for (let i = 0; i < 200; i++) d.appendLogs([entry(`${i} ${text}`)]);
  const files = readdirSync(d.dir)
    .filter((f) => f.startsWith("logs"))
    .sort();
  assert.deepEqual(files, ["logs.1.jsonl", "logs.2.jsonl", "logs.jsonl"]);
  for (const f of files) assert.ok(statSync(path.join(d.dir, f)).size <= 4096, `${f}: ${statSync(path.join(d.dir, f)).size} bytes`);
  // Oldest first, and the last entry is in the current file.
  const all = d.logFiles().flatMap((f) => readFileSync(f, "utf8").trim().split("\n"));
  const numbers = all.map((l) => Number((JSON.parse(l) as LogEntry).msg.split(" ")[0]));
  assert.deepEqual(
    numbers,
    numbers.map((_, i) => numbers[0]! + i),
    "in order, none missing after the oldest kept",
  );
  assert.equal(numbers.at(-1), 199);
});

test("an entry over the cap is cut to it, marked, and never split inside a character", () => {
  const huge = "€".repeat(10 * 1024 * 1024); // 30 MiB of 3-byte characters
  const capped = capLogEntry(entry(huge, { small: "kept", big: "x".repeat(1_000_000) }));
  const bytes = Buffer.byteLength(capped.msg) + Object.values(capped.attrs).reduce((n, v) => n + Buffer.byteLength(v), 0);
  assert.ok(bytes < MAX_LOG_ENTRY_BYTES + 200, `${bytes} bytes`);
  assert.match(capped.msg, /^€+… \[truncated: \d+ of 31457280 bytes dropped\]$/);
  assert.equal(capped.attrs["small"], "kept");
  assert.match(capped.attrs["big"]!, /^x+… \[truncated: \d+ of 1000000 bytes dropped\]$/);
  assert.equal(capped.attrs["truncated"], String(31457280 + 4 + 1_000_000));
  const small = entry("fine", { a: "b" });
  assert.equal(capLogEntry(small), small, "small entries pass untouched");

  // In the weavelet (before the control pipe) and in the deployer's files (stdout lines too).
  const sent: LogEntry[] = [];
  const batcher = new LogBatcher({ app: "a", deploymentId: "v", id: "w" }, (b) => sent.push(...b));
  batcher.loggerFor("c").info("y".repeat(1_000_000));
  batcher.flush();
  assert.ok(Buffer.byteLength(sent[0]!.msg) < MAX_LOG_ENTRY_BYTES + 100);
  const d = new DeploymentDir(tempDir(), "dep");
  d.create();
  d.appendLogs([entry(huge)]);
  assert.ok(statSync(d.logFile).size < MAX_LOG_ENTRY_BYTES + 1000);
});

test("status of a deployment whose deployer is gone: dead, its replicas gone", async () => {
  const gone = await deadPid();
  const s = observedStatus(status("d1", gone, "running", new Date().toISOString(), await deadPid()));
  assert.equal(s.state, "dead");
  assert.deepEqual(
    s.groups[0]!.replicas.map((r) => [r.state, r.health, r.pid]),
    [["gone", "UNKNOWN", 0]],
  );
  const live = status("d2", process.pid, "running", new Date().toISOString(), process.pid);
  assert.equal(observedStatus(live), live, "a live deployer's status is as written");

  const root = tempDir();
  const d = new DeploymentDir(root, "d1");
  d.create();
  d.writeStatus(status("d1", gone, "running", new Date().toISOString(), 4242424));
  const out = await runCli(["multi", "status", "--all"], { TSWEAVER_STATE_DIR: root });
  assert.equal(out.code, 0, out.err);
  assert.match(out.out, /DEPLOYMENT d1 +app app +dead \(deployer gone\)/);
  assert.match(out.out, /g +c\/C +g-0 +- +127\.0\.0\.1:1 +gone +UNKNOWN +0/);
  assert.match((await runCli(["multi", "status"], { TSWEAVER_STATE_DIR: root })).out, /no running deployments/);
});

test("tsweaver multi gc removes ended deployments older than --older-than, never a running one", async () => {
  const root = tempDir();
  const env = { TSWEAVER_STATE_DIR: root };
  const old = new Date(Date.now() - 10 * 86_400_000);
  const gone = await deadPid();
  const make = (id: string, s: DeploymentStatus, when: Date) => {
    const d = new DeploymentDir(root, id);
    d.create();
    d.writeStatus(s);
    d.appendLogs([entry("hello")]);
    mkdirSync(path.join(d.dir, "profiles"));
    utimesSync(d.statusFile, when, when);
    return d;
  };
  const stoppedOld = make("stopped-old", status("stopped-old", gone, "stopped", old.toISOString(), 0), old);
  const deadOld = make("dead-old", status("dead-old", gone, "running", old.toISOString(), 0), old);
  const stoppedNew = make("stopped-new", status("stopped-new", gone, "stopped", new Date().toISOString(), 0), new Date());
  // Running (this test process stands in for its deployer), with an old status: still never removed.
  const running = make("running", status("running", process.pid, "running", old.toISOString(), process.pid), old);
  writeFileSync(path.join(root, "notes.txt"), "not a deployment");

  const help = await runCli(["multi", "gc", "--help"], env);
  assert.equal(help.code, 0);
  assert.match(help.out, /never of a running one/);
  assert.match(help.out, /--older-than <duration>/);

  const dry = await runCli(["multi", "gc", "--older-than", "1d", "--dry-run"], env);
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /would remove stopped-old /);
  assert.ok(existsSync(stoppedOld.dir) && existsSync(deadOld.dir), "a dry run removes nothing");

  const gc = await runCli(["multi", "gc", "--older-than", "1d"], env);
  assert.equal(gc.code, 0, gc.err);
  assert.match(gc.err, /2 deployments removed, 2 kept/);
  assert.ok(!existsSync(stoppedOld.dir) && !existsSync(deadOld.dir), "ended and old: removed");
  assert.ok(existsSync(stoppedNew.dir), "ended recently: kept");
  assert.ok(existsSync(running.dir), "running: kept");
  assert.ok(existsSync(path.join(root, "notes.txt")));
  const bad = await runCli(["multi", "gc", "--older-than", "soon"], env);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /duration soon: use e\.g\. 10s, 500ms, 2m, 3h or 7d/);
});
