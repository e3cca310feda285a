import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { listAppComponents } from "../../runtime/core/components.js";
import { ConfigError } from "../../runtime/core/errors.js";
import { FAKE_APP } from "./helpers.js";

const FILE = "/apps/x/weaver.toml";
const app = (args: string[], binary = FAKE_APP) => ({ file: FILE, binary, args, env: {} });

/** Asserts a ConfigError that names the config file and tsweaver.binary and matches `message`. */
function rejects(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(err.message.startsWith(`${FILE}: tsweaver.binary: `), err.message);
    assert.match(err.message, message);
    return true;
  });
}

test("the component list comes from the app itself, sorted, ignoring other output lines", () => {
  assert.deepEqual(listAppComponents(app(["hello"])), ["hello/Reverser", "tsweaver/Main"]);
  assert.equal(listAppComponents(app(["five"])).length, 6);
});

test("the app's [tsweaver] env reaches the listing run", () => {
  // Without TSWEAVER_LIST_COMPONENTS the fixture exits 2: the listing always sets it, whatever env says.
  assert.deepEqual(listAppComponents({ ...app(["hello"]), env: { TSWEAVER_LIST_COMPONENTS: "" } }), ["hello/Reverser", "tsweaver/Main"]);
});

test("a missing binary says to build first", () => {
  rejects(
    () => listAppComponents(app([], path.join(path.dirname(FAKE_APP), "nope.js"))),
    /nope\.js does not exist; build the app first \(npm run build\)/,
  );
});

test("a crashing app: exit status and the end of its stderr", () => {
  rejects(() => listAppComponents(app(["crash"])), /exited with status 3:\nError: Cannot find module 'left-pad'/);
});

test("an app that prints no list: says the entry file must call run()", () => {
  rejects(() => listAppComponents(app(["silent"])), /printed no component list.*must call run\(App\).*starting\.\.\./s);
});

test("a malformed list is refused", () => {
  rejects(() => listAppComponents(app(["garbage"])), /expected \{"components":\["app\/Name", \.\.\.\]\}/);
});

test("a hanging app is killed after the timeout", () => {
  rejects(() => listAppComponents(app(["hang"]), 500), /was killed by SIGTERM \(timeout 500 ms\?\)/);
});
