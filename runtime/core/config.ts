import { readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { checkCallTimeoutKeys, parseCallTimeouts } from "./deadlines.js";
import { ConfigError } from "./errors.js";

/** The name every app's main component is registered under. */
export const MAIN_COMPONENT = "tsweaver/Main";

/** A parsed `weaver.toml`: the app section, deployer sections and per-component sections. */
export interface AppConfig {
  /** Absolute path of the weaver.toml file (errors name it). */
  readonly file: string;
  /** App name: `[tsweaver] name`, or the directory name of the config file. */
  readonly name: string;
  /** Absolute path of the app's entry file (`[tsweaver] binary`, relative to the config file). */
  readonly binary: string;
  /** Extra command-line arguments for the entry file. */
  readonly args: readonly string[];
  /** Extra environment variables for every weavelet. */
  readonly env: Readonly<Record<string, string>>;
  /** Node.js flags for every weavelet (`[tsweaver] node_args`, e.g. ["--max-old-space-size=512"]). */
  readonly nodeArgs: readonly string[];
  /** Groups of components that run in one process; components not named run alone. */
  readonly colocate: readonly (readonly string[])[];
  /**
   * Components that accept remote calls only from the components listed (`[tsweaver.callers]`,
   * `"app/Payment" = ["app/Checkout"]`); enforced by deployers that authenticate component calls.
   */
  readonly callers: Readonly<Record<string, readonly string[]>>;
  /**
   * Default deadlines of component calls in ms (`[tsweaver.call_timeout_ms]`): keys `default`,
   * `"app/Component"` and `"app/Component.method"`; 0 = none. See runtime/core/deadlines.ts.
   */
  readonly callTimeoutMs: Readonly<Record<string, number>>;
  /** Deployer sections (`single`, `multi`, `aws`), raw, validated by their deployer. */
  readonly deployers: Readonly<Record<string, Record<string, unknown>>>;
  /** Per-component sections keyed by component name (`["hello/Reverser"]`). */
  readonly components: Readonly<Record<string, Record<string, unknown>>>;
}

const DEPLOYER_SECTIONS = new Set(["single", "multi", "aws"]);
const APP_KEYS = ["name", "binary", "args", "env", "colocate", "node_args", "callers", "call_timeout_ms"];

/** Reads and validates a weaver.toml; every error names the file and the key to fix. */
export function loadConfig(file: string): AppConfig {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${abs}: ${(err as Error).message}`);
  }
  return parseConfig(text, abs);
}

/** Parses weaver.toml text; `file` is used for messages and to resolve relative paths. */
export function parseConfig(text: string, file: string): AppConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const where = err instanceof TomlError ? ` (line ${err.line}, column ${err.column})` : "";
    throw new ConfigError(`${file}${where}: invalid TOML: ${(err as Error).message.split("\n")[0]}`);
  }
  const fail = (key: string, what: string): never => {
    throw new ConfigError(`${file}: ${key}: ${what}`);
  };
  const app = doc["tsweaver"];
  if (app === undefined) fail("[tsweaver]", 'missing section; add [tsweaver] with binary = "path/to/main.js"');
  if (!isTable(app)) fail("tsweaver", "must be a table");
  const section = app as Record<string, unknown>;
  checkKeys(section, APP_KEYS, "tsweaver", file);

  const binaryRaw = section["binary"];
  if (typeof binaryRaw !== "string" || binaryRaw === "") fail("tsweaver.binary", "required: the app's entry file, relative to this file");
  const binary = path.resolve(path.dirname(file), binaryRaw as string);

  const nameRaw = section["name"] ?? path.basename(path.dirname(file));
  if (typeof nameRaw !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(nameRaw)) {
    fail("tsweaver.name", `must be letters, digits, '-' or '_' (got ${JSON.stringify(nameRaw)})`);
  }

  const argsRaw = section["args"] ?? [];
  if (!Array.isArray(argsRaw) || argsRaw.some((a) => typeof a !== "string")) fail("tsweaver.args", "must be an array of strings");

  const nodeArgsRaw = section["node_args"] ?? [];
  if (!Array.isArray(nodeArgsRaw) || nodeArgsRaw.some((a) => typeof a !== "string" || !a.startsWith("-")))
    fail("tsweaver.node_args", 'must be an array of Node.js flags such as "--max-old-space-size=512"');

  const env: Record<string, string> = {};
  const envRaw = section["env"] ?? {};
  if (Array.isArray(envRaw)) {
    for (const kv of envRaw) {
      const eq = typeof kv === "string" ? kv.indexOf("=") : -1;
      if (eq <= 0) fail("tsweaver.env", `entries must be "KEY=value" strings (got ${JSON.stringify(kv)})`);
      env[(kv as string).slice(0, eq)] = (kv as string).slice(eq + 1);
    }
  } else if (isTable(envRaw)) {
    for (const [k, v] of Object.entries(envRaw)) {
      if (typeof v !== "string") fail(`tsweaver.env.${k}`, "must be a string");
      env[k] = v as string;
    }
  } else {
    fail("tsweaver.env", 'must be a table of strings or an array of "KEY=value"');
  }

  const colocateRaw = section["colocate"] ?? [];
  const colocate: string[][] = [];
  const seen = new Set<string>();
  if (!Array.isArray(colocateRaw)) fail("tsweaver.colocate", "must be an array of arrays of component names");
  for (const group of colocateRaw as unknown[]) {
    if (!Array.isArray(group) || group.length === 0 || group.some((c) => typeof c !== "string")) {
      fail("tsweaver.colocate", "each entry must be a non-empty array of component names");
    }
    for (const c of group as string[]) {
      if (seen.has(c)) fail("tsweaver.colocate", `component ${c} appears in more than one group`);
      seen.add(c);
    }
    colocate.push([...(group as string[])]);
  }

  const callers: Record<string, string[]> = {};
  const callersRaw = section["callers"] ?? {};
  if (!isTable(callersRaw)) fail("tsweaver.callers", 'must be a table: "app/Component" = ["app/Caller", ...]');
  for (const [callee, list] of Object.entries(callersRaw as Record<string, unknown>)) {
    if (!Array.isArray(list) || list.some((c) => typeof c !== "string" || c === "")) {
      fail(`tsweaver.callers."${callee}"`, `must be an array of component names (found ${JSON.stringify(list)})`);
    }
    callers[callee] = [...new Set(list as string[])];
  }

  const callTimeoutMs = parseCallTimeouts(section["call_timeout_ms"] ?? {}, fail);

  const deployers: Record<string, Record<string, unknown>> = {};
  const components: Record<string, Record<string, unknown>> = {};
  for (const [key, value] of Object.entries(doc)) {
    if (key === "tsweaver") continue;
    if (!isTable(value)) fail(key, "must be a table (section)");
    if (DEPLOYER_SECTIONS.has(key)) deployers[key] = value as Record<string, unknown>;
    else if (key.includes("/")) components[key] = value as Record<string, unknown>;
    else
      fail(
        `[${key}]`,
        `unknown section; expected [tsweaver], [single], [multi], [aws] or a component name such as ["${nameRaw}/Component"]`,
      );
  }

  return {
    file,
    name: nameRaw as string,
    binary,
    args: argsRaw as string[],
    env,
    nodeArgs: nodeArgsRaw as string[],
    colocate,
    callers,
    callTimeoutMs,
    deployers,
    components,
  };
}

/**
 * Checks the names in the config against the app's registered components: colocate entries and
 * component sections must name real components.
 */
/**
 * `WeaveletArgs.config` for a weavelet hosting `components`: each one's `["component"]` section of
 * weaver.toml as JSON (components without a section are left out; they get their defaults).
 */
export function componentConfigs(config: Pick<AppConfig, "components">, components: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of components) {
    const section = config.components[c];
    if (section) out[c] = JSON.stringify(section);
  }
  return out;
}

export function checkComponentNames(config: AppConfig, known: readonly string[]): void {
  const set = new Set(known);
  const hint = `registered components: ${known.join(", ")}`;
  for (const group of config.colocate) {
    for (const c of group) {
      if (!set.has(c)) throw new ConfigError(`${config.file}: tsweaver.colocate: unknown component ${c} (${hint})`);
    }
  }
  for (const c of Object.keys(config.components)) {
    if (!set.has(c)) throw new ConfigError(`${config.file}: ["${c}"]: unknown component (${hint})`);
  }
  for (const [callee, list] of Object.entries(config.callers ?? {})) {
    if (!set.has(callee)) throw new ConfigError(`${config.file}: tsweaver.callers."${callee}": unknown component (${hint})`);
    for (const c of list) {
      if (!set.has(c)) throw new ConfigError(`${config.file}: tsweaver.callers."${callee}": unknown caller ${c} (${hint})`);
    }
  }
  // Method names are checked by the weavelet, which has the registrations.
  checkCallTimeoutKeys(config.callTimeoutMs ?? {}, (c) => (set.has(c) ? null : undefined), known, config.file);
}

/** A set of components deployed, replicated and scaled together as one process. */
export interface Group {
  /** A name safe for process titles, file names and AWS resource names (e.g. `hello-reverser`). */
  readonly name: string;
  readonly components: readonly string[];
}

/** The deployment groups: the `colocate` groups, then one group per remaining component. */
export function groupsOf(config: Pick<AppConfig, "colocate">, componentNames: readonly string[]): Group[] {
  const groups: Group[] = [];
  const placed = new Set<string>();
  for (const g of config.colocate) {
    const members = [...g].sort();
    groups.push({ name: groupName(members[0]!), components: members });
    members.forEach((c) => placed.add(c));
  }
  for (const c of [...componentNames].sort()) {
    if (!placed.has(c)) groups.push({ name: groupName(c), components: [c] });
  }
  const names = new Set<string>();
  for (const g of groups) {
    if (names.has(g.name)) throw new ConfigError(`two groups would be named ${g.name}; rename a component`);
    names.add(g.name);
  }
  return groups;
}

/** `hello/Reverser` → `hello-reverser`. */
export function groupName(component: string): string {
  return component
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
}

/** Throws a ConfigError for keys of `table` that are not in `known`. */
export function checkKeys(table: Record<string, unknown>, known: readonly string[], where: string, file: string): void {
  for (const key of Object.keys(table)) {
    if (!known.includes(key)) {
      throw new ConfigError(`${file}: ${where}.${key}: unknown key (known keys: ${known.join(", ")})`);
    }
  }
}

export function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}
