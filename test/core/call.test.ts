import assert from "node:assert/strict";
import { test } from "node:test";
import { callInProcess, callStorage, currentCall, withCallOptions, type CallContext } from "../../runtime/core/call.js";
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
