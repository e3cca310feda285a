/**
 * A deployment's versions as AWS holds them: each version's ECS services (`<group>-<version>`, tagged),
 * its target groups (`tw-<hash>-<version>`) and the weighted-forward rule the control plane owns on each
 * listener. The control plane and the CLI both read (and change) versions through this, so they agree
 * on what AWS says; neither keeps state of its own.
 */
import {
  DeleteScalingPolicyCommand,
  DeregisterScalableTargetCommand,
  PutScalingPolicyCommand,
  RegisterScalableTargetCommand,
} from "@aws-sdk/client-application-auto-scaling";
import {
  CreateServiceCommand,
  DeleteServiceCommand,
  DescribeServicesCommand,
  DescribeTasksCommand,
  ListServicesCommand,
  paginateListTasks,
  TagResourceCommand,
  UntagResourceCommand,
  UpdateServiceCommand,
} from "@aws-sdk/client-ecs";
import {
  CreateRuleCommand,
  CreateTargetGroupCommand,
  DeleteRuleCommand,
  DeleteTargetGroupCommand,
  DescribeRulesCommand,
  DescribeTagsCommand,
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ModifyRuleCommand,
  ModifyTargetGroupAttributesCommand,
  type Action,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { type AwsClients, awsPages, callAws } from "./clients.js";
import { cpuPolicy, POLICY } from "./scaling.js";
import { parseServiceName, RULE_PRIORITY, TAGS, targetGroupName, versionedServiceName, type RolloutPhase } from "./contract.js";

/** One group's ECS service in one version. */
export interface VersionService {
  readonly group: string;
  readonly version: string;
  readonly name: string;
  readonly arn: string;
  readonly desired: number;
  readonly running: number;
  readonly pending: number;
  readonly taskDefinition: string;
  readonly tags: Readonly<Record<string, string>>;
}

/** Where a rollout to a version stands, as its main service's tags say. */
export interface RolloutState {
  readonly phase: RolloutPhase | undefined;
  /** When the phase began (ms since the epoch). */
  readonly since: number;
  readonly reason: string | undefined;
  readonly request: "promote" | "rollback" | undefined;
}

/** A version with services in the cluster. */
export interface LiveVersion {
  readonly version: string;
  /** Services by group. */
  readonly services: ReadonlyMap<string, VersionService>;
  /** The service tagged as the version's main group (it carries the rollout state). */
  readonly main: VersionService | undefined;
  readonly rollout: RolloutState;
}

/** The control plane's weighted-forward rule on a listener. */
export interface ListenerRule {
  readonly ruleArn: string;
  /** Target group ARN → weight. */
  readonly weights: ReadonlyMap<string, number>;
}

/** A version's share of a listener's traffic. */
export interface Weight {
  readonly targetGroupArn: string;
  readonly weight: number;
}

/** How a version's services are created (the control plane's task environment). */
export interface ServiceNetwork {
  readonly subnets: readonly string[];
  readonly securityGroup: string;
  readonly assignPublicIp: "ENABLED" | "DISABLED";
}

/** Settings of a version's target group of a listener. */
export interface TargetGroupSpec {
  readonly listener: string;
  readonly containerPort: number;
  readonly healthCheckPath: string;
  readonly deregistrationDelaySeconds: number;
  readonly vpcId: string;
}

export class Versions {
  constructor(
    private readonly aws: AwsClients,
    /** ECS cluster name or ARN. */
    private readonly cluster: string,
    private readonly deployment: string,
    /** Counts and wraps each AWS call (the control plane counts them; errors name API and resource). */
    private readonly call: <T>(api: string, resource: string, fn: () => Promise<T>) => Promise<T> = callAws,
  ) {}

  private get clusterName(): string {
    return this.cluster.split("/").pop()!;
  }

  /** Every version with an ACTIVE service in the cluster, keyed by version id. */
  async list(): Promise<Map<string, LiveVersion>> {
    const arns: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.call("ecs:ListServices", `cluster ${this.clusterName}`, () =>
        this.aws.ecs.send(new ListServicesCommand({ cluster: this.cluster, nextToken: token })),
      );
      arns.push(...(page.serviceArns ?? []));
      token = page.nextToken;
    } while (token);
    const versioned = arns.filter((a) => parseServiceName(a.split("/").pop()!) !== undefined);
    const byVersion = new Map<string, Map<string, VersionService>>();
    for (let i = 0; i < versioned.length; i += 10) {
      const page = await this.call("ecs:DescribeServices", `cluster ${this.clusterName}`, () =>
        this.aws.ecs.send(new DescribeServicesCommand({ cluster: this.cluster, services: versioned.slice(i, i + 10), include: ["TAGS"] })),
      );
      for (const s of page.services ?? []) {
        if (s.status !== "ACTIVE") continue;
        const parsed = parseServiceName(s.serviceName!)!;
        const tags = Object.fromEntries((s.tags ?? []).map((t) => [t.key ?? "", t.value ?? ""]));
        const services = byVersion.get(parsed.version) ?? new Map<string, VersionService>();
        services.set(parsed.group, {
          group: parsed.group,
          version: parsed.version,
          name: s.serviceName!,
          arn: s.serviceArn!,
          desired: s.desiredCount ?? 0,
          running: s.runningCount ?? 0,
          pending: s.pendingCount ?? 0,
          taskDefinition: s.taskDefinition ?? "",
          tags,
        });
        byVersion.set(parsed.version, services);
      }
    }
    const out = new Map<string, LiveVersion>();
    for (const [version, services] of byVersion) {
      const main = [...services.values()].find((s) => s.tags[TAGS.MAIN] === "true");
      out.set(version, { version, services, main, rollout: rolloutOf(main) });
    }
    return out;
  }

  /** Creates a version's service for a group at 0 tasks (idempotent: an existing one is left alone). */
  async createService(spec: {
    group: string;
    version: string;
    taskDefinition: string;
    min: number;
    max: number;
    main: boolean;
    network: ServiceNetwork;
  }): Promise<void> {
    const name = versionedServiceName(spec.group, spec.version);
    const tags = [
      { key: TAGS.DEPLOYMENT, value: this.deployment },
      { key: TAGS.VERSION, value: spec.version },
      { key: TAGS.GROUP, value: spec.group },
      { key: TAGS.MIN, value: String(spec.min) },
      { key: TAGS.MAX, value: String(spec.max) },
      ...(spec.main ? [{ key: TAGS.MAIN, value: "true" }] : []),
    ];
    await this.call("ecs:CreateService", `service ${name}`, () =>
      this.aws.ecs.send(
        new CreateServiceCommand({
          cluster: this.cluster,
          serviceName: name,
          taskDefinition: spec.taskDefinition,
          // The control plane raises it; nothing else ever sets its desired count.
          desiredCount: 0,
          launchType: "FARGATE",
          networkConfiguration: {
            awsvpcConfiguration: {
              subnets: [...spec.network.subnets],
              securityGroups: [spec.network.securityGroup],
              assignPublicIp: spec.network.assignPublicIp,
            },
          },
          deploymentConfiguration: {
            minimumHealthyPercent: 100,
            maximumPercent: 200,
            deploymentCircuitBreaker: { enable: true, rollback: true },
          },
          enableECSManagedTags: true,
          propagateTags: "SERVICE",
          tags,
        }),
      ),
    );
  }

  async setDesired(service: string, desired: number): Promise<void> {
    await this.call("ecs:UpdateService", `service ${service}`, () =>
      this.aws.ecs.send(new UpdateServiceCommand({ cluster: this.cluster, service, desiredCount: desired })),
    );
  }

  /** Autoscaling floor and bounds of a version's service, with CPU target tracking. */
  async registerScaling(service: string, min: number, max: number, cpuTarget: number): Promise<void> {
    const key = {
      ServiceNamespace: "ecs" as const,
      ResourceId: `service/${this.clusterName}/${service}`,
      ScalableDimension: "ecs:service:DesiredCount" as const,
    };
    await this.call("application-autoscaling:RegisterScalableTarget", key.ResourceId, () =>
      this.aws.scaling.send(new RegisterScalableTargetCommand({ ...key, MinCapacity: min, MaxCapacity: Math.max(min, max) })),
    );
    await this.call("application-autoscaling:PutScalingPolicy", key.ResourceId, () =>
      this.aws.scaling.send(
        new PutScalingPolicyCommand({
          ...key,
          PolicyName: POLICY.CPU,
          PolicyType: "TargetTrackingScaling",
          TargetTrackingScalingPolicyConfiguration: cpuPolicy(cpuTarget),
        }),
      ),
    );
  }

  async deregisterScaling(service: string): Promise<void> {
    const key = {
      ServiceNamespace: "ecs" as const,
      ResourceId: `service/${this.clusterName}/${service}`,
      ScalableDimension: "ecs:service:DesiredCount" as const,
    };
    await this.call("application-autoscaling:DeleteScalingPolicy", key.ResourceId, () =>
      this.aws.scaling.send(new DeleteScalingPolicyCommand({ ...key, PolicyName: POLICY.CPU })),
    ).catch(ignoreMissing);
    await this.call("application-autoscaling:DeregisterScalableTarget", key.ResourceId, () =>
      this.aws.scaling.send(new DeregisterScalableTargetCommand(key)),
    ).catch(ignoreMissing);
  }

  /** Tasks of a service that are not stopped. */
  async liveTaskCount(service: string): Promise<number> {
    const arns: string[] = [];
    const pages = paginateListTasks(
      { client: this.aws.ecs, pageSize: 100 },
      { cluster: this.cluster, serviceName: service, desiredStatus: "RUNNING" },
    );
    for await (const page of awsPages("ecs:ListTasks", `service ${service}`, pages, this.call)) arns.push(...(page.taskArns ?? []));
    let live = 0;
    for (let i = 0; i < arns.length; i += 100) {
      const tasks = await this.call("ecs:DescribeTasks", `tasks of service ${service}`, () =>
        this.aws.ecs.send(new DescribeTasksCommand({ cluster: this.cluster, tasks: arns.slice(i, i + 100) })),
      );
      // Filter here too: ListTasks' serviceName filter is not honoured everywhere (emulators).
      live += (tasks.tasks ?? []).filter((t) => t.group === `service:${service}` && t.lastStatus !== "STOPPED").length;
    }
    return live;
  }

  async deleteService(service: string): Promise<void> {
    await this.call("ecs:DeleteService", `service ${service}`, () =>
      this.aws.ecs.send(new DeleteServiceCommand({ cluster: this.cluster, service, force: true })),
    );
  }

  /** Sets (or with `undefined`, removes) tags of a service. */
  async tag(serviceArn: string, tags: Record<string, string | undefined>): Promise<void> {
    const set = Object.entries(tags)
      .filter(([, v]) => v !== undefined)
      .map(([key, value]) => ({ key, value: value! }));
    const unset = Object.entries(tags)
      .filter(([, v]) => v === undefined)
      .map(([k]) => k);
    if (set.length)
      await this.call("ecs:TagResource", serviceArn, () =>
        this.aws.ecs.send(new TagResourceCommand({ resourceArn: serviceArn, tags: set })),
      );
    if (unset.length)
      await this.call("ecs:UntagResource", serviceArn, () =>
        this.aws.ecs.send(new UntagResourceCommand({ resourceArn: serviceArn, tagKeys: unset })),
      );
  }

  /** Moves a version's rollout to `phase` (and clears any request it answered). */
  async setPhase(main: VersionService, phase: RolloutPhase, reason?: string): Promise<void> {
    await this.tag(main.arn, { [TAGS.ROLLOUT]: phase, [TAGS.ROLLOUT_SINCE]: String(Date.now()), [TAGS.ROLLOUT_REASON]: reason });
    if (main.tags[TAGS.ROLLOUT_REQUEST] !== undefined) await this.tag(main.arn, { [TAGS.ROLLOUT_REQUEST]: undefined });
  }

  // ---- target groups and the listener rule ----

  /** A version's target group of a listener, if it exists. */
  async findTargetGroup(listener: string, version: string): Promise<string | undefined> {
    const name = targetGroupName(this.deployment, listener, version);
    try {
      const out = await this.call("elasticloadbalancing:DescribeTargetGroups", `target group ${name}`, () =>
        this.aws.elb.send(new DescribeTargetGroupsCommand({ Names: [name] })),
      );
      return out.TargetGroups?.[0]?.TargetGroupArn;
    } catch (err) {
      if (/TargetGroupNotFound|not found|One or more target groups not found/i.test((err as Error).message)) return undefined;
      throw err;
    }
  }

  /** Creates a version's target group of a listener (idempotent: AWS returns the existing one). */
  async ensureTargetGroup(version: string, spec: TargetGroupSpec): Promise<string> {
    const existing = await this.findTargetGroup(spec.listener, version);
    if (existing) return existing;
    const name = targetGroupName(this.deployment, spec.listener, version);
    const out = await this.call("elasticloadbalancing:CreateTargetGroup", `target group ${name}`, () =>
      this.aws.elb.send(
        new CreateTargetGroupCommand({
          Name: name,
          Protocol: "HTTP",
          Port: spec.containerPort,
          VpcId: spec.vpcId,
          TargetType: "ip",
          HealthCheckProtocol: "HTTP",
          HealthCheckPath: spec.healthCheckPath,
          HealthCheckIntervalSeconds: 15,
          HealthyThresholdCount: 2,
          UnhealthyThresholdCount: 3,
          Matcher: { HttpCode: "200-399" },
          Tags: [
            { Key: TAGS.DEPLOYMENT, Value: this.deployment },
            { Key: TAGS.VERSION, Value: version },
            { Key: TAGS.LISTENER, Value: spec.listener },
          ],
        }),
      ),
    );
    const arn = out.TargetGroups![0]!.TargetGroupArn!;
    await this.call("elasticloadbalancing:ModifyTargetGroupAttributes", `target group ${name}`, () =>
      this.aws.elb.send(
        new ModifyTargetGroupAttributesCommand({
          TargetGroupArn: arn,
          Attributes: [{ Key: "deregistration_delay.timeout_seconds", Value: String(spec.deregistrationDelaySeconds) }],
        }),
      ),
    );
    return arn;
  }

  async deleteTargetGroup(arn: string): Promise<void> {
    await this.call("elasticloadbalancing:DeleteTargetGroup", `target group ${arn}`, () =>
      this.aws.elb.send(new DeleteTargetGroupCommand({ TargetGroupArn: arn })),
    );
  }

  /** Target health states of a target group ("healthy", "initial", "draining", ...). */
  async targetStates(arn: string): Promise<string[]> {
    const out = await this.call("elasticloadbalancing:DescribeTargetHealth", `target group ${arn}`, () =>
      this.aws.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn })),
    );
    return (out.TargetHealthDescriptions ?? []).map((t) => t.TargetHealth?.State ?? "unknown");
  }

  /** The version a target group of this deployment belongs to (from its name). */
  static versionOfTargetGroup(arn: string): string | undefined {
    const name = arn.split("/").slice(-2, -1)[0] ?? "";
    return /-(v[0-9a-f]{10})$/.exec(name)?.[1];
  }

  /** The control plane's rule on a listener, if it made one. */
  async rule(listenerArn: string): Promise<ListenerRule | undefined> {
    const out = await this.call("elasticloadbalancing:DescribeRules", `listener ${listenerArn}`, () =>
      this.aws.elb.send(new DescribeRulesCommand({ ListenerArn: listenerArn })),
    );
    const candidates = (out.Rules ?? []).filter((r) => !r.IsDefault && r.RuleArn);
    if (candidates.length === 0) return undefined;
    const tags = await this.call("elasticloadbalancing:DescribeTags", `rules of listener ${listenerArn}`, () =>
      this.aws.elb.send(new DescribeTagsCommand({ ResourceArns: candidates.map((r) => r.RuleArn!) })),
    );
    const ours = new Set(
      (tags.TagDescriptions ?? []).filter((d) => (d.Tags ?? []).some((t) => t.Key === TAGS.RULE)).map((d) => d.ResourceArn),
    );
    const rule = candidates.find((r) => ours.has(r.RuleArn));
    if (!rule) return undefined;
    const weights = new Map<string, number>();
    for (const a of rule.Actions ?? []) {
      if (a.Type !== "forward") continue;
      for (const tg of a.ForwardConfig?.TargetGroups ?? []) if (tg.TargetGroupArn) weights.set(tg.TargetGroupArn, tg.Weight ?? 1);
      if (!a.ForwardConfig && a.TargetGroupArn) weights.set(a.TargetGroupArn, 1);
    }
    return { ruleArn: rule.RuleArn!, weights };
  }

  /** Removes the control plane's rule from a listener (it then answers with its default action). */
  async deleteRule(listenerArn: string): Promise<void> {
    const rule = await this.rule(listenerArn);
    if (rule)
      await this.call("elasticloadbalancing:DeleteRule", `rule ${rule.ruleArn}`, () =>
        this.aws.elb.send(new DeleteRuleCommand({ RuleArn: rule.ruleArn })),
      );
  }

  /** Points the listener's rule at these target groups with these weights (creating the rule once). */
  async setWeights(listenerArn: string, weights: readonly Weight[]): Promise<void> {
    const actions: Action[] = [
      {
        Type: "forward",
        ForwardConfig: {
          TargetGroups: weights.map((w) => ({ TargetGroupArn: w.targetGroupArn, Weight: w.weight })),
          TargetGroupStickinessConfig: { Enabled: false },
        },
      },
    ];
    const existing = await this.rule(listenerArn);
    if (existing) {
      const same = existing.weights.size === weights.length && weights.every((w) => existing.weights.get(w.targetGroupArn) === w.weight);
      if (same) return;
      await this.call("elasticloadbalancing:ModifyRule", `rule ${existing.ruleArn}`, () =>
        this.aws.elb.send(new ModifyRuleCommand({ RuleArn: existing.ruleArn, Actions: actions })),
      );
      return;
    }
    await this.call("elasticloadbalancing:CreateRule", `listener ${listenerArn}`, () =>
      this.aws.elb.send(
        new CreateRuleCommand({
          ListenerArn: listenerArn,
          Priority: RULE_PRIORITY,
          Conditions: [{ Field: "path-pattern", PathPatternConfig: { Values: ["/*"] } }],
          Actions: actions,
          Tags: [
            { Key: TAGS.RULE, Value: "versions" },
            { Key: TAGS.DEPLOYMENT, Value: this.deployment },
          ],
        }),
      ),
    );
  }
}

function rolloutOf(main: VersionService | undefined): RolloutState {
  const tags = main?.tags ?? {};
  const request = tags[TAGS.ROLLOUT_REQUEST];
  return {
    phase: tags[TAGS.ROLLOUT] as RolloutPhase | undefined,
    since: Number(tags[TAGS.ROLLOUT_SINCE] ?? 0),
    reason: tags[TAGS.ROLLOUT_REASON],
    request: request === "promote" || request === "rollback" ? request : undefined,
  };
}

function ignoreMissing(err: Error): void {
  if (!/ObjectNotFound|not found|No scalable target/i.test(err.message)) throw err;
}
