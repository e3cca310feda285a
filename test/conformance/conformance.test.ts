// One meaning everywhere: the same scenarios against the single-process deployer, the multi deployer
// with every component in its own process, and the multi deployer with all of them colocated; each
// scenario's observable outcome (what the caller gets, what the callee saw) must be the same.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CONFORMANCE_APP, Proc, getJson, tempDir, waitFor, writeConfig } from "../support/index.js";
import { deployForTest } from "../support/multi.js";
import { DEADLINE_CONFIG, DEADLINE_EXPECTED, scenarioQuery } from "./deadlines.js";

const PLAIN_ONLY =
  "(only plain data crosses a call: plain objects, arrays, Map, Set, Date, typed arrays; pass its fields, e.g. { ...value })";

/** Each scenario and the outcome every deployer must produce. */
const EXPECTED: Record<string, unknown> = {
  // First: the other scenarios may construct Lazy (error-deadline calls it).
  lazy: { context: false, deadline: false, signal: false, metadata: false },
  "listener-context": { context: false, deadline: false, metadata: false },
  "config-error": { name: "ConfigError", configError: true, message: 'config ["conf/Configured"].step: expected number, got "two"' },
  "values-supported": Object.fromEntries(
    [
      "undefined",
      "null",
      "boolean",
      "number",
      "negative zero",
      "NaN",
      "Infinity",
      "bigint",
      "string",
      "array",
      "plain object",
      "null-prototype object",
      "Map",
      "Set",
      "Date",
      "Uint8Array",
      "Buffer",
      "Float64Array",
      "ArrayBuffer",
    ].map((k) => [k, "same"]),
  ),
  "values-class-argument": {
    name: "CodecError",
    message: `cannot encode an instance of class Thing ${PLAIN_ONLY} at args[0].list[0]`,
    path: "args[0].list[0]",
    codecError: true,
  },
  "values-function-argument": {
    name: "CodecError",
    message: "cannot encode a function at args[0][1]",
    path: "args[0][1]",
    codecError: true,
  },
  "values-class-result": {
    name: "CodecError",
    message: `cannot encode an instance of class Thing ${PLAIN_ONLY} at result`,
    path: "result",
    codecError: true,
  },
  // The call gets its default deadline (conf/Callee's, from DEADLINE_CONFIG).
  plain: { reply: "slept 10", deadline: true, abortedWith: null },
  deadline: {
    caller: { error: "DeadlineExceededError", message: "conf/Callee.sleep: deadline exceeded" },
    gaveUpEarly: true,
    callee: { deadline: true, signal: true, abortedWith: "DeadlineExceededError", finished: false },
  },
  cancel: {
    caller: { error: "CallCancelledError", message: "conf/Callee.sleep: cancelled by the caller" },
    gaveUpEarly: true,
    // The call also has its default deadline; the signal aborted first.
    callee: { deadline: true, signal: true, abortedWith: "CallCancelledError", finished: false },
  },
  "swept-deadline": {
    caller: { error: "DeadlineExceededError", message: "conf/Callee.sleep: deadline exceeded" },
    gaveUpEarly: true,
    callee: { deadline: true, signal: true, abortedWith: "DeadlineExceededError", finished: false },
  },
  "late-signal": {
    caller: { error: "DeadlineExceededError", message: "conf/Callee.idle: deadline exceeded" },
    callee: { deadline: true, signal: true, abortedWith: "DeadlineExceededError", finished: true },
  },
  expired: { error: "DeadlineExceededError" },
  "cancelled-before": { error: "CallCancelledError" },
  "error-registered": {
    name: "InsufficientFunds",
    message: "needs 5 more",
    instanceOf: ["Error", "InsufficientFunds"],
    own: { name: "InsufficientFunds", needed: 5 },
    stack: true,
  },
  "error-plain": {
    name: "NotFound",
    message: "no such account",
    instanceOf: ["Error"],
    own: { name: "NotFound", code: "E_NOT_FOUND", info: { id: 7 } },
    stack: true,
  },
  "error-config": {
    name: "ConfigError",
    message: 'weaver.toml: [conf/Callee] step: must be a number, found "two"',
    instanceOf: ["Error", "ConfigError"],
    own: { name: "ConfigError" },
    stack: true,
  },
  "error-deadline": {
    name: "DeadlineExceededError",
    message: "conf/Lazy.initSaw: deadline exceeded before the call was sent",
    instanceOf: ["Error", "DeadlineExceededError"],
    own: { name: "DeadlineExceededError", retryable: false },
    stack: true,
  },
  ...DEADLINE_EXPECTED,
};

const APP_CONFIG = `[tsweaver]
name = "conformance"
binary = ${JSON.stringify(CONFORMANCE_APP)}
# Deployed processes skip the value check of local calls by default; the suite turns it on everywhere.
env = { TSWEAVER_CHECK_VALUES = "1" }
`;

/** Last in every weaver.toml: a component section whose value has the wrong type. */
const COMPONENT_CONFIG = `\n["conf/Configured"]\nstep = "two"\n`;

/** How to run the app on one deployer; returns the listener's base URL and how to stop it. */
interface Deployment {
  start(): Promise<Started>;
}
interface Started {
  base: string;
  stop: () => Promise<void>;
  /** The health the deployer reports for the replica hosting conf/Configured (multi only). */
  health?: () => string | undefined;
}

const DEPLOYMENTS: Record<string, Deployment> = {
  single: {
    async start() {
      const config = writeConfig(`${APP_CONFIG}${DEADLINE_CONFIG}[single.listeners.api]\naddress = "127.0.0.1:0"\n${COMPONENT_CONFIG}`);
      const app = new Proc(process.execPath, [CONFORMANCE_APP], { TSWEAVER_CONFIG: config });
      const [, address] = await app.waitForOutput(/listener api available on http:\/\/(\S+)/);
      return {
        base: `http://${address}`,
        stop: async () => {
          app.kill("SIGTERM");
          assert.equal((await app.exited).code, 0, app.out + app.err);
        },
      };
    },
  },
  "multi, one process per component": { start: () => multi("") },
  "multi, all colocated": { start: () => multi(`colocate = [["tsweaver/Main", "conf/Callee", "conf/Lazy", "conf/Hang"]]\n`) },
};

async function multi(colocate: string): Promise<Started> {
  const dir = tempDir();
  const config = writeConfig(
    `${APP_CONFIG}${colocate}${DEADLINE_CONFIG}\n[multi]\nreplicas = 1\n\n[multi.listeners.api]\naddress = "127.0.0.1:0"\n${COMPONENT_CONFIG}`,
    dir,
  );
  const { deployer, base } = await deployForTest(config, path.join(dir, "state"), "api");
  // The replica hosting conf/Configured, whose construction fails: reported UNHEALTHY, not HEALTHY.
  const health = () => deployer.status().groups.find((g) => g.components.includes("conf/Configured"))?.replicas[0]?.health;
  return { base, stop: () => deployer.stop(), health };
}

for (const [where, deployment] of Object.entries(DEPLOYMENTS)) {
  describe(`conformance: ${where}`, () => {
    let started: Started | undefined;
    before(async () => {
      started = await deployment.start();
    });
    after(() => started?.stop());

    for (const [scenario, expected] of Object.entries(EXPECTED)) {
      test(scenario, async () => {
        assert.deepEqual(await getJson(`${started!.base}/run?${scenarioQuery(scenario)}`), expected);
      });
    }
    if (where !== "single") {
      test("a replica whose component failed to construct is reported UNHEALTHY", async () => {
        // Health is polled every 2 s; the config-error scenario above made the construction fail.
        await waitFor("conf/Configured's replica UNHEALTHY", () => started!.health?.() === "UNHEALTHY");
      });
    }
  });
}
