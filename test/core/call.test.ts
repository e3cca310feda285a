import assert from "node:assert/strict";
import { test } from "node:test";
import { callStorage, currentCall, type CallContext } from "../../runtime/core/call.js";

test("callStorage.pin: the context is current during the synchronous part only, and nests", async () => {
  const ctx = (tp: string): CallContext => ({ deadline: undefined, signal: undefined, metadata: undefined, traceparent: tp });
  let later: Promise<string | undefined> | undefined;
  const seen = callStorage.pin(ctx("a"), (x: number) => {
    later = Promise.resolve().then(() => currentCall()?.traceparent);
    const inner = callStorage.pin(ctx("b"), () => currentCall()?.traceparent);
    return [x, currentCall()?.traceparent, inner];
  }, 7);
  assert.deepEqual(seen, [7, "a", "b"]);
  assert.equal(currentCall(), undefined, "unpinned afterwards");
  assert.equal(await later, undefined, "continuations do not see a pinned context");
  assert.throws(() => callStorage.pin(ctx("c"), () => { throw new Error("boom"); }), /boom/);
  assert.equal(currentCall(), undefined, "unpinned after a throw");
  // run() still works as before, and a pin inside it wins for its synchronous part.
  await callStorage.run(ctx("r"), async () => {
    assert.equal(callStorage.pin(ctx("p"), () => currentCall()?.traceparent), "p");
    await Promise.resolve();
    assert.equal(currentCall()?.traceparent, "r");
  });
});
