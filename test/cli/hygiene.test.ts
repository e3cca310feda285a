import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { CLI, Proc, ROOT, alive, tempDir, waitFor } from "../support/index.js";

test("SIGTERM to `npm start` stops the deployer and every weavelet (the script execs the deployer)", async () => {
  const npm = execFileSync("sh", ["-c", "command -v npm"], { encoding: "utf8" }).trim();
  // The suite has built dist/ already: an `npm` first on the script's PATH turns its `npm run build` into a
  // no-op (a rebuild would rewrite dist/ under tests running beside this one) and hands anything else to npm.
  const shims = tempDir();
  writeFileSync(path.join(shims, "npm"), `#!/bin/sh\nif [ "$1 $2" = "run build" ]; then exit 0; fi\nexec ${JSON.stringify(npm)} "$@"\n`);
  chmodSync(path.join(shims, "npm"), 0o755);
  const state = tempDir();
  const env = { TSWEAVER_STATE_DIR: state, PATH: `${shims}:${process.env["PATH"] ?? ""}` };
  assert.match(
    (JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts["start"] ?? "",
    /^npm run build && exec node /,
  );
  const start = new Proc(npm, ["start"], env);
  let pids: number[] = [];
  try {
    await start.waitForOutput(/listener hello available on http:\/\//, 60_000);
    pids = await waitFor("the deployer's and the weavelets' pids", () => {
      const out = execFileSync(process.execPath, [CLI, "multi", "status", "--json"], { env: { ...process.env, ...env }, encoding: "utf8" });
      const status = JSON.parse(out) as { deployerPid: number; groups: { replicas: { pid: number }[] }[] }[];
      const replicas = status[0]?.groups.flatMap((g) => g.replicas.map((r) => r.pid)) ?? [];
      return replicas.length === 4 && replicas.every((p) => p > 0) ? [status[0]!.deployerPid, ...replicas] : undefined;
    });
    start.kill("SIGTERM");
    const exit = await start.exited;
    assert.ok(exit.code === 0 || exit.signal === "SIGTERM" || exit.code === 143, `npm start ended with ${JSON.stringify(exit)}`);
    await waitFor("every process of the deployment to exit", () => pids.every((p) => !alive(p)) || undefined, 20_000);
  } finally {
    start.kill("SIGKILL");
    for (const p of pids) if (p > 0 && alive(p)) process.kill(p, "SIGKILL");
  }
});

test("`tsweaver multi logs | head -1` ends quietly with status 0 when the reader goes away (no EPIPE trace)", async () => {
  const state = tempDir();
  const dir = path.join(state, "d0");
  mkdirSync(dir);
  const now = new Date().toISOString();
  writeFileSync(
    path.join(dir, "status.json"),
    JSON.stringify({
      deploymentId: "d0",
      app: "big",
      config: "weaver.toml",
      deployerPid: process.pid,
      startedAt: now,
      updatedAt: now,
      state: "running",
      groups: [],
      listeners: [],
    }),
  );
  const entry = (i: number) =>
    JSON.stringify({
      app: "big",
      version: "d0",
      component: "big/C",
      node: "w1",
      timeMicros: String(Date.now() * 1000),
      level: "info",
      file: "c.ts",
      line: 1,
      msg: `entry ${i} ${"x".repeat(100)}`,
      attrs: {},
    });
  writeFileSync(path.join(dir, "logs.jsonl"), Array.from({ length: 50_000 }, (_, i) => entry(i)).join("\n") + "\n");

  // Like `| head -1`: read the first line, then close the pipe while the CLI still has megabytes to write.
  const child = spawn(process.execPath, [CLI, "multi", "logs"], {
    env: { ...process.env, TSWEAVER_STATE_DIR: state },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  const first = await new Promise<string>((resolve) => {
    child.stdout.setEncoding("utf8").once("data", (c: string) => {
      resolve(c.split("\n")[0] ?? "");
      child.stdout.destroy();
    });
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  assert.match(first, /entry 0 x/);
  assert.equal(code, 0, err);
  assert.doesNotMatch(err, /EPIPE|Error|at /);
});
