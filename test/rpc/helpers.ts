import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MethodHandler } from "../../runtime/rpc/server.js";
import { RpcServer } from "../../runtime/rpc/server.js";
import type { RpcLogger } from "../../runtime/rpc/logger.js";

/** The method-table hash test servers and clients agree on. */
export const HASH = "test-hash-1";

/** A logger that remembers what it was told, for asserting that protocol errors get logged. */
export class MemoryLogger implements RpcLogger {
  readonly lines: { level: string; msg: string; attrs?: Record<string, unknown> }[] = [];
  error(msg: string, attrs?: Record<string, unknown>): void {
    this.lines.push({ level: "error", msg, attrs });
  }
  warn(msg: string, attrs?: Record<string, unknown>): void {
    this.lines.push({ level: "warn", msg, attrs });
  }
  info(msg: string, attrs?: Record<string, unknown>): void {
    this.lines.push({ level: "info", msg, attrs });
  }
  debug(msg: string, attrs?: Record<string, unknown>): void {
    this.lines.push({ level: "debug", msg, attrs });
  }
  errors(): string[] {
    return this.lines.filter((l) => l.level === "error").map((l) => `${l.msg} ${JSON.stringify(l.attrs ?? {})}`);
  }
}

/** Methods by name; ids are their index in this list. */
export type Methods = Record<string, (args: unknown[]) => unknown>;

/** A running test server plus the id of each of its methods. */
export interface TestServer {
  server: RpcServer;
  address: string;
  ids: Record<string, number>;
  logger: MemoryLogger;
}

/** Starts an RpcServer serving `methods` on `address` (default: an ephemeral loopback port). */
export async function startServer(methods: Methods, address = "127.0.0.1:0", opts: { hash?: string; maxFrameSize?: number; deploymentId?: string } = {}): Promise<TestServer> {
  const names = Object.keys(methods);
  const table: MethodHandler[] = names.map((n) => ({ name: `test/Svc.${n}`, fn: methods[n]! }));
  const ids: Record<string, number> = {};
  names.forEach((n, i) => (ids[n] = i));
  const logger = new MemoryLogger();
  const server = new RpcServer({
    lookup: (id) => table[id],
    methodTableHash: opts.hash ?? HASH,
    deploymentId: opts.deploymentId,
    logger,
    maxFrameSize: opts.maxFrameSize,
  });
  const bound = await server.listen(address);
  return { server, address: bound, ids, logger };
}

/** A fresh temp dir for unix sockets; remove it with the returned function. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "tsw-rpc-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Polls `cond` every 10 ms until it holds; fails after `timeoutMs`. */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
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
