import {
  DescribeScalableTargetsCommand,
  RegisterScalableTargetCommand,
} from "@aws-sdk/client-application-auto-scaling";
import { DescribeServicesCommand, DescribeTasksCommand, ListTasksCommand, UpdateServiceCommand, type Task } from "@aws-sdk/client-ecs";
import { DeregisterTargetsCommand, DescribeTargetHealthCommand, RegisterTargetsCommand } from "@aws-sdk/client-elastic-load-balancing-v2";
import { DeregisterInstanceCommand, ListInstancesCommand, RegisterInstanceCommand, type InstanceSummary } from "@aws-sdk/client-servicediscovery";
import type http from "node:http";
import { AwsClients, callAws } from "./clients.js";
import { CONTROLPLANE_NAME, ENV, type GroupsEnv, type ListenersEnv } from "./config.js";
import { jsonLogger, type JsonLogger } from "./jsonlog.js";
import { taskIdentity, type TaskIdentity } from "./metadata.js";
import { serveControlApi, type ControlApi, type ReplicaReport } from "./protocol.js";

/** Cloud Map attributes the control plane sets on every replica instance. */
export const ATTR = {
  IPV4: "AWS_INSTANCE_IPV4",
  PORT: "AWS_INSTANCE_PORT",
  TASK_ARN: "TSWEAVER_TASK_ARN",
  VERSION: "TSWEAVER_VERSION",
  WEAVELET: "TSWEAVER_WEAVELET",
  GROUP: "TSWEAVER_GROUP",
} as const;

/** The control plane's configuration, from the task environment the stack sets. */
export interface ControlPlaneEnv {
  deployment: string;
  clusterArn: string;
  namespaceId: string;
  controlPlaneServiceId: string;
  controlPort: number;
  rpcPort: number;
  secret: string;
  groups: GroupsEnv;
  listeners: ListenersEnv;
  /** How often state is reconciled with AWS (ms). */
  reconcileMs: number;
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
    clusterArn: required(ENV.CLUSTER),
    namespaceId: required(ENV.NAMESPACE_ID),
    controlPlaneServiceId: required(ENV.CONTROLPLANE_SERVICE_ID),
    controlPort: Number(required(ENV.CONTROL_PORT)),
    rpcPort: Number(required(ENV.RPC_PORT)),
    secret: required(ENV.SECRET),
    groups: json<GroupsEnv>(ENV.GROUPS),
    listeners: json<ListenersEnv>(ENV.LISTENERS),
    reconcileMs: Number(process.env["TSWEAVER_RECONCILE_MS"] ?? 5_000),
  };
}

/**
 * The AWS deployer's EnvelopeHandler side: agents relay their weavelets' requests here. It raises ECS
 * services on activation, registers ready replicas in Cloud Map and listeners in ALB target groups, and
 * keeps no state AWS does not also hold: on start, and then periodically, it rebuilds its view from ECS,
 * Cloud Map, ELBv2 and Application Auto Scaling and repairs what differs.
 */
export class ControlPlane implements ControlApi {
  private readonly clusterName: string;
  private readonly groupLocks = new Map<string, Promise<unknown>>();
  private readonly taskLocks = new Map<string, Promise<unknown>>();
  /** Floors this process recorded as autoscaling minimums (so repeated activations skip the call). */
  private readonly floorsRecorded = new Map<string, number>();
  /** Replicas that reported ready (rebuilt from heartbeats after a restart). */
  private readonly replicas = new Map<string, ReplicaReport>();
  private server: http.Server | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reconciling: Promise<void> | undefined;
  private identity: TaskIdentity | undefined;
  droppedSpans = 0;
  /** Counters of AWS calls by API (reported in logs; used to count calls per activation). */
  readonly awsCalls = new Map<string, number>();

  constructor(
    private readonly env: ControlPlaneEnv,
    private readonly aws = new AwsClients(),
    private readonly log: JsonLogger = jsonLogger("controlplane"),
  ) {
    this.clusterName = env.clusterArn.split("/").pop()!;
  }

  /** Starts serving agents on the task's address and registers the control plane in Cloud Map. */
  async start(): Promise<void> {
    this.identity = await taskIdentity();
    const { server } = await serveControlApi(this.identity.ip, this.env.controlPort, this.env.secret, this, (why, peer) =>
      this.log.warn("rejected an agent request", { why, peer }),
    );
    this.server = server;
    await this.aws_("servicediscovery:RegisterInstance", `control plane service ${this.env.controlPlaneServiceId}`, () =>
      this.aws.serviceDiscovery.send(
        new RegisterInstanceCommand({
          ServiceId: this.env.controlPlaneServiceId,
          InstanceId: this.identity!.taskId,
          Attributes: { [ATTR.IPV4]: this.identity!.ip, [ATTR.PORT]: String(this.env.controlPort), [ATTR.TASK_ARN]: this.identity!.taskArn },
        }),
      ),
    );
    this.log.info("control plane serving", { address: `${this.identity.ip}:${this.env.controlPort}`, deployment: this.env.deployment });
    await this.reconcile().catch((err: Error) => this.log.error("reconcile failed", { err: err.message }));
    this.timer = setInterval(() => void this.reconcile().catch((err: Error) => this.log.error("reconcile failed", { err: err.message })), this.env.reconcileMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.server?.close();
    this.server?.closeAllConnections();
    if (this.identity) {
      await this.aws.serviceDiscovery
        .send(new DeregisterInstanceCommand({ ServiceId: this.env.controlPlaneServiceId, InstanceId: this.identity.taskId }))
        .catch(() => {});
    }
  }

  // ---- the API agents call ----

  async activate(req: { taskArn: string; group: string; component: string; routed: boolean }): Promise<Record<string, never>> {
    const group = this.groupOf(req.component);
    await this.raise(group, this.env.groups[group]!.min);
    this.log.info("component activated", { component: req.component, group, by: req.group });
    return {};
  }

  async ready(report: ReplicaReport): Promise<Record<string, never>> {
    const g = this.env.groups[report.group];
    if (!g) throw new Error(`unknown group ${report.group} (known: ${Object.keys(this.env.groups).join(", ")})`);
    const first = !this.replicas.has(report.taskArn);
    this.replicas.set(report.taskArn, report);
    await this.registerReplica(report);
    for (const [listener, port] of Object.entries(report.listeners)) await this.registerTarget(listener, report.ip, port);
    if (first) this.log.info("replica ready", { group: report.group, task: report.taskId, address: `${report.ip}:${report.port}` });
    return {};
  }

  async listenerPort(req: { listener: string }): Promise<{ port: number }> {
    return { port: this.listener(req.listener).containerPort };
  }

  async exportListener(req: { taskArn: string; listener: string; ip: string; port: number }): Promise<{ url: string }> {
    const l = this.listener(req.listener);
    await this.registerTarget(req.listener, req.ip, req.port);
    const known = this.replicas.get(req.taskArn);
    if (known) known.listeners[req.listener] = req.port;
    return { url: l.url };
  }

  async stopping(report: ReplicaReport): Promise<Record<string, never>> {
    this.replicas.delete(report.taskArn);
    await this.deregisterReplica(report.group, report.taskId);
    for (const [listener, port] of Object.entries(report.listeners)) await this.deregisterTarget(listener, report.ip, port);
    this.log.info("replica stopping: deregistered", { group: report.group, task: report.taskId });
    return {};
  }

  async spans(req: { count: number }): Promise<Record<string, never>> {
    this.droppedSpans += req.count;
    return {};
  }

  // ---- AWS operations ----

  /** Counts and runs an AWS call with an error naming the API and resource. */
  private aws_<T>(api: string, resource: string, fn: () => Promise<T>): Promise<T> {
    this.awsCalls.set(api, (this.awsCalls.get(api) ?? 0) + 1);
    return callAws(api, resource, fn);
  }

  private groupOf(component: string): string {
    for (const [name, g] of Object.entries(this.env.groups)) if (g.components.includes(component)) return name;
    throw new Error(`unknown component ${component}: no group of this deployment hosts it (was the stack deployed from this version of the app?)`);
  }

  private listener(name: string): ListenersEnv[string] {
    const l = this.env.listeners[name];
    if (!l) throw new Error(`listener ${name} is not configured: add [aws.listeners.${name}] to weaver.toml and cdk deploy`);
    return l;
  }

  /**
   * Raises a group's ECS service to at least `floor` tasks and records the floor as the autoscaling
   * minimum. Serialized per group; a no-op when already there, so concurrent activations are safe.
   */
  raise(group: string, floor: number, recordFloor = true): Promise<void> {
    const previous = this.groupLocks.get(group) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(() => this.raiseNow(group, floor, recordFloor));
    this.groupLocks.set(group, next);
    return next;
  }

  private async raiseNow(group: string, floor: number, recordFloor: boolean): Promise<void> {
    const g = this.env.groups[group]!;
    const described = await this.aws_("ecs:DescribeServices", `service ${g.service}`, () =>
      this.aws.ecs.send(new DescribeServicesCommand({ cluster: this.env.clusterArn, services: [g.service] })),
    );
    const service = described.services?.[0];
    if (!service) throw new Error(`ecs:DescribeServices on service ${g.service}: not found in cluster ${this.clusterName} (${described.failures?.[0]?.reason ?? "no reason given"})`);
    const raised = (service.desiredCount ?? 0) < floor;
    if (raised) {
      await this.aws_("ecs:UpdateService", `service ${g.service}`, () =>
        this.aws.ecs.send(new UpdateServiceCommand({ cluster: this.env.clusterArn, service: g.service, desiredCount: floor })),
      );
      this.log.info("group raised", { group, desired: floor });
    }
    // A floor read back from autoscaling is already recorded; an activation records (or confirms) it once.
    if (!recordFloor || (!raised && this.floorsRecorded.get(group) === floor)) return;
    this.floorsRecorded.set(group, floor);
    try {
      await this.aws_("application-autoscaling:RegisterScalableTarget", `service/${this.clusterName}/${g.service}`, () =>
        this.aws.scaling.send(
          new RegisterScalableTargetCommand({
            ServiceNamespace: "ecs",
            ResourceId: `service/${this.clusterName}/${g.service}`,
            ScalableDimension: "ecs:service:DesiredCount",
            MinCapacity: floor,
            MaxCapacity: Math.max(floor, g.max),
          }),
        ),
      );
    } catch (err) {
      // The desired count is what runs tasks; the floor only survives redeploys. Report, don't fail.
      this.log.warn("cannot record the group's autoscaling floor", { group, err: (err as Error).message });
    }
  }

  /** Runs registration changes of one task one at a time (a heartbeat and a reconcile may coincide). */
  private perTask<T>(taskId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.taskLocks.get(taskId) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(fn);
    this.taskLocks.set(taskId, next);
    void next.finally(() => {
      if (this.taskLocks.get(taskId) === next) this.taskLocks.delete(taskId);
    }).catch(() => {});
    return next;
  }

  private registerReplica(r: ReplicaReport): Promise<void> {
    return this.perTask(r.taskId, () => this.registerReplicaNow(r));
  }

  private async registerReplicaNow(r: ReplicaReport): Promise<void> {
    const g = this.env.groups[r.group]!;
    const attrs = { [ATTR.IPV4]: r.ip, [ATTR.PORT]: String(r.port), [ATTR.TASK_ARN]: r.taskArn, [ATTR.VERSION]: this.env.deployment, [ATTR.WEAVELET]: r.weaveletId, [ATTR.GROUP]: r.group };
    const existing = (await this.instances(r.group)).filter((i) => i.Id === r.taskId);
    const same = existing.length === 1 && Object.entries(attrs).every(([k, v]) => existing[0]!.Attributes?.[k] === v);
    if (same) return;
    // Replace rather than re-register: some Cloud Map implementations keep both copies of a re-used id.
    for (let i = 0; i < existing.length; i++) await this.deregisterReplicaNow(r.group, r.taskId);
    await this.aws_("servicediscovery:RegisterInstance", `instance ${r.taskId} of service ${g.discoveryServiceId} (group ${r.group})`, () =>
      this.aws.serviceDiscovery.send(new RegisterInstanceCommand({ ServiceId: g.discoveryServiceId, InstanceId: r.taskId, Attributes: attrs })),
    );
  }

  private deregisterReplica(group: string, taskId: string): Promise<void> {
    return this.perTask(taskId, () => this.deregisterReplicaNow(group, taskId));
  }

  private async deregisterReplicaNow(group: string, taskId: string): Promise<void> {
    const g = this.env.groups[group]!;
    try {
      await this.aws_("servicediscovery:DeregisterInstance", `instance ${taskId} of service ${g.discoveryServiceId} (group ${group})`, () =>
        this.aws.serviceDiscovery.send(new DeregisterInstanceCommand({ ServiceId: g.discoveryServiceId, InstanceId: taskId })),
      );
    } catch (err) {
      if (!/InstanceNotFound/.test((err as Error).message)) throw err;
    }
  }

  private async instances(group: string): Promise<InstanceSummary[]> {
    const g = this.env.groups[group]!;
    const out: InstanceSummary[] = [];
    let token: string | undefined;
    do {
      const page = await this.aws_("servicediscovery:ListInstances", `service ${g.discoveryServiceId} (group ${group})`, () =>
        this.aws.serviceDiscovery.send(new ListInstancesCommand({ ServiceId: g.discoveryServiceId, NextToken: token })),
      );
      out.push(...(page.Instances ?? []));
      token = page.NextToken;
    } while (token);
    return out;
  }

  private async registerTarget(listener: string, ip: string, port: number): Promise<void> {
    const l = this.listener(listener);
    await this.aws_("elasticloadbalancing:RegisterTargets", `target group ${l.targetGroupArn}`, () =>
      this.aws.elb.send(new RegisterTargetsCommand({ TargetGroupArn: l.targetGroupArn, Targets: [{ Id: ip, Port: port }] })),
    );
  }

  private async deregisterTarget(listener: string, ip: string, port: number): Promise<void> {
    const l = this.env.listeners[listener];
    if (!l) return;
    await this.aws_("elasticloadbalancing:DeregisterTargets", `target group ${l.targetGroupArn}`, () =>
      this.aws.elb.send(new DeregisterTargetsCommand({ TargetGroupArn: l.targetGroupArn, Targets: [{ Id: ip, Port: port }] })),
    );
  }

  /** The service's tasks that are not stopped (ECS service tasks carry group "service:<name>"). */
  private async runningTasks(service: string): Promise<Task[]> {
    const g = { service };
    const arns: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.aws_("ecs:ListTasks", `service ${g.service}`, () =>
        this.aws.ecs.send(new ListTasksCommand({ cluster: this.env.clusterArn, serviceName: g.service, desiredStatus: "RUNNING", nextToken: token })),
      );
      arns.push(...(page.taskArns ?? []));
      token = page.nextToken;
    } while (token);
    const tasks: Task[] = [];
    for (let i = 0; i < arns.length; i += 100) {
      const page = await this.aws_("ecs:DescribeTasks", `tasks of service ${g.service}`, () =>
        this.aws.ecs.send(new DescribeTasksCommand({ cluster: this.env.clusterArn, tasks: arns.slice(i, i + 100) })),
      );
      tasks.push(...(page.tasks ?? []));
    }
    // Filter here too: ListTasks' serviceName filter is not honoured everywhere (emulators).
    return tasks.filter((t) => t.group === `service:${g.service}` && t.lastStatus !== "STOPPED" && t.desiredStatus !== "STOPPED");
  }

  /**
   * Makes AWS agree with the running tasks: instances and targets of tasks that are gone are removed,
   * replicas that reported ready but lost their registration get it back, and groups whose autoscaling
   * floor is above zero are raised to it (after a redeploy reset them to 0).
   */
  reconcile(): Promise<void> {
    this.reconciling ??= this.reconcileNow().finally(() => (this.reconciling = undefined));
    return this.reconciling;
  }

  private async reconcileNow(): Promise<void> {
    const liveIps = new Set<string>();
    for (const group of Object.keys(this.env.groups)) {
      const live = new Set((await this.runningTasks(this.env.groups[group]!.service)).map((t) => t.taskArn!));
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
      for (const [arn, report] of this.replicas) {
        if (report.group !== group) continue;
        if (!live.has(arn)) {
          this.replicas.delete(arn);
          continue;
        }
        liveIps.add(report.ip);
        await this.registerReplica(report);
      }
    }
    for (const [name, l] of Object.entries(this.env.listeners)) {
      const health = await this.aws_("elasticloadbalancing:DescribeTargetHealth", `target group ${l.targetGroupArn}`, () =>
        this.aws.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: l.targetGroupArn })),
      );
      for (const t of health.TargetHealthDescriptions ?? []) {
        const ip = t.Target?.Id;
        if (!ip || liveIps.has(ip) || t.TargetHealth?.State === "draining") continue;
        await this.deregisterTarget(name, ip, t.Target!.Port ?? l.containerPort);
        this.log.info("deregistered the target of a stopped task", { listener: name, target: `${ip}:${t.Target!.Port}` });
      }
    }
    await this.removeStaleControlPlanes();
    await this.restoreFloors();
  }

  /** Control plane instances of tasks that are gone (a crashed predecessor) would send agents nowhere. */
  private async removeStaleControlPlanes(): Promise<void> {
    const live = new Set((await this.runningTasks(CONTROLPLANE_NAME)).map((t) => t.taskArn!));
    if (this.identity) live.add(this.identity.taskArn);
    const list = await this.aws_("servicediscovery:ListInstances", `service ${this.env.controlPlaneServiceId}`, () =>
      this.aws.serviceDiscovery.send(new ListInstancesCommand({ ServiceId: this.env.controlPlaneServiceId })),
    );
    for (const inst of list.Instances ?? []) {
      const arn = inst.Attributes?.[ATTR.TASK_ARN];
      if (arn && live.has(arn)) continue;
      await this.aws_("servicediscovery:DeregisterInstance", `control plane instance ${inst.Id}`, () =>
        this.aws.serviceDiscovery.send(new DeregisterInstanceCommand({ ServiceId: this.env.controlPlaneServiceId, InstanceId: inst.Id! })),
      ).catch(() => {});
      this.log.info("deregistered a stale control plane instance", { task: inst.Id ?? "" });
    }
  }

  private async restoreFloors(): Promise<void> {
    const ids = Object.values(this.env.groups).map((g) => `service/${this.clusterName}/${g.service}`);
    let targets;
    try {
      targets = await this.aws_("application-autoscaling:DescribeScalableTargets", `cluster ${this.clusterName}`, () =>
        this.aws.scaling.send(new DescribeScalableTargetsCommand({ ServiceNamespace: "ecs", ResourceIds: ids, ScalableDimension: "ecs:service:DesiredCount" })),
      );
    } catch (err) {
      this.log.warn("cannot read autoscaling floors", { err: (err as Error).message });
      return;
    }
    const floors = new Map<string, number>();
    for (const t of targets.ScalableTargets ?? []) {
      const group = Object.entries(this.env.groups).find(([, g]) => t.ResourceId === `service/${this.clusterName}/${g.service}`)?.[0];
      if (group && (t.MinCapacity ?? 0) > 0) floors.set(group, t.MinCapacity!);
    }
    if (floors.size === 0) return;
    // One DescribeServices for all of them; only groups below their floor are raised.
    const services = await this.aws_("ecs:DescribeServices", `cluster ${this.clusterName}`, () =>
      this.aws.ecs.send(new DescribeServicesCommand({ cluster: this.env.clusterArn, services: [...floors.keys()].map((g) => this.env.groups[g]!.service) })),
    );
    for (const [group, floor] of floors) {
      const desired = services.services?.find((x) => x.serviceName === this.env.groups[group]!.service)?.desiredCount ?? 0;
      if (desired < floor) await this.raise(group, floor, false);
    }
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
