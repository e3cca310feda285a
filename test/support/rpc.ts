/** RPC test servers: a method table served on a real socket, and a logger that remembers. */
import type { RpcLogger } from "../../runtime/rpc/logger.js";
import { RpcServer, type MethodHandler, type RpcServerOptions } from "../../runtime/rpc/server.js";

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
export async function startServer(
  methods: Methods,
  address = "127.0.0.1:0",
  opts: { hash?: string } & Omit<RpcServerOptions, "lookup" | "methodTableHash" | "logger"> = {},
): Promise<TestServer> {
  const names = Object.keys(methods);
  const table: MethodHandler[] = names.map((n) => ({ name: `test/Svc.${n}`, fn: methods[n]! }));
  const ids: Record<string, number> = {};
  names.forEach((n, i) => (ids[n] = i));
  const logger = new MemoryLogger();
  const { hash, ...rest } = opts;
  const server = new RpcServer({ ...rest, lookup: (id) => table[id], methodTableHash: hash ?? HASH, logger });
  const bound = await server.listen(address);
  return { server, address: bound, ids, logger };
}
