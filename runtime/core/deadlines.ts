// The default deadline of component calls: a call made with no deadline in its context (no
// `withCallOptions({ timeoutMs })` around it, no deadline inherited from the call being served) gets one
// from weaver.toml's [tsweaver.call_timeout_ms] table, or the built-in default. Every deployer applies it
// the same way, in the caller's stub, for local and remote callees alike.
import { DeadlineExceededError, RemoteCallError, ConfigError } from "./errors.js";

/** The deadline of a component call that names none (ms), unless weaver.toml sets another. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** The weaver.toml table of default deadlines: `default`, `"app/Component"` or `"app/Component.method"` → ms. */
export const CALL_TIMEOUT_TABLE = "tsweaver.call_timeout_ms";

/** The largest default deadline (ms) a timer can wait for; a longer one is refused by the config. */
export const MAX_CALL_TIMEOUT_MS = 0x7fffffff;

/** The default deadline of one method: its length and where it was set (for the error that names it). */
export class CallTimeout {
  constructor(
    /** Length in ms (> 0). */
    readonly ms: number,
    /** The weaver.toml key that set it (`default`, `"app/C"`, `"app/C.m"`), or undefined for the built-in default. */
    readonly key: string | undefined,
  ) {}

  /**
   * The error a caller gets when this default deadline passed for `method` ("app/C.m"): it names the
   * method, the length, and the key that changes it.
   */
  exceeded(method: string): DeadlineExceededError {
    const own = `"${method}"`;
    const where =
      this.key === undefined
        ? `the built-in default deadline of component calls; set another in weaver.toml [${CALL_TIMEOUT_TABLE}] with ${own} = <ms> (or default = <ms> for every call)`
        : `the default deadline set by weaver.toml [${CALL_TIMEOUT_TABLE}] ${this.key}; change it there${this.key === own ? "" : ` (or ${own} = <ms> for this method only)`}`;
    return new DeadlineExceededError(
      `${method}: deadline exceeded: no reply within ${this.ms} ms, ${where}, or pass withCallOptions({ timeoutMs })`,
    );
  }

  /**
   * `err` as the caller of `method` sees it when the call ran under this default deadline: the runtime's
   * own DeadlineExceededError for this call becomes {@link exceeded}; any other error (the callee's own,
   * rethrown from a remote process) passes unchanged.
   */
  explain(method: string, err: unknown): unknown {
    if (!(err instanceof DeadlineExceededError) || err.cause instanceof RemoteCallError) return err;
    return err.message.startsWith(`${method}: deadline exceeded`) ? this.exceeded(method) : err;
  }
}

/**
 * The default deadline of each method from a [tsweaver.call_timeout_ms] table: the method's own key,
 * else its component's, else `default`, else {@link DEFAULT_CALL_TIMEOUT_MS}. Returns undefined when
 * the applicable value is 0 (no default deadline).
 */
export function callTimeoutOf(table: Readonly<Record<string, number>>, component: string, method: string): CallTimeout | undefined {
  for (const key of [`${component}.${method}`, component, "default"]) {
    const ms = table[key];
    if (ms !== undefined) return ms === 0 ? undefined : new CallTimeout(ms, key === "default" ? key : `"${key}"`);
  }
  return new CallTimeout(DEFAULT_CALL_TIMEOUT_MS, undefined);
}

/**
 * Parses the [tsweaver.call_timeout_ms] table (`raw`, as TOML gave it): keys `default`, a component name
 * or `component.method`; values whole ms from 0 (no default deadline) to {@link MAX_CALL_TIMEOUT_MS}.
 * `fail(key, what)` reports a problem.
 */
export function parseCallTimeouts(raw: unknown, fail: (key: string, what: string) => never): Record<string, number> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || raw instanceof Date) {
    return fail(CALL_TIMEOUT_TABLE, 'must be a table: default = 30000, "app/Component" = 5000, "app/Component.method" = 60000');
  }
  const out: Record<string, number> = {};
  for (const [key, ms] of Object.entries(raw as Record<string, unknown>)) {
    const name = key === "default" ? key : `"${key}"`;
    if (key !== "default" && !/^[\w.$-]+(\/[\w.$-]+)+$/.test(key)) {
      fail(`${CALL_TIMEOUT_TABLE}.${name}`, 'unknown key: expected default, "app/Component" or "app/Component.method"');
    }
    if (typeof ms !== "number" || !Number.isInteger(ms) || ms < 0 || ms > MAX_CALL_TIMEOUT_MS) {
      fail(
        `${CALL_TIMEOUT_TABLE}.${name}`,
        `must be a whole number of ms from 0 (no default deadline) to ${MAX_CALL_TIMEOUT_MS}, found ${JSON.stringify(ms)}`,
      );
    }
    out[key] = ms as number;
  }
  return out;
}

/**
 * Checks that every key of a [tsweaver.call_timeout_ms] table names a registered component and, for
 * `component.method`, one of its declared methods. `methodsOf` gives a component's methods (null: a
 * registered component whose methods are not known here), or undefined for a component not registered. `where` prefixes the error (the config file, or "weaver.toml").
 */
export function checkCallTimeoutKeys(
  table: Readonly<Record<string, number>>,
  methodsOf: (component: string) => readonly string[] | null | undefined,
  known: readonly string[],
  where: string,
): void {
  for (const key of Object.keys(table)) {
    if (key === "default") continue;
    // A component name may hold dots: the key is a component if one is registered under it.
    const dot = methodsOf(key) !== undefined ? -1 : key.lastIndexOf(".");
    const component = dot < key.lastIndexOf("/") ? key : key.slice(0, dot);
    const methods = methodsOf(component);
    if (methods === undefined) {
      throw new ConfigError(
        `${where}: ${CALL_TIMEOUT_TABLE}."${key}": unknown component ${component} (registered components: ${known.join(", ")})`,
      );
    }
    const method = component === key ? undefined : key.slice(dot + 1);
    if (method !== undefined && methods !== null && !methods.includes(method)) {
      throw new ConfigError(
        `${where}: ${CALL_TIMEOUT_TABLE}."${key}": ${component} has no method ${method} (its methods: ${methods.join(", ")})`,
      );
    }
  }
}
