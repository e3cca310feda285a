/**
 * Creates in the emulator what `cdk deploy` creates for an app: the real stack (infra/), synthesized
 * in-process from the app's weaver.toml, then CreateStack'd into the emulator's CloudFormation.
 *
 * Why this shape (moto 5.2.1): moto's CloudFormation creates the VPC, subnets, security groups, IAM
 * roles and policies, log groups, the ECS cluster, task definitions and services, the ALB, its
 * listeners and target groups straight from the synthesized template, with the stack's real names,
 * task environment and outputs. It has no CloudFormation support for
 *   - AWS::ServiceDiscovery::HttpNamespace / ::Service and AWS::SecretsManager::Secret: created here
 *     through their APIs *before* the stack, and every Ref/Fn::GetAtt to them in the template replaced
 *     by the real id/ARN (so the task environment and the outputs carry the emulator's real ids);
 *   - AWS::ApplicationAutoScaling::ScalableTarget / ::ScalingPolicy, AWS::EC2::SecurityGroupEgress and
 *     AWS::CloudWatch::Alarm: taken out of the template and created through their APIs *after* the
 *     stack (an alarm with PutMetricAlarm under the name the template gives it, again on every update,
 *     as CloudFormation updates an alarm whose metric changed with the version).
 * Other adjustments, each because of the emulator:
 *   - the CDK bootstrap version parameter and its rule are removed (no bootstrap stack in the emulator);
 *   - on an update (updateAppResources), task definitions get new logical ids (moto's update path for a
 *     changed task definition loses its container settings; its create path does not), and services
 *     are pointed at the new revision's ARN (moto sets only the family);
 *   - every container gets a container-level `Memory` equal to the task's (a Fargate container without
 *     one may use the whole task's memory, so this changes nothing on AWS; moto's RunTask fails without);
 *   - moto's CloudFormation keeps only family, containers, volumes and memory of a task definition
 *     (network mode becomes "bridge", no cpu/roles) and only name, cluster, task definition and desired
 *     count of a service (no launch type, network configuration or deployment configuration). That
 *     is lucky rather than a loss: moto 5.2.1's RunTask crashes on awsvpc task definitions
 *     (`NetworkInterface` has no `private_dns_name`), so do not register awsvpc task definitions in it.
 * The app's weaver.toml is rewritten to a temp copy (the "effective config") that pins the stack name
 * (unique per test, so test files can share one emulator), drops settings that only make sense on a real
 * account (`vpc_id`, `account`, `region`, image build settings) and applies the test's overrides. The
 * processes started by the Fargate simulator read that copy: TSWEAVER_CONFIG is `weaver.toml`, relative
 * to `workdir`, the "image's working directory".
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  ApplicationAutoScalingClient,
  DeregisterScalableTargetCommand,
  DescribeScalableTargetsCommand,
  PutScalingPolicyCommand,
  RegisterScalableTargetCommand,
  type ServiceNamespace,
  type ScalableDimension,
} from "@aws-sdk/client-application-auto-scaling";
import {
  CloudFormationClient,
  CreateStackCommand,
  DeleteStackCommand,
  DescribeStacksCommand,
  ListStackResourcesCommand,
  UpdateStackCommand,
  type StackResourceSummary,
} from "@aws-sdk/client-cloudformation";
import { CloudWatchClient, DeleteAlarmsCommand, PutMetricAlarmCommand, type PutMetricAlarmCommandInput } from "@aws-sdk/client-cloudwatch";
import { AuthorizeSecurityGroupEgressCommand, EC2Client } from "@aws-sdk/client-ec2";
import {
  DescribeTaskDefinitionCommand,
  ECSClient,
  ListTasksCommand,
  StopTaskCommand,
  UpdateServiceCommand,
  ListServicesCommand,
} from "@aws-sdk/client-ecs";
import { CreateSecretCommand, DeleteSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import {
  CreateHttpNamespaceCommand,
  CreateServiceCommand as CreateDiscoveryServiceCommand,
  DeleteNamespaceCommand,
  DeleteServiceCommand as DeleteDiscoveryServiceCommand,
  DeregisterInstanceCommand,
  GetNamespaceCommand,
  GetOperationCommand,
  GetServiceCommand as GetDiscoveryServiceCommand,
  ListInstancesCommand,
  ListServicesCommand as ListDiscoveryServicesCommand,
  ServiceDiscoveryClient,
} from "@aws-sdk/client-servicediscovery";
import { App } from "aws-cdk-lib";
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import { groupsOf, loadConfig, type AppConfig } from "../../runtime/core/config.js";
import { parseAwsConfig, type AwsConfig } from "../../runtime/deployers/aws/config.js";
import { CONTROLPLANE_NAME, ENV, OUTPUTS, type GroupsEnv, type ListenersEnv } from "../../runtime/deployers/aws/contract.js";
import { listAppComponents } from "../../runtime/core/components.js";
import { WeaverStack } from "../../infra/stack.js";
import { ROOT } from "../support/index.js";
import { clientConfig, DEFAULT_REGION, sleep, useEmulator } from "./moto.js";

/** The image a stack built here names (never pulled: the Fargate simulator runs the local build). */
export const EMULATED_IMAGE = "tsweaver-emulated:latest";

/** The hello example's config: the app most AWS tests deploy. */
export const HELLO_CONFIG = path.join(ROOT, "examples/hello/weaver.toml");
/** Fast control-plane and agent loops for the emulated tasks (`taskEnv`); production defaults are seconds. */
export const FAST_LOOPS = { TSWEAVER_RECONCILE_MS: "300", TSWEAVER_DISCOVERY_MS: "200", TSWEAVER_HEARTBEAT_MS: "1000" };

export interface AppResourcesOptions {
  /** The app's weaver.toml. */
  readonly configFile: string;
  /** Stack name (= deployment id, cluster, namespace). Default: unique, `tsw-<app>-<random>`. */
  readonly stack?: string;
  /** Emulator endpoint. Default: {@link useEmulator} (AWS_ENDPOINT_URL, or a moto server for this process). */
  readonly endpoint?: string;
  /** `[aws] rpc_port`. */
  readonly rpcPort?: number;
  /** `[aws] control_port`. */
  readonly controlPort?: number;
  /**
   * Listeners to add or change (`[aws.listeners.NAME]`, snake_case keys as in weaver.toml), e.g.
   * `{ hello: { container_port: 18080, health_check_path: "/healthz" } }`.
   */
  readonly listeners?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** Group settings to add or change (`[aws.groups.G]`), e.g. `{ "hello-reverser": { min: 2 } }`. */
  readonly groups?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** Any other `[aws]` keys to set (applied last, shallowly). */
  readonly aws?: Readonly<Record<string, unknown>>;
  /** The app's components; default: listed by the app itself (`TSWEAVER_LIST_COMPONENTS=1 node <binary>`). */
  readonly components?: readonly string[];
  /**
   * Synthesizes the stack of the effective weaver.toml (its path is given) and returns its template, in
   * place of this repository's WeaverStack in-process: e.g. a scaffolded project's own CDK app, with the
   * construct of the installed package.
   */
  readonly synth?: (configFile: string) => CfnTemplate | Promise<CfnTemplate>;
}

/** A resource of the created stack (or created through its API on the stack's behalf). */
export interface CreatedResource {
  readonly type: string;
  /** What `Ref` gives: the id, name or ARN. */
  readonly physicalId: string;
}

export interface TaskDefinitionInfo {
  readonly arn: string;
  readonly family: string;
  readonly container: string;
  readonly command: readonly string[];
  /** The container's `environment` (the secret is not in it: it comes through `secrets`). */
  readonly env: Readonly<Record<string, string>>;
  /** Container `secrets`: variable name → valueFrom (a Secrets Manager ARN). */
  readonly secrets: Readonly<Record<string, string>>;
}

export interface AppResources {
  readonly endpoint: string;
  readonly region: string;
  readonly stack: string;
  readonly app: string;
  /** The version the stack deploys (its `Version` output). */
  readonly version: string;
  /** The effective weaver.toml (a temp copy with the stack name and overrides); pass it to `tsweaver aws ...`. */
  readonly configFile: string;
  /** The "image's working directory" for the Fargate simulator: TSWEAVER_CONFIG is relative to it. */
  readonly workdir: string;
  /** TSWEAVER_CONFIG of every task (`weaver.toml`). */
  readonly configInImage: string;
  readonly config: AppConfig;
  /** The validated `[aws]` section of the effective config, as the stack saw it. */
  readonly aws: AwsConfig;
  readonly components: readonly string[];
  /** DescribeStacks outputs. */
  readonly outputs: Readonly<Record<string, string>>;
  readonly clusterName: string;
  readonly clusterArn: string;
  readonly namespaceName: string;
  readonly namespaceId: string;
  readonly mainGroup: string;
  readonly logGroup: string;
  readonly secretArn: string;
  /** The deployment secret's value (what ECS would inject as TSWEAVER_DEPLOYMENT_SECRET). */
  readonly secret: string;
  /** TSWEAVER_GROUPS of the control plane task, parsed. */
  readonly groups: GroupsEnv;
  /** TSWEAVER_LISTENERS of the control plane task, parsed. */
  readonly listeners: ListenersEnv;
  readonly controlPlane: TaskDefinitionInfo & { readonly service: string; readonly discoveryServiceId: string };
  /** Task definition of each group's agent, by group name. */
  readonly agents: Readonly<Record<string, TaskDefinitionInfo>>;
  /** Every resource by logical id, including those created through APIs. */
  readonly resources: Readonly<Record<string, CreatedResource>>;
  /** The template as it was CreateStack'd. */
  readonly template: CfnTemplate;
  /** Every scalable target registered for the stack (`service/<cluster>/<group>`). */
  readonly scalableTargets: readonly string[];
  /** Milliseconds spent per phase (config, synth, preCreate, createStack or updateStack, postCreate, describe). */
  readonly timings: Readonly<Record<string, number>>;
  /** Values of the resources created through their APIs (logical id → Ref and attributes), reused by updates. */
  readonly literal: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** {@link deleteAppResources} for these resources. */
  delete(): Promise<string[]>;
}

interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  DependsOn?: string | string[];
  [key: string]: unknown;
}
export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
  Outputs?: Record<string, { Value: unknown; Description?: string }>;
  Parameters?: Record<string, { Type: string; Default?: unknown }>;
  Rules?: Record<string, unknown>;
  [key: string]: unknown;
}

/** Resource types taken out of the template and created through their APIs after the stack. */
const POST_CREATED = [
  "AWS::ApplicationAutoScaling::ScalableTarget",
  "AWS::ApplicationAutoScaling::ScalingPolicy",
  "AWS::EC2::SecurityGroupEgress",
  "AWS::CloudWatch::Alarm",
];
/** `[aws]` keys that only make sense on a real account, or for building an image. */
const DROPPED_AWS_KEYS = ["vpc_id", "account", "region", "image", "dockerfile_dir", "dockerfile", "config_in_image", "access_logs"];

/** A stack name no other test uses: `tsw-<app>-<8 hex>`. */
export function uniqueStackName(app = "app"): string {
  const base = `tsw-${app.replace(/[^A-Za-z0-9-]/g, "-")}`.slice(0, 40);
  return `${base}-${randomBytes(4).toString("hex")}`;
}

const componentCache = new Map<string, readonly string[]>();

/** The app's components, listed by the app itself (memoized per binary, args and env). */
export function appComponents(config: AppConfig): readonly string[] {
  const key = JSON.stringify([config.binary, config.args, config.env]);
  let c = componentCache.get(key);
  if (c === undefined) {
    c = listAppComponents(config);
    componentCache.set(key, c);
  }
  return c;
}

/**
 * Writes the effective weaver.toml of a test deployment into a fresh temp dir: the original with
 * `[tsweaver] binary` made absolute and the `[aws]` section adjusted (see the file comment).
 */
export function writeEffectiveConfig(
  configFile: string,
  stack: string,
  opts: Omit<AppResourcesOptions, "configFile" | "stack" | "endpoint" | "components"> = {},
  /** Where to write it: a directory and file name (then `config_in_image` is that name). Default: a fresh temp dir, `weaver.toml`. */
  target?: { readonly dir: string; readonly name: string },
): string {
  const abs = path.resolve(configFile);
  const original = loadConfig(abs); // validates, and gives the absolute binary path
  const doc = parseToml(readFileSync(abs, "utf8")) as Record<string, any>;
  doc["tsweaver"] = { ...(doc["tsweaver"] ?? {}), binary: original.binary };
  const aws: Record<string, any> = { ...(doc["aws"] ?? {}) };
  for (const k of DROPPED_AWS_KEYS) delete aws[k];
  aws["stack"] = stack;
  aws["image"] = EMULATED_IMAGE;
  aws["config_in_image"] = target?.name ?? "weaver.toml";
  if (opts.rpcPort !== undefined) aws["rpc_port"] = opts.rpcPort;
  if (opts.controlPort !== undefined) aws["control_port"] = opts.controlPort;
  for (const [key, extra] of [
    ["listeners", opts.listeners],
    ["groups", opts.groups],
  ] as const) {
    if (extra === undefined) continue;
    const table: Record<string, any> = { ...(aws[key] ?? {}) };
    for (const [name, settings] of Object.entries(extra)) table[name] = { ...(table[name] ?? {}), ...settings };
    aws[key] = table;
  }
  Object.assign(aws, opts.aws ?? {});
  doc["aws"] = aws;
  const dir = target?.dir ?? mkdtempSync(path.join(os.tmpdir(), `tsweaver-aws-${stack}-`));
  const file = path.join(dir, target?.name ?? "weaver.toml");
  writeFileSync(file, `# Effective config of test deployment ${stack}, from ${abs}\n${stringifyToml(doc)}\n`);
  return file;
}

/** Synthesizes the app's stack in-process (what `cdk synth -c config=<file>` produces, without cdk-nag). */
export function synthesize(config: AppConfig, components: readonly string[]): { template: CfnTemplate; aws: AwsConfig; stackName: string } {
  const cdkJson = JSON.parse(readFileSync(path.join(ROOT, "cdk.json"), "utf8")) as { context?: Record<string, unknown> };
  const outdir = mkdtempSync(path.join(os.tmpdir(), "tsweaver-aws-synth-"));
  try {
    // CDK's own template validation (a WebAssembly engine, seconds per process) is the infra tests' job.
    const app = new App({ outdir, context: cdkJson.context ?? {}, builtinCloudFormationValidation: false });
    const stack = new WeaverStack(app, { config, components, projectRoot: ROOT });
    const assembly = app.synth();
    const template = assembly.getStackByName(stack.stackName).template as CfnTemplate;
    return { template: JSON.parse(JSON.stringify(template)) as CfnTemplate, aws: stack.aws, stackName: stack.stackName };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** The stack of an app synthesized by `synth` (e.g. another project's CDK app), with the `[aws]` config it saw. */
async function synthesizeWith(
  synth: NonNullable<AppResourcesOptions["synth"]>,
  configFile: string,
  config: AppConfig,
  components: readonly string[],
): Promise<{ template: CfnTemplate; aws: AwsConfig; stackName: string }> {
  const aws = parseAwsConfig(config, groupsOf(config, components));
  return { template: await synth(configFile), aws, stackName: aws.stack };
}

/**
 * Creates everything the app's stack creates, in the emulator, with the stack's names, task environment
 * and outputs. Stack names are unique by default, so tests running in parallel do not meet.
 */
export function createAppResources(opts: AppResourcesOptions): Promise<AppResources> {
  return applyAppResources(opts, undefined);
}

/**
 * What a later `cdk deploy` of the same stack does: synthesizes the app's stack from `opts` (a new
 * config: a new version) and UpdateStack's the emulator's stack with the new template. Resources that
 * stay in the template are kept (those created through their APIs keep their ids), new ones are
 * created; the new effective config is written next to the previous one (`weaver-<n>.toml`, its
 * `config_in_image`), so tasks of the previous version keep reading theirs.
 */
export function updateAppResources(previous: AppResources, opts: Omit<AppResourcesOptions, "stack" | "endpoint">): Promise<AppResources> {
  return applyAppResources({ ...opts, stack: previous.stack, endpoint: previous.endpoint }, previous);
}

let effectiveConfigs = 0;

async function applyAppResources(opts: AppResourcesOptions, previous: AppResources | undefined): Promise<AppResources> {
  let lapStart = Date.now();
  const timings: Record<string, number> = {};
  const lap = (phase: string): void => {
    const now = Date.now();
    timings[phase] = now - lapStart;
    lapStart = now;
  };
  const endpoint = opts.endpoint ?? (await useEmulator()).endpoint;
  const region = process.env["AWS_REGION"] || DEFAULT_REGION;
  const original = loadConfig(path.resolve(opts.configFile));
  const stack = opts.stack ?? uniqueStackName(original.name);
  const configFile = writeEffectiveConfig(
    opts.configFile,
    stack,
    opts,
    previous ? { dir: previous.workdir, name: `weaver-${++effectiveConfigs}.toml` } : undefined,
  );
  const config = loadConfig(configFile);
  const components = opts.components ?? appComponents(config);
  lap("config");
  const synth =
    opts.synth === undefined ? synthesize(config, components) : await synthesizeWith(opts.synth, configFile, config, components);
  lap("synth");

  const clients = clientsFor(endpoint, region);
  const { cfn, sd, sm } = clients;

  let template = synth.template;
  if (previous) {
    // moto 5.2.1 updates a changed task definition without mapping its PascalCase properties (its
    // create path does), leaving a revision without a command. A new logical id makes it a create,
    // which on AWS is what a changed task definition is anyway: a new revision.
    let text = JSON.stringify(template);
    for (const [id, r] of Object.entries(template.Resources)) {
      if (r.Type === "AWS::ECS::TaskDefinition") text = text.split(`"${id}"`).join(`"${id}U${effectiveConfigs}"`);
    }
    template = JSON.parse(text) as CfnTemplate;
  }
  // The CDK bootstrap check: there is no bootstrap stack (nor its SSM parameter) in the emulator.
  for (const [name, p] of Object.entries(template.Parameters ?? {})) {
    if (p.Type.startsWith("AWS::SSM::Parameter::Value") && String(p.Default ?? "").startsWith("/cdk-bootstrap/"))
      delete template.Parameters![name];
  }
  delete template.Rules;

  // ---- Resources moto's CloudFormation cannot create: through their APIs, before the stack ----------
  const created: Record<string, CreatedResource> = {};
  const literal: Record<string, Record<string, string>> = {}; // logical id → { Ref, <attribute>... }
  const tags = (props: Record<string, unknown>) => (props["Tags"] as { Key: string; Value: string }[] | undefined) ?? [];
  let secretValue = previous?.secret ?? "";
  // An update keeps what the previous template already had (as CloudFormation keeps unchanged resources).
  const kept = (id: string): boolean => {
    const before = previous?.literal[id];
    if (before === undefined) return false;
    literal[id] = { ...before };
    created[id] = previous!.resources[id]!;
    return true;
  };
  const byType = (type: string) => Object.entries(template.Resources).filter(([id, r]) => r.Type === type && !kept(id));
  for (const [id, r] of byType("AWS::SecretsManager::Secret")) {
    const props = r.Properties ?? {};
    const gen = props["GenerateSecretString"] as { PasswordLength?: number; ExcludePunctuation?: boolean } | undefined;
    // Neither a value nor a generated one: CloudFormation creates the secret empty (the deployment CA's).
    const value =
      typeof props["SecretString"] === "string"
        ? (props["SecretString"] as string)
        : gen === undefined
          ? undefined
          : generatePassword(gen.PasswordLength ?? 32, gen.ExcludePunctuation ?? false);
    const out = await sm.send(
      new CreateSecretCommand({
        Name: typeof props["Name"] === "string" ? (props["Name"] as string) : `${id}-${randomBytes(6).toString("hex")}`,
        Description: props["Description"] as string | undefined,
        SecretString: value,
        Tags: tags(props),
      }),
    );
    secretValue ||= value ?? "";
    literal[id] = { Ref: out.ARN!, Id: out.ARN! };
    created[id] = { type: r.Type, physicalId: out.ARN! };
  }
  for (const [id, r] of byType("AWS::ServiceDiscovery::HttpNamespace")) {
    const props = r.Properties ?? {};
    const op = await sd.send(
      new CreateHttpNamespaceCommand({
        Name: props["Name"] as string,
        Description: props["Description"] as string | undefined,
        Tags: tags(props),
      }),
    );
    const nsId = await operationTarget(sd, op.OperationId!, "NAMESPACE");
    const ns = await sd.send(new GetNamespaceCommand({ Id: nsId }));
    literal[id] = { Ref: nsId, Id: nsId, Arn: ns.Namespace!.Arn!, Name: ns.Namespace!.Name! };
    created[id] = { type: r.Type, physicalId: nsId };
  }
  for (const [id, r] of byType("AWS::ServiceDiscovery::Service")) {
    const props = substitute(r.Properties ?? {}, literal, new Set()) as Record<string, unknown>;
    const out = await sd.send(
      new CreateDiscoveryServiceCommand({
        Name: props["Name"] as string,
        NamespaceId: props["NamespaceId"] as string,
        Description: props["Description"] as string | undefined,
        Tags: tags(props),
      }),
    );
    const s = out.Service!;
    literal[id] = { Ref: s.Id!, Id: s.Id!, Arn: s.Arn!, Name: s.Name! };
    created[id] = { type: r.Type, physicalId: s.Id! };
  }

  lap("preCreate");

  // ---- The template moto creates ----------------------------------------------------------------------
  const post = Object.fromEntries(Object.entries(template.Resources).filter(([, r]) => POST_CREATED.includes(r.Type)));
  const removed = new Set([...Object.keys(literal), ...Object.keys(post)]);
  for (const id of removed) delete template.Resources[id];
  const body = substitute(template, literal, removed) as CfnTemplate;
  for (const r of Object.values(body.Resources)) {
    if (r.Type !== "AWS::ECS::TaskDefinition") continue;
    const taskMemory = Number(r.Properties?.["Memory"]);
    for (const c of (r.Properties?.["ContainerDefinitions"] ?? []) as Record<string, unknown>[]) {
      if (c["Memory"] === undefined && c["MemoryReservation"] === undefined && Number.isFinite(taskMemory)) c["Memory"] = taskMemory;
    }
  }
  const stackRequest = {
    StackName: stack,
    TemplateBody: JSON.stringify(body),
    Capabilities: ["CAPABILITY_IAM" as const, "CAPABILITY_NAMED_IAM" as const, "CAPABILITY_AUTO_EXPAND" as const],
  };
  if (previous) await cfn.send(new UpdateStackCommand(stackRequest));
  else await cfn.send(new CreateStackCommand(stackRequest));
  const described = await waitForStack(cfn, stack, previous ? "UPDATE_COMPLETE" : "CREATE_COMPLETE");
  lap(previous ? "updateStack" : "createStack");
  const outputs: Record<string, string> = {};
  for (const o of described.Outputs ?? []) outputs[o.OutputKey!] = o.OutputValue ?? "";

  const summaries: StackResourceSummary[] = [];
  let next: string | undefined;
  do {
    const page = await cfn.send(new ListStackResourcesCommand({ StackName: stack, NextToken: next }));
    summaries.push(...(page.StackResourceSummaries ?? []));
    next = page.NextToken;
  } while (next);
  for (const s of summaries) created[s.LogicalResourceId!] = { type: s.ResourceType!, physicalId: s.PhysicalResourceId ?? "" };
  if (previous) {
    // CloudFormation replaces a changed task definition (a new revision) and then updates every service
    // that refers to it; moto 5.2.1 updates only resources whose own template text changed, and the
    // service's `Ref` did not. Do what CloudFormation does: point the service at the new revision.
    for (const [id, r] of Object.entries(body.Resources).filter(([, r]) => r.Type === "AWS::ECS::Service")) {
      const ref = (r.Properties?.["TaskDefinition"] as { Ref?: string } | undefined)?.Ref;
      const now = ref === undefined ? undefined : created[ref]?.physicalId;
      if (now === undefined || now === previous.resources[ref!]?.physicalId) continue;
      await clients.ecs.send(new UpdateServiceCommand({ cluster: stack, service: created[id]!.physicalId, taskDefinition: now }));
    }
  }

  // ---- Resources created after the stack --------------------------------------------------------------
  const accountId = /^arn:[^:]+:ecs:[^:]*:(\d+):/.exec(outputs[OUTPUTS.CLUSTER_ARN] ?? "")?.[1] ?? "123456789012";
  const resolve = resolver(created, literal, { region, accountId });
  const scalableTargets: string[] = [...(previous?.scalableTargets ?? [])];
  // An update leaves what it already created alone.
  const keptPost = (id: string): boolean => {
    const before = previous?.resources[id];
    if (before !== undefined) created[id] = before;
    return before !== undefined;
  };
  const targetKeys: Record<string, { ServiceNamespace: ServiceNamespace; ResourceId: string; ScalableDimension: ScalableDimension }> = {};
  for (const [id, r] of Object.entries(post).filter(
    ([id, r]) => r.Type === "AWS::ApplicationAutoScaling::ScalableTarget" && !keptPost(id),
  )) {
    const p = r.Properties ?? {};
    const key = {
      ServiceNamespace: resolve(p["ServiceNamespace"]) as ServiceNamespace,
      ResourceId: resolve(p["ResourceId"]),
      ScalableDimension: resolve(p["ScalableDimension"]) as ScalableDimension,
    };
    await clients.scaling.send(
      new RegisterScalableTargetCommand({
        ...key,
        MinCapacity: Number(p["MinCapacity"]),
        MaxCapacity: Number(p["MaxCapacity"]),
        RoleARN: p["RoleARN"] === undefined ? undefined : resolve(p["RoleARN"]),
      }),
    );
    targetKeys[id] = key;
    scalableTargets.push(key.ResourceId);
    created[id] = { type: r.Type, physicalId: `${key.ResourceId}|${key.ScalableDimension}|${key.ServiceNamespace}` };
  }
  for (const [id, r] of Object.entries(post).filter(
    ([id, r]) => r.Type === "AWS::ApplicationAutoScaling::ScalingPolicy" && !keptPost(id),
  )) {
    const p = r.Properties ?? {};
    const targetRef = (p["ScalingTargetId"] as { Ref?: string } | undefined)?.Ref;
    const key = targetRef !== undefined ? targetKeys[targetRef] : undefined;
    if (key === undefined) throw new Error(`scaling policy ${id}: cannot find its scalable target`);
    await clients.scaling.send(
      new PutScalingPolicyCommand({
        ...key,
        PolicyName: typeof p["PolicyName"] === "string" ? (p["PolicyName"] as string) : id,
        PolicyType: p["PolicyType"] as "TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration: p["TargetTrackingScalingPolicyConfiguration"] as never,
      }),
    );
    created[id] = { type: r.Type, physicalId: `${id}|${key.ResourceId}` };
  }
  for (const [id, r] of Object.entries(post).filter(([id, r]) => r.Type === "AWS::EC2::SecurityGroupEgress" && !keptPost(id))) {
    const p = r.Properties ?? {};
    const perm: Record<string, unknown> = {
      IpProtocol: resolve(p["IpProtocol"]),
      FromPort: Number(p["FromPort"]),
      ToPort: Number(p["ToPort"]),
    };
    const description = p["Description"] === undefined ? undefined : resolve(p["Description"]);
    if (p["DestinationSecurityGroupId"] !== undefined)
      perm["UserIdGroupPairs"] = [{ GroupId: resolve(p["DestinationSecurityGroupId"]), Description: description }];
    else perm["IpRanges"] = [{ CidrIp: resolve(p["CidrIp"] ?? "0.0.0.0/0"), Description: description }];
    await clients.ec2.send(new AuthorizeSecurityGroupEgressCommand({ GroupId: resolve(p["GroupId"]), IpPermissions: [perm as never] }));
    created[id] = { type: r.Type, physicalId: id };
  }

  for (const [id, r] of Object.entries(post).filter(([, r]) => r.Type === "AWS::CloudWatch::Alarm")) {
    const p = resolveDeep(resolve, r.Properties ?? {}) as Record<string, unknown>;
    const name = p["AlarmName"];
    if (typeof name !== "string") throw new Error(`alarm ${id}: the harness needs the AlarmName the stack gives it`);
    // PutMetricAlarm takes the template's properties as they are (CloudFormation's names are the API's).
    await clients.cloudWatch.send(new PutMetricAlarmCommand(p as unknown as PutMetricAlarmCommandInput));
    created[id] = { type: r.Type, physicalId: name };
  }

  lap("postCreate");

  // ---- What the tests and the simulator need to know --------------------------------------------------
  const taskDefs = new Map<string, TaskDefinitionInfo>();
  for (const [, res] of Object.entries(created).filter(([, c]) => c.type === "AWS::ECS::TaskDefinition")) {
    const td = (await clients.ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: res.physicalId }))).taskDefinition!;
    const c = td.containerDefinitions![0]!;
    taskDefs.set(td.family!, {
      arn: td.taskDefinitionArn!,
      family: td.family!,
      container: c.name!,
      command: c.command ?? [],
      env: Object.fromEntries((c.environment ?? []).map((e) => [e.name!, e.value ?? ""])),
      secrets: Object.fromEntries((c.secrets ?? []).map((s) => [s.name!, s.valueFrom!])),
    });
  }
  const cpTd = taskDefs.get(`${stack}-controlplane`);
  if (cpTd === undefined) throw new Error(`stack ${stack}: no control plane task definition (family ${stack}-controlplane)`);
  const agents: Record<string, TaskDefinitionInfo> = {};
  for (const g of synth.aws.groups) {
    const td = taskDefs.get(`${stack}-${g.name}`);
    if (td === undefined) throw new Error(`stack ${stack}: no task definition for group ${g.name} (family ${stack}-${g.name})`);
    agents[g.name] = td;
  }
  lap("describe");
  if (process.env["TSWEAVER_TEST_VERBOSE"] === "1") process.stderr.write(`[stack ${stack}] created in ${JSON.stringify(timings)} ms\n`);
  const secretArn = outputs[OUTPUTS.SECRET_ARN] ?? "";
  const res: AppResources = {
    endpoint,
    region,
    stack,
    app: config.name,
    configFile,
    workdir: path.dirname(configFile),
    configInImage: path.basename(configFile),
    version: outputs[OUTPUTS.VERSION] ?? "",
    config,
    aws: synth.aws,
    components,
    outputs,
    clusterName: outputs[OUTPUTS.CLUSTER_NAME] ?? stack,
    clusterArn: outputs[OUTPUTS.CLUSTER_ARN] ?? "",
    namespaceName: outputs[OUTPUTS.NAMESPACE_NAME] ?? stack,
    namespaceId: outputs[OUTPUTS.NAMESPACE_ID] ?? "",
    mainGroup: outputs[OUTPUTS.MAIN_GROUP] ?? "",
    logGroup: outputs[OUTPUTS.LOG_GROUP] ?? "",
    secretArn,
    secret: secretValue,
    groups: JSON.parse(cpTd.env[ENV.GROUPS] ?? "{}") as GroupsEnv,
    listeners: JSON.parse(cpTd.env[ENV.LISTENERS] ?? "{}") as ListenersEnv,
    controlPlane: {
      ...cpTd,
      service: outputs[OUTPUTS.CONTROLPLANE_SERVICE] ?? CONTROLPLANE_NAME,
      discoveryServiceId: cpTd.env[ENV.CONTROLPLANE_SERVICE_ID] ?? "",
    },
    agents,
    resources: created,
    template: body,
    scalableTargets,
    literal,
    timings,
    delete: () => deleteAppResources(res),
  };
  return res;
}

/**
 * Removes a test deployment from the emulator, best effort: every service to 0 and its tasks stopped,
 * the stack deleted, the Cloud Map instances, services and namespace, the secret and the scalable
 * targets removed, the effective config's temp dir deleted. Returns what could not be removed.
 * Stop the Fargate simulator first (or it restarts the control plane task in between).
 */
export async function deleteAppResources(res: AppResources): Promise<string[]> {
  const problems: string[] = [];
  const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).name}: ${(err as Error).message}`);
    }
  };
  const c = clientsFor(res.endpoint, res.region);
  const cluster = res.clusterName;
  await attempt("scaling services to 0", async () => {
    const services = (await c.ecs.send(new ListServicesCommand({ cluster }))).serviceArns ?? [];
    for (const s of services) await c.ecs.send(new UpdateServiceCommand({ cluster, service: s, desiredCount: 0 }));
  });
  await attempt("stopping tasks", async () => {
    const tasks = (await c.ecs.send(new ListTasksCommand({ cluster, desiredStatus: "RUNNING" }))).taskArns ?? [];
    for (const t of tasks) await c.ecs.send(new StopTaskCommand({ cluster, task: t, reason: "test deployment deleted" }));
  });
  for (const target of res.scalableTargets) {
    await attempt(`deregistering scalable target ${target}`, async () => {
      const found = await c.scaling.send(new DescribeScalableTargetsCommand({ ServiceNamespace: "ecs", ResourceIds: [target] }));
      for (const t of found.ScalableTargets ?? []) {
        await c.scaling.send(
          new DeregisterScalableTargetCommand({
            ServiceNamespace: t.ServiceNamespace!,
            ResourceId: t.ResourceId!,
            ScalableDimension: t.ScalableDimension!,
          }),
        );
      }
    });
  }
  await attempt(`deleting stack ${res.stack}`, async () => {
    try {
      await c.cfn.send(new DeleteStackCommand({ StackName: res.stack }));
    } catch (err) {
      // moto 5.2.1 deletes the stack's resources but not the VPC it created ("has dependencies"): a
      // leftover with a unique name, harmless to other tests.
      if ((err as Error).name !== "DependencyViolation") throw err;
    }
  });
  await attempt(`deleting Cloud Map namespace ${res.namespaceId}`, async () => {
    for (const s of await discoveryServicesOf(c.sd, res.namespaceId)) {
      const instances = await c.sd.send(new ListInstancesCommand({ ServiceId: s.Id! }));
      for (const i of instances.Instances ?? []) await c.sd.send(new DeregisterInstanceCommand({ ServiceId: s.Id!, InstanceId: i.Id! }));
      await c.sd.send(new DeleteDiscoveryServiceCommand({ Id: s.Id! }));
    }
    await c.sd.send(new DeleteNamespaceCommand({ Id: res.namespaceId }));
  });
  const alarms = Object.values(res.resources)
    .filter((r) => r.type === "AWS::CloudWatch::Alarm")
    .map((r) => r.physicalId);
  if (alarms.length > 0)
    await attempt(`deleting alarms ${alarms.join(", ")}`, () => c.cloudWatch.send(new DeleteAlarmsCommand({ AlarmNames: alarms })));
  for (const [, r] of Object.entries(res.resources).filter(([, r]) => r.type === "AWS::SecretsManager::Secret")) {
    await attempt(`deleting secret ${r.physicalId}`, () =>
      c.sm.send(new DeleteSecretCommand({ SecretId: r.physicalId, ForceDeleteWithoutRecovery: true })),
    );
  }
  rmSync(res.workdir, { recursive: true, force: true });
  for (const client of Object.values(c)) client.destroy();
  return problems;
}

function clientsFor(endpoint: string, region: string) {
  const cfg = clientConfig(endpoint, region);
  return {
    cfn: new CloudFormationClient(cfg),
    sd: new ServiceDiscoveryClient(cfg),
    sm: new SecretsManagerClient(cfg),
    ecs: new ECSClient(cfg),
    ec2: new EC2Client(cfg),
    scaling: new ApplicationAutoScalingClient(cfg),
    cloudWatch: new CloudWatchClient(cfg),
  };
}

/**
 * The Cloud Map services of a namespace. moto 5.2.1's ListServices ignores its Filters (it lists the
 * services of every namespace), so each one's namespace is checked with GetService.
 */
export async function discoveryServicesOf(
  sd: ServiceDiscoveryClient,
  namespaceId: string,
): Promise<{ Id: string; Name: string; Arn: string }[]> {
  const out: { Id: string; Name: string; Arn: string }[] = [];
  let next: string | undefined;
  do {
    const page = await sd.send(
      new ListDiscoveryServicesCommand({ Filters: [{ Name: "NAMESPACE_ID", Values: [namespaceId], Condition: "EQ" }], NextToken: next }),
    );
    for (const s of page.Services ?? []) {
      const full = (await sd.send(new GetDiscoveryServiceCommand({ Id: s.Id! }))).Service;
      if (full?.NamespaceId === namespaceId) out.push({ Id: full.Id!, Name: full.Name!, Arn: full.Arn! });
    }
    next = page.NextToken;
  } while (next);
  return out;
}

async function operationTarget(sd: ServiceDiscoveryClient, operationId: string, target: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const op = (await sd.send(new GetOperationCommand({ OperationId: operationId }))).Operation!;
    if (op.Status === "FAIL") throw new Error(`Cloud Map operation ${operationId} failed: ${op.ErrorCode} ${op.ErrorMessage}`);
    const id = op.Targets?.[target as keyof typeof op.Targets];
    if (op.Status === "SUCCESS" && id) return id;
    await sleep(100);
  }
  throw new Error(`Cloud Map operation ${operationId} did not finish`);
}

async function waitForStack(cfn: CloudFormationClient, stack: string, done: "CREATE_COMPLETE" | "UPDATE_COMPLETE") {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const s = (await cfn.send(new DescribeStacksCommand({ StackName: stack }))).Stacks?.[0];
    const status = s?.StackStatus ?? "";
    if (status === done) return s!;
    if (!status.endsWith("_IN_PROGRESS") || Date.now() > deadline) {
      throw new Error(`stack ${stack}: ${status || "not found"}${s?.StackStatusReason ? `: ${s.StackStatusReason}` : ""}`);
    }
    await sleep(200);
  }
}

/**
 * Replaces every `Ref`/`Fn::GetAtt` to a pre-created resource by its literal value and drops `DependsOn`
 * entries naming removed resources.
 */
function substitute(node: unknown, literal: Record<string, Record<string, string>>, removed: Set<string>): unknown {
  if (Array.isArray(node)) return node.map((n) => substitute(n, literal, removed));
  if (node === null || typeof node !== "object") return node;
  const o = node as Record<string, unknown>;
  const ref = o["Ref"];
  if (typeof ref === "string" && literal[ref] !== undefined) return literal[ref]!["Ref"];
  const getAtt = o["Fn::GetAtt"];
  if (Array.isArray(getAtt) && typeof getAtt[0] === "string" && literal[getAtt[0]] !== undefined) {
    const v = literal[getAtt[0]]![String(getAtt[1])];
    if (v === undefined) throw new Error(`no value for Fn::GetAtt ${getAtt[0]}.${getAtt[1]} of a resource created through its API`);
    return v;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (k === "DependsOn") {
      const kept = (Array.isArray(v) ? v : [v]).filter((d) => !removed.has(String(d)));
      if (kept.length > 0) out[k] = kept;
      continue;
    }
    out[k] = substitute(v, literal, removed);
  }
  return out;
}

/** Resolves the intrinsics the post-created resources use, against the created stack. */
function resolver(
  created: Record<string, CreatedResource>,
  literal: Record<string, Record<string, string>>,
  env: { region: string; accountId: string },
) {
  const pseudo: Record<string, string> = {
    "AWS::Partition": "aws",
    "AWS::Region": env.region,
    "AWS::AccountId": env.accountId,
    "AWS::URLSuffix": "amazonaws.com",
  };
  const resolve = (node: unknown): string => {
    if (typeof node === "string") return node;
    if (typeof node === "number" || typeof node === "boolean") return String(node);
    const o = (node ?? {}) as Record<string, unknown>;
    if (typeof o["Ref"] === "string") {
      const ref = o["Ref"];
      const v = pseudo[ref] ?? literal[ref]?.["Ref"] ?? created[ref]?.physicalId;
      if (v === undefined) throw new Error(`cannot resolve Ref ${ref}`);
      return v;
    }
    if (Array.isArray(o["Fn::GetAtt"])) {
      const [id, attr] = o["Fn::GetAtt"] as [string, string];
      const lit = literal[id]?.[attr];
      if (lit !== undefined) return lit;
      const r = created[id];
      if (r === undefined) throw new Error(`cannot resolve Fn::GetAtt ${id}.${attr}: no such resource`);
      if (r.type === "AWS::ECS::Service" && attr === "Name") return r.physicalId.split("/").pop()!;
      if (r.type === "AWS::EC2::SecurityGroup" && attr === "GroupId") return r.physicalId;
      if (attr === "Arn" && r.physicalId.startsWith("arn:")) return r.physicalId;
      // What the load balancer's CloudWatch metrics are keyed by: `app/<name>/<id>`, the end of its ARN.
      if (r.type === "AWS::ElasticLoadBalancingV2::LoadBalancer" && attr === "LoadBalancerFullName")
        return r.physicalId.split(":loadbalancer/")[1] ?? r.physicalId;
      throw new Error(`cannot resolve Fn::GetAtt ${id}.${attr} (${r.type})`);
    }
    if (Array.isArray(o["Fn::Join"])) {
      const [sep, parts] = o["Fn::Join"] as [string, unknown[]];
      return parts.map(resolve).join(sep);
    }
    throw new Error(`cannot resolve ${JSON.stringify(node)}`);
  };
  return resolve;
}

/** A template value with every intrinsic function in it resolved (objects and arrays walked). */
function resolveDeep(resolve: (node: unknown) => string, node: unknown): unknown {
  if (Array.isArray(node)) return node.map((n) => resolveDeep(resolve, n));
  if (node === null || typeof node !== "object") return node;
  const o = node as Record<string, unknown>;
  if ("Ref" in o || "Fn::GetAtt" in o || "Fn::Join" in o) return resolve(o);
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, resolveDeep(resolve, v)]));
}

function generatePassword(length: number, excludePunctuation: boolean): string {
  const alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + (excludePunctuation ? "" : "!#$%&()*+,-.:;<=>?[]^_{|}~");
  const bytes = randomBytes(length);
  let s = "";
  for (let i = 0; i < length; i++) s += alphabet[bytes[i]! % alphabet.length];
  return s;
}
