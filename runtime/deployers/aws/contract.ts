/**
 * The contract between the CDK stack (infra/), the control plane, the task agent and the `tsweaver aws`
 * CLI: names, container commands, task environment, stack outputs, Cloud Map attributes, resource tags
 * and how a version's resources are named. Plain data and pure functions only (no AWS SDK, no
 * aws-cdk-lib, no config parsing), so every side can import it. docs/aws.md documents it.
 */
import { createHash } from "node:crypto";
import { MAIN_COMPONENT } from "../../core/config.js";

export { MAIN_COMPONENT };

/**
 * ECS service name and Cloud Map service name of the control plane. The underscore keeps it apart from
 * every group name (group names are `[a-z0-9-]`).
 */
export const CONTROLPLANE_NAME = "tsweaver_controlplane";

/** Container command (after the image's `tsweaver` entrypoint) of every group task. */
export const AGENT_COMMAND: readonly string[] = ["aws", "agent"];
/** Container command (after the image's `tsweaver` entrypoint) of the control plane task. */
export const CONTROLPLANE_COMMAND: readonly string[] = ["aws", "controlplane"];
/** Name of the container in every group task. */
export const AGENT_CONTAINER = "agent";
/** Name of the container in the control plane task. */
export const CONTROLPLANE_CONTAINER = "controlplane";
/**
 * Name of the collector sidecar in group tasks with `[aws] tracing = "xray"`: `tsweaver aws dashboard`
 * tells from a task definition that its traces are in X-Ray.
 */
export const COLLECTOR_CONTAINER = "otel-collector";
/** The agent container's variable that names the OTLP endpoint its weavelet exports traces to (the collector's, or `otlp_endpoint`). */
export const OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT";

/**
 * The group container's health check (ECS `healthCheck.command`): asks the agent's loopback health
 * endpoint, which answers 200 only while the weavelet reports HEALTHY. Plain `node -e` (CommonJS) so it
 * needs nothing from the image but node, wherever the tsweaver CLI is installed in it.
 */
export function healthCheckCommand(port: number): string[] {
  const script =
    `const r=require("node:http").get({host:"127.0.0.1",port:${port},path:"/health",timeout:4000},` +
    `(res)=>process.exit(res.statusCode===200?0:1));` +
    `r.on("timeout",()=>process.exit(1));r.on("error",()=>process.exit(1));`;
  return ["CMD", "node", "-e", script];
}

/** Environment variables the stack sets on the tasks. */
export const ENV = {
  /** App name (`[tsweaver] name`). Agent and control plane. */
  APP: "TSWEAVER_APP",
  /** Deployment id: the stack name. Agent and control plane. */
  DEPLOYMENT: "TSWEAVER_DEPLOYMENT",
  /** Version id of the tasks (see {@link versionId}). Agent and control plane. */
  VERSION: "TSWEAVER_VERSION",
  /** Path of weaver.toml inside the image (relative to the working directory). Agent only. */
  CONFIG: "TSWEAVER_CONFIG",
  /** Cloud Map HTTP namespace name (DiscoverInstances' NamespaceName). Agent only. */
  NAMESPACE: "TSWEAVER_NAMESPACE",
  /** Cloud Map service the control plane registers itself in (`tsweaver_controlplane`). Agent only. */
  CONTROLPLANE_SERVICE: "TSWEAVER_CONTROLPLANE_SERVICE",
  /** Control plane port (decimal). Control plane only (agents find it in Cloud Map). */
  CONTROL_PORT: "TSWEAVER_CONTROL_PORT",
  /** Weavelet RPC port (decimal). Agent and control plane. */
  RPC_PORT: "TSWEAVER_RPC_PORT",
  /**
   * The per-deployment shared secret (value, injected by ECS from Secrets Manager). Agent and control
   * plane; never passed on to the weavelet.
   */
  SECRET: "TSWEAVER_DEPLOYMENT_SECRET",
  /** ARN of that secret: the control plane re-reads it (current and previous value) to follow rotations. Control plane only. */
  SECRET_ARN: "TSWEAVER_DEPLOYMENT_SECRET_ARN",
  /**
   * ARN of the deployment CA's secret (created empty by the stack; the control plane stores the CA in it
   * on first start and signs the agents' certificates with it). Control plane only.
   */
  CA_SECRET_ARN: "TSWEAVER_CA_SECRET_ARN",
  /**
   * Comma-separated names of the app's secret environment variables (weaver.toml's `secrets`), which ECS
   * injects into the agent's container: the agent passes these, and no other secret, on to the weavelet.
   * Agent only; unset when the group has none.
   */
  APP_SECRETS: "TSWEAVER_APP_SECRETS",
  /**
   * Loopback port the agent answers its weavelet's health on (decimal), for the container health check
   * ({@link healthCheckCommand}). Agent only.
   */
  HEALTH_PORT: "TSWEAVER_HEALTH_PORT",
  /**
   * The user the agent runs the app as when the agent itself runs as root (group tasks do: the stack sets
   * the container's user to 0): a name in the image's /etc/passwd, or `uid:gid`, never root. The image
   * declares it (infra/Dockerfile: `node`, its own USER); default `node`. Agent only.
   */
  APP_USER: "TSWEAVER_APP_USER",
  /** The group this task hosts. Agent only. */
  GROUP: "TSWEAVER_GROUP",
  /** Comma-separated components of that group. Agent only. */
  COMPONENTS: "TSWEAVER_COMPONENTS",
  /** ECS cluster ARN. Control plane only. */
  CLUSTER: "TSWEAVER_CLUSTER",
  /** Cloud Map namespace id (`ns-...`). Control plane only. */
  NAMESPACE_ID: "TSWEAVER_NAMESPACE_ID",
  /** Cloud Map service id (`srv-...`) of `tsweaver_controlplane`, for its own RegisterInstance. Control plane only. */
  CONTROLPLANE_SERVICE_ID: "TSWEAVER_CONTROLPLANE_SERVICE_ID",
  /** JSON {@link GroupsEnv}: this version's groups. Control plane only. */
  GROUPS: "TSWEAVER_GROUPS",
  /** JSON {@link ListenersEnv}: every ALB listener. Control plane only ("{}" without listeners). */
  LISTENERS: "TSWEAVER_LISTENERS",
  /** JSON {@link RolloutEnv}: how traffic moves to this version. Control plane only. */
  ROLLOUT: "TSWEAVER_ROLLOUT",
  /**
   * JSON array of the names of the stack's CloudWatch alarms (`[aws.alarms]`): one in ALARM during a
   * rollout step rolls the new version back. Control plane only; unset or "[]" without alarms.
   */
  ALARMS: "TSWEAVER_ALARMS",
  /** VPC id (for the target groups the control plane creates). Control plane only. */
  VPC_ID: "TSWEAVER_VPC_ID",
  /** Comma-separated subnet ids group tasks run in (for CreateService). Control plane only. */
  SUBNETS: "TSWEAVER_SUBNETS",
  /** Security group id of group tasks (for CreateService). Control plane only. */
  SECURITY_GROUP: "TSWEAVER_WEAVELET_SECURITY_GROUP",
  /** "ENABLED" or "DISABLED": whether group tasks get a public IP (for CreateService). Control plane only. */
  ASSIGN_PUBLIC_IP: "TSWEAVER_ASSIGN_PUBLIC_IP",
} as const;

/** Value of {@link ENV.GROUPS}, keyed by group name: this version's groups. */
export type GroupsEnv = Record<
  string,
  {
    /** Task definition ARN (with revision) of the group's tasks in this version. */
    readonly taskDefinition: string;
    /** Cloud Map service id (`srv-...`) replicas of every version are registered in. */
    readonly discoveryServiceId: string;
    readonly components: readonly string[];
    readonly min: number;
    readonly max: number;
    /** Average CPU utilization (percent) target tracking aims for. */
    readonly cpuTarget: number;
    /** ALB requests per target per minute target tracking aims for, on each listener the group serves (unset: none). */
    readonly requestsPerTarget?: number;
    /** Served calls per second per replica target tracking aims for ({@link METRICS.LOAD}; unset: none). */
    readonly loadTarget?: number;
    /** Whether busy replicas are protected from scale-in (unset: true). */
    readonly scaleInProtection?: boolean;
  }
>;

/** Value of {@link ENV.LISTENERS}, keyed by listener name. */
export type ListenersEnv = Record<
  string,
  {
    /** URL users reach the listener at (ALB DNS name). */
    readonly url: string;
    /** ALB port. */
    readonly port: number;
    /** Port the weavelet listens on; `getListenerAddress` answers `<task ip>:<containerPort>`. */
    readonly containerPort: number;
    /** The ALB listener; the control plane owns one weighted-forward rule on it. */
    readonly listenerArn: string;
    /** Health check path of each version's target group. */
    readonly healthCheckPath: string;
    /** Deregistration delay of each version's target group (seconds): in-flight requests finish within it. */
    readonly deregistrationDelaySeconds: number;
  }
>;

/** Value of {@link ENV.ROLLOUT} (`[aws.rollout]`). */
export interface RolloutEnv {
  /** Percentages of traffic on the new version, ascending, the last one 100. */
  readonly steps: readonly number[];
  /** How long each step lasts while the new version stays healthy. */
  readonly stepSeconds: number;
  /** Largest error rate (errors / calls of the new version's component methods) a step tolerates. */
  readonly maxErrorRate: number;
  /** How long the new version may take to become healthy before the rollout is rolled back. */
  readonly healthTimeoutSeconds: number;
}

/** CloudFormation output keys of the stack (what `tsweaver aws` reads with DescribeStacks). */
export const OUTPUTS = {
  APP: "AppName",
  DEPLOYMENT: "DeploymentId",
  /** The version the stack deploys (the newest; older ones may still run until retired). */
  VERSION: "Version",
  CLUSTER_NAME: "ClusterName",
  CLUSTER_ARN: "ClusterArn",
  CONTROLPLANE_SERVICE: "ControlPlaneServiceName",
  NAMESPACE_NAME: "NamespaceName",
  NAMESPACE_ID: "NamespaceId",
  /** Name of the group hosting `tsweaver/Main` (the one `activate` raises). */
  MAIN_GROUP: "MainGroup",
  /** JSON {@link GroupsOutput}. */
  GROUPS: "Groups",
  /** JSON {@link ListenersOutput} ("{}" without listeners). */
  LISTENERS: "Listeners",
  LOG_GROUP: "LogGroupName",
  SECRET_ARN: "DeploymentSecretArn",
  /** Only when listeners are configured. */
  LOAD_BALANCER_DNS: "LoadBalancerDnsName",
  /** Only when listeners are configured. */
  LOAD_BALANCER_ARN: "LoadBalancerArn",
} as const;

/** Value of the {@link OUTPUTS.GROUPS} output (kept small: CloudFormation outputs hold 4096 characters). */
export type GroupsOutput = Record<string, { readonly discoveryServiceId: string; readonly min: number; readonly max: number }>;
/** Value of the {@link OUTPUTS.LISTENERS} output. */
export type ListenersOutput = Record<string, { readonly url: string; readonly listenerArn: string }>;

/** Output key of a listener's URL: `hello` → `UrlHello`. */
export function listenerUrlOutputKey(listener: string): string {
  return `Url${pascalCase(listener)}`;
}

/** Cloud Map attributes the control plane sets on every replica instance. */
export const ATTR = {
  IPV4: "AWS_INSTANCE_IPV4",
  PORT: "AWS_INSTANCE_PORT",
  TASK_ARN: "TSWEAVER_TASK_ARN",
  /** The replica's version: agents discover only instances of their own version (QueryParameters). */
  VERSION: "TSWEAVER_VERSION",
  WEAVELET: "TSWEAVER_WEAVELET",
  GROUP: "TSWEAVER_GROUP",
} as const;

/**
 * Tags on the resources the control plane creates per version (ECS services, target groups, the
 * listener rule). The rollout's state lives in them and in the rule's weights, so a restarted control
 * plane (or the CLI) reads it back from AWS.
 */
export const TAGS = {
  DEPLOYMENT: "tsweaver:deployment",
  VERSION: "tsweaver:version",
  GROUP: "tsweaver:group",
  LISTENER: "tsweaver:listener",
  /** Replica floor and maximum of a version's group (its activation floor and autoscaling bounds). */
  MIN: "tsweaver:min",
  MAX: "tsweaver:max",
  /** "true" on the service of a version's main group (the one `activate` raises). */
  MAIN: "tsweaver:main",
  /** On a version's main service: {@link RolloutPhase} of the rollout to this version. */
  ROLLOUT: "tsweaver:rollout",
  /** On a version's main service: when the current phase began (ms since the epoch). */
  ROLLOUT_SINCE: "tsweaver:rollout-since",
  /** On a version's main service: why it was rolled back. */
  ROLLOUT_REASON: "tsweaver:rollout-reason",
  /** On a version's main service: `promote` or `rollback`, put there by `tsweaver aws rollout`. */
  ROLLOUT_REQUEST: "tsweaver:rollout-request",
  /** On the listener rule the control plane owns. */
  RULE: "tsweaver:rule",
} as const;

/**
 * Where a rollout to a version stands: `raising` (starting its groups, waiting for health), `step-N`
 * (N-th traffic step), `draining` (100%, the old version finishing its in-flight requests), `live`
 * (the old version retired), `rolled-back` (traffic is back on the old version; this one is retired),
 * `retiring` (superseded while it still had traffic: taken out of the listener rules, draining).
 */
export type RolloutPhase = "raising" | `step-${number}` | "draining" | "live" | "rolled-back" | "retiring";

/** Priority of the listener rule the control plane owns (forwards everything, weighted by version). */
export const RULE_PRIORITY = 1;

const VERSION_RE = /^v[0-9a-f]{10}$/;

/**
 * The version id of what the tasks run: a hash of the image (asset hash or URI), the effective app
 * config and the app binary. Any change to code or config is a new version.
 */
export function versionId(parts: { readonly image: string; readonly config: string; readonly binary: string }): string {
  const h = createHash("sha256");
  for (const p of [parts.image, parts.config, parts.binary]) h.update(String(p.length)).update(":").update(p);
  return `v${h.digest("hex").slice(0, 10)}`;
}

/** The ECS service of a group in a version: `hello-reverser-v0123456789`. */
export function versionedServiceName(group: string, version: string): string {
  return `${group}-${version}`;
}

/** The group and version of a versioned service name; undefined for any other service (the control plane's). */
export function parseServiceName(name: string): { group: string; version: string } | undefined {
  const i = name.lastIndexOf("-");
  if (i <= 0) return undefined;
  const version = name.slice(i + 1);
  return VERSION_RE.test(version) ? { group: name.slice(0, i), version } : undefined;
}

/**
 * A version's target group of a listener. Target group names are at most 32 characters and unique per
 * account and region, so the deployment and listener enter as a hash: `tw-<8 hex>-<version>`.
 */
export function targetGroupName(deployment: string, listener: string, version: string): string {
  const h = createHash("sha256").update(`${deployment}/${listener}`).digest("hex").slice(0, 8);
  return `tw-${h}-${version}`;
}

/** `hello-reverser` → `HelloReverser` (CloudFormation logical ids and output keys are alphanumeric). */
export function pascalCase(name: string): string {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter((p) => p !== "")
    .map((p) => p[0]!.toUpperCase() + p.slice(1))
    .join("");
}

/** The default stack name (and deployment id) of an app: `tsweaver-<app>` (`_` becomes `-`). */
export function defaultStackName(app: string): string {
  return `tsweaver-${app.replace(/_/g, "-")}`;
}

/**
 * The CloudWatch metrics the agents publish as Embedded Metric Format lines on their task's stdout
 * (runtime/deployers/aws/emf.ts); the stack's dashboard and alarms read them by these names.
 */
export const METRICS = {
  NAMESPACE: "tsweaver",
  /** Calls a weavelet made, by caller → component.method (the call graph's edges). */
  CALLS: "Calls",
  ERRORS: "Errors",
  LATENCY: "Latency",
  /** Remote calls a group served: per group (dashboard) and per component.method. */
  SERVED_CALLS: "ServedCalls",
  SERVED_ERRORS: "ServedErrors",
  SERVED_LATENCY: "ServedLatency",
  /** Remote calls per second one replica served over the last report: its average is the group's load per replica. */
  LOAD: "ServedCallsPerSecond",
  /** Failed reconcile passes of the control plane. */
  RECONCILE_ERRORS: "ReconcileErrors",
  /** Replicas of a group and version registered in Cloud Map, as the control plane's reconcile listed them. */
  REGISTERED_REPLICAS: "RegisteredReplicas",
  DIM: {
    APP: "App",
    GROUP: "Group",
    VERSION: "Version",
    COMPONENT: "Component",
    METHOD: "Method",
    CALLER: "Caller",
    /** An app metric's kind (COUNTER, GAUGE, HISTOGRAM): ListMetrics does not say, and the dashboard charts each kind its own way. */
    KIND: "Kind",
  },
} as const;
