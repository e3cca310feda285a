import assert from "node:assert/strict";
import { test } from "node:test";
import { callInProcess, callStorage, currentCall, withCallOptions, type CallContext } from "../../runtime/core/call.js";
import { CallTimeout } from "../../runtime/core/deadlines.js";
import { CallCancelledError, DeadlineExceededError } from "../../runtime/core/errors.js";

test("callStorage.pin: the context is current during the synchronous part only, and nests", async () => {
  const ctx = (tp: string): CallContext => ({ deadline: undefined, signal: undefined, metadata: undefined, traceparent: tp });
  let later: Promise<string | undefined> | undefined;
  const seen = callStorage.pin(
    ctx("a"),
    (x: number) => {
      later = Promise.resolve().then(() => currentCall()?.traceparent);
      const inner = callStorage.pin(ctx("b"), () => currentCall()?.traceparent);
      return [x, currentCall()?.traceparent, inner];
    },
    7,
  );
  assert.deepEqual(seen, [7, "a", "b"]);
  assert.equal(currentCall(), undefined, "unpinned afterwards");
  assert.equal(await later, undefined, "continuations do not see a pinned context");
  assert.throws(
    () =>
      callStorage.pin(ctx("c"), () => {
        throw new Error("boom");
      }),
    /boom/,
  );
  assert.equal(currentCall(), undefined, "unpinned after a throw");
  // run() still works as before, and a pin inside it wins for its synchronous part.
  await callStorage.run(ctx("r"), async () => {
    assert.equal(
      callStorage.pin(ctx("p"), () => currentCall()?.traceparent),
      "p",
    );
    await Promise.resolve();
    assert.equal(currentCall()?.traceparent, "r");
  });
});

/** A callee that waits for its signal (or `ms`) and reports what it saw. */
function sleeper(seen: { ctx?: CallContext | undefined; reason?: unknown }, ms = 60_000) {
  return (_self: object, _args: unknown[]): Promise<string> => {
    const ctx = currentCall();
    seen.ctx = ctx;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms, "done");
      ctx?.signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        seen.reason = ctx.signal!.reason;
        reject(ctx.signal!.reason as Error);
      });
    });
  };
}

test("callInProcess: without a deadline or signal it is a direct call, synchronous results included", () => {
  const self = {};
  assert.equal(
    callInProcess("a/B.m", (s, args) => (s === self ? args[0] : "wrong this"), self, [42]),
    42,
  );
  assert.throws(
    () =>
      callInProcess(
        "a/B.m",
        () => {
          throw new Error("sync");
        },
        self,
        [],
      ),
    /sync/,
  );
  const seen: { ctx?: CallContext | undefined } = {};
  withCallOptions({ metadata: { k: "v" } }, () => callInProcess("a/B.m", () => (seen.ctx = currentCall()), self, []));
  assert.deepEqual(seen.ctx?.metadata, { k: "v" }, "metadata-only calls run in the caller's context");
});

test("callInProcess: the deadline fails the caller with DeadlineExceededError and aborts the callee's signal", async () => {
  const seen: { ctx?: CallContext | undefined; reason?: unknown } = {};
  const p = withCallOptions({ timeoutMs: 30, metadata: { k: "v" } }, () => callInProcess("a/B.m", sleeper(seen), {}, []));
  await assert.rejects(p as Promise<unknown>, (err) => err instanceof DeadlineExceededError && err.message === "a/B.m: deadline exceeded");
  assert.ok(seen.ctx?.deadline !== undefined, "the callee sees the deadline");
  assert.deepEqual(seen.ctx?.metadata, { k: "v" });
  assert.ok(seen.reason instanceof DeadlineExceededError, "the callee's signal aborted with the same error");
});

test("callInProcess: the caller's signal fails the call with CallCancelledError and aborts the callee", async () => {
  const ac = new AbortController();
  const seen: { ctx?: CallContext | undefined; reason?: unknown } = {};
  const p = withCallOptions({ signal: ac.signal }, () => callInProcess("a/B.m", sleeper(seen), {}, []));
  ac.abort();
  await assert.rejects(
    p as Promise<unknown>,
    (err) => err instanceof CallCancelledError && err.message === "a/B.m: cancelled by the caller",
  );
  assert.equal(seen.ctx?.deadline, undefined);
  assert.ok(seen.reason instanceof CallCancelledError);
  // Already aborted, or already past the deadline: the callee never runs.
  let ran = false;
  const run = () => (ran = true);
  await assert.rejects(
    withCallOptions({ signal: ac.signal }, () => callInProcess("a/B.m", run, {}, [])) as Promise<unknown>,
    CallCancelledError,
  );
  await assert.rejects(
    withCallOptions({ timeoutMs: 0 }, () => callInProcess("a/B.m", run, {}, [])) as Promise<unknown>,
    DeadlineExceededError,
  );
  assert.equal(ran, false);
});

test("callInProcess: a call that finishes in time returns its value (or its error)", async () => {
  const seen: { ctx?: CallContext | undefined } = {};
  const v = await withCallOptions({ timeoutMs: 60_000 }, () => callInProcess("a/B.m", sleeper(seen, 1), {}, []));
  assert.equal(v, "done");
  assert.equal(seen.ctx?.signal?.aborted, false, "the callee's signal does not abort after the call");
  await assert.rejects(
    withCallOptions({ timeoutMs: 60_000 }, () =>
      callInProcess(
        "a/B.m",
        () => {
          throw new TypeError("bad");
        },
        {},
        [],
      ),
    ) as Promise<unknown>,
    TypeError,
  );
});

test("callInProcess: a long deadline (no timer of its own: the shared sweep) still expires; the callee's signal aborts, asked for early or late", async () => {
  const early: { ctx?: CallContext | undefined; reason?: unknown } = {};
  const late: { ctx?: CallContext | undefined } = {};
  let finish: ((v: string) => void) | undefined;
  // A callee that never looks at its signal while it runs.
  const quiet = (): Promise<string> => {
    late.ctx = currentCall();
    return new Promise((resolve) => (finish = resolve));
  };
  const longer = withCallOptions({ timeoutMs: 60_000 }, () => callInProcess("a/B.slow", sleeper({}, 5400), {}, [])) as Promise<unknown>;
  const watched = withCallOptions({ timeoutMs: 5100 }, () => callInProcess("a/B.m", sleeper(early), {}, [])) as Promise<unknown>;
  const unwatched = withCallOptions({ timeoutMs: 5200 }, () => callInProcess("a/B.m", quiet, {}, [])) as Promise<unknown>;
  await assert.rejects(watched, (err) => err instanceof DeadlineExceededError && err.message === "a/B.m: deadline exceeded");
  assert.ok(early.reason instanceof DeadlineExceededError, "the signal asked for at the start aborted with the caller's error");
  await assert.rejects(unwatched, (err) => err instanceof DeadlineExceededError && err.message === "a/B.m: deadline exceeded");
  const signal = late.ctx!.signal!;
  assert.equal(signal.aborted, true, "asked for after the deadline, the callee's signal is already aborted");
  assert.ok(signal.reason instanceof DeadlineExceededError);
  finish!("late"); // a late result is dropped
  // The callee goes on and calls another method in its (ended) context: it fails as a remote call would.
  let ran = false;
  const nested = callStorage.run(early.ctx!, () => callInProcess("a/C.m", () => (ran = true), {}, [])) as Promise<unknown>;
  await assert.rejects(nested, (err) => err instanceof CallCancelledError && err.message === "a/C.m: cancelled before it was sent");
  assert.equal(ran, false);
  assert.equal(await longer, "done", "only the expired calls failed");
});

test("callInProcess: cancelling the caller cancels the calls its callee made, in the callee's own context", async () => {
  const ac = new AbortController();
  const inner: { ctx?: CallContext | undefined; reason?: unknown } = {};
  let nested: Promise<unknown> | undefined;
  // The outer callee never asks for its own signal; its nested call follows the cancellation anyway.
  const outer = (): Promise<unknown> => {
    nested = callInProcess("a/C.m", sleeper(inner), {}, []) as Promise<unknown>;
    return nested;
  };
  const p = withCallOptions({ signal: ac.signal }, () => callInProcess("a/B.m", outer, {}, [], new CallTimeout(60_000, undefined)));
  ac.abort();
  await assert.rejects(
    p as Promise<unknown>,
    (err) => err instanceof CallCancelledError && err.message === "a/B.m: cancelled by the caller",
  );
  await assert.rejects(nested!, (err) => err instanceof CallCancelledError && err.message === "a/C.m: cancelled by the caller");
  assert.ok(inner.reason instanceof CallCancelledError, "the nested callee's signal aborted");
  assert.ok(inner.ctx?.deadline !== undefined, "the nested call inherited the default deadline");
});

test("callInProcess: the observer is told each outcome once, when the caller sees it", async () => {
  const told: string[] = [];
  const observer = { ok: () => told.push("ok"), fail: () => told.push("fail") };
  const t = new CallTimeout(60_000, undefined);
  assert.equal(await callInProcess("a/B.m", async () => 1, {}, [], t, observer), 1);
  await assert.rejects(callInProcess("a/B.m", () => Promise.reject(new Error("no")), {}, [], t, observer) as Promise<unknown>, /no/);
  // Without a deadline (none configured) it is a direct call, measured all the same, synchronous results included.
  assert.equal(
    callInProcess("a/B.m", () => 2, {}, [], undefined, observer),
    2,
  );
  assert.throws(
    () =>
      callInProcess(
        "a/B.m",
        () => {
          throw new Error("sync");
        },
        {},
        [],
        undefined,
        observer,
      ),
    /sync/,
  );
  const late = withCallOptions({ timeoutMs: 20 }, () => callInProcess("a/B.m", sleeper({}, 200), {}, [], t, observer));
  await assert.rejects(late as Promise<unknown>, DeadlineExceededError);
  await new Promise((r) => setTimeout(r, 250)); // the callee's late result is not told again
  await assert.rejects(
    withCallOptions({ timeoutMs: 0 }, () => callInProcess("a/B.m", async () => 3, {}, [], t, observer)) as Promise<unknown>,
    DeadlineExceededError,
  );
  assert.deepEqual(told, ["ok", "fail", "ok", "fail", "fail", "fail"]);
});

test("callStorage.outside: no context in the function or its continuations, whether run or pinned", async () => {
  const ctx: CallContext = { deadline: Date.now() + 1000, signal: undefined, metadata: undefined, traceparent: "t" };
  const seen = await callStorage.run(ctx, () =>
    callStorage.outside(async () => {
      const sync = currentCall();
      await new Promise((r) => setTimeout(r, 1));
      return [sync, currentCall()];
    }),
  );
  assert.deepEqual(seen, [undefined, undefined]);
  assert.equal(
    callStorage.pin(ctx, () => callStorage.outside(() => currentCall())),
    undefined,
  );
});
