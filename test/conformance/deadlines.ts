// The default-deadline scenarios of the conformance app, shared by test/conformance (single and multi)
// and test/aws/deadlines.test.ts (the AWS deployer): the weaver.toml table they need and the outcome every
// deployer must produce.

/** The app-wide default deadline the scenarios run under (ms). */
export const APP_DEFAULT_MS = 3000;

/**
 * `[tsweaver.call_timeout_ms]` for the conformance app: a short app-wide default (conf/Hang gets it),
 * the other components' calls kept clear of it by component keys, and one method with its own.
 */
export const DEADLINE_CONFIG = `
[tsweaver.call_timeout_ms]
default = ${APP_DEFAULT_MS}
"conf/Callee" = 60000
"conf/Lazy" = 60000
"conf/Configured" = 60000
"conf/Callee.nap" = 300
`;

const ABORTED = { deadline: true, signal: true, abortedWith: "DeadlineExceededError", finished: false };

/** Each default-deadline scenario and the outcome every deployer must produce. */
export const DEADLINE_EXPECTED: Record<string, unknown> = {
  "default-deadline": {
    caller: {
      error: "DeadlineExceededError",
      message:
        `conf/Hang.forever: deadline exceeded: no reply within ${APP_DEFAULT_MS} ms, the default deadline set by weaver.toml ` +
        '[tsweaver.call_timeout_ms] default; change it there (or "conf/Hang.forever" = <ms> for this method only), ' +
        "or pass withCallOptions({ timeoutMs })",
    },
    atDefault: true,
    callee: ABORTED,
  },
  "method-deadline": {
    caller: {
      error: "DeadlineExceededError",
      message:
        "conf/Callee.nap: deadline exceeded: no reply within 300 ms, the default deadline set by weaver.toml " +
        '[tsweaver.call_timeout_ms] "conf/Callee.nap"; change it there, or pass withCallOptions({ timeoutMs })',
    },
    callee: ABORTED,
  },
  "explicit-wins": { reply: "slept 600", callee: { deadline: true, signal: true, finished: true } },
};

/** The query of a scenario's request (`/run?s=NAME&...`). */
export function scenarioQuery(scenario: string): string {
  return scenario === "default-deadline" ? `s=${scenario}&ms=${APP_DEFAULT_MS}` : `s=${scenario}`;
}
