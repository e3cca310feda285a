import { DescribeStacksCommand } from "@aws-sdk/client-cloudformation";
import { DescribeAlarmsCommand } from "@aws-sdk/client-cloudwatch";
import { DescribeTasksCommand, paginateListTasks, type Task } from "@aws-sdk/client-ecs";
import { DeregisterTargetsCommand, DescribeTargetHealthCommand, RegisterTargetsCommand } from "@aws-sdk/client-elastic-load-balancing-v2";
import {
  DeregisterInstanceCommand,
  paginateListInstances,
  RegisterInstanceCommand,
  type InstanceSummary,
} from "@aws-sdk/client-servicediscovery";
import { GetSecretValueCommand } from "@aws-sdk/client-secrets-manager";
import type http from "node:http";
import { DeploymentCaStore } from "./ca.js";
import { describeTasksIn, RejectionLog, TaskDirectory } from "./callers.js";
import { AwsCallError, AwsClients, awsPages, callAws } from "./clients.js";
import {
  ATTR,
  CONTROLPLANE_NAME,
  ENV,
  MAIN_COMPONENT,
  OUTPUTS,
  TAGS,
  versionedServiceName,
  type GroupsEnv,
  type ListenersEnv,
  type RolloutEnv,
} from "./contract.js";
import { reconcileErrorLine, registeredReplicasLines } from "./emf.js";
import { jsonLogger, type JsonLogger } from "./jsonlog.js";
import { taskIdentity, type TaskIdentity } from "./metadata.js";
import {
  ControlApiError,
  serveControlApi,
  type CallerClaim,
  type CertificateReply,
  type CertificateRequest,
  type ControlApi,
  type ReplicaReport,
  type StoppingReply,
} from "./protocol.js";
import { albResourceLabel, cpuPolicy, loadPolicy, POLICY, putTargetTracking, requestsPolicy, TaskProtection } from "./scaling.js";
import { Versions, type LiveVersion, type VersionService, type Weight } from "./versions.js";

/** The control plane's configuration, from the task environment the stack sets. */
export interface ControlPlaneEnv {
  deployment: string;
  /** The version this control plane was deployed with: the one it rolls out. */
  version: string;
  clusterArn: string;
  namespaceId: string;
  controlPlaneServiceId: string;
  controlPort: number;
  rpcPort: number;
  /** The deployment secret as ECS injected it at the task's start. */
  secret: string;
  /**
   * The secret's ARN: when set, the accepted secrets are re-read from Secrets Manager every
   * `secretReloadMs` (its AWSCURRENT and AWSPREVIOUS values), so a rotation needs no restart.
   */
  secretArn?: string | undefined;
  secretReloadMs?: number;
  /** ARN of the deployment CA's secret; without it, certificate requests are refused. */
  caSecretArn?: string | undefined;
  /** Lifetime of the certificates it signs for agents (ms). Default 24 h. */
  certificateLifetimeMs?: number;
  groups: GroupsEnv;
  listeners: ListenersEnv;
  rollout: RolloutEnv;
  vpcId: string;
  subnets: string[];
  securityGroup: string;
  assignPublicIp: "ENABLED" | "DISABLED";
  /** How often state is reconciled with AWS and the rollout advanced (ms). */
  reconcileMs: number;
  /** Names of the stack's CloudWatch alarms: one in ALARM during a rollout step rolls the new version back. */
  alarms?: readonly string[] | undefined;
}

function required(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name} is not set; the control plane runs in the task the stack defines (infra/)`);
  return v;
}

function json<T>(name: string): T {
  try {
    return JSON.parse(required(name)) as T;
  } catch (err) {
    throw new Error(`${name} is not valid JSON: ${(err as Error).message}`);
  }
}

export function controlPlaneEnvFromProcess(): ControlPlaneEnv {
  return {
    deployment: required(ENV.DEPLOYMENT),
    version: required(ENV.VERSION),
    clusterArn: required(ENV.CLUSTER),
    namespaceId: required(ENV.NAMESPACE_ID),
    controlPlaneServiceId: required(ENV.CONTROLPLANE_SERVICE_ID),
    controlPort: Number(required(ENV.CONTROL_PORT)),
    rpcPort: Number(required(ENV.RPC_PORT)),
    secret: required(ENV.SECRET),
    secretArn: process.env[ENV.SECRET_ARN] || undefined,
    secretReloadMs: Number(process.env["TSWEAVER_SECRET_RELOAD_MS"] ?? 300_000),
    caSecretArn: process.env[ENV.CA_SECRET_ARN] || undefined,
    certificateLifetimeMs: Number(process.env["TSWEAVER_CERT_LIFETIME_MS"] ?? DEFAULT_CERTIFICATE_LIFETIME_MS),
    groups: json<GroupsEnv>(ENV.GROUPS),
    listeners: json<ListenersEnv>(ENV.LISTENERS),
    rollout: json<RolloutEnv>(ENV.ROLLOUT),
    alarms: process.env[ENV.ALARMS] ? json<string[]>(ENV.ALARMS) : [],
    vpcId: process.env[ENV.VPC_ID] ?? "",
    subnets: (process.env[ENV.SUBNETS] ?? "").split(",").filter(Boolean),
    securityGroup: process.env[ENV.SECURITY_GROUP] ?? "",
    assignPublicIp: process.env[ENV.ASSIGN_PUBLIC_IP] === "ENABLED" ? "ENABLED" : "DISABLED",
    reconcileMs: Number(process.env["TSWEAVER_RECONCILE_MS"] ?? 5_000),
  };
}

/** Lifetime of agents' certificates: short, so a key taken from a task is of use for a day at most. */
const DEFAULT_CERTIFICATE_LIFETIME_MS = 24 * 3600 * 1000;

/** How long a version may stay unhealthy during a step before it is rolled back. */
const UNHEALTHY_GRACE_MS = 10_000;

/**
 * How long a control plane stopped by the stack's deletion waits for the versions' tasks to stop: within
 * its 120 s stop timeout, leaving time for the rest of the clean-up.
 */
const TEARDOWN_WAIT_MS = 90_000;

/** Method-call counts one version's agents reported, with when (for error rates over a step). */
interface CallSample {
  at: number;
  calls: number;
  errors: number;
}

/**
 * The AWS deployer's EnvelopeHandler side and its rollout driver. Agents of every running version relay
 * their weavelets' requests here: it raises their version's ECS services on activation, registers ready
 * replicas in Cloud Map (with their version) and listeners in their version's target group. It also
 * rolls its own version out: creates its services and target groups, raises them to the floors of the
 * version serving now, shifts the listeners' weights step by step while the new version is healthy
 * and its error rate low, rolls back otherwise, and retires the old version once drained.
 *
 * It keeps no state AWS does not also hold (rollout phases are tags, traffic is the listener rules'
 * weights), so a replaced control plane resumes where the old one stopped. When two control plane
 * tasks run at once (during a deploy), only the newest running one reconciles and drives rollouts.
 */
export class ControlPlane implements ControlApi {
  private readonly clusterName: string;
  private readonly versions: Versions;
  private readonly groupLocks = new Map<string, Promise<unknown>>();
  private readonly taskLocks = new Map<string, Promise<unknown>>();
  /** Replicas that reported ready (rebuilt from heartbeats after a restart). */
  private readonly replicas = new Map<string, ReplicaReport>();
  /** Target group ARN per `listener/version` (they never change once created). */
  private readonly targetGroups = new Map<string, string>();
  /** Method calls reported by each version's agents, newest last (error rates during a rollout). */
  private readonly samples = new Map<string, CallSample[]>();
  private server: http.Server | undefined;
  private timer: NodeJS.Timeout | undefined;
  private secretTimer: NodeJS.Timeout | undefined;
  /** The deployment secrets agents may present: the current one, and the previous one after a rotation. */
  private secrets: readonly string[];
  /** The tasks agents speak for, as ECS describes them (cached). */
  private readonly tasks: TaskDirectory;
  private readonly rejections: RejectionLog;
  /** The deployment CA (undefined when the stack has none). */
  private readonly caStore: DeploymentCaStore | undefined;
  /** Task definitions of other versions' groups (`group/version`), as their services name them. */
  private readonly otherTaskDefinitions = new Map<string, string>();
  private reconciling: Promise<void> | undefined;
  /**
   * The stack is being deleted and this control plane is removing what it created: it registers and
   * raises nothing any more, so no replica reappears in a Cloud Map service CloudFormation deletes next.
   */
  private tearingDown = false;
  private identity: TaskIdentity | undefined;
  private leading: boolean | undefined;
  /** Since when the version being rolled out has been unhealthy during a step. */
  private unhealthySince: number | undefined;
  droppedSpans = 0;
  /** Counters of AWS calls by API (reported in logs; used to count calls per activation). */
  readonly awsCalls = new Map<string, number>();
  /**
   * What Cloud Map holds per group (task id → the attributes of each registered copy), as last listed
   * or changed here: a heartbeat of a replica that is registered as reported costs no AWS call.
   * Each reconcile lists every group again, which restores what someone else removed.
   */
  private readonly cloudMap = new Map<string, Map<string, Record<string, string>[]>>();
  /**
   * Targets (`ip:port`) registered and not draining, per target group ARN, as the last reconcile's
   * DescribeTargetHealth (and registrations since) say: a heartbeat re-registers only what is missing.
   */
  private readonly registeredTargets = new Map<string, Set<string>>();
  /** Listings of groups not listed before, in flight. */
  private readonly firstListings = new Map<string, Promise<InstanceSummary[]>>();
  /** Scale-in protection of the replicas agents report busy. */
  private readonly protection: TaskProtection;
  /** Request-count policies put (`service/listener`): each once per control plane. */
  private readonly requestPolicies = new Set<string>();
  /** Services whose CPU and load policies this control plane put as configured (their floor was registered). */
  private readonly scaledServices = new Set<string>();

  constructor(
    private readonly env: ControlPlaneEnv,
    private readonly aws = new AwsClients(),
    private readonly log: JsonLogger = jsonLogger("controlplane"),
  ) {
    this.clusterName = env.clusterArn.split("/").pop()!;
    this.versions = new Versions(aws, env.clusterArn, env.deployment, (api, resource, fn) => this.aws_(api, resource, fn));
    this.secrets = [env.secret];
    const describe = describeTasksIn((cmd) => this.aws.ecs.send(cmd), env.clusterArn);
    this.tasks = new TaskDirectory({
      describe: (arns) => this.aws_("ecs:DescribeTasks", `tasks of cluster ${this.clusterName}`, () => describe(arns)),
      taskDefinitionOf: (group, version) => this.taskDefinitionOf(group, version),
    });
    this.rejections = new RejectionLog((msg, attrs) => this.log.warn(msg, attrs));
    this.protection = new TaskProtection(aws, env.clusterArn, (api, resource, fn) => this.aws_(api, resource, fn));
    this.caStore =
      env.caSecretArn === undefined
        ? undefined
        : new DeploymentCaStore({
            secretArn: env.caSecretArn,
            deployment: env.deployment,
            secrets: aws.secrets,
            call: (api, resource, fn) => this.aws_(api, resource, fn),
            log,
          });
  }

  /** Starts serving agents on the task's address and registers the control plane in Cloud Map. */
  async start(): Promise<void> {
    this.identity = await taskIdentity();
    await this.reloadSecrets();
    // Created here on the first start; a failure is retried at the first certificate request.
    await this.caStore
      ?.ca()
      .catch((err: Error) =>
        this.log.error("cannot load or create the deployment CA: certificate requests fail until it can", { err: err.message }),
      );
    const { server } = await serveControlApi({
      host: this.identity.ip,
      port: this.env.controlPort,
      secrets: () => this.secrets,
      api: this,
      verifyCaller: (claim) => this.verifyCaller(claim),
      onReject: (r) => this.rejections.record(r),
    });
    this.server = server;
    if (this.env.secretArn) this.secretTimer = setInterval(() => void this.reloadSecrets(), this.env.secretReloadMs ?? 300_000);
    await this.aws_("servicediscovery:RegisterInstance", `control plane service ${this.env.controlPlaneServiceId}`, () =>
      this.aws.serviceDiscovery.send(
        new RegisterInstanceCommand({
          ServiceId: this.env.controlPlaneServiceId,
          InstanceId: this.identity!.taskId,
          Attributes: {
            [ATTR.IPV4]: this.identity!.ip,
            [ATTR.PORT]: String(this.env.controlPort),
            [ATTR.TASK_ARN]: this.identity!.taskArn,
            [ATTR.VERSION]: this.env.version,
          },
        }),
      ),
    );
    this.log.info("control plane serving", {
      address: `${this.identity.ip}:${this.env.controlPort}`,
      deployment: this.env.deployment,
      version: this.env.version,
    });
    const reconcileLogged = () =>
      this.reconcile().catch((err: Error) => {
        this.log.error("reconcile failed", { err: err.message });
        process.stdout.write(reconcileErrorLine(process.env[ENV.APP] ?? "") + "\n");
      });
    await reconcileLogged();
    this.timer = setInterval(() => void reconcileLogged(), this.env.reconcileMs);
  }

  /** Stops serving. When the stack itself is being deleted, first removes every version's resources. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.secretTimer);
    await this.reconciling?.catch(() => {});
    if (await this.stackDeleting()) {
      this.tearingDown = true;
      await this.retireEverything().catch((err: Error) => this.log.error("cannot remove the versions' resources", { err: err.message }));
    }
    this.server?.close();
    this.server?.closeAllConnections();
    if (this.identity) {
      await this.aws.serviceDiscovery
        .send(new DeregisterInstanceCommand({ ServiceId: this.env.controlPlaneServiceId, InstanceId: this.identity.taskId }))
        .catch(() => {});
    }
  }

  // ---- who may call ----

  /**
   * Re-reads the accepted secrets: Secrets Manager's AWSCURRENT and (after a rotation) AWSPREVIOUS
   * values. On failure the secrets accepted so far stay.
   */
  private async reloadSecrets(): Promise<void> {
    const arn = this.env.secretArn;
    if (!arn) return;
    const read = async (stage: string): Promise<string | undefined> => {
      try {
        const out = await this.aws_("secretsmanager:GetSecretValue", `secret ${arn} (${stage})`, () =>
          this.aws.secrets.send(new GetSecretValueCommand({ SecretId: arn, VersionStage: stage })),
        );
        return out.SecretString || undefined;
      } catch (err) {
        // No AWSPREVIOUS before the first rotation.
        if (stage === "AWSPREVIOUS" && /ResourceNotFound/.test((err as Error).message)) return undefined;
        throw err;
      }
    };
    try {
      const current = await read("AWSCURRENT");
      if (current === undefined) throw new Error(`secret ${arn} has no AWSCURRENT string value`);
      const previous = await read("AWSPREVIOUS");
      const next = previous !== undefined && previous !== current ? [current, previous] : [current];
      if (next.join("\n") !== this.secrets.join("\n")) {
        if (this.secrets.length > 0 && this.identity && this.server)
          this.log.info("deployment secret changed: accepting", { secrets: next.length === 2 ? "current and previous" : "current" });
        this.secrets = next;
      }
    } catch (err) {
      this.log.warn("cannot reload the deployment secret: the secrets accepted so far stay", { err: (err as Error).message });
    }
  }

  /**
   * Binds a request to the task it names (its source must be that task's ENI address, see
   * callers.ts) and checks every claim of its body against that task; the same for every method.
   */
  private async verifyCaller(claim: CallerClaim): Promise<void> {
    const task = await this.tasks.verify(claim.taskArn, claim.sourceIp, claim.stoppedTaskMayCall);
    const b = claim.body;
    const claimed = (key: string, actual: string | number): void => {
      if (b[key] !== undefined && b[key] !== actual)
        throw new ControlApiError(
          `forbidden: ${claim.method} claims ${key} ${JSON.stringify(b[key])}, but task ${task.taskArn} has ${JSON.stringify(actual)}`,
          403,
        );
    };
    claimed("taskArn", task.taskArn);
    claimed("taskId", task.taskId);
    claimed("weaveletId", task.taskId);
    claimed("ip", task.ip);
    claimed("group", task.group);
    claimed("version", task.version);
    claimed("port", typeof b["listener"] === "string" ? this.listener(b["listener"]).containerPort : this.env.rpcPort);
    if (typeof b["listeners"] === "object" && b["listeners"] !== null)
      for (const [name, port] of Object.entries(b["listeners"])) {
        const want = this.listener(name).containerPort;
        if (port !== want)
          throw new ControlApiError(`forbidden: listener ${name} listens on port ${want} in every task, not ${String(port)}`, 403);
      }
    if (typeof b["componentGroup"] === "string" && (await this.taskDefinitionOf(b["componentGroup"], task.version)) === undefined)
      throw new ControlApiError(`unknown group ${b["componentGroup"]} in version ${task.version}`, 400);
  }

  /** The task definition of a group in a version (this version: from the stack; others: their service). */
  private async taskDefinitionOf(group: string, version: string): Promise<string | undefined> {
    if (version === this.env.version) return Object.hasOwn(this.env.groups, group) ? this.env.groups[group]!.taskDefinition : undefined;
    const key = `${group}/${version}`;
    const known = this.otherTaskDefinitions.get(key);
    if (known !== undefined) return known;
    // A version's services never change task definition: what is found is kept (a miss is asked again).
    const td = (await this.versions.list()).get(version)?.services.get(group)?.taskDefinition;
    if (td !== undefined && this.otherTaskDefinitions.size < 1024) this.otherTaskDefinitions.set(key, td);
    return td;
  }

  // ---- the API agents call ----

  async activate(req: {
    taskArn: string;
    group: string;
    component: string;
    routed: boolean;
    version: string;
    componentGroup?: string;
  }): Promise<Record<string, never>> {
    const version = req.version;
    const group = req.componentGroup ?? this.groupOf(req.component);
    if (this.tearingDown) throw new Error(`the stack ${this.env.deployment} is being deleted: group ${group} is not raised`);
    await this.raise(group, version);
    this.log.info("component activated", { component: req.component, group, version, by: req.group });
    return {};
  }

  async ready(report: ReplicaReport): Promise<Record<string, never>> {
    this.discoveryServiceOf(report.group);
    if (this.tearingDown) return {};
    const first = !this.replicas.has(report.taskArn);
    this.replicas.set(report.taskArn, report);
    this.recordCalls(report);
    await this.registerReplica(report);
    for (const [listener, port] of Object.entries(report.listeners))
      await this.registerTarget(listener, this.versionOf(report), report.ip, port);
    await this.scalingOnReport(report);
    if (first)
      this.log.info("replica ready", {
        group: report.group,
        version: this.versionOf(report),
        task: report.taskId,
        address: `${report.ip}:${report.port}`,
      });
    return {};
  }

  async listenerPort(req: { listener: string }): Promise<{ port: number }> {
    return { port: this.listener(req.listener).containerPort };
  }

  async exportListener(req: { taskArn: string; listener: string; ip: string; port: number; version: string }): Promise<{ url: string }> {
    const l = this.listener(req.listener);
    if (this.tearingDown) return { url: l.url };
    await this.registerTarget(req.listener, req.version, req.ip, req.port);
    const known = this.replicas.get(req.taskArn);
    if (known) known.listeners[req.listener] = req.port;
    return { url: l.url };
  }

  async stopping(report: ReplicaReport): Promise<StoppingReply> {
    this.replicas.delete(report.taskArn);
    await this.releaseProtection([report.taskArn]);
    await this.deregisterReplica(report.group, report.taskId);
    let delay = 0;
    for (const [listener, port] of Object.entries(report.listeners)) {
      await this.deregisterTarget(listener, this.versionOf(report), report.ip, port);
      delay = Math.max(delay, this.env.listeners[listener]?.deregistrationDelaySeconds ?? 0);
    }
    this.log.info("replica stopping: deregistered", { group: report.group, task: report.taskId });
    return { deregistrationDelaySeconds: delay };
  }

  async spans(req: { count: number }): Promise<Record<string, never>> {
    this.droppedSpans += req.count;
    return {};
  }

  async certificate(req: CertificateRequest): Promise<CertificateReply> {
    if (this.caStore === undefined)
      throw new ControlApiError(`no deployment CA: ${ENV.CA_SECRET_ARN} is not set (cdk deploy the current infra/)`, 503);
    // verifyCaller has checked taskArn, group and version against the task ECS describes: the
    // certificate names those, and takes nothing but the public key from the CSR.
    const subject = { deployment: this.env.deployment, version: req.version, group: req.group };
    const issued = await this.caStore
      .issue(req.csr, subject, this.env.certificateLifetimeMs ?? DEFAULT_CERTIFICATE_LIFETIME_MS)
      .catch((err: Error) => {
        throw new ControlApiError(`certificate: ${err.message}`, err instanceof AwsCallError ? 503 : 400);
      });
    this.log.info("certificate issued", {
      task: req.taskArn.split("/").pop()!,
      group: req.group,
      version: req.version,
      notAfter: issued.notAfter.toISOString(),
    });
    return { certificate: issued.certificate, ca: issued.ca, notAfter: issued.notAfter.toISOString() };
  }

  // ---- helpers ----

  /** Counts and runs an AWS call with an error naming the API and resource. */
  private aws_<T>(api: string, resource: string, fn: () => Promise<T>): Promise<T> {
    this.awsCalls.set(api, (this.awsCalls.get(api) ?? 0) + 1);
    return callAws(api, resource, fn);
  }

  private versionOf(report: ReplicaReport): string {
    return report.version;
  }

  private groupOf(component: string): string {
    for (const [name, g] of Object.entries(this.env.groups)) if (g.components.includes(component)) return name;
    throw new ControlApiError(
      `unknown component ${component}: no group of this deployment hosts it (was the stack deployed from this version of the app?)`,
      400,
    );
  }

  private discoveryServiceOf(group: string): string {
    // Own properties only: a name like "constructor" is no group.
    const g = Object.hasOwn(this.env.groups, group) ? this.env.groups[group] : undefined;
    if (!g) throw new ControlApiError(`unknown group ${group} (known: ${Object.keys(this.env.groups).join(", ")})`, 400);
    return g.discoveryServiceId;
  }

  private listener(name: string): ListenersEnv[string] {
    const l = Object.hasOwn(this.env.listeners, name) ? this.env.listeners[name] : undefined;
    if (!l) throw new ControlApiError(`listener ${name} is not configured: add [aws.listeners.${name}] to weaver.toml and cdk deploy`, 400);
    return l;
  }

  private get mainGroup(): string {
    return Object.entries(this.env.groups).find(([, g]) => g.components.includes(MAIN_COMPONENT))![0];
  }

  private recordCalls(report: ReplicaReport): void {
    if (!report.calls) return;
    const version = this.versionOf(report);
    const list = this.samples.get(version) ?? [];
    list.push({ at: Date.now(), calls: report.calls, errors: report.errors ?? 0 });
    // An hour of samples is more than any step looks back at.
    while (list.length > 0 && list[0]!.at < Date.now() - 3_600_000) list.shift();
    this.samples.set(version, list);
  }

  /** Errors / calls of a version's component methods reported since `since` (undefined: no calls). */
  errorRate(version: string, since: number): { rate: number; calls: number } | undefined {
    let calls = 0;
    let errors = 0;
    for (const s of this.samples.get(version) ?? []) {
      if (s.at < since) continue;
      calls += s.calls;
      errors += s.errors;
    }
    return calls === 0 ? undefined : { rate: errors / calls, calls };
  }

  // ---- a version's groups ----

  /**
   * Raises a version's group to at least its floor (creating this version's service if needed) and
   * records the floor as its autoscaling minimum. Serialized per service; a no-op when already there.
   */
  raise(group: string, version: string, floor?: number): Promise<void> {
    const service = versionedServiceName(group, version);
    const previous = this.groupLocks.get(service) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(() => this.raiseNow(group, version, floor));
    this.groupLocks.set(service, next);
    return next;
  }

  private async raiseNow(group: string, version: string, floorWanted: number | undefined): Promise<void> {
    const name = versionedServiceName(group, version);
    let v = (await this.versions.list()).get(version);
    if (!v?.services.has(group) && version === this.env.version) {
      await this.createOwnService(group);
      v = (await this.versions.list()).get(version);
    }
    const svc = v?.services.get(group);
    if (!v || !svc)
      throw new Error(
        `ecs:DescribeServices on service ${name}: not found in cluster ${this.clusterName} (version ${version} is not running here)`,
      );
    if (v.rollout.phase === "rolled-back")
      throw new Error(`version ${version} was rolled back (${v.rollout.reason ?? "no reason recorded"}); it is not raised again`);
    const min = Number(svc.tags[TAGS.MIN] ?? 1);
    const max = Number(svc.tags[TAGS.MAX] ?? Math.max(min, 4));
    const floor = Math.max(min, floorWanted ?? 0);
    if (svc.desired >= floor) return;
    await this.versions.setDesired(name, floor);
    this.log.info("group raised", { group, version, desired: floor });
    try {
      await this.versions.registerScaling(name, floor, Math.max(floor, max), this.env.groups[group]?.cpuTarget ?? 70);
      await this.putServicePolicies(group, version);
      this.scaledServices.add(name);
    } catch (err) {
      // The desired count is what runs tasks; the scaling floor only keeps it. Report, don't fail.
      this.log.warn("cannot record the group's autoscaling floor", { group, version, err: (err as Error).message });
    }
  }

  private async createOwnService(group: string): Promise<void> {
    const g = this.env.groups[group]!;
    await this.versions.createService({
      group,
      version: this.env.version,
      taskDefinition: g.taskDefinition,
      min: g.min,
      max: g.max,
      main: g.components.includes(MAIN_COMPONENT),
      network: { subnets: this.env.subnets, securityGroup: this.env.securityGroup, assignPublicIp: this.env.assignPublicIp },
    });
    this.log.info("version service created", { group, version: this.env.version, service: versionedServiceName(group, this.env.version) });
  }

  // ---- registrations ----

  /** Runs registration changes of one task one at a time (a heartbeat and a reconcile may coincide). */
  private perTask<T>(taskId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.taskLocks.get(taskId) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(fn);
    this.taskLocks.set(taskId, next);
    void next
      .finally(() => {
        if (this.taskLocks.get(taskId) === next) this.taskLocks.delete(taskId);
      })
      .catch(() => {});
    return next;
  }

  private registerReplica(r: ReplicaReport): Promise<void> {
    return this.perTask(r.taskId, () => this.registerReplicaNow(r));
  }

  private async registerReplicaNow(r: ReplicaReport): Promise<void> {
    const serviceId = this.discoveryServiceOf(r.group);
    const attrs = {
      [ATTR.IPV4]: r.ip,
      [ATTR.PORT]: String(r.port),
      [ATTR.TASK_ARN]: r.taskArn,
      [ATTR.VERSION]: this.versionOf(r),
      [ATTR.WEAVELET]: r.weaveletId,
      [ATTR.GROUP]: r.group,
    };
    const existing = (await this.knownInstances(r.group)).get(r.taskId) ?? [];
    const same = existing.length === 1 && Object.entries(attrs).every(([k, v]) => existing[0]![k] === v);
    if (same) return;
    // Replace rather than re-register: some Cloud Map implementations keep both copies of a re-used id.
    for (let i = existing.length; i > 0; i--) await this.deregisterReplicaNow(r.group, r.taskId);
    await this.aws_("servicediscovery:RegisterInstance", `instance ${r.taskId} of service ${serviceId} (group ${r.group})`, () =>
      this.aws.serviceDiscovery.send(new RegisterInstanceCommand({ ServiceId: serviceId, InstanceId: r.taskId, Attributes: attrs })),
    );
    this.cloudMap.get(r.group)?.set(r.taskId, [attrs]);
  }

  private deregisterReplica(group: string, taskId: string): Promise<void> {
    return this.perTask(taskId, () => this.deregisterReplicaNow(group, taskId));
  }

  private async deregisterReplicaNow(group: string, taskId: string): Promise<void> {
    const serviceId = this.discoveryServiceOf(group);
    try {
      await this.aws_("servicediscovery:DeregisterInstance", `instance ${taskId} of service ${serviceId} (group ${group})`, () =>
        this.aws.serviceDiscovery.send(new DeregisterInstanceCommand({ ServiceId: serviceId, InstanceId: taskId })),
      );
    } catch (err) {
      if (!/InstanceNotFound/.test((err as Error).message)) throw err;
    }
    const copies = this.cloudMap.get(group)?.get(taskId);
    copies?.pop();
    if (copies?.length === 0) this.cloudMap.get(group)!.delete(taskId);
  }

  /** Every instance of a group's Cloud Map service (all pages); what is found replaces the group's {@link cloudMap} entry. */
  private async instances(group: string): Promise<InstanceSummary[]> {
    const serviceId = this.discoveryServiceOf(group);
    const out: InstanceSummary[] = [];
    const pages = paginateListInstances({ client: this.aws.serviceDiscovery, pageSize: 100 }, { ServiceId: serviceId });
    for await (const page of awsPages("servicediscovery:ListInstances", `service ${serviceId} (group ${group})`, pages, (a, r, f) =>
      this.aws_(a, r, f),
    ))
      out.push(...(page.Instances ?? []));
    const known = new Map<string, Record<string, string>[]>();
    for (const i of out) if (i.Id) known.set(i.Id, [...(known.get(i.Id) ?? []), { ...i.Attributes }]);
    this.cloudMap.set(group, known);
    return out;
  }

  /** A group's instances as last listed (listed now if never). */
  private async knownInstances(group: string): Promise<ReadonlyMap<string, readonly Record<string, string>[]>> {
    const known = this.cloudMap.get(group);
    if (known) return known;
    // The first reports of many replicas of a group arrive together: one listing answers them all.
    let listing = this.firstListings.get(group);
    if (listing === undefined) {
      listing = this.instances(group).finally(() => this.firstListings.delete(group));
      this.firstListings.set(group, listing);
    }
    await listing;
    return this.cloudMap.get(group)!;
  }

  /** A version's target group of a listener, created on first use. */
  private async targetGroup(listener: string, version: string): Promise<string> {
    const key = `${listener}/${version}`;
    let arn = this.targetGroups.get(key);
    if (arn === undefined) {
      const l = this.listener(listener);
      arn = await this.versions.ensureTargetGroup(version, {
        listener,
        containerPort: l.containerPort,
        healthCheckPath: l.healthCheckPath,
        deregistrationDelaySeconds: l.deregistrationDelaySeconds,
        vpcId: this.env.vpcId,
      });
      this.targetGroups.set(key, arn);
    }
    return arn;
  }

  private async registerTarget(listener: string, version: string, ip: string, port: number): Promise<void> {
    const arn = await this.targetGroup(listener, version);
    if (this.registeredTargets.get(arn)?.has(`${ip}:${port}`)) return;
    await this.aws_("elasticloadbalancing:RegisterTargets", `target group ${arn}`, () =>
      this.aws.elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: ip, Port: port }] })),
    );
    const known = this.registeredTargets.get(arn) ?? new Set<string>();
    known.add(`${ip}:${port}`);
    this.registeredTargets.set(arn, known);
  }

  private async deregisterTarget(listener: string, version: string, ip: string, port: number): Promise<void> {
    if (!this.env.listeners[listener]) return;
    const arn = this.targetGroups.get(`${listener}/${version}`) ?? (await this.versions.findTargetGroup(listener, version));
    if (!arn) return;
    await this.aws_("elasticloadbalancing:DeregisterTargets", `target group ${arn}`, () =>
      this.aws.elb.send(new DeregisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: ip, Port: port }] })),
    );
    this.registeredTargets.get(arn)?.delete(`${ip}:${port}`);
  }

  // ---- reconcile ----

  /** The cluster's tasks that are not stopped: ListTasks and DescribeTasks in pages of 100. */
  private async liveTasks(serviceName?: string): Promise<Task[]> {
    const arns: string[] = [];
    const pages = paginateListTasks(
      { client: this.aws.ecs, pageSize: 100 },
      { cluster: this.env.clusterArn, serviceName, desiredStatus: "RUNNING" },
    );
    for await (const page of awsPages("ecs:ListTasks", `cluster ${this.clusterName}`, pages, (a, r, f) => this.aws_(a, r, f)))
      arns.push(...(page.taskArns ?? []));
    const tasks: Task[] = [];
    for (let i = 0; i < arns.length; i += 100) {
      const page = await this.aws_("ecs:DescribeTasks", `tasks of cluster ${this.clusterName}`, () =>
        this.aws.ecs.send(new DescribeTasksCommand({ cluster: this.env.clusterArn, tasks: arns.slice(i, i + 100) })),
      );
      tasks.push(...(page.tasks ?? []));
    }
    // Filter here too: ListTasks' serviceName filter is not honoured everywhere (emulators).
    return tasks.filter(
      (t) =>
        (serviceName === undefined || t.group === `service:${serviceName}`) && t.lastStatus !== "STOPPED" && t.desiredStatus !== "STOPPED",
    );
  }

  /**
   * Only the newest running control plane task acts (during a deploy two run for a while). Derived
   * from ECS each time: no lease, no state of its own.
   */
  private async isLeader(clusterTasks: () => Promise<Task[]>): Promise<boolean> {
    // A control plane of a version the stack no longer deploys (its replacement is starting) must not
    // act: it would take the newer version for one to retire.
    const deployed = await this.deployedVersion();
    if (deployed !== undefined && deployed !== this.env.version) {
      if (this.leading || this.leading === undefined)
        this.log.info("the stack deploys another version: standing by", { deployed, version: this.env.version });
      this.leading = false;
      return false;
    }
    const mine = this.identity?.taskArn;
    const running = (await clusterTasks()).filter(
      (t) => t.group === `service:${CONTROLPLANE_NAME}` && (t.lastStatus === "RUNNING" || t.taskArn === mine),
    );
    const started = (t: Task) => (t.startedAt ?? t.createdAt ?? new Date(0)).getTime();
    running.sort((a, b) => started(b) - started(a) || (a.taskArn! < b.taskArn! ? 1 : -1));
    const leader = running.length === 0 ? mine : running[0]!.taskArn;
    const leading = leader === mine;
    if (leading !== this.leading)
      this.log.info(leading ? "this control plane leads" : "a newer control plane leads: standing by", { leader: leader ?? "" });
    this.leading = leading;
    return leading;
  }

  /**
   * Makes AWS agree with the running tasks (stale instances and targets removed, lost registrations
   * restored, autoscaling floors kept) and advances the rollout of this version.
   */
  reconcile(): Promise<void> {
    this.reconciling ??= this.reconcileNow().finally(() => (this.reconciling = undefined));
    return this.reconciling;
  }

  private async reconcileNow(): Promise<void> {
    // One listing of the cluster serves the leader check, the stale registrations and the caller checks.
    let listed: Task[] | undefined;
    const clusterTasks = async () => (listed ??= await this.liveTasks());
    if (!(await this.isLeader(clusterTasks))) return;
    const tasks = await clusterTasks();
    await this.tasks.prime(tasks);
    const live = new Set(tasks.map((t) => t.taskArn!));
    const liveIps = new Set<string>();
    for (const group of Object.keys(this.env.groups)) {
      for (const inst of await this.instances(group)) {
        const arn = inst.Attributes?.[ATTR.TASK_ARN];
        if (arn && live.has(arn)) {
          const ip = inst.Attributes?.[ATTR.IPV4];
          if (ip) liveIps.add(ip);
          continue;
        }
        await this.deregisterReplica(group, inst.Id!);
        this.log.info("deregistered the instance of a stopped task", { group, task: inst.Id ?? "", taskArn: arn ?? "" });
      }
    }
    for (const [arn, report] of this.replicas) {
      if (!live.has(arn)) {
        this.replicas.delete(arn);
        continue;
      }
      liveIps.add(report.ip);
      if (this.env.groups[report.group]) await this.registerReplica(report);
    }
    this.publishRegisteredReplicas();
    const versions = await this.versions.list();
    for (const [name, l] of Object.entries(this.env.listeners)) {
      for (const version of versions.keys()) {
        const arn = await this.versions.findTargetGroup(name, version);
        if (!arn) continue;
        const health = await this.aws_("elasticloadbalancing:DescribeTargetHealth", `target group ${arn}`, () =>
          this.aws.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn })),
        );
        // DescribeTargetHealth has no pages: it answers every target of the group at once.
        this.registeredTargets.set(
          arn,
          new Set(
            (health.TargetHealthDescriptions ?? [])
              .filter((t) => t.Target?.Id && t.TargetHealth?.State !== "draining")
              .map((t) => `${t.Target!.Id}:${t.Target!.Port ?? l.containerPort}`),
          ),
        );
        for (const t of health.TargetHealthDescriptions ?? []) {
          const ip = t.Target?.Id;
          if (!ip || liveIps.has(ip) || t.TargetHealth?.State === "draining") continue;
          await this.aws_("elasticloadbalancing:DeregisterTargets", `target group ${arn}`, () =>
            this.aws.elb.send(
              new DeregisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: ip, Port: t.Target!.Port ?? l.containerPort }] }),
            ),
          );
          this.log.info("deregistered the target of a stopped task", { listener: name, version, target: `${ip}:${t.Target!.Port}` });
        }
      }
    }
    await this.removeStaleControlPlanes(tasks);
    await this.rollout(versions);
  }

  /**
   * The replicas registered per group and version, as this reconcile found and left them, published as
   * EMF lines (the dashboard's registered replicas): no API call beyond the reconcile's own listing.
   * This version's groups are counted even at 0, so the graph shows a group that lost its replicas.
   */
  private publishRegisteredReplicas(): void {
    const counts: { group: string; version: string; replicas: number }[] = [];
    for (const group of Object.keys(this.env.groups)) {
      const byVersion = new Map<string, number>([[this.env.version, 0]]);
      for (const copies of this.cloudMap.get(group)?.values() ?? []) {
        const version = copies[0]?.[ATTR.VERSION];
        if (version) byVersion.set(version, (byVersion.get(version) ?? 0) + 1);
      }
      for (const [version, replicas] of byVersion) counts.push({ group, version, replicas });
    }
    this.log.metrics?.(registeredReplicasLines(process.env[ENV.APP] ?? "", counts));
  }

  /** Control plane instances of tasks that are gone (a crashed predecessor) would send agents nowhere. */
  private async removeStaleControlPlanes(tasks: Task[]): Promise<void> {
    const live = new Set(tasks.filter((t) => t.group === `service:${CONTROLPLANE_NAME}`).map((t) => t.taskArn!));
    if (this.identity) live.add(this.identity.taskArn);
    const instances: InstanceSummary[] = [];
    const pages = paginateListInstances(
      { client: this.aws.serviceDiscovery, pageSize: 100 },
      { ServiceId: this.env.controlPlaneServiceId },
    );
    for await (const page of awsPages("servicediscovery:ListInstances", `service ${this.env.controlPlaneServiceId}`, pages, (a, r, f) =>
      this.aws_(a, r, f),
    ))
      instances.push(...(page.Instances ?? []));
    for (const inst of instances) {
      const arn = inst.Attributes?.[ATTR.TASK_ARN];
      if (arn && live.has(arn)) continue;
      await this.aws_("servicediscovery:DeregisterInstance", `control plane instance ${inst.Id}`, () =>
        this.aws.serviceDiscovery.send(new DeregisterInstanceCommand({ ServiceId: this.env.controlPlaneServiceId, InstanceId: inst.Id! })),
      ).catch(() => {});
      this.log.info("deregistered a stale control plane instance", { task: inst.Id ?? "" });
    }
  }

  // ---- the rollout state machine (docs/aws.md, "Versions and rollouts") ----

  /** Total listener weight each version has now (versions without listeners: 0). */
  private async weightsByVersion(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const l of Object.values(this.env.listeners)) {
      const rule = await this.versions.rule(l.listenerArn);
      for (const [arn, w] of rule?.weights ?? []) {
        const v = Versions.versionOfTargetGroup(arn);
        if (v) out.set(v, (out.get(v) ?? 0) + w);
      }
    }
    return out;
  }

  /** Sets every listener's traffic: `share` percent to `to`, the rest to `from` (when there is one). */
  private async shift(to: string, from: string | undefined, share: number): Promise<void> {
    for (const name of Object.keys(this.env.listeners)) {
      const weights: Weight[] = [];
      if (share > 0 || from === undefined)
        weights.push({ targetGroupArn: await this.targetGroup(name, to), weight: from === undefined ? 100 : share });
      if (from !== undefined && share < 100) weights.push({ targetGroupArn: await this.targetGroup(name, from), weight: 100 - share });
      await this.versions.setWeights(this.listener(name).listenerArn, weights);
    }
  }

  /** Removes a version's target groups from every listener rule; `fallback` takes the traffic if nothing is left. */
  private async dropFromRules(version: string, fallback: string): Promise<void> {
    for (const name of Object.keys(this.env.listeners)) {
      const l = this.listener(name);
      const rule = await this.versions.rule(l.listenerArn);
      const kept: Weight[] = [...(rule?.weights ?? [])]
        .filter(([arn]) => Versions.versionOfTargetGroup(arn) !== version)
        .map(([targetGroupArn, weight]) => ({ targetGroupArn, weight }));
      if (kept.every((w) => w.weight === 0))
        kept.splice(0, kept.length, { targetGroupArn: await this.targetGroup(name, fallback), weight: 100 });
      await this.versions.setWeights(l.listenerArn, kept);
    }
  }

  /** Why a version is not (yet) fit to take traffic, or undefined when it is. */
  private async unhealthy(v: LiveVersion, previous: LiveVersion): Promise<string | undefined> {
    const floors = this.floors(previous);
    // Every short group is named: the one that never starts may not be the first one listed.
    const short: string[] = [];
    for (const [group, floor] of floors) {
      // This reconcile's listing (kept current by the registrations since): no extra ListInstances.
      const ready = [...(await this.knownInstances(group)).values()].filter((copies) => copies[0]?.[ATTR.VERSION] === v.version).length;
      if (ready < floor) short.push(`group ${group}: ${ready}/${floor} replicas ready`);
    }
    if (short.length > 0) return short.join(", ");
    for (const name of Object.keys(this.env.listeners)) {
      const arn = await this.targetGroup(name, v.version);
      const states = await this.versions.targetStates(arn);
      if (!states.includes("healthy")) return `listener ${name}: no healthy target (${states.join(", ") || "none registered"})`;
    }
    return undefined;
  }

  /** What each of the new version's groups must run: at least its floor, and what the old version runs. */
  private floors(previous: LiveVersion): Map<string, number> {
    const out = new Map<string, number>();
    for (const [group, g] of Object.entries(this.env.groups)) {
      const old = previous.services.get(group);
      if (old && old.desired > 0) out.set(group, Math.max(g.min, old.desired));
    }
    const main = this.mainGroup;
    out.set(main, Math.max(out.get(main) ?? 0, this.env.groups[main]!.min));
    return out;
  }

  private async rollout(versions: Map<string, LiveVersion>): Promise<void> {
    const own = this.env.version;
    // This version's services exist from the start (at 0 tasks), like a stack-provisioned service would.
    for (const group of Object.keys(this.env.groups)) {
      if (!versions.get(own)?.services.has(group)) await this.createOwnService(group);
    }
    if (!versions.get(own)?.services.has(this.mainGroup) || Object.keys(this.env.groups).some((g) => !versions.get(own)?.services.has(g))) {
      versions = await this.versions.list();
    }
    const mine = versions.get(own)!;
    const main = mine.main ?? mine.services.get(this.mainGroup)!;
    const weights = await this.weightsByVersion();
    const serving = (v: LiveVersion) => (weights.get(v.version) ?? 0) > 0 || [...v.services.values()].some((s) => s.desired > 0);
    const others = [...versions.values()].filter((v) => v.version !== own && v.rollout.phase !== "rolled-back");
    // The version traffic comes from: the one with the most weight (or, without listeners, running tasks).
    const previous = others.filter(serving).sort((a, b) => (weights.get(b.version) ?? 0) - (weights.get(a.version) ?? 0))[0];
    const retire = [...versions.values()].filter((v) => v.version !== own && v !== previous);
    const drainMs = 1000 * Math.max(0, ...Object.values(this.env.listeners).map((l) => l.deregistrationDelaySeconds));
    for (const v of retire) {
      // A superseded version that still has traffic leaves the rules first, then drains, then goes.
      if ((weights.get(v.version) ?? 0) > 0) {
        await this.dropFromRules(v.version, previous?.version ?? own);
        if (v.main) await this.versions.setPhase(v.main, "retiring");
        this.log.info("superseded version taken out of traffic: draining", { version: v.version });
        continue;
      }
      if (v.rollout.phase === "retiring" && Date.now() - v.rollout.since < drainMs) continue;
      await this.retireStep(v);
    }

    const phase = mine.rollout.phase;
    const since = mine.rollout.since;
    const elapsed = Date.now() - since;

    if (phase === "rolled-back") {
      // Traffic stays with the old version; this one is retired once its in-flight requests finished.
      if (previous) await this.shift(previous.version, undefined, 100);
      if (elapsed >= drainMs) await this.scaleToZero(mine);
      return;
    }
    if (!previous) {
      // Nothing to move traffic from (first deploy, an inactive app, or the rollout is done).
      await this.shift(own, undefined, 100);
      if (phase !== "live") {
        await this.versions.setPhase(main, "live");
        this.log.info("version live", { version: own });
      }
      await this.restoreFloors(mine);
      return;
    }
    if (phase === "live" || phase === "draining") {
      await this.shift(own, previous.version, 100);
      if (phase === "live" || elapsed >= drainMs) {
        // The old version's in-flight requests had the deregistration delay to finish.
        if (phase === "draining") {
          await this.versions.setPhase(main, "live");
          this.log.info("rollout complete: version live, previous version retiring", { version: own, previous: previous.version });
        }
        await this.retireStep(previous);
      }
      return;
    }
    if (mine.rollout.request === "rollback") return this.rollBack(main, previous, "rollback requested (tsweaver aws rollout rollback)");

    if (phase === undefined || phase === "raising") {
      if (phase === undefined) {
        await this.versions.setPhase(main, "raising");
        this.log.info("rollout started: raising the new version", { version: own, previous: previous.version });
      }
      for (const [group, floor] of this.floors(previous)) await this.raise(group, own, floor);
      const why = await this.unhealthy(mine, previous);
      if (why === undefined) {
        await this.enterStep(main, previous, 0);
      } else if (phase === "raising" && elapsed > this.env.rollout.healthTimeoutSeconds * 1000) {
        await this.rollBack(main, previous, `not healthy within ${this.env.rollout.healthTimeoutSeconds} s: ${why}`);
      }
      return;
    }
    const step = Number(/^step-(\d+)$/.exec(phase)?.[1] ?? NaN);
    if (Number.isNaN(step)) {
      this.log.warn("unknown rollout phase: starting over", { version: own, phase });
      await this.versions.setPhase(main, "raising");
      return;
    }
    const why = await this.unhealthy(mine, previous);
    if (why === undefined) {
      this.unhealthySince = undefined;
    } else {
      // A replica restarting or missing one heartbeat is not a failed version: only unhealthiness that
      // lasts rolls back. (Kept in memory: a restarted control plane only waits longer.)
      this.unhealthySince ??= Date.now();
      if (Date.now() - this.unhealthySince >= UNHEALTHY_GRACE_MS)
        return this.rollBack(main, previous, `unhealthy at ${this.env.rollout.steps[step]}%: ${why}`);
      this.log.warn("new version unhealthy during a step", { version: own, why });
      return;
    }
    const errors = this.errorRate(own, since);
    if (errors && errors.rate > this.env.rollout.maxErrorRate) {
      return this.rollBack(
        main,
        previous,
        `error rate ${(errors.rate * 100).toFixed(1)}% of ${errors.calls} calls at ${this.env.rollout.steps[step]}% (limit ${(this.env.rollout.maxErrorRate * 100).toFixed(1)}%)`,
      );
    }
    const alarm = await this.alarmInAlarm();
    if (alarm) return this.rollBack(main, previous, `alarm ${alarm} in ALARM at ${this.env.rollout.steps[step]}%`);
    // Re-applied every time: a restarted control plane, or a weight changed by hand, is brought back in line.
    await this.shift(own, previous.version, this.env.rollout.steps[step] ?? 100);
    if (mine.rollout.request === "promote") return this.enterStep(main, previous, this.env.rollout.steps.length - 1, "promoted");
    if (elapsed >= this.env.rollout.stepSeconds * 1000) await this.enterStep(main, previous, step + 1);
  }

  /**
   * The first (by name) of the stack's alarms (ENV.ALARMS) that is in ALARM, if any: one DescribeAlarms
   * per 100 alarms, once per reconcile during a step. The state is checked here, not with the
   * request's StateValue filter alone: not every implementation applies it together with AlarmNames.
   */
  private async alarmInAlarm(): Promise<string | undefined> {
    const names = this.env.alarms ?? [];
    const firing: string[] = [];
    for (let i = 0; i < names.length; i += 100) {
      const out = await this.aws_("cloudwatch:DescribeAlarms", `alarms of ${this.env.deployment}`, () =>
        this.aws.cloudWatch.send(new DescribeAlarmsCommand({ AlarmNames: names.slice(i, i + 100), StateValue: "ALARM" })),
      );
      for (const a of [...(out.MetricAlarms ?? []), ...(out.CompositeAlarms ?? [])])
        if (a.StateValue === "ALARM" && a.AlarmName && names.includes(a.AlarmName)) firing.push(a.AlarmName);
    }
    return firing.sort()[0];
  }

  private async enterStep(main: VersionService, previous: LiveVersion, step: number, why?: string): Promise<void> {
    const steps = this.env.rollout.steps;
    if (step >= steps.length || steps[step] === 100) {
      await this.shift(this.env.version, previous.version, 100);
      await this.versions.setPhase(main, "draining", why);
      this.log.info("rollout at 100%: draining the previous version", {
        version: this.env.version,
        previous: previous.version,
        ...(why ? { why } : {}),
      });
      return;
    }
    await this.shift(this.env.version, previous.version, steps[step]!);
    await this.versions.setPhase(main, `step-${step}`);
    this.log.info("rollout step", { version: this.env.version, percent: String(steps[step]), step: String(step) });
  }

  private async rollBack(main: VersionService, previous: LiveVersion, reason: string): Promise<void> {
    await this.shift(previous.version, undefined, 100);
    await this.versions.setPhase(main, "rolled-back", reason);
    this.log.warn("rollout rolled back: all traffic on the previous version", {
      version: this.env.version,
      previous: previous.version,
      reason,
    });
  }

  /** Every service of a version to 0 tasks and out of autoscaling. */
  private async scaleToZero(v: LiveVersion): Promise<void> {
    for (const s of v.services.values()) {
      if (s.desired === 0) continue;
      await this.versions.deregisterScaling(s.name);
      await this.versions.setDesired(s.name, 0);
      this.log.info("group scaled to 0", { group: s.group, version: v.version });
    }
  }

  /**
   * One step of retiring a version that no longer takes traffic: scale it to 0, then (its tasks gone)
   * delete its services and target groups. Repeated each reconcile until nothing is left.
   */
  private async retireStep(v: LiveVersion): Promise<void> {
    await this.scaleToZero(v);
    let remaining = 0;
    for (const s of v.services.values()) {
      if ((await this.versions.liveTaskCount(s.name)) > 0) {
        remaining++;
        continue;
      }
      await this.versions.deleteService(s.name);
      this.log.info("version service deleted", { group: s.group, version: v.version, service: s.name });
    }
    if (remaining > 0) return;
    for (const name of Object.keys(this.env.listeners)) {
      const arn = await this.versions.findTargetGroup(name, v.version);
      if (!arn) continue;
      const rule = await this.versions.rule(this.listener(name).listenerArn);
      if (rule?.weights.has(arn)) continue; // still referenced: the rule moves first
      await this.versions
        .deleteTargetGroup(arn)
        .catch((err: Error) => this.log.warn("cannot delete a retired target group yet", { arn, err: err.message }));
      this.targetGroups.delete(`${name}/${v.version}`);
      this.log.info("version target group deleted", { listener: name, version: v.version });
    }
  }

  /** Groups of the live version whose autoscaling floor is above their desired count are raised back to it. */
  private async restoreFloors(v: LiveVersion): Promise<void> {
    for (const s of v.services.values()) {
      const min = Number(s.tags[TAGS.MIN] ?? 1);
      // Only groups that were activated (desired > 0 once) are kept at their floor; others wait for a call.
      if (s.desired > 0 && s.desired < min) await this.raise(s.group, v.version, min);
    }
  }

  /** The stack's `Version` output: the version the last deploy rolls out (undefined if unreadable). */
  private async deployedVersion(): Promise<string | undefined> {
    try {
      const out = await this.aws_("cloudformation:DescribeStacks", `stack ${this.env.deployment}`, () =>
        this.aws.cloudFormation.send(new DescribeStacksCommand({ StackName: this.env.deployment })),
      );
      return out.Stacks?.[0]?.Outputs?.find((o) => o.OutputKey === OUTPUTS.VERSION)?.OutputValue;
    } catch {
      return undefined;
    }
  }

  // ---- autoscaling beyond CPU, scale-in protection (scaling.ts) ----

  /**
   * The CPU and (with a `load_target`) load policies of a version's group service, as configured. Put
   * when the control plane registers the service's floor, and once per control plane for a service
   * whose replicas report (`tsweaver aws activate` registers main's floor with CPU tracking only).
   */
  private async putServicePolicies(group: string, version: string): Promise<void> {
    const g = Object.hasOwn(this.env.groups, group) ? this.env.groups[group] : undefined;
    if (g === undefined) return;
    const service = versionedServiceName(group, version);
    const put = (name: string, config: Parameters<typeof putTargetTracking>[4]) =>
      putTargetTracking(this.aws, this.clusterName, service, name, config, (api, resource, fn) => this.aws_(api, resource, fn));
    await put(POLICY.CPU, cpuPolicy(g.cpuTarget));
    if (g.loadTarget !== undefined) await put(POLICY.LOAD, loadPolicy(process.env[ENV.APP] ?? "", group, version, g.loadTarget));
  }

  /**
   * What a replica's report means for scaling: its group serves the listeners it exports (a request-count
   * policy per listener, when the group has `requests_per_target`), and whether it is busy (scale-in
   * protection). Failures are logged: they never fail the registration.
   */
  private async scalingOnReport(report: ReplicaReport): Promise<void> {
    const g = Object.hasOwn(this.env.groups, report.group) ? this.env.groups[report.group] : undefined;
    const version = this.versionOf(report);
    const service = versionedServiceName(report.group, version);
    if (g !== undefined && !this.scaledServices.has(service)) {
      // Marked first: a failure is reported once per control plane, not with every heartbeat.
      this.scaledServices.add(service);
      await this.putServicePolicies(report.group, version).catch((err: Error) =>
        this.log.warn("cannot set the group's scaling policies", { group: report.group, version, err: err.message }),
      );
    }
    if (g?.requestsPerTarget !== undefined) {
      for (const listener of Object.keys(report.listeners)) {
        const key = `${service}/${listener}`;
        if (this.requestPolicies.has(key) || !Object.hasOwn(this.env.listeners, listener)) continue;
        try {
          const label = albResourceLabel(this.listener(listener).listenerArn, await this.targetGroup(listener, version));
          await putTargetTracking(
            this.aws,
            this.clusterName,
            service,
            POLICY.requests(listener),
            requestsPolicy(label, g.requestsPerTarget),
            (api, resource, fn) => this.aws_(api, resource, fn),
          );
          this.requestPolicies.add(key);
          this.log.info("request-count scaling policy set", {
            group: report.group,
            version,
            listener,
            target: String(g.requestsPerTarget),
          });
        } catch (err) {
          this.log.warn("cannot set the request-count scaling policy", {
            group: report.group,
            version,
            listener,
            err: (err as Error).message,
          });
        }
      }
    }
    if (report.busy === undefined || g?.scaleInProtection === false) return;
    const was = this.protection.protectedNow(report.taskArn);
    void this.protection
      .reportInBackground(report.taskArn, report.busy, (err) =>
        this.log.warn("cannot change the task's scale-in protection: busy reports are ignored for 5 minutes", {
          task: report.taskId,
          busy: String(report.busy),
          err: err.message,
        }),
      )
      .then(() => {
        const now = this.protection.protectedNow(report.taskArn);
        if (was !== now)
          this.log.info(now ? "busy replica protected from scale-in" : "idle replica no longer protected from scale-in", {
            group: report.group,
            version,
            task: report.taskId,
          });
      });
  }

  /** Releases the scale-in protection of tasks that stop serving (logged, never thrown). */
  private async releaseProtection(taskArns: readonly string[]): Promise<void> {
    const held = taskArns.filter((t) => this.protection.protectedNow(t));
    await this.protection
      .release(taskArns)
      .then(() => {
        for (const t of held) this.log.info("stopping replica no longer protected from scale-in", { task: t.split("/").pop()! });
      })
      .catch((err: Error) => this.log.warn("cannot release the task's scale-in protection", { err: err.message }));
  }

  /**
   * On stack deletion: no group task may stay protected (a restarted control plane does not know
   * which ones its predecessor protected, so every running group task is released).
   */
  private async releaseEveryProtection(): Promise<void> {
    const tasks = await this.liveTasks().catch(() => [] as Task[]);
    const groupTasks = tasks.filter((t) => t.group !== `service:${CONTROLPLANE_NAME}`).map((t) => t.taskArn!);
    await this.protection
      .release(groupTasks, { all: true })
      .catch((err: Error) => this.log.warn("cannot release the tasks' scale-in protection", { err: err.message }));
  }

  // ---- stack deletion ----

  /**
   * Tasks of these services that have not stopped yet. A task ECS is stopping already has desired status
   * STOPPED (ListTasks' RUNNING filter leaves it out) while it drains: both lists are read, and only a
   * last status of STOPPED counts as gone.
   */
  private async tasksNotStopped(services: ReadonlySet<string>): Promise<number> {
    const arns: string[] = [];
    for (const desiredStatus of ["RUNNING", "STOPPED"] as const) {
      const pages = paginateListTasks({ client: this.aws.ecs, pageSize: 100 }, { cluster: this.env.clusterArn, desiredStatus });
      for await (const page of awsPages("ecs:ListTasks", `cluster ${this.clusterName}`, pages, (a, r, f) => this.aws_(a, r, f)))
        arns.push(...(page.taskArns ?? []));
    }
    let left = 0;
    for (let i = 0; i < arns.length; i += 100) {
      const page = await this.aws_("ecs:DescribeTasks", `tasks of cluster ${this.clusterName}`, () =>
        this.aws.ecs.send(new DescribeTasksCommand({ cluster: this.env.clusterArn, tasks: arns.slice(i, i + 100) })),
      );
      left += (page.tasks ?? []).filter((t) => services.has((t.group ?? "").replace(/^service:/, "")) && t.lastStatus !== "STOPPED").length;
    }
    return left;
  }

  private async stackDeleting(): Promise<boolean> {
    try {
      const out = await this.aws.cloudFormation.send(new DescribeStacksCommand({ StackName: this.env.deployment }));
      return out.Stacks?.[0]?.StackStatus === "DELETE_IN_PROGRESS";
    } catch {
      return false;
    }
  }

  /**
   * `cdk destroy`: CloudFormation stops the control plane before the cluster, listeners and namespace
   * (they are its dependencies), so it removes what the template does not hold: every version's
   * services, target groups and listener rules' targets, and its Cloud Map instances.
   */
  private async retireEverything(): Promise<void> {
    this.log.info("stack deletion: removing every version's services and target groups", {});
    await this.releaseEveryProtection();
    const versions = await this.versions.list();
    for (const v of versions.values()) {
      await this.scaleToZero(v);
      for (const s of v.services.values()) await this.versions.deleteService(s.name).catch(() => {});
    }
    for (const [name, l] of Object.entries(this.env.listeners)) {
      await this.versions.deleteRule(l.listenerArn).catch(() => {});
      for (const v of versions.keys()) {
        const arn = await this.versions.findTargetGroup(name, v).catch(() => undefined);
        if (arn) await this.versions.deleteTargetGroup(arn).catch(() => {});
      }
    }
    // Agents of the deleted services are draining; the ECS cluster (deleted after this task stops) can
    // only go once their tasks have. Wait for them within the stop timeout, then remove every instance
    // again: a heartbeat that was in flight when the teardown began may have re-registered one.
    const deadline = Date.now() + TEARDOWN_WAIT_MS;
    const services = new Set([...versions.values()].flatMap((v) => [...v.services.values()].map((s) => s.name)));
    for (;;) {
      const left = await this.tasksNotStopped(services).catch(() => 0);
      if (left === 0 || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 2_000));
    }
    for (const group of Object.keys(this.env.groups)) {
      for (const inst of await this.instances(group).catch(() => [])) await this.deregisterReplica(group, inst.Id!).catch(() => {});
    }
    this.log.info("stack deletion: every version's services, target groups and replicas removed", {});
  }
}

/** `tsweaver aws controlplane`: the control plane task's command. */
export async function controlPlaneCommand(): Promise<void> {
  const cp = new ControlPlane(controlPlaneEnvFromProcess());
  const stop = () => void cp.stop().finally(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  await cp.start();
}
