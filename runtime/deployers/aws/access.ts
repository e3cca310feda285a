/**
 * What an app's own code may do on AWS: `permissions` (IAM managed policies and statements added to the
 * task roles) and `secrets` (Secrets Manager secrets and SSM parameters ECS injects as environment
 * variables), app-wide in `[aws]` and per group in `[aws.groups.NAME]`.
 *
 * ```toml
 * [aws.permissions]                       # every group's task role
 * managed_policies = ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]
 * [[aws.groups.shop-cart.permissions.statements]]
 * actions = ["dynamodb:GetItem", "dynamodb:PutItem"]
 * resources = ["arn:aws:dynamodb:eu-west-1:123456789012:table/carts"]
 * [aws.secrets]                           # variable name = secret or parameter ARN
 * DB_PASSWORD = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf", field = "password" }
 * FEATURE_KEY = "arn:aws:ssm:eu-west-1:123456789012:parameter/shop/feature-key"
 * ```
 */
import { checkKeys, isTable } from "../../core/config.js";
import { ConfigError } from "../../core/errors.js";

/** IAM rights added to a task role. */
export interface AwsPermissions {
  /** ARNs of IAM managed policies attached to the role (`managed_policies`). */
  readonly managedPolicies: readonly string[];
  /** Policy statements added to the role (`statements`). */
  readonly statements: readonly AwsPolicyStatement[];
}

/** One IAM policy statement (`[[...permissions.statements]]`). */
export interface AwsPolicyStatement {
  /** `effect`, default "Allow". */
  readonly effect: "Allow" | "Deny";
  /** IAM actions such as "s3:GetObject" (wildcards allowed). */
  readonly actions: readonly string[];
  /** Resource ARNs, or "*". */
  readonly resources: readonly string[];
}

/** Where a secret environment variable's value comes from. */
export interface AwsSecret {
  /** "secretsmanager" or "ssm", from the ARN. */
  readonly source: "secretsmanager" | "ssm";
  /** The complete secret ARN (with its 6-character suffix) or the parameter ARN. */
  readonly arn: string;
  /** A Secrets Manager secret's JSON key to inject instead of the whole value. */
  readonly field: string | undefined;
}

export const NO_PERMISSIONS: AwsPermissions = { managedPolicies: [], statements: [] };

const PERMISSION_KEYS = ["managed_policies", "statements"];
const STATEMENT_KEYS = ["effect", "actions", "resources"];
const SECRET_KEYS = ["arn", "field"];

const MANAGED_POLICY_ARN = /^arn:aws[a-z-]*:iam::(aws|\d{12}):policy\/[\w+=,.@/-]+$/;
const ACTION = /^([a-z0-9-]+:[A-Za-z0-9*?]+|\*)$/;
const RESOURCE = /^(arn:[^\s]+|\*)$/;
/** A complete secret ARN: ECS needs the suffix Secrets Manager adds to the name (`-AbCdEf`). */
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/;
const PARAMETER_ARN = /^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter\/[\w./-]+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parses a `permissions` table found at `key` (e.g. `aws.groups.x.permissions`). */
export function parsePermissions(raw: unknown, key: string, file: string): AwsPermissions {
  const fail = (k: string, what: string): never => {
    throw new ConfigError(`${file}: ${k}: ${what}`);
  };
  if (raw === undefined) return NO_PERMISSIONS;
  if (!isTable(raw)) fail(key, `must be a table ([${key}])`);
  const table = raw as Record<string, unknown>;
  checkKeys(table, PERMISSION_KEYS, key, file);
  const managedPolicies = stringList(table["managed_policies"], `${key}.managed_policies`, fail) ?? [];
  for (const arn of managedPolicies) {
    if (!MANAGED_POLICY_ARN.test(arn))
      fail(
        `${key}.managed_policies`,
        `must be IAM managed policy ARNs such as "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess" (got ${JSON.stringify(arn)})`,
      );
  }
  const rawStatements = table["statements"] ?? [];
  if (!Array.isArray(rawStatements)) fail(`${key}.statements`, `must be an array of tables ([[${key}.statements]])`);
  const statements = (rawStatements as unknown[]).map((s, i): AwsPolicyStatement => {
    const at = `${key}.statements[${i}]`;
    if (!isTable(s)) fail(at, "must be a table with actions and resources");
    const st = s as Record<string, unknown>;
    checkKeys(st, STATEMENT_KEYS, at, file);
    const effect = st["effect"] ?? "Allow";
    if (effect !== "Allow" && effect !== "Deny") fail(`${at}.effect`, `must be "Allow" or "Deny" (got ${JSON.stringify(effect)})`);
    const actions = stringList(st["actions"], `${at}.actions`, fail);
    if (!actions?.length) fail(`${at}.actions`, 'required: IAM actions such as ["s3:GetObject"]');
    for (const a of actions!)
      if (!ACTION.test(a)) fail(`${at}.actions`, `must be IAM actions such as "s3:GetObject" (got ${JSON.stringify(a)})`);
    const resources = stringList(st["resources"], `${at}.resources`, fail);
    if (!resources?.length) fail(`${at}.resources`, 'required: resource ARNs (or "*"), e.g. ["arn:aws:s3:::my-bucket/*"]');
    for (const r of resources!) if (!RESOURCE.test(r)) fail(`${at}.resources`, `must be ARNs or "*" (got ${JSON.stringify(r)})`);
    return { effect: effect as "Allow" | "Deny", actions: actions!, resources: resources! };
  });
  return { managedPolicies, statements };
}

/**
 * Parses a `secrets` table found at `key`: environment variable name → ARN string, or `{ arn, field }`
 * for one JSON key of a Secrets Manager secret. `taken` holds names already in use (the app's `env`,
 * app-wide secrets) with where they come from.
 */
export function parseSecrets(raw: unknown, key: string, file: string, taken: ReadonlyMap<string, string>): Record<string, AwsSecret> {
  const fail = (k: string, what: string): never => {
    throw new ConfigError(`${file}: ${k}: ${what}`);
  };
  if (raw === undefined) return {};
  if (!isTable(raw)) fail(key, `must be a table ([${key}]) of NAME = "ARN"`);
  const out: Record<string, AwsSecret> = {};
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    const at = `${key}.${name}`;
    if (!ENV_NAME.test(name)) fail(at, "the name is an environment variable: letters, digits and '_', not starting with a digit");
    if (/^(TSWEAVER_|AWS_|ECS_)/.test(name)) fail(at, "names starting with TSWEAVER_, AWS_ or ECS_ are reserved for the runtime and ECS");
    const other = taken.get(name);
    if (other !== undefined) fail(at, `${name} is already set by ${other}; each variable comes from one place`);
    let arn: unknown = value;
    let field: unknown;
    if (isTable(value)) {
      checkKeys(value, SECRET_KEYS, at, file);
      arn = value["arn"];
      field = value["field"];
    }
    if (typeof arn !== "string")
      fail(at, `must be a secret or parameter ARN, or { arn = "...", field = "..." } (got ${JSON.stringify(value)})`);
    const a = arn as string;
    const source = SECRET_ARN.test(a) ? "secretsmanager" : PARAMETER_ARN.test(a) ? "ssm" : undefined;
    if (source === undefined) {
      fail(
        at,
        "must be a complete Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf, with the 6-character " +
          `suffix) or an SSM parameter ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME) (got ${JSON.stringify(a)})`,
      );
    }
    if (field !== undefined && (typeof field !== "string" || field === ""))
      fail(`${at}.field`, `must be a non-empty string (got ${JSON.stringify(field)})`);
    if (field !== undefined && source === "ssm")
      fail(`${at}.field`, "applies only to Secrets Manager secrets (a JSON key of the secret's value)");
    out[name] = { source: source!, arn: a, field: field as string | undefined };
  }
  return out;
}

function stringList(v: unknown, key: string, fail: (k: string, what: string) => never): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string" || x === ""))
    fail(key, `must be an array of non-empty strings (got ${JSON.stringify(v)})`);
  return v as string[];
}
