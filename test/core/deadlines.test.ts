import assert from "node:assert/strict";
import { test } from "node:test";
import { callInProcess, currentCall, withCallOptions, type CallContext } from "../../runtime/core/call.js";
import { checkComponentNames, parseConfig } from "../../runtime/core/config.js";
import { CallTimeout, DEFAULT_CALL_TIMEOUT_MS, callTimeoutOf, checkCallTimeoutKeys } from "../../runtime/core/deadlines.js";
import { ConfigError, DeadlineExceededError, RemoteCallError } from "../../runtime/core/errors.js";

const F = "/apps/shop/weaver.toml";
const config = (table: string) => parseConfig(`[tsweaver]\nbinary = "m.js"\n[tsweaver.call_timeout_ms]\n${table}`, F);

test("[tsweaver.call_timeout_ms]: the method's key wins over its component's, which wins over default", () => {
  const { callTimeoutMs } = config('default = 5000\n"shop/Cart" = 2000\n"shop/Cart.checkout" = 60000\n"shop/Ads" = 0\n');
  assert.deepEqual(callTimeoutOf(callTimeoutMs, "shop/Cart", "checkout"), new CallTimeout(60_000, '"shop/Cart.checkout"'));
  assert.deepEqual(callTimeoutOf(callTimeoutMs, "shop/Cart", "add"), new CallTimeout(2000, '"shop/Cart"'));
  assert.deepEqual(callTimeoutOf(callTimeoutMs, "shop/Payment", "charge"), new CallTimeout(5000, "default"));
  assert.equal(callTimeoutOf(callTimeoutMs, "shop/Ads", "get"), undefined, "0: no default deadline");
  assert.deepEqual(callTimeoutOf({}, "shop/Cart", "add"), new CallTimeout(DEFAULT_CALL_TIMEOUT_MS, undefined), "the built-in default");
  assert.deepEqual(parseConfig('[tsweaver]\nbinary = "m.js"\n', F).callTimeoutMs, {});
});

test("[tsweaver.call_timeout_ms]: errors name the file, the key, what is allowed and what was found", () => {
  const bad: [string, RegExp][] = [
    ["default = -1\n", /weaver\.toml: tsweaver\.call_timeout_ms\.default: must be a whole number of ms from 0 .* found -1/],
    ['"shop/Cart" = 1.5\n', /tsweaver\.call_timeout_ms\."shop\/Cart": must be a whole number .* found 1\.5/],
    ['"shop/Cart" = "5s"\n', /found "5s"/],
    ["Cart = 100\n", /tsweaver\.call_timeout_ms\."Cart": unknown key: expected default, "app\/Component" or "app\/Component\.method"/],
  ];
  for (const [table, message] of bad)
    assert.throws(
      () => config(table),
      (err) => err instanceof ConfigError && message.test(err.message),
      table,
    );
  assert.throws(
    () => parseConfig('[tsweaver]\nbinary = "m.js"\ncall_timeout_ms = 5\n', F),
    /tsweaver\.call_timeout_ms: must be a table: default = 30000/,
  );
  // Component names are checked against the app's (the deployer's check), methods by the weavelet.
  assert.throws(
    () => checkComponentNames(config('"shop/Kart.add" = 5\n'), ["shop/Cart"]),
    /weaver\.toml: tsweaver\.call_timeout_ms\."shop\/Kart\.add": unknown component shop\/Kart \(registered components: shop\/Cart\)/,
  );
  checkComponentNames(config('"shop/Cart.add" = 5\n"shop/Cart" = 5\n'), ["shop/Cart"]);
  const methods = (c: string) => (c === "shop/Cart" ? ["add", "checkout"] : c === "shop/v1.2/Ads" ? ["get"] : undefined);
  assert.throws(
    () => checkCallTimeoutKeys({ "shop/Cart.ad": 5 }, methods, ["shop/Cart"], "weaver.toml"),
    /weaver\.toml: tsweaver\.call_timeout_ms\."shop\/Cart\.ad": shop\/Cart has no method ad \(its methods: add, checkout\)/,
  );
  checkCallTimeoutKeys({ "shop/v1.2/Ads": 5, "shop/v1.2/Ads.get": 5, default: 1 }, methods, [], "weaver.toml");
});

test("a default deadline's error names the method, the length and the key to change", () => {
  assert.equal(
    new CallTimeout(30_000, undefined).exceeded("shop/Cart.add").message,
    "shop/Cart.add: deadline exceeded: no reply within 30000 ms, the built-in default deadline of component calls; set another in " +
      'weaver.toml [tsweaver.call_timeout_ms] with "shop/Cart.add" = <ms> (or default = <ms> for every call), or pass withCallOptions({ timeoutMs })',
  );
  assert.equal(
    new CallTimeout(2000, '"shop/Cart"').exceeded("shop/Cart.add").message,
    'shop/Cart.add: deadline exceeded: no reply within 2000 ms, the default deadline set by weaver.toml [tsweaver.call_timeout_ms] "shop/Cart"; ' +
      'change it there (or "shop/Cart.add" = <ms> for this method only), or pass withCallOptions({ timeoutMs })',
  );
  const t = new CallTimeout(2000, "default");
  const own = new DeadlineExceededError("shop/Cart.add: deadline exceeded");
  assert.match((t.explain("shop/Cart.add", own) as Error).message, /no reply within 2000 ms/);
  // Errors that are not this call's own deadline pass unchanged: another call's, or one the callee threw.
  const other = new DeadlineExceededError("shop/Ads.get: deadline exceeded");
  assert.equal(t.explain("shop/Cart.add", other), other);
  const remote = Object.assign(new DeadlineExceededError("shop/Cart.add: deadline exceeded"), {
    cause: new RemoteCallError("DeadlineExceededError", "x", "shop/Cart.add"),
  });
  assert.equal(t.explain("shop/Cart.add", remote), remote);
});

/** A callee that waits for its signal and reports what it saw. */
function hang(seen: { ctx?: CallContext | undefined; reason?: unknown }) {
  return (): Promise<string> => {
    const ctx = currentCall();
    seen.ctx = ctx;
    return new Promise((_resolve, reject) => {
      ctx?.signal?.addEventListener("abort", () => {
        seen.reason = ctx.signal!.reason;
        reject(ctx.signal!.reason as Error);
      });
    });
  };
}

test("callInProcess: a call without a deadline gets its default one; the callee sees it and its signal aborts", async () => {
  const seen: { ctx?: CallContext | undefined; reason?: unknown } = {};
  const timeout = new CallTimeout(30, "default");
  const p = callInProcess("a/B.m", hang(seen), {}, [], timeout) as Promise<unknown>;
  await assert.rejects(p, (err) => err instanceof DeadlineExceededError && err.message === timeout.exceeded("a/B.m").message);
  assert.ok(seen.ctx?.deadline !== undefined, "the callee sees the deadline");
  assert.ok(seen.reason instanceof DeadlineExceededError, "the callee's signal aborted with the caller's error");
});

test("callInProcess: a caller's own deadline wins over the default one, longer or shorter", async () => {
  const seen: { ctx?: CallContext | undefined } = {};
  const timeout = new CallTimeout(10, "default");
  const slow = (): Promise<string> => {
    seen.ctx = currentCall();
    return new Promise((r) => setTimeout(r, 50, "done"));
  };
  assert.equal(await withCallOptions({ timeoutMs: 60_000 }, () => callInProcess("a/B.m", slow, {}, [], timeout)), "done");
  assert.ok(seen.ctx?.deadline !== undefined && seen.ctx.deadline > Date.now() + 30_000, "the caller's deadline, not the default's");
  await assert.rejects(
    withCallOptions({ timeoutMs: 20 }, () =>
      callInProcess("a/B.m", hang({}), {}, [], new CallTimeout(60_000, "default")),
    ) as Promise<unknown>,
    (err) => err instanceof DeadlineExceededError && err.message === "a/B.m: deadline exceeded",
  );
});
