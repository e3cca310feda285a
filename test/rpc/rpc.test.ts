import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, createServer, type Socket } from "node:net";
import { spawn } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CodecError, Writer, encodeValues } from "../../runtime/codec/codec.js";
import { UNSAMPLED_TRACEPARENT, callStorage, currentCall, withCallOptions } from "../../runtime/core/call.js";
import {
  CallCancelledError,
  ConfigError,
  DeadlineExceededError,
  RemoteCallError,
  TransportError,
  registerError,
} from "../../runtime/core/errors.js";
import { Connection } from "../../runtime/rpc/client.js";
import { beginFrame, endFrame, FrameType, writeHello, writeRequest } from "../../runtime/rpc/frames.js";
import { RpcServer } from "../../runtime/rpc/server.js";
import { HASH, MemoryLogger, startServer, type Methods } from "../support/rpc.js";
import { aborted, deferred, tempDir, waitFor } from "../support/index.js";

const basic: Methods = {
  echo: (args) => args[0],
  add: (args) => (args[0] as number) + (args[1] as number),
  reverse: async (args) => [...(args[0] as string)].reverse().join(""),
};

test("round trip over TCP and a unix socket", async () => {
  const tmp = tempDir("tsw-rpc-");
  try {
    for (const addr of ["127.0.0.1:0", `unix:${join(tmp, "s.sock")}`]) {
      const s = await startServer(basic, addr);
      if (addr.startsWith("unix:")) assert.equal(s.address, addr);
      else assert.match(s.address, /^127\.0\.0\.1:\d+$/);
      const c = new Connection(s.address, { methodTableHash: HASH });
      try {
        assert.equal(await c.call(s.ids.add!, "add", [2, 3]), 5);
        assert.equal(await c.call(s.ids.reverse!, "reverse", ["héllo 😀"]), "😀 olléh");
        const value = { n: 1n << 70n, m: new Map([["k", new Set([1])]]), b: Buffer.from("xyz"), d: new Date(5), u: undefined };
        assert.deepStrictEqual(await c.call(s.ids.echo!, "echo", [value]), value);
        assert.ok(c.healthy);
        assert.ok(c.stats.bytesOut > 0 && c.stats.bytesIn > 0);
        assert.equal(s.server.stats.calls, 3);
      } finally {
        await c.close();
        await s.server.close();
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("many concurrent calls are multiplexed on one connection and complete out of order", async () => {
  const s = await startServer({
    slowEcho: async (args) => {
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 20)));
      return args[0];
    },
  });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    const n = 2000;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => c.call(s.ids.slowEcho!, "slowEcho", [{ i, s: `v${i}` }])));
    results.forEach((r, i) => assert.deepStrictEqual(r, { i, s: `v${i}` }));
    assert.equal(s.server.stats.connectionsAccepted, 1);
    assert.equal(s.server.stats.calls, n);
    assert.equal(c.inflight, 0);
  } finally {
    await c.close();
    await s.server.close();
  }
});

test("large payloads span many socket reads in both directions", async () => {
  const s = await startServer(basic);
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    const big = Buffer.alloc(5 * 1024 * 1024, 7);
    const text = "ü".repeat(300_000);
    const [b, t] = (await c.call(s.ids.echo!, "echo", [[big, text]])) as [Buffer, string];
    assert.ok(big.equals(b));
    assert.equal(t, text);
  } finally {
    await c.close();
    await s.server.close();
  }
});

class InsufficientFunds extends Error {
  override readonly name = "InsufficientFunds";
  constructor(readonly needed: number) {
    super(`needs ${needed} more`);
  }
}
class Overdrawn extends InsufficientFunds {}
registerError(InsufficientFunds);

test("a registered error class is rebuilt as that class on the caller, with the remote error as cause", async () => {
  const s = await startServer({
    funds: function spend() {
      throw new InsufficientFunds(5);
    },
    sub: () => {
      throw new Overdrawn(7);
    },
    config: () => {
      throw new ConfigError("weaver.toml: [app/X] step: must be a number");
    },
  });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    await assert.rejects(c.call(s.ids.funds!, "test/Svc.funds", []), (e: unknown) => {
      assert.ok(e instanceof InsufficientFunds);
      assert.equal(e.name, "InsufficientFunds");
      assert.equal(e.message, "needs 5 more");
      assert.equal(e.needed, 5);
      assert.deepStrictEqual({ ...e }, { ...new InsufficientFunds(5) }, "the same own enumerable properties as the local error");
      assert.ok(e.cause instanceof RemoteCallError, "the cause tells that it crossed a process boundary");
      assert.equal(e.cause.method, "test/Svc.funds");
      assert.match(e.cause.remoteStack ?? "", /spend/);
      return true;
    });
    // An unregistered subclass arrives as its nearest registered class (its own name kept).
    await assert.rejects(
      c.call(s.ids.sub!, "test/Svc.sub", []),
      (e: unknown) => e instanceof InsufficientFunds && e.name === "InsufficientFunds" && e.needed === 7,
    );
    // The runtime's own errors are registered.
    await assert.rejects(
      c.call(s.ids.config!, "test/Svc.config", []),
      (e: unknown) => e instanceof ConfigError && /step: must be a number/.test(e.message),
    );
    assert.throws(() => registerError(class InsufficientFunds extends Error {}), /two error classes are registered as "InsufficientFunds"/);
  } finally {
    await c.close();
    await s.server.close();
  }
});

test("application errors arrive as RemoteCallError with name, message, stack and details (a CodecError as itself)", async () => {
  const s = await startServer({
    fail: () => {
      throw Object.assign(new Error("no such user"), { name: "NotFound", code: 404, info: { id: "u1" } });
    },
    failAsync: async function failingHandler() {
      await Promise.resolve();
      throw new TypeError("bad input");
    },
    throwString: () => {
      throw "just a string";
    },
    throwUnencodable: () => {
      throw Object.assign(new Error("odd"), { cb: () => 1, ok: 2 });
    },
    returnUnencodable: () => ({ f: () => 1 }),
  });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    await assert.rejects(c.call(s.ids.fail!, "test/Svc.fail", []), (e: unknown) => {
      assert.ok(e instanceof RemoteCallError);
      assert.equal(e.name, "NotFound");
      assert.equal(e.remoteName, "NotFound");
      assert.equal(e.message, "no such user");
      assert.equal(e.method, "test/Svc.fail");
      assert.deepStrictEqual(e.details, { code: 404, info: { id: "u1" } });
      assert.deepStrictEqual(
        { ...e },
        { name: "NotFound", code: 404, info: { id: "u1" } },
        "own enumerable properties: the remote error's, as locally",
      );
      assert.match(e.remoteStack ?? "", /no such user/);
      return true;
    });
    await assert.rejects(c.call(s.ids.failAsync!, "failAsync", []), (e: unknown) => {
      assert.ok(e instanceof RemoteCallError);
      assert.equal(e.name, "TypeError");
      assert.match(e.remoteStack ?? "", /failingHandler/);
      return true;
    });
    await assert.rejects(
      c.call(s.ids.throwString!, "throwString", []),
      (e: unknown) => e instanceof RemoteCallError && e.message === "just a string",
    );
    await assert.rejects(c.call(s.ids.throwUnencodable!, "throwUnencodable", []), (e: unknown) => {
      assert.ok(e instanceof RemoteCallError);
      assert.equal(e.message, "odd");
      assert.equal(e.details.ok, 2);
      assert.match(String(e.details.cb), /not encodable/);
      return true;
    });
    await assert.rejects(c.call(s.ids.returnUnencodable!, "returnUnencodable", []), (e: unknown) => {
      // CodecError is registered: the caller gets one, as it would from a local call in checking mode.
      assert.ok(e instanceof CodecError && e.cause instanceof RemoteCallError);
      assert.equal(e.name, "CodecError");
      assert.equal(e.path, "result.f");
      assert.match(e.message, /result\.f/);
      return true;
    });
    assert.ok(c.healthy, "errors do not hurt the connection");
    assert.equal(await c.call(s.ids.fail! + 100, "x", []).catch(() => "sys"), "sys");
  } finally {
    await c.close();
    await s.server.close();
  }
});

test("unknown method id yields a plain system error; the connection stays usable", async () => {
  const s = await startServer(basic);
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    await assert.rejects(c.call(999, "test/Svc.missing", []), (e: unknown) => {
      assert.ok(e instanceof Error);
      assert.ok(!(e instanceof RemoteCallError) && !(e instanceof TransportError));
      assert.match(e.message, /test\/Svc\.missing/);
      assert.match(e.message, /unknown method id 999/);
      return true;
    });
    assert.equal(await c.call(s.ids.add!, "add", [1, 1]), 2);
  } finally {
    await c.close();
    await s.server.close();
  }
});

test("unencodable or oversized arguments fail that call only", async () => {
  const s = await startServer(basic, "127.0.0.1:0", { maxFrameSize: 1024 * 1024 });
  const c = new Connection(s.address, { methodTableHash: HASH, maxFrameSize: 1024 * 1024 });
  try {
    await assert.rejects(
      c.call(s.ids.echo!, "echo", [{ cb: () => 1 }]),
      (e: unknown) => e instanceof CodecError && e.path === "args[0].cb",
    );
    await assert.rejects(c.call(s.ids.echo!, "echo", [Buffer.alloc(2 * 1024 * 1024)]), /over the 1048576-byte limit/);
    assert.equal(await c.call(s.ids.add!, "add", [40, 2]), 42);
  } finally {
    await c.close();
    await s.server.close();
  }
});

test("deadline expiry rejects with DeadlineExceededError and aborts the server handler's signal", async () => {
  const seen = deferred<unknown>();
  const started = deferred();
  const s = await startServer({
    hang: () => {
      const ctx = currentCall()!;
      assert.ok(ctx.deadline !== undefined && ctx.deadline > Date.now() && ctx.deadline <= Date.now() + 1000);
      started.resolve();
      return aborted(ctx.signal!).then((reason) => {
        seen.resolve(reason);
        return "late";
      });
    },
    ok: () => "ok",
  });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    const t0 = Date.now();
    await assert.rejects(
      withCallOptions({ timeoutMs: 150 }, () => c.call(s.ids.hang!, "hang", [])),
      (e: unknown) => e instanceof DeadlineExceededError && /hang/.test(e.message),
    );
    assert.ok(Date.now() - t0 < 3000);
    await started.promise;
    const reason = await seen.promise;
    assert.ok(reason instanceof DeadlineExceededError || reason instanceof CallCancelledError, String(reason));
    assert.equal(c.inflight, 0);
    // The late response is dropped; the connection keeps working.
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(await c.call(s.ids.ok!, "ok", []), "ok");
  } finally {
    await c.close();
    await s.server.close(100);
  }
});

test("a long deadline (no timer of its own: the connection's sweep) still expires, and only its call", async () => {
  const s = await startServer({ hang: () => new Promise(() => {}), ok: () => "ok" });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    const long = withCallOptions({ timeoutMs: 5200 }, () => c.call(s.ids.hang!, "hang", []));
    const longer = assert.rejects(
      withCallOptions({ timeoutMs: 60_000 }, () => c.call(s.ids.hang!, "hang", [])),
      TransportError, // failed by the close below, not by a deadline
    );
    await assert.rejects(long, (e: unknown) => e instanceof DeadlineExceededError && /hang: deadline exceeded/.test(e.message));
    assert.equal(c.inflight, 1); // the 60 s call is still waiting
    assert.equal(await c.call(s.ids.ok!, "ok", []), "ok");
    await c.close();
    await longer;
  } finally {
    await c.close();
    await s.server.close(100);
  }
});

test("an expired deadline fails before sending", async () => {
  const s = await startServer(basic);
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    await assert.rejects(
      callStorage.run({ deadline: Date.now() - 1, signal: undefined, traceparent: undefined, metadata: undefined }, () =>
        c.call(s.ids.add!, "add", [1, 2]),
      ),
      DeadlineExceededError,
    );
    assert.equal(s.server.stats.calls, 0);
  } finally {
    await c.close();
    await s.server.close();
  }
});

test("caller AbortSignal cancels: CallCancelledError locally, aborted signal on the server", async () => {
  const seen = deferred<unknown>();
  const started = deferred();
  const s = await startServer({
    hang: () => {
      started.resolve();
      return aborted(currentCall()!.signal!).then((reason) => seen.resolve(reason));
    },
  });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    const ac = new AbortController();
    const call = withCallOptions({ signal: ac.signal }, () => c.call(s.ids.hang!, "hang", []));
    await started.promise;
    ac.abort();
    await assert.rejects(call, CallCancelledError);
    const reason = await seen.promise;
    assert.ok(reason instanceof CallCancelledError);
    assert.equal(s.server.stats.cancelled, 1);
    // An already-aborted signal never sends.
    await assert.rejects(
      withCallOptions({ signal: ac.signal }, () => c.call(s.ids.hang!, "hang", [])),
      CallCancelledError,
    );
    assert.equal(s.server.stats.calls, 1);
  } finally {
    await c.close();
    await s.server.close();
  }
});

test("one shared signal over many calls: all cancel, no listener leak warnings", async () => {
  const s = await startServer({ hang: () => aborted(currentCall()!.signal!) });
  const c = new Connection(s.address, { methodTableHash: HASH });
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => {
    warnings.push(w);
  };
  process.on("warning", onWarning);
  try {
    const ac = new AbortController();
    const calls = withCallOptions({ signal: ac.signal }, () => Array.from({ length: 50 }, () => c.call(s.ids.hang!, "hang", [])));
    await waitFor("calls to arrive", () => s.server.stats.calls === 50, 5000, 10);
    ac.abort();
    const results = await Promise.allSettled(calls);
    assert.ok(results.every((r) => r.status === "rejected" && r.reason instanceof CallCancelledError));
    await new Promise((r) => setImmediate(r));
    assert.deepStrictEqual(
      warnings.filter((w) => w.name === "MaxListenersExceededWarning"),
      [],
    );
  } finally {
    process.off("warning", onWarning);
    await c.close();
    await s.server.close();
  }
});

test("metadata, traceparent and the remaining deadline reach the handler", async () => {
  const s = await startServer({
    ctx: () => {
      const c = currentCall()!;
      return {
        traceparent: c.traceparent,
        metadata: c.metadata,
        remaining: c.deadline === undefined ? undefined : c.deadline - Date.now(),
      };
    },
  });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const got = (await callStorage.run({ deadline: undefined, signal: undefined, traceparent: tp, metadata: { tenant: "t1" } }, () =>
      withCallOptions({ metadata: { user: "ü-user" }, timeoutMs: 5000 }, () => c.call(s.ids.ctx!, "ctx", [])),
    )) as { traceparent: string; metadata: Record<string, string>; remaining: number };
    assert.equal(got.traceparent, tp);
    assert.deepStrictEqual(got.metadata, { tenant: "t1", user: "ü-user" });
    assert.ok(got.remaining > 3000 && got.remaining <= 5000, String(got.remaining));
    const bare = (await c.call(s.ids.ctx!, "ctx", [], undefined)) as Record<string, unknown>;
    assert.deepStrictEqual(bare, { traceparent: undefined, metadata: undefined, remaining: undefined });
    // An unsampled trace's traceparent arrives as it left, though the request carries only a flag for it.
    const unsampled = { deadline: undefined, signal: undefined, traceparent: UNSAMPLED_TRACEPARENT, metadata: undefined };
    const got2 = (await c.call(s.ids.ctx!, "ctx", [], unsampled)) as Record<string, unknown>;
    assert.equal(got2["traceparent"], UNSAMPLED_TRACEPARENT);
    const size = (traceparent: string | undefined): number => {
      const w = new Writer();
      writeRequest(w, 1, 2, 0, traceparent, undefined, [], 1 << 20);
      return w.pos;
    };
    assert.equal(size(UNSAMPLED_TRACEPARENT), size(undefined));
    assert.ok(size(tp) > size(undefined) + 55);
  } finally {
    await c.close();
    await s.server.close();
  }
});

test("a handler's outcome reaches its observer and the caller, whether it returns a value or a promise", async () => {
  const seen: string[] = [];
  const observer = (name: string) => ({ ok: () => void seen.push(`${name} ok`), fail: () => void seen.push(`${name} fail`) });
  const methods: Record<string, (args: unknown[]) => unknown> = {
    syncOk: (args) => ({ v: args[0], ctx: currentCall() !== undefined }),
    syncThrow: () => {
      throw new RangeError("sync");
    },
    asyncOk: async (args) => {
      await new Promise((r) => setImmediate(r));
      return { v: args[0], ctx: currentCall() !== undefined };
    },
    asyncReject: async () => {
      await new Promise((r) => setImmediate(r));
      throw new RangeError("async");
    },
  };
  const names = Object.keys(methods);
  const server = new RpcServer({
    lookup: (id) =>
      names[id] === undefined ? undefined : { name: `test/Svc.${names[id]}`, fn: methods[names[id]]!, observer: observer(names[id]!) },
    methodTableHash: HASH,
    logger: new MemoryLogger(),
  });
  const c = new Connection(await server.listen("127.0.0.1:0"), { methodTableHash: HASH });
  try {
    assert.deepStrictEqual(await c.call(0, "syncOk", [1]), { v: 1, ctx: true });
    await assert.rejects(c.call(1, "syncThrow", []), (e: unknown) => e instanceof RemoteCallError && e.message === "sync");
    assert.deepStrictEqual(await c.call(2, "asyncOk", [2]), { v: 2, ctx: true });
    await assert.rejects(c.call(3, "asyncReject", []), (e: unknown) => e instanceof RemoteCallError && e.message === "async");
    assert.deepStrictEqual(seen, ["syncOk ok", "syncThrow fail", "asyncOk ok", "asyncReject fail"]);
    assert.equal(server.stats.appErrors, 2);
    assert.equal(server.inflightCalls, 0);
  } finally {
    await c.close();
    await server.close();
  }
});

/** Opens a raw socket to `address`, sends `bytes`, resolves when the server closes it. */
function rawSend(address: string, bytes: Buffer): Promise<{ closed: boolean; received: Buffer }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const sock: Socket = connect({ host, port }, () => sock.write(bytes));
    sock.on("data", (d) => chunks.push(d));
    sock.on("error", () => {});
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ closed: false, received: Buffer.concat(chunks) });
    }, 3000);
    sock.on("close", () => {
      clearTimeout(timer);
      resolve({ closed: true, received: Buffer.concat(chunks) });
    });
  });
}

function helloBytes(hash = HASH): Buffer {
  const w = new Writer();
  writeHello(w, hash);
  return w.toBuffer();
}

function frame(type: number, body: Buffer | number[]): Buffer {
  const w = new Writer();
  const start = beginFrame(w, type);
  for (const b of body) w.u8(b);
  endFrame(w, start, 1 << 30);
  return w.toBuffer();
}

test("malformed frames and oversized lengths close only that connection; the server keeps serving", async () => {
  const s = await startServer(basic);
  const good = new Connection(s.address, { methodTableHash: HASH });
  try {
    assert.equal(await good.call(s.ids.add!, "add", [1, 2]), 3);
    const requestHeader = (id: number): number[] => [id, 0, 0, 0, s.ids.add!, 0, 0, 0, 0, 0, 0, 0, 0];
    const badArgs = new Writer();
    encodeValues([1], badArgs);
    const cases: [string, Buffer][] = [
      ["garbage before HELLO", Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
      ["oversized length prefix", Buffer.concat([helloBytes(), Buffer.from([0xff, 0xff, 0xff, 0x7f, FrameType.REQUEST])])],
      ["zero length", Buffer.concat([helloBytes(), Buffer.from([0, 0, 0, 0])])],
      ["unknown frame type", Buffer.concat([helloBytes(), frame(99, [1, 2, 3])])],
      ["REQUEST before HELLO", frame(FrameType.REQUEST, [...requestHeader(1), 0xa0])],
      ["truncated REQUEST body", Buffer.concat([helloBytes(), frame(FrameType.REQUEST, [1, 0, 0])])],
      [
        "REQUEST args garbage",
        Buffer.concat([helloBytes(), frame(FrameType.REQUEST, [...requestHeader(2), 0xd0, 0xff, 0xff, 0xff, 0xff])]),
      ],
      ["REQUEST args not an array", Buffer.concat([helloBytes(), frame(FrameType.REQUEST, [...requestHeader(3), 0x05])])],
      ["HELLO with garbage hash", frame(FrameType.HELLO, [1, 0, 0, 0, 0xd8])],
      ["random bytes after HELLO", Buffer.concat([helloBytes(), Buffer.from(Array.from({ length: 200 }, (_, i) => (i * 73 + 11) & 0xff))])],
    ];
    for (const [name, bytes] of cases) {
      // Closed connections are summarized per window; each case opens its own, so its first line is logged at once.
      s.server.closeLog.flush();
      const errorsBefore = s.logger.errors().length;
      const r = await rawSend(s.address, bytes);
      assert.ok(r.closed, `${name}: server should close the connection`);
      assert.ok(s.logger.errors().length > errorsBefore, `${name}: should be logged as an error`);
      // The existing connection and a brand-new one both still work.
      assert.equal(await good.call(s.ids.add!, "add", [2, 2]), 4, name);
      const fresh = new Connection(s.address, { methodTableHash: HASH });
      assert.equal(await fresh.call(s.ids.add!, "add", [3, 3]), 6, name);
      await fresh.close();
    }
    assert.ok(s.server.stats.protocolErrors >= cases.length - 1);
  } finally {
    await good.close();
    await s.server.close();
  }
});

test("a method-table hash mismatch fails calls with an error naming both hashes", async () => {
  const s = await startServer(basic, "127.0.0.1:0", { hash: "server-hash-B" });
  const c = new Connection(s.address, { methodTableHash: "client-hash-A" });
  try {
    await assert.rejects(c.call(s.ids.add!, "add", [1, 2]), (e: unknown) => {
      assert.ok(e instanceof TransportError, String(e));
      assert.match(e.message, /client-hash-A/);
      assert.match(e.message, /server-hash-B/);
      assert.match(e.message, /mismatch/);
      return true;
    });
    assert.ok(!c.healthy);
    assert.match(c.lastFailure?.message ?? "", /server-hash-B/);
    assert.ok(s.logger.lines.some((l) => l.level === "warn" && /refusing/.test(l.msg)));
  } finally {
    await c.close();
    await s.server.close();
  }
});

test("a server refuses a client of another deployment version; same versions and unversioned peers connect", async () => {
  const v1 = await startServer(basic, "127.0.0.1:0", { deploymentId: "v-one" });
  const v2 = await startServer(basic, "127.0.0.1:0", { deploymentId: "v-two" });
  const client = (address: string, deploymentId?: string) => new Connection(address, { methodTableHash: HASH, deploymentId });
  const same = client(v1.address, "v-one");
  const other = client(v2.address, "v-one");
  const unversioned = client(v2.address);
  try {
    assert.equal(await same.call(v1.ids.add!, "add", [1, 2]), 3);
    await assert.rejects(other.call(v2.ids.add!, "add", [1, 2]), (e: unknown) => {
      assert.ok(e instanceof TransportError, String(e));
      assert.match(e.message, /deployment version mismatch: client is version "v-one", server is version "v-two"/);
      return true;
    });
    assert.ok(!other.healthy);
    const refusal = v2.logger.lines.find((l) => l.level === "warn" && /refusing/.test(l.msg));
    assert.match(String(refusal?.attrs?.["reason"]), /two versions of an app never call each other/);
    assert.equal(v2.server.stats.calls, 0);
    assert.equal(await unversioned.call(v2.ids.add!, "add", [2, 2]), 4);
  } finally {
    for (const c of [same, other, unversioned]) await c.close();
    await v1.server.close();
    await v2.server.close();
  }
});

test("close() lets in-flight calls finish; close(0) aborts them", async () => {
  const release = deferred();
  const s = await startServer({ wait: async () => (await release.promise, "done") });
  const c = new Connection(s.address, { methodTableHash: HASH });
  const call = c.call(s.ids.wait!, "wait", []);
  await waitFor("call to arrive", () => s.server.stats.calls === 1, 5000, 10);
  const closing = s.server.close(5000);
  setTimeout(() => release.resolve(), 50);
  assert.equal(await call, "done");
  await closing;
  await assert.rejects(c.call(s.ids.wait!, "wait", []), TransportError);
  await c.close();

  const seen = deferred<unknown>();
  const s2 = await startServer({ hang: () => aborted(currentCall()!.signal!).then((r) => seen.resolve(r)) });
  const c2 = new Connection(s2.address, { methodTableHash: HASH });
  const hung = c2.call(s2.ids.hang!, "hang", []).then(
    () => "resolved",
    (e: unknown) => e,
  );
  await waitFor("call to arrive", () => s2.server.stats.calls === 1, 5000, 10);
  await s2.server.close(0);
  assert.ok((await hung) instanceof TransportError);
  assert.ok((await seen.promise) instanceof TransportError);
  await c2.close();
});

test("a client that goes away aborts its calls' signals on the server", async () => {
  const seen = deferred<unknown>();
  const s = await startServer({ hang: () => aborted(currentCall()!.signal!).then((r) => seen.resolve(r)) });
  const c = new Connection(s.address, { methodTableHash: HASH });
  const call = c.call(s.ids.hang!, "hang", []).then(
    () => "resolved",
    (e: unknown) => e,
  );
  await waitFor("call to arrive", () => s.server.stats.calls === 1, 5000, 10);
  await c.close();
  assert.ok((await call) instanceof TransportError);
  assert.ok((await seen.promise) instanceof TransportError);
  await s.server.close();
});

test("connection failures: refused address, drain, close", async () => {
  const s = await startServer(basic);
  const addr = s.address;
  await s.server.close();
  const c = new Connection(addr, { methodTableHash: HASH });
  await assert.rejects(c.call(0, "add", [1, 2]), TransportError);
  assert.equal(c.state, "backoff");
  await assert.rejects(c.call(0, "add", [1, 2]), /unavailable/);
  await c.close();
  assert.equal(c.state, "closed");
  await assert.rejects(c.call(0, "add", [1, 2]), TransportError);

  const s2 = await startServer({ slow: async () => (await new Promise((r) => setTimeout(r, 50)), "ok") });
  const c2 = new Connection(s2.address, { methodTableHash: HASH });
  const inflight = c2.call(s2.ids.slow!, "slow", []);
  const drained = c2.drain();
  await assert.rejects(c2.call(s2.ids.slow!, "slow", []), TransportError);
  assert.equal(await inflight, "ok");
  await drained;
  assert.equal(c2.state, "closed");
  await s2.server.close();
});

test("listen errors: bad address, port in use; stale unix socket files are replaced", async () => {
  const s = await startServer(basic);
  await assert.rejects(startServer(basic, "nonsense"), /bad RPC address/);
  await assert.rejects(startServer(basic, s.address), /EADDRINUSE/);
  await s.server.close();

  const tmp = tempDir("tsw-rpc-");
  try {
    const path = join(tmp, "stale.sock");
    // A process killed while listening leaves its socket file behind.
    const child = spawn(process.execPath, [
      "-e",
      `require("net").createServer().listen(${JSON.stringify(path)}, () => process.stdout.write("up"));`,
    ]);
    await new Promise<void>((r) => child.stdout.once("data", () => r()));
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    assert.ok(existsSync(path), "the killed process left its socket file");
    const s2 = await startServer(basic, `unix:${path}`);
    const c = new Connection(s2.address, { methodTableHash: HASH });
    assert.equal(await c.call(s2.ids.add!, "add", [1, 1]), 2);
    await c.close();
    await s2.server.close();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("a client that never says HELLO is disconnected after the handshake timeout", async () => {
  const server = new RpcServer({ lookup: () => undefined, methodTableHash: HASH, logger: new MemoryLogger(), handshakeTimeoutMs: 100 });
  const address = await server.listen("127.0.0.1:0");
  try {
    const r = await rawSend(address, Buffer.alloc(0));
    assert.ok(r.closed);
  } finally {
    await server.close();
  }
});

/** A raw TCP server that answers each connection with `reply(firstChunk)` (or nothing). */
async function rawServer(
  reply: ((chunk: Buffer) => Buffer | undefined) | undefined,
): Promise<{ address: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv = createServer((sock) => {
    sockets.add(sock);
    sock.on("error", () => {});
    sock.once("data", (d) => {
      const out = reply?.(d);
      if (out) sock.write(out);
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

test("a server that accepts TCP but never answers HELLO fails calls after the connect timeout", async () => {
  const srv = await rawServer(undefined);
  const c = new Connection(srv.address, { methodTableHash: HASH, connectTimeoutMs: 100 });
  try {
    await assert.rejects(c.call(0, "x", []), (e: unknown) => e instanceof TransportError && /longer than 100 ms/.test(e.message));
  } finally {
    await c.close();
    await srv.close();
  }
});

test("garbage from the server closes the client connection with a TransportError and a logged error", async () => {
  const okFrame = frame(FrameType.HELLO_OK, [1, 0, 0, 0]);
  const srv = await rawServer(() => Buffer.concat([okFrame, frame(FrameType.RESPONSE, [1, 0, 0, 0, 0, 0xd8])]));
  const logger = new MemoryLogger();
  const c = new Connection(srv.address, { methodTableHash: HASH, logger });
  try {
    await assert.rejects(c.call(0, "x", []), TransportError);
    await waitFor("connection to be dropped", () => c.state === "backoff", 5000, 10);
    assert.ok(
      logger.errors().some((l) => /protocol error/.test(l)),
      JSON.stringify(logger.lines),
    );
  } finally {
    await c.close();
    await srv.close();
  }
});
