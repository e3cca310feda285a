import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import type { AppConfig } from "./config.js";
import { ConfigError } from "./errors.js";

/** The variable that makes an app's entry file print its components and exit (see `run` in tsweaver). */
export const LIST_COMPONENTS_ENV = "TSWEAVER_LIST_COMPONENTS";

/**
 * The components an app registers, read from the app itself at synth time: its entry file, run as
 * `TSWEAVER_LIST_COMPONENTS=1 node <binary> <args>`, prints one line `{"components":[...]}` and exits 0.
 * Never a hand-written list. Errors are ConfigErrors naming the config file and `tsweaver.binary`.
 */
export function listAppComponents(config: Pick<AppConfig, "file" | "binary" | "args" | "env">, timeoutMs = 60_000): string[] {
  const where = `${config.file}: tsweaver.binary`;
  if (!existsSync(config.binary)) {
    throw new ConfigError(`${where}: ${config.binary} does not exist; build the app first (npm run build)`);
  }
  let stdout: string;
  try {
    stdout = execFileSync(process.execPath, [config.binary, ...config.args], {
      env: { ...process.env, ...config.env, [LIST_COMPONENTS_ENV]: "1" },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: timeoutMs,
      maxBuffer: 4 << 20,
    });
  } catch (err) {
    const e = err as { status?: number | null; signal?: string | null; stderr?: string | Buffer; message: string };
    const stderr = String(e.stderr ?? "")
      .trim()
      .split("\n")
      .slice(-8)
      .join("\n");
    const how = e.signal
      ? `was killed by ${e.signal}${e.signal === "SIGTERM" ? ` (timeout ${timeoutMs} ms?)` : ""}`
      : `exited with status ${e.status ?? "?"}`;
    throw new ConfigError(
      `${where}: listing the components of ${config.binary} (${LIST_COMPONENTS_ENV}=1 node ${config.binary}) ${how}${stderr ? `:\n${stderr}` : ""}`,
    );
  }
  const line = stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{"components"'))
    .pop();
  if (line === undefined) {
    const shown = stdout.trim().slice(0, 500);
    throw new ConfigError(
      `${where}: ${config.binary} printed no component list with ${LIST_COMPONENTS_ENV}=1; its entry file must call run(App) from "tsweaver"` +
        (shown ? ` (it printed: ${shown})` : ""),
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (err) {
    throw new ConfigError(`${where}: ${config.binary} printed an invalid component list: ${(err as Error).message}`);
  }
  const components = (parsed as { components?: unknown }).components;
  if (!Array.isArray(components) || components.length === 0 || components.some((c) => typeof c !== "string" || c === "")) {
    throw new ConfigError(`${where}: ${config.binary} printed ${line}; expected {"components":["app/Name", ...]}`);
  }
  return [...new Set(components as string[])].sort();
}
