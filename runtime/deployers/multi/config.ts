import { checkKeys, isTable, type AppConfig } from "../../core/config.js";
import { ConfigError } from "../../core/errors.js";

/** The `[multi]` section of weaver.toml. */
export interface MultiConfig {
  /** Replicas per group (`replicas`, default 2). */
  replicas: number;
  /** Proxy address per listener (`[multi.listeners.NAME] address`); unnamed listeners get localhost:0. */
  listeners: Map<string, string>;
  /** Address of the admin server (`admin`, default 127.0.0.1:0: any free port). */
  admin: string;
  /**
   * A group whose replicas crash this many times (`crash_loop_restarts`, default 5) within
   * `crashLoopWindowMs` (`crash_loop_window_s`, default 60) fails the deployment instead of restarting on.
   */
  crashLoopRestarts: number;
  crashLoopWindowMs: number;
  /**
   * How long a stop (SIGTERM/SIGINT) lets in-flight work finish before killing what is left
   * (`drain_seconds`, default 10); the deployer exits within it.
   */
  drainMs: number;
  /**
   * A replica that stays UNHEALTHY this long (`unhealthy_replace_s`, default 30) is replaced: stopped
   * and started afresh. It gets no traffic while UNHEALTHY.
   */
  unhealthyReplaceMs: number;
}

export function multiConfig(config: AppConfig): MultiConfig {
  const section = config.deployers["multi"] ?? {};
  const fail = (key: string, what: string): never => {
    throw new ConfigError(`${config.file}: multi.${key}: ${what}`);
  };
  checkKeys(
    section,
    ["replicas", "listeners", "admin", "crash_loop_restarts", "crash_loop_window_s", "drain_seconds", "unhealthy_replace_s"],
    "multi",
    config.file,
  );
  const restarts = section["crash_loop_restarts"] ?? 5;
  if (typeof restarts !== "number" || !Number.isInteger(restarts) || restarts < 1)
    fail("crash_loop_restarts", `must be a positive integer, found ${JSON.stringify(restarts)}`);
  const windowS = section["crash_loop_window_s"] ?? 60;
  if (typeof windowS !== "number" || !(windowS > 0))
    fail("crash_loop_window_s", `must be a positive number of seconds, found ${JSON.stringify(windowS)}`);
  const seconds = (key: string, byDefault: number): number => {
    const v = section[key] ?? byDefault;
    if (typeof v !== "number" || !(v >= 0) || !Number.isFinite(v))
      fail(key, `must be a number of seconds (0 or more), found ${JSON.stringify(v)}`);
    return (v as number) * 1000;
  };
  const drainMs = seconds("drain_seconds", 10);
  const unhealthyReplaceMs = seconds("unhealthy_replace_s", 30);
  const admin = section["admin"] ?? "127.0.0.1:0";
  if (typeof admin !== "string" || !/^.*:\d+$/.test(admin)) fail("admin", 'must be a "host:port" string');
  const replicas = section["replicas"] ?? 2;
  if (typeof replicas !== "number" || !Number.isInteger(replicas) || replicas < 1 || replicas > 64)
    fail("replicas", "must be an integer from 1 to 64");
  const listeners = new Map<string, string>();
  const raw = section["listeners"] ?? {};
  if (!isTable(raw)) fail("listeners", "must be a table of [multi.listeners.NAME] sections");
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (!isTable(value)) fail(`listeners.${name}`, 'must be a table with address = "host:port"');
    checkKeys(value as Record<string, unknown>, ["address"], `multi.listeners.${name}`, config.file);
    const address = (value as Record<string, unknown>)["address"];
    if (typeof address !== "string" || !/^.*:\d+$/.test(address)) fail(`listeners.${name}.address`, 'must be a "host:port" string');
    listeners.set(name, address as string);
  }
  return {
    replicas: replicas as number,
    listeners,
    admin: admin as string,
    crashLoopRestarts: restarts as number,
    crashLoopWindowMs: (windowS as number) * 1000,
    drainMs,
    unhealthyReplaceMs,
  };
}
