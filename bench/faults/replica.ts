// A replica for the RPC fault run: an RpcServer serving `echo`, with short frame timeouts so the run is
// bounded. Every log line goes to stdout (the parent counts them); prints "READY <address>" first.
import { RpcServer } from "../../runtime/rpc/server.js";
import type { RpcLogger } from "../../runtime/rpc/logger.js";

const line = (level: string) => (msg: string, attrs?: Record<string, unknown>) =>
  process.stdout.write(`${level} ${msg} ${JSON.stringify(attrs ?? {})}\n`);
const logger: RpcLogger = { error: line("error"), warn: line("warn"), info: line("info"), debug() {} };
const server = new RpcServer({
  lookup: (id) => (id === 0 ? { name: "faults/Echo.echo", fn: (args: unknown[]) => args[0] } : undefined),
  methodTableHash: "faults",
  logger,
  frameTimeoutMs: Number(process.env["FRAME_TIMEOUT_MS"] ?? 3000),
  frameProgressTimeoutMs: Number(process.env["FRAME_PROGRESS_TIMEOUT_MS"] ?? 1500),
});
const address = await server.listen("127.0.0.1:0");
process.stdout.write(`READY ${address}\n`);
