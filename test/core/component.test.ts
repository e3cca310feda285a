// Declaring components: the declared method list is the method table; mistakes fail naming what to fix.
import assert from "node:assert/strict";
import { test } from "node:test";
import { component, register } from "../../runtime/core/component.js";
import { ConfigError } from "../../runtime/core/errors.js";

interface Store {
  get(k: string): Promise<string>;
  put(k: string, v: string): Promise<void>;
}

test("methods are kept sorted; noRetry and router must name declared methods", () => {
  assert.deepEqual(component<Store>("t/Store", { methods: ["put", "get"] }).methods, ["get", "put"]);
  assert.throws(
    () => component<Store>("t/Store", { methods: ["get"], noRetry: ["put"] }),
    (e: Error) => e instanceof ConfigError && e.message === "component t/Store: noRetry names put, not in its methods (declared: get)",
  );
  assert.throws(() => component<Store>("t/Store", { methods: ["get"], router: { put: (k) => k } }), /router names put, not in its methods/);
});

test("a missing, repeated or reserved method name is a ConfigError naming it", () => {
  assert.throws(
    () => component<Store>("t/Store", undefined as never),
    /component t\/Store: declare the methods of its interface, e\.g\. component<I>\("t\/Store", \{ methods: \["a", "b"\] \}\) \(found methods: none\)/,
  );
  assert.throws(() => component<Store>("t/Store", { methods: ["get", "get"] }), /methods: get is listed twice/);
  assert.throws(() => component<Store>("t/Store", { methods: ["init" as never] }), /methods: "init" is not a method name/);
  assert.throws(() => component<Store>("t/Store", { methods: ["constructor" as never] }), /"constructor" is not a method name/);
});

test("register refuses an implementation without a declared method", () => {
  const ref = component<Store>("t/Partial", { methods: ["get", "put"] });
  class Partial {
    async get(): Promise<string> {
      return "";
    }
    put = "not a method";
  }
  assert.throws(
    () => register(ref, Partial as never),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message === "component t/Partial: its implementation Partial has no method put (declared in component(..., { methods }))",
  );
});
