/**
 * Helpers every test tier shares: the repository's paths, temp dirs, polling, HTTP and child processes.
 * Nothing here imports the runtime, so unit tests that use it load no deployer.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The repository root: the nearest folder above this file holding package.json. Found by walking up
 * because this file runs both compiled (dist/test/support/) and from source (test/support/).
 */
export const ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "package.json"))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

/** The compiled test app (built by `npm run build`). */
export const ECHO_APP = path.join(ROOT, "dist/test/fixtures/apps/echo.js");
/** The compiled conformance app (test/conformance runs it on every deployer). */
export const CONFORMANCE_APP = path.join(ROOT, "dist/test/fixtures/apps/conformance.js");
/** The compiled hello example. */
export const HELLO_APP = path.join(ROOT, "dist/examples/hello/main.js");
/** The compiled tsweaver command. */
export const CLI = path.join(ROOT, "dist/runtime/cli/main.js");

/** A fresh directory under the OS temp dir. */
export function tempDir(prefix = "tsweaver-test-"): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Writes a weaver.toml into a fresh temp dir and returns its path. */
export function writeConfig(text: string, dir = tempDir()): string {
  const file = path.join(dir, "weaver.toml");
  writeFileSync(file, text);
  return file;
}

/**
 * Polls `fn` every `everyMs` until it returns a truthy value, and returns that value; at the deadline
 * throws, naming `what` and the last error `fn` threw.
 */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 20_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A promise plus its resolve function. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Resolves when `signal` aborts, with its reason. */
export function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

export interface HttpReply {
  status: number;
  body: string;
}

/** GET over a fresh connection (so a proxy's round-robin sees each request separately). */
export function get(url: string, timeoutMs = 10_000, headers: Readonly<Record<string, string>> = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on("error", reject);
  });
}

export async function getJson<T>(url: string, headers: Readonly<Record<string, string>> = {}): Promise<T> {
  const r = await get(url, 10_000, headers);
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as T;
}

/** A child process whose output is collected, with a helper to wait for a line. */
export class Proc {
  readonly child: ChildProcess;
  out = "";
  err = "";
  readonly exited: Promise<{ code: number | null; signal: string | null }>;

  constructor(cmd: string, args: string[], env: Record<string, string> = {}, cwd = ROOT) {
    this.child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8").on("data", (c: string) => (this.out += c));
    this.child.stderr!.setEncoding("utf8").on("data", (c: string) => (this.err += c));
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })));
  }

  /** Waits until stdout+stderr matches `re`; returns the match. */
  waitForOutput(re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return waitFor(
      `output ${re}`,
      () => {
        if (this.child.exitCode !== null) throw new Error(`process exited (${this.child.exitCode}); output:\n${this.out}\n${this.err}`);
        return (this.out + this.err).match(re);
      },
      timeoutMs,
    );
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

/** True if a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs the tsweaver CLI (this repository's, or `cli`: e.g. an installed package's) without blocking this
 * process's event loop (in-process harnesses keep running).
 */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  cli = CLI,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.stderr!.setEncoding("utf8").on("data", (c: string) => (err += c));
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}
