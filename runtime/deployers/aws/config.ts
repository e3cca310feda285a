/**
 * The `[aws]` section of weaver.toml: parsed, validated and with every default filled in. (The names the
 * stack, the control plane, the agent and the CLI agree on are in contract.ts.)
 *
 * ```toml
 * [aws]
 * stack = "hello"               # CloudFormation stack name = deployment id (default tsweaver-<app>)
 * region = "us-east-1"
 * [aws.groups.hello-reverser]   # keyed by group name
 * min = 1
 * max = 4
 * [aws.listeners.hello]
 * port = 80
 * health_check_path = "/healthz"
 * [aws.rollout]                 # how traffic moves to a new version
 * steps = [10, 50, 100]
 * step_seconds = 60
 * ```
 * See docs/aws.md for every key.
 */
import path from "node:path";
import { checkKeys, isTable, MAIN_COMPONENT, type AppConfig, type Group } from "../../core/config.js";
import { ConfigError } from "../../core/errors.js";
import { parsePermissions, parseSecrets, type AwsPermissions, type AwsSecret } from "./access.js";
import { defaultStackName, listenerUrlOutputKey, pascalCase, type RolloutEnv } from "./contract.js";

export type { AwsPermissions, AwsPolicyStatement, AwsSecret } from "./access.js";

/** The validated `[aws]` section, with every default filled in. */
/** Opt-in CloudWatch alarms (`[aws.alarms]`); each unset threshold means no such alarm. */
export interface AwsAlarms {
  /** Alarm when a group's served calls fail above this fraction over 5 minutes (`error_rate`). */
  readonly errorRate: number | undefined;
  /** Alarm when a group's p99 served latency exceeds this many ms over 5 minutes (`p99_ms`). */
  readonly p99Ms: number | undefined;
  /** Alarm when the load balancer counts this many target 5xx responses in 5 minutes (`alb_5xx`). */
  readonly alb5xx: number | undefined;
  /** Alarm when the control plane's reconcile passes fail this many times in 5 minutes (`reconcile_errors`). */
  readonly reconcileErrors: number | undefined;
  /** SNS topic the alarms notify (`topic_arn`); unset, the alarms only change state. */
  readonly topicArn: string | undefined;
}

/** Which VPC endpoints the created VPC gets. */
export type VpcEndpoints = "none" | "gateway" | "all";

export interface AwsConfig {
  /** CloudFormation stack name; also the deployment id, the ECS cluster name and the Cloud Map namespace name. */
  readonly stack: string;
  /** AWS account id the stack is pinned to (`account`); unset: environment-agnostic. */
  readonly account: string | undefined;
  /** AWS region the stack is pinned to (`region`); unset: environment-agnostic (chosen at deploy time). */
  readonly region: string | undefined;
  /** An existing VPC to use (`vpc_id`); unset: the stack creates one. */
  readonly vpcId: string | undefined;
  /** NAT gateways of the created VPC (`nat_gateways`, default 2: one per AZ); 0 puts tasks in public subnets. */
  readonly natGateways: number;
  /**
   * VPC endpoints of the created VPC (`vpc_endpoints`): "gateway" (default; S3, free: image layers skip the
   * NAT), "all" (also interface endpoints for every AWS API the tasks call), or "none".
   */
  readonly vpcEndpoints: VpcEndpoints;
  /** A CloudWatch dashboard of the app (`dashboard`, default true). */
  readonly dashboard: boolean;
  readonly alarms: AwsAlarms;
  /** VPC flow logs to CloudWatch Logs for the created VPC (`flow_logs`, default true). */
  readonly flowLogs: boolean;
  /** ECS Container Insights on the cluster (`container_insights`, default true). */
  readonly containerInsights: boolean;
  /** CPU architecture of every task and of the image built from the Dockerfile (`architecture`). */
  readonly architecture: "x86_64" | "arm64";
  /** A prebuilt image URI (`image`); unset: the image is built from a Dockerfile at deploy time. */
  readonly image: string | undefined;
  /**
   * Docker build context, absolute (`dockerfile_dir`, relative to weaver.toml); unset: the project root
   * (where cdk.json is) with the Dockerfile shipped in infra/.
   */
  readonly dockerfileDir: string | undefined;
  /**
   * Base image of the image built from the Dockerfile (`base_image`), passed as the `NODE_IMAGE` build
   * argument; pin it by digest (`...@sha256:<64 hex>`). Unset: the Dockerfile's default (the current Node LTS).
   */
  readonly baseImage: string | undefined;
  /** The Dockerfile, relative to the build context (`dockerfile`, default "Dockerfile" when dockerfile_dir is set). */
  readonly dockerfile: string | undefined;
  /**
   * Path of this weaver.toml inside the image, relative to the image's working directory
   * (`config_in_image`); unset: the config's path relative to the build context.
   */
  readonly configInImage: string | undefined;
  /** Internal instead of internet-facing load balancer (`internal_alb`, default false). */
  readonly internalAlb: boolean;
  /** ALB access logs to an S3 bucket the stack creates (`access_logs`, default true; needs `region`). */
  readonly accessLogs: boolean;
  /** The fixed TCP port every weavelet serves component RPC on (`rpc_port`, default 9000). */
  readonly rpcPort: number;
  /** The TCP port the control plane accepts agent connections on (`control_port`, default 9100). */
  readonly controlPort: number;
  /** Loopback port of the agent's health endpoint in group tasks (`health_port`, default 9101). */
  readonly healthPort: number;
  /** Retention of the app's CloudWatch log groups, in days (`log_retention_days`, default 30). */
  readonly logRetentionDays: number;
  /** OTLP/HTTP endpoint the weavelets export traces to (`otlp_endpoint`, e.g. an ADOT collector), or none. */
  readonly otlpEndpoint: string | undefined;
  /**
   * Where traces go (`tracing`): "xray" (a collector sidecar in every group task sends them to X-Ray),
   * "otlp" (to `otlp_endpoint`), "off" (dropped). Default: "otlp" with an `otlp_endpoint`, else "off".
   */
  readonly tracing: AwsTracing;
  /** Control plane task size (`[aws.controlplane] cpu/memory`, default 256/512). */
  readonly controlPlane: { readonly cpu: number; readonly memory: number };
  /** Every deployment group (not only those with a section), in `groupsOf` order. */
  readonly groups: readonly AwsGroupConfig[];
  /** The ALB listeners (`[aws.listeners.NAME]`), sorted by name. */
  readonly listeners: readonly AwsListenerConfig[];
  /** How traffic moves from one version to the next (`[aws.rollout]`). */
  readonly rollout: RolloutEnv;
  /** IAM rights of every group's task role (`[aws.permissions]`), on top of each group's own. */
  readonly permissions: AwsPermissions;
  /** Secret environment variables of every group task (`[aws.secrets]`), injected by ECS. */
  readonly secrets: Readonly<Record<string, AwsSecret>>;
}

/** One deployment group on AWS: an ECS service of identical tasks. */
export interface AwsGroupConfig {
  /** The group's AWS-safe name (`hello-reverser`): ECS service name and Cloud Map service name. */
  readonly name: string;
  readonly components: readonly string[];
  /** Replica floor: the desired count set on activation, and the autoscaling minimum after it (default 1). */
  readonly min: number;
  /** Autoscaling maximum (default max(min, 4)). */
  readonly max: number;
  /** Fargate task CPU units (default 256). */
  readonly cpu: number;
  /** Fargate task memory in MiB (default 512). */
  readonly memory: number;
  /** Target average CPU utilization, percent, for target-tracking autoscaling (default 70). */
  readonly cpuTarget: number;
  /**
   * Target ALB requests per target per minute (`requests_per_target`), tracked on each listener the group
   * serves; undefined: no such policy (default).
   */
  readonly requestsPerTarget: number | undefined;
  /** Target served calls per second per replica (`load_target`); undefined: no such policy (default). */
  readonly loadTarget: number | undefined;
  /** Busy replicas are protected from scale-in (`scale_in_protection`, default true). */
  readonly scaleInProtection: boolean;
  /** IAM rights of this group's task role only (`[aws.groups.NAME.permissions]`). */
  readonly permissions: AwsPermissions;
  /** Secret environment variables of this group's tasks only (`[aws.groups.NAME.secrets]`). */
  readonly secrets: Readonly<Record<string, AwsSecret>>;
}

/** A tsweaver listener exported through the ALB. */
export interface AwsListenerConfig {
  /** The listener name the app passes to `ctx.listener(name)`. */
  readonly name: string;
  /** ALB listener port (default 443 with a certificate, else 80). */
  readonly port: number;
  /** Port the weavelet listens on inside its task; the ALB target group forwards to it. */
  readonly containerPort: number;
  /** Reachable from anywhere (true, default) or only from inside the VPC. */
  readonly public: boolean;
  /** Path the ALB health check requests (default "/"). */
  readonly healthCheckPath: string;
  /** Seconds a retired version's targets keep finishing in-flight requests (default 30). */
  readonly deregistrationDelaySeconds: number;
  /** ACM certificate: the listener speaks HTTPS. */
  readonly certificateArn: string | undefined;
  /** With a certificate: an HTTP listener on this port redirects to HTTPS (default 80; `redirect_http = false` disables). */
  readonly redirectPort: number | undefined;
}

// ---------------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------------

/** Values of `[aws] tracing`. */
export const AWS_TRACING = ["xray", "otlp", "off"] as const;
export type AwsTracing = (typeof AWS_TRACING)[number];

const AWS_KEYS = [
  "stack",
  "account",
  "region",
  "vpc_id",
  "nat_gateways",
  "vpc_endpoints",
  "dashboard",
  "alarms",
  "flow_logs",
  "container_insights",
  "architecture",
  "image",
  "dockerfile_dir",
  "dockerfile",
  "base_image",
  "config_in_image",
  "internal_alb",
  "access_logs",
  "rpc_port",
  "control_port",
  "health_port",
  "log_retention_days",
  "otlp_endpoint",
  "tracing",
  "controlplane",
  "groups",
  "listeners",
  "rollout",
  "scaling",
  "permissions",
  "secrets",
];
/** Autoscaling keys: app-wide in `[aws.scaling]`, per group in `[aws.groups.NAME]` (which wins). */
const SCALING_KEYS = ["cpu_target", "requests_per_target", "load_target", "scale_in_protection"];
const GROUP_KEYS = ["min", "max", "cpu", "memory", ...SCALING_KEYS, "permissions", "secrets"];
const LISTENER_KEYS = [
  "port",
  "container_port",
  "public",
  "health_check_path",
  "deregistration_delay_seconds",
  "certificate_arn",
  "redirect_http",
];
const CONTROLPLANE_KEYS = ["cpu", "memory"];
const ROLLOUT_KEYS = ["steps", "step_seconds", "max_error_rate", "health_timeout_seconds"];

/** Retention periods CloudWatch Logs accepts. */
export const LOG_RETENTION_DAYS: readonly number[] = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

/** Memory sizes (MiB) Fargate accepts for each CPU size. */
const FARGATE_SIZES: ReadonlyMap<number, readonly number[]> = new Map([
  [256, [512, 1024, 2048]],
  [512, range(1024, 4096, 1024)],
  [1024, range(2048, 8192, 1024)],
  [2048, range(4096, 16384, 1024)],
  [4096, range(8192, 30720, 1024)],
  [8192, range(16384, 61440, 4096)],
  [16384, range(32768, 122880, 8192)],
]);

/**
 * Validates the `[aws]` section of `config` against the app's deployment groups (from `groupsOf`) and
 * fills in defaults. Errors are ConfigErrors naming the file and the key (`aws.groups.x.max`).
 */
export function parseAwsConfig(config: AppConfig, groups: readonly Group[]): AwsConfig {
  const file = config.file;
  const section = config.deployers["aws"] ?? {};
  const fail = (key: string, what: string): never => {
    throw new ConfigError(`${file}: aws.${key}: ${what}`);
  };
  checkKeys(section, AWS_KEYS, "aws", file);
  const r = reader(section, "", fail);

  const stack = r.string("stack") ?? defaultStackName(config.name);
  if (!/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(stack)) {
    fail(
      "stack",
      `must start with a letter and contain only letters, digits and '-', at most 128 characters (got ${JSON.stringify(stack)})`,
    );
  }
  const account = r.string("account");
  if (account !== undefined && !/^\d{12}$/.test(account))
    fail("account", `must be a 12-digit AWS account id (got ${JSON.stringify(account)})`);
  const region = r.string("region");
  if (region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region))
    fail("region", `must be an AWS region such as "us-east-1" (got ${JSON.stringify(region)})`);

  const vpcId = r.string("vpc_id");
  if (vpcId !== undefined) {
    if (!/^vpc-[0-9a-f]{8,17}$/.test(vpcId))
      fail("vpc_id", `must be a VPC id such as "vpc-0123456789abcdef0" (got ${JSON.stringify(vpcId)})`);
    if (account === undefined || region === undefined) {
      fail(
        "vpc_id",
        "importing a VPC needs aws.account and aws.region: CDK looks the VPC up once (with your credentials) and caches it in cdk.context.json",
      );
    }
    if (section["nat_gateways"] !== undefined) fail("nat_gateways", "applies only to the VPC the stack creates; remove it or aws.vpc_id");
    if (section["flow_logs"] !== undefined) fail("flow_logs", "applies only to the VPC the stack creates; remove it or aws.vpc_id");
    if (section["vpc_endpoints"] !== undefined) fail("vpc_endpoints", "applies only to the VPC the stack creates; remove it or aws.vpc_id");
  }
  const natGateways = r.int("nat_gateways", 0, 2) ?? 2;
  const endpoints = r.string("vpc_endpoints") ?? "gateway";
  const vpcEndpoints =
    (["none", "gateway", "all"] as const).find((v) => v === endpoints) ??
    fail("vpc_endpoints", `must be "none", "gateway" or "all" (got ${JSON.stringify(endpoints)})`);
  const flowLogs = r.bool("flow_logs") ?? true;
  const containerInsights = r.bool("container_insights") ?? true;
  const architecture = r.string("architecture") ?? "x86_64";
  if (architecture !== "x86_64" && architecture !== "arm64")
    fail("architecture", `must be "x86_64" or "arm64" (got ${JSON.stringify(architecture)})`);

  const image = r.string("image");
  const dockerfileDirRaw = r.string("dockerfile_dir");
  const dockerfile = r.string("dockerfile");
  const configInImage = r.string("config_in_image");
  const baseImage = r.string("base_image");
  if (baseImage !== undefined) {
    if (image !== undefined)
      fail("base_image", "applies to the image built from a Dockerfile; with aws.image (a prebuilt image) remove it");
    if (!/^[a-z0-9][a-z0-9._/:-]*(@sha256:[0-9a-f]{64})?$/.test(baseImage) || /@/.test(baseImage.replace(/@sha256:[0-9a-f]{64}$/, ""))) {
      fail(
        "base_image",
        `must be an image reference, best pinned by digest, e.g. "public.ecr.aws/docker/library/node:26-bookworm-slim@sha256:<64 hex>" (got ${JSON.stringify(baseImage)})`,
      );
    }
  }
  if (image !== undefined) {
    if (dockerfileDirRaw !== undefined)
      fail("dockerfile_dir", "set either aws.image (a prebuilt image) or aws.dockerfile_dir (build one), not both");
    if (dockerfile !== undefined) fail("dockerfile", "set either aws.image (a prebuilt image) or aws.dockerfile (build one), not both");
  }
  if (dockerfile !== undefined && (path.isAbsolute(dockerfile) || dockerfile.split(/[\\/]/).includes(".."))) {
    fail("dockerfile", "must be a path inside the build context (aws.dockerfile_dir)");
  }
  const dockerfileDir = dockerfileDirRaw === undefined ? undefined : path.resolve(path.dirname(file), dockerfileDirRaw);

  const internalAlb = r.bool("internal_alb") ?? false;
  const accessLogs = r.bool("access_logs") ?? true;
  const rpcPort = r.int("rpc_port", 1, 65535) ?? 9000;
  const controlPort = r.int("control_port", 1, 65535) ?? 9100;
  if (rpcPort === controlPort) fail("control_port", `must differ from aws.rpc_port (${rpcPort})`);
  const healthPort = r.int("health_port", 1, 65535) ?? 9101;
  if (healthPort === rpcPort || healthPort === controlPort)
    fail("health_port", `must differ from aws.rpc_port (${rpcPort}) and aws.control_port (${controlPort})`);
  const logRetentionDays = r.int("log_retention_days", 1, 3653) ?? 30;
  if (!LOG_RETENTION_DAYS.includes(logRetentionDays)) fail("log_retention_days", `must be one of ${LOG_RETENTION_DAYS.join(", ")}`);
  const otlpEndpoint = r.string("otlp_endpoint");
  if (otlpEndpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(otlpEndpoint))
    fail("otlp_endpoint", `must be an http(s) URL such as "http://localhost:4318" (got ${JSON.stringify(otlpEndpoint)})`);
  const tracing = r.string("tracing") ?? (otlpEndpoint !== undefined ? "otlp" : "off");
  if (!(AWS_TRACING as readonly string[]).includes(tracing))
    fail("tracing", `must be one of ${AWS_TRACING.map((t) => `"${t}"`).join(", ")} (got ${JSON.stringify(tracing)})`);
  if (tracing === "otlp" && otlpEndpoint === undefined)
    fail("tracing", `"otlp" sends traces to aws.otlp_endpoint: set it (e.g. "http://collector.internal:4318"), or use "xray" or "off"`);
  if (tracing !== "otlp" && otlpEndpoint !== undefined)
    fail("otlp_endpoint", `is used only with tracing = "otlp" (tracing is ${JSON.stringify(tracing)}): remove one of them`);

  const cpRaw = r.table("controlplane") ?? {};
  checkKeys(cpRaw, CONTROLPLANE_KEYS, "aws.controlplane", file);
  const cp = reader(cpRaw, "controlplane.", fail);
  const cpCpu = cp.int("cpu", 256, 16384) ?? 256;
  const cpMemory = cp.int("memory", 512, 122880) ?? 512;
  checkFargateSize(cpCpu, cpMemory, "controlplane.", fail);

  const permissions = parsePermissions(section["permissions"], "aws.permissions", file);
  const envNames = new Map(Object.keys(config.env).map((k) => [k, "tsweaver.env"]));
  const secrets = parseSecrets(section["secrets"], "aws.secrets", file, envNames);
  const appWideNames = new Map([...envNames, ...Object.keys(secrets).map((k): [string, string] => [k, "aws.secrets"])]);

  const scalingRaw = r.table("scaling") ?? {};
  checkKeys(scalingRaw, SCALING_KEYS, "aws.scaling", file);
  const appScaling = parseScaling(reader(scalingRaw, "scaling.", fail), DEFAULT_SCALING);
  const listenersConfigured = Object.keys(r.table("listeners") ?? {}).length > 0;
  if (appScaling.requestsPerTarget !== undefined && !listenersConfigured)
    fail(
      "scaling.requests_per_target",
      "tracks requests through the load balancer, and this app exports no listener ([aws.listeners.NAME])",
    );

  // Groups: every section must name a real group.
  const groupsRaw = r.table("groups") ?? {};
  const byName = new Map(groups.map((g) => [g.name, g]));
  for (const name of Object.keys(groupsRaw)) {
    if (!byName.has(name)) {
      const hint = groups.map((g) => `${g.name} (${g.components.join(", ")})`).join("; ");
      fail(
        `groups.${name}`,
        `unknown group; groups are named after their first component, e.g. hello/Reverser → hello-reverser. This app's groups: ${hint}`,
      );
    }
  }
  const awsGroups: AwsGroupConfig[] = groups.map((g) => {
    const raw = groupsRaw[g.name] ?? {};
    if (!isTable(raw)) fail(`groups.${g.name}`, "must be a table ([aws.groups.NAME])");
    checkKeys(raw as Record<string, unknown>, GROUP_KEYS, `aws.groups.${g.name}`, file);
    const gr = reader(raw as Record<string, unknown>, `groups.${g.name}.`, fail);
    const min = gr.int("min", 1, 1000) ?? 1;
    const max = gr.int("max", 1, 1000) ?? Math.max(min, 4);
    if (max < min) fail(`groups.${g.name}.max`, `must be at least min (${min})`);
    const cpu = gr.int("cpu", 256, 16384) ?? 256;
    const memory = gr.int("memory", 512, 122880) ?? 512;
    checkFargateSize(cpu, memory, `groups.${g.name}.`, fail);
    const scaling = parseScaling(gr, appScaling);
    if (scaling.requestsPerTarget !== undefined && !listenersConfigured)
      fail(
        `groups.${g.name}.requests_per_target`,
        "tracks requests through the load balancer, and this app exports no listener ([aws.listeners.NAME])",
      );
    const key = `aws.groups.${g.name}`;
    const groupRaw = raw as Record<string, unknown>;
    return {
      name: g.name,
      components: [...g.components],
      min,
      max,
      cpu,
      memory,
      ...scaling,
      permissions: parsePermissions(groupRaw["permissions"], `${key}.permissions`, file),
      secrets: parseSecrets(groupRaw["secrets"], `${key}.secrets`, file, appWideNames),
    };
  });
  if (!awsGroups.some((g) => g.components.includes(MAIN_COMPONENT))) {
    throw new ConfigError(`${file}: the app has no ${MAIN_COMPONENT} component; its entry file must call run(App)`);
  }

  // Listeners.
  const listenersRaw = r.table("listeners") ?? {};
  const reserved = new Map<number, string>([
    [rpcPort, "aws.rpc_port"],
    [controlPort, "aws.control_port"],
    [healthPort, "aws.health_port"],
  ]);
  const names = Object.keys(listenersRaw).sort();
  const partial = names.map((name) => {
    if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(name))
      fail(`listeners.${name}`, "listener names must start with a letter and contain only letters, digits, '-' and '_'");
    const raw = listenersRaw[name];
    if (!isTable(raw)) fail(`listeners.${name}`, "must be a table ([aws.listeners.NAME])");
    checkKeys(raw as Record<string, unknown>, LISTENER_KEYS, `aws.listeners.${name}`, file);
    const lr = reader(raw as Record<string, unknown>, `listeners.${name}.`, fail);
    const certificateArn = lr.string("certificate_arn");
    if (certificateArn !== undefined && !/^arn:aws[a-z-]*:(acm|iam):/.test(certificateArn)) {
      fail(`listeners.${name}.certificate_arn`, "must be an ACM (or IAM server) certificate ARN");
    }
    const redirect = lr.bool("redirect_http");
    if (redirect !== undefined && certificateArn === undefined)
      fail(`listeners.${name}.redirect_http`, "applies only to HTTPS listeners (set certificate_arn)");
    const healthCheckPath = lr.string("health_check_path") ?? "/";
    if (!healthCheckPath.startsWith("/")) fail(`listeners.${name}.health_check_path`, 'must start with "/"');
    const containerPort = lr.int("container_port", 1, 65535);
    if (containerPort !== undefined) {
      const other = reserved.get(containerPort);
      if (other !== undefined) fail(`listeners.${name}.container_port`, `${containerPort} is already used by ${other}`);
      reserved.set(containerPort, `aws.listeners.${name}.container_port`);
    }
    return {
      name,
      port: lr.int("port", 1, 65535) ?? (certificateArn !== undefined ? 443 : 80),
      containerPort,
      public: lr.bool("public") ?? true,
      healthCheckPath,
      deregistrationDelaySeconds: lr.int("deregistration_delay_seconds", 0, 3600) ?? 30,
      certificateArn,
      redirectPort: certificateArn !== undefined && redirect !== false ? 80 : undefined,
    };
  });
  // Default container ports: 8080, 8081, ... in name order, skipping ports already taken.
  let next = 8080;
  const listeners: AwsListenerConfig[] = partial.map((l) => {
    let containerPort = l.containerPort;
    if (containerPort === undefined) {
      while (reserved.has(next)) next++;
      containerPort = next;
      reserved.set(next, `aws.listeners.${l.name}`);
    }
    return { ...l, containerPort };
  });
  const albPorts = new Map<number, string>();
  for (const l of listeners) {
    const taken = albPorts.get(l.port);
    if (taken !== undefined) fail(`listeners.${l.name}.port`, `port ${l.port} is already used by ${taken}`);
    albPorts.set(l.port, `aws.listeners.${l.name}.port`);
  }
  for (const l of listeners) {
    if (l.redirectPort === undefined) continue;
    const taken = albPorts.get(l.redirectPort);
    if (taken !== undefined) {
      fail(
        `listeners.${l.name}.redirect_http`,
        `the HTTP→HTTPS redirect needs port ${l.redirectPort}, already used by ${taken}; set redirect_http = false`,
      );
    }
    albPorts.set(l.redirectPort, `the HTTP→HTTPS redirect of aws.listeners.${l.name}`);
  }

  const keys = new Map<string, string>();
  // Group constructs are named Group<PascalCase>: two groups must not share one.
  for (const g of awsGroups) uniqueKey(keys, `Group${pascalCase(g.name)}`, `group ${g.name}`, file, "the CloudFormation logical id");
  for (const l of listeners) uniqueKey(keys, listenerUrlOutputKey(l.name), `listener ${l.name}`, file, "the stack output");

  const rollout = parseRollout(r.table("rollout") ?? {}, file, fail);
  const alarms = parseAlarms(r.table("alarms") ?? {}, file, fail);
  const dashboard = r.bool("dashboard") ?? true;

  return {
    stack,
    account,
    region,
    vpcId,
    natGateways,
    vpcEndpoints,
    dashboard,
    alarms,
    flowLogs,
    containerInsights,
    architecture: architecture as "x86_64" | "arm64",
    image,
    dockerfileDir,
    dockerfile,
    baseImage,
    configInImage,
    internalAlb,
    accessLogs,
    rpcPort,
    controlPort,
    healthPort,
    logRetentionDays,
    otlpEndpoint,
    tracing: tracing as AwsTracing,
    controlPlane: { cpu: cpCpu, memory: cpMemory },
    groups: awsGroups,
    listeners,
    rollout,
    permissions,
    secrets,
  };
}

/** The autoscaling settings of a group (or, as defaults for every group, of `[aws.scaling]`). */
type GroupScaling = Pick<AwsGroupConfig, "cpuTarget" | "requestsPerTarget" | "loadTarget" | "scaleInProtection">;

/**
 * Production defaults: CPU target tracking at 70% and scale-in protection of busy replicas. Request and
 * load targets depend on the app (what one replica serves well), so they are off until set.
 */
const DEFAULT_SCALING: GroupScaling = { cpuTarget: 70, requestsPerTarget: undefined, loadTarget: undefined, scaleInProtection: true };

/** Scaling keys of one table, each unset one taken from `defaults`. */
function parseScaling(r: ReturnType<typeof reader>, defaults: GroupScaling): GroupScaling {
  return {
    cpuTarget: r.int("cpu_target", 10, 90) ?? defaults.cpuTarget,
    // Per target and minute, as CloudWatch's ALBRequestCountPerTarget counts them.
    requestsPerTarget: r.int("requests_per_target", 1, 1_000_000) ?? defaults.requestsPerTarget,
    loadTarget: r.number("load_target", 0.1, 1_000_000) ?? defaults.loadTarget,
    scaleInProtection: r.bool("scale_in_protection") ?? defaults.scaleInProtection,
  };
}

/** `[aws.rollout]`: steps ascending from 1 to 100 ending at 100, seconds per step, error-rate threshold. */
function parseRollout(raw: Record<string, unknown>, file: string, fail: (key: string, what: string) => never): RolloutEnv {
  checkKeys(raw, ROLLOUT_KEYS, "aws.rollout", file);
  const r = reader(raw, "rollout.", fail);
  const stepsRaw = raw["steps"] ?? [10, 50, 100];
  const valid =
    Array.isArray(stepsRaw) &&
    stepsRaw.length > 0 &&
    stepsRaw.every(
      (v, i) => typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 100 && (i === 0 || v > (stepsRaw[i - 1] as number)),
    ) &&
    stepsRaw[stepsRaw.length - 1] === 100;
  if (!valid)
    fail(
      "rollout.steps",
      `must be percentages from 1 to 100, ascending, the last one 100, e.g. [10, 50, 100] (got ${JSON.stringify(stepsRaw)})`,
    );
  const maxErrorRate = raw["max_error_rate"] ?? 0.05;
  if (typeof maxErrorRate !== "number" || !(maxErrorRate >= 0 && maxErrorRate <= 1)) {
    fail("rollout.max_error_rate", `must be a number from 0 to 1, e.g. 0.05 for 5% (got ${JSON.stringify(maxErrorRate)})`);
  }
  return {
    steps: stepsRaw as number[],
    stepSeconds: r.int("step_seconds", 0, 86_400) ?? 60,
    maxErrorRate: maxErrorRate as number,
    healthTimeoutSeconds: r.int("health_timeout_seconds", 10, 86_400) ?? 600,
  };
}

const ALARM_KEYS = ["error_rate", "p99_ms", "alb_5xx", "reconcile_errors", "topic_arn"];

function parseAlarms(raw: Record<string, unknown>, file: string, fail: (key: string, what: string) => never): AwsAlarms {
  checkKeys(raw, ALARM_KEYS, "aws.alarms", file);
  const r = reader(raw, "alarms.", fail);
  const errorRate = raw["error_rate"];
  if (errorRate !== undefined && (typeof errorRate !== "number" || !(errorRate > 0 && errorRate <= 1))) {
    fail("alarms.error_rate", `must be a number above 0 and at most 1, e.g. 0.05 for 5% (got ${JSON.stringify(errorRate)})`);
  }
  const topicArn = r.string("topic_arn");
  if (topicArn !== undefined && !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$/.test(topicArn)) {
    fail("alarms.topic_arn", `must be an SNS topic ARN such as "arn:aws:sns:us-east-1:123456789012:ops" (got ${JSON.stringify(topicArn)})`);
  }
  return {
    errorRate: errorRate as number | undefined,
    p99Ms: r.int("p99_ms", 1, 3_600_000),
    alb5xx: r.int("alb_5xx", 1, 1_000_000_000),
    reconcileErrors: r.int("reconcile_errors", 1, 1_000_000),
    topicArn,
  };
}

/** Typed getters for one TOML table; `prefix` is the key path below `aws.` used in messages. */
function reader(table: Record<string, unknown>, prefix: string, fail: (key: string, what: string) => never) {
  return {
    string(key: string): string | undefined {
      const v = table[key];
      if (v === undefined) return undefined;
      if (typeof v !== "string" || v === "") fail(prefix + key, `must be a non-empty string (got ${JSON.stringify(v)})`);
      return v as string;
    },
    bool(key: string): boolean | undefined {
      const v = table[key];
      if (v === undefined) return undefined;
      if (typeof v !== "boolean") fail(prefix + key, `must be true or false (got ${JSON.stringify(v)})`);
      return v as boolean;
    },
    int(key: string, min: number, max: number): number | undefined {
      const v = table[key];
      if (v === undefined) return undefined;
      if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
        fail(prefix + key, `must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
      }
      return v as number;
    },
    number(key: string, min: number, max: number): number | undefined {
      const v = table[key];
      if (v === undefined) return undefined;
      if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) {
        fail(prefix + key, `must be a number from ${min} to ${max} (got ${JSON.stringify(v)})`);
      }
      return v as number;
    },
    table(key: string): Record<string, unknown> | undefined {
      const v = table[key];
      if (v === undefined) return undefined;
      if (!isTable(v)) fail(prefix + key, `must be a table ([aws.${prefix}${key}])`);
      return v as Record<string, unknown>;
    },
  };
}

function checkFargateSize(cpu: number, memory: number, prefix: string, fail: (key: string, what: string) => never): void {
  const allowed = FARGATE_SIZES.get(cpu);
  if (allowed === undefined) fail(`${prefix}cpu`, `must be a Fargate CPU size: ${[...FARGATE_SIZES.keys()].join(", ")}`);
  if (!allowed!.includes(memory)) {
    const list =
      allowed!.length > 4
        ? `${allowed![0]} to ${allowed![allowed!.length - 1]} in steps of ${allowed![1]! - allowed![0]!}`
        : allowed!.join(", ");
    fail(`${prefix}memory`, `Fargate tasks with cpu = ${cpu} take memory ${list} (MiB), got ${memory}`);
  }
}

function uniqueKey(keys: Map<string, string>, key: string, what: string, file: string, kind: string): void {
  const other = keys.get(key);
  if (other !== undefined) throw new ConfigError(`${file}: ${what} and ${other} both map to ${kind} ${key}; rename one`);
  keys.set(key, what);
}

function range(from: number, to: number, step: number): number[] {
  const out: number[] = [];
  for (let v = from; v <= to; v += step) out.push(v);
  return out;
}
