import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { Writer } from "../../runtime/codec/codec.js";
import { currentCall, withCallOptions } from "../../runtime/core/call.js";
import { ConfigError, DeadlineExceededError } from "../../runtime/core/errors.js";
import { ConnectionCloseLog, InboundBudget, serverLimitsFromEnv } from "../../runtime/rpc/budget.js";
import { Balancer } from "../../runtime/rpc/balancer.js";
import { Connection, ConnectionPool } from "../../runtime/rpc/client.js";
import { FrameReader, FrameType, writeHello } from "../../runtime/rpc/frames.js";
import { HASH, MemoryLogger, startServer, type Methods } from "../support/rpc.js";
import { waitFor } from "../support/index.js";

const basic: Methods = { echo: (args) => args[0] };

function helloBytes(): Buffer {
  const w = new Writer();
  writeHello(w, HASH);
  return w.toBuffer();
}

/** The first `sent` bytes of a REQUEST frame that declares `declared` body bytes. */
function partialFrame(declared: number, sent: number): Buffer {
  const b = Buffer.alloc(5 + sent);
  b.writeUInt32LE(declared + 1, 0);
  b[4] = FrameType.REQUEST;
  return b;
}

/** Raw sockets to `address`; each resolves `closed` when the server closes it. */
function openRaw(address: string, n: number, first: Buffer): Promise<{ sockets: Socket[]; closed: Promise<void>[] }> {
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  const sockets: Socket[] = [];
  const closed: Promise<void>[] = [];
  const opened: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const sock = connect({ host: "127.0.0.1", port });
    sock.on("error", () => {});
    sock.resume(); // discard what the server sends, so its close is seen
    sockets.push(sock);
    closed.push(new Promise((resolve) => sock.on("close", () => resolve())));
    opened.push(new Promise((resolve) => sock.once("connect", () => sock.write(first, () => resolve()))));
  }
  return Promise.all(opened).then(() => ({ sockets, closed }));
}

function rpcLines(logger: MemoryLogger): string[] {
  return logger.lines.filter((l) => l.msg.startsWith("rpc: connection") || / connections? /.test(l.msg)).map((l) => l.msg);
}

test("FrameReader holds exactly the bytes that arrived, not the length a frame declares", () => {
  const frames: Buffer[] = [];
  const reader = new FrameReader(16 * 1024 * 1024, { onFrame: (_t, buf, s, e) => frames.push(Buffer.from(buf.subarray(s, e))) });
  const body = Buffer.alloc(16 * 1024 * 1024 - 1, 7);
  const whole = Buffer.concat([partialFrame(body.length, 0), body]);
  reader.push(whole.subarray(0, 100));
  assert.ok(reader.pending);
  assert.equal(reader.buffered, 100, "declared 16 MiB, sent 100 bytes");
  let off = 100;
  for (const step of [1000, 64 * 1024, 1 << 20]) {
    reader.push(whole.subarray(off, off + step));
    off += step;
    assert.equal(reader.buffered, off, `after ${off} bytes`);
  }
  reader.push(whole.subarray(off));
  assert.equal(reader.pending, false);
  assert.equal(reader.buffered, 0);
  assert.equal(frames.length, 1);
  assert.ok(frames[0]!.subarray(0).equals(body));
});

test("FrameReader keeps a frame that starts at the end of a chunk as a copy of that tail only", () => {
  const reader = new FrameReader(1 << 20, { onFrame: () => {} });
  // One chunk: a 60,000-byte frame, then the first 100 bytes of a 500-byte frame.
  const first = Buffer.alloc(60_000 + 100);
  first.writeUInt32LE(60_000 - 4, 0);
  first[4] = FrameType.REQUEST;
  first.writeUInt32LE(500, 60_000);
  first[60_004] = FrameType.REQUEST;
  reader.push(first);
  assert.equal(reader.frames, 1);
  assert.equal(reader.buffered, 100);
  const parts = (reader as unknown as { parts: Buffer[] }).parts;
  assert.equal(parts.length, 1);
  assert.notEqual(parts[0]!.buffer, first.buffer, "the 100-byte tail must not keep the 60 KB chunk alive");
  reader.push(Buffer.alloc(404));
  assert.equal(reader.frames, 2);
  assert.equal(reader.buffered, 0);
});

test("a truncated header or half a frame is closed by the frame timeouts; the closes are logged as one summary", async () => {
  const s = await startServer(basic, "127.0.0.1:0", { frameTimeoutMs: 400, frameProgressTimeoutMs: 200, closeLogWindowMs: 60_000 });
  try {
    const halves = await openRaw(s.address, 40, Buffer.concat([helloBytes(), partialFrame(1000, 300)]));
    const truncated = await openRaw(s.address, 10, Buffer.concat([helloBytes(), Buffer.from([0x10, 0x00])]));
    await Promise.all([...halves.closed, ...truncated.closed]);
    assert.equal(s.server.stats.connectionsTimedOut, 50);
    // The server keeps serving.
    const c = new Connection(s.address, { methodTableHash: HASH });
    assert.equal(await c.call(s.ids.echo!, "echo", ["still here"]), "still here");
    await c.close();
    // One line for the first close; the other 49 wait for the window's summary.
    assert.equal(rpcLines(s.logger).length, 1);
    s.server.closeLog.flush();
    const lines = rpcLines(s.logger);
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /^rpc: 49 connections closed for a frame not completed in time in the last 60 s$/);
  } finally {
    await s.server.close(0);
  }
});

test("declared 16 MiB frames reserve only the bytes that arrived; their release is followed by one collection", async () => {
  const budget = new InboundBudget(1024 * 1024 * 1024, 1024 * 1024);
  const s = await startServer(basic, "127.0.0.1:0", { inboundBudget: budget });
  try {
    const n = 16;
    const raw = await openRaw(s.address, n, Buffer.concat([helloBytes(), partialFrame(16 * 1024 * 1024 - 1, 100_000)]));
    await waitFor("every connection to hold its partial frame", () => s.server.stats.bytesIn >= n * 100_000);
    await waitFor("the budget to account for every connection", () => budget.held >= n * 100_000);
    assert.ok(budget.held <= n * 256 * 1024, `${n} connections × 100 KB sent hold ${budget.held} bytes (16 MiB each declared)`);
    for (const sock of raw.sockets) sock.destroy();
    await waitFor("the budget to be released", () => budget.held === 0 && s.server.stats.connectionsOpen === 0);
    await waitFor("one collection once the connections stopped releasing bytes", () => budget.reclaims === 1);
    assert.equal((globalThis as { gc?: unknown }).gc, undefined, "the collector is not exposed to the app's global");
  } finally {
    await s.server.close(0);
  }
});

test("over the inbound budget, connections are paused, not failed: big calls all complete", async () => {
  const budget = new InboundBudget(1024 * 1024);
  const s = await startServer(basic, "127.0.0.1:0", { inboundBudget: budget });
  const conns = Array.from({ length: 4 }, () => new Connection(s.address, { methodTableHash: HASH }));
  try {
    const payload = Buffer.alloc(3 * 1024 * 1024, 1);
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(conns.map((c) => c.call(s.ids.echo!, "echo", [payload])));
      for (const r of results) assert.equal((r as Buffer).length, payload.length);
    }
    assert.ok(budget.pauses > 0, "four 3 MiB frames against a 1 MiB budget must pause someone");
    assert.equal(budget.held, 0);
    assert.equal(budget.waiting, 0);
  } finally {
    await Promise.all(conns.map((c) => c.close()));
    await s.server.close(0);
  }
});

test("idle connections are closed with GOAWAY and the client reconnects for its next call", async () => {
  const s = await startServer(basic, "127.0.0.1:0", { idleTimeoutMs: 1200 });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    assert.equal(await c.call(s.ids.echo!, "echo", [1]), 1);
    await waitFor("the idle connection to be closed", () => s.server.stats.connectionsIdleClosed >= 1, 10_000, 20);
    await waitFor("the client to reconnect", () => c.stats.connects >= 2 && c.healthy, 10_000, 20);
    assert.equal(await c.call(s.ids.echo!, "echo", [2]), 2);
    assert.equal(s.server.stats.connectionsOpen, 1);
    assert.equal(c.stats.failures, 0);
    assert.ok(c.stats.connects >= 2);
  } finally {
    await c.close();
    await s.server.close(0);
  }
});

test("a call made just as the server's idle GOAWAY arrives is retried on the next connection, even for a noRetry method", async () => {
  const s = await startServer(basic, "127.0.0.1:0", { idleTimeoutMs: 1200 });
  // The call starts at the very moment the client learns of GOAWAY (its debug line), before the old
  // connection closed and the new one exists: the race of a call sent as the server closes an idle connection.
  let raced: Promise<unknown> | undefined;
  const pool = new ConnectionPool({
    methodTableHash: HASH,
    logger: {
      error() {},
      warn() {},
      info() {},
      debug(msg) {
        if (msg === "rpc: server is going away") raced ??= balancer.call(s.ids.echo!, "echo", ["raced"], { retryable: false });
      },
    },
  });
  const balancer = new Balancer("test/Echo", pool);
  try {
    balancer.update([s.address]);
    assert.equal(await balancer.call(s.ids.echo!, "echo", [1]), 1);
    await waitFor("the idle GOAWAY to reach the client", () => raced !== undefined, 10_000, 20);
    assert.equal(await raced, "raced", "the call was neither lost nor failed");
    assert.equal(s.server.stats.connectionsIdleClosed, 1);
  } finally {
    balancer.close();
    await pool.close();
    await s.server.close(0);
  }
});

test("connections over maxConnections are refused at accept, and counted in one summary line", async () => {
  const s = await startServer(basic, "127.0.0.1:0", { maxConnections: 3, closeLogWindowMs: 60_000 });
  try {
    const kept = await openRaw(s.address, 3, helloBytes());
    await waitFor("three connections", () => s.server.stats.connectionsOpen === 3);
    const extra = await openRaw(s.address, 5, helloBytes()).catch(() => undefined);
    if (extra !== undefined) await Promise.all(extra.closed);
    await waitFor("five refusals", () => s.server.stats.connectionsRefused === 5);
    assert.equal(s.server.stats.connectionsOpen, 3);
    s.server.closeLog.flush();
    const lines = rpcLines(s.logger);
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /^rpc: 4 connections refused: too many connections in the last 60 s$/);
    for (const sock of kept.sockets) sock.destroy();
  } finally {
    await s.server.close(0);
  }
});

test("ConnectionCloseLog: a thousand closes cost two lines", () => {
  const logger = new MemoryLogger();
  const log = new ConnectionCloseLog(logger, 10_000);
  for (let i = 0; i < 1001; i++) log.note("idle", `10.0.0.1:${i}`);
  assert.equal(logger.lines.length, 1);
  assert.equal(logger.lines[0]!.msg, "rpc: connection closed for idling");
  log.flush();
  assert.equal(logger.lines.length, 2);
  assert.equal(logger.lines[1]!.msg, "rpc: 1,000 connections closed for idling in the last 10 s");
  assert.equal(logger.lines[1]!.attrs?.total, 1000);
  log.flush();
  assert.equal(logger.lines.length, 2, "an empty window logs nothing");
});

test("server limits from the environment: positive integers, else an error naming the variable", () => {
  assert.deepEqual(serverLimitsFromEnv({ TSWEAVER_RPC_MAX_CONNECTIONS: "20000", TSWEAVER_RPC_IDLE_TIMEOUT_MS: "" }), {
    maxConnections: 20000,
  });
  assert.throws(
    () => serverLimitsFromEnv({ TSWEAVER_RPC_INBOUND_BUDGET_BYTES: "lots" }),
    (e: unknown) => e instanceof ConfigError && /TSWEAVER_RPC_INBOUND_BUDGET_BYTES.*positive integer.*"lots"/.test(e.message),
  );
});

test("a server forgets calls whose deadline passed: 10,000 calls to a method that never returns leave no records", async () => {
  let aborts = 0;
  const s = await startServer({
    hang: () => {
      currentCall()!.signal!.addEventListener("abort", () => aborts++);
      return new Promise(() => {});
    },
  });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    const n = 10_000;
    const results = await withCallOptions({ timeoutMs: 3000 }, () =>
      Promise.allSettled(Array.from({ length: n }, () => c.call(s.ids.hang!, "hang", []))),
    );
    assert.ok(results.every((r) => r.status === "rejected" && r.reason instanceof DeadlineExceededError));
    await waitFor("the server to forget every call", () => s.server.inflightCalls === 0, 20_000, 50);
    // Every call that reached the server (on a loaded machine a few may expire before they are sent).
    assert.ok(s.server.stats.calls > n / 2, `only ${s.server.stats.calls} calls reached the server`);
    assert.equal(s.server.stats.expired, s.server.stats.calls);
    assert.equal(aborts, s.server.stats.calls, "every handler's signal aborted");
    assert.equal(c.inflight, 0);
  } finally {
    await c.close();
    await s.server.close(0);
  }
});
