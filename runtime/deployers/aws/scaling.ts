/**
 * Autoscaling of a version's group services beyond CPU (docs/aws.md, "Autoscaling"): target tracking on
 * the load balancer's requests per target (groups that serve an exported listener) and on the
 * weavelets' own load (served calls per second per replica, the EMF metric the agents publish), and ECS
 * task scale-in protection for replicas that are busy, so a scale-in stops an idle replica instead.
 */
import { PutScalingPolicyCommand, type TargetTrackingScalingPolicyConfiguration } from "@aws-sdk/client-application-auto-scaling";
import { UpdateTaskProtectionCommand } from "@aws-sdk/client-ecs";
import { type AwsClients, callAws } from "./clients.js";
import { METRICS } from "./contract.js";

/** Policy names on a version's scalable target (one target per ECS service). */
export const POLICY = {
  /** Average CPU utilization of the service's tasks. */
  CPU: "cpu",
  /** Average served calls per second per replica (the weavelets' load). */
  LOAD: "load",
  /** ALB requests per target per minute, one policy per listener the group serves. */
  requests: (listener: string) => `requests-${listener}`,
} as const;

/** Scale out within a minute of a rise; scale in only after two quiet minutes (AWS's ECS defaults are 300/300). */
const SCALE_OUT_COOLDOWN_S = 60;
const SCALE_IN_COOLDOWN_S = 120;

/**
 * How long one protection call keeps a busy replica from being chosen by a scale-in. Renewed while the
 * replica stays busy; it lapses by itself when its agent can no longer say (a crashed control plane).
 */
export const PROTECTION_MINUTES = 10;
/** How long busy reports are ignored after a protection call failed. */
const PAUSE_AFTER_FAILURE_MS = 5 * 60_000;

/** The target-tracking configuration on the service's average CPU utilization (percent). */
export function cpuPolicy(target: number): TargetTrackingScalingPolicyConfiguration {
  return {
    TargetValue: target,
    PredefinedMetricSpecification: { PredefinedMetricType: "ECSServiceAverageCPUUtilization" },
    ScaleOutCooldown: SCALE_OUT_COOLDOWN_S,
    ScaleInCooldown: SCALE_IN_COOLDOWN_S,
  };
}

/**
 * The target-tracking configuration on the group's load: the average, over the group's replicas of one
 * version, of the served-calls-per-second metric every agent publishes with each heartbeat (emf.ts: its
 * dimensions are App, Group and Version, so the average is per replica).
 */
export function loadPolicy(app: string, group: string, version: string, target: number): TargetTrackingScalingPolicyConfiguration {
  const D = METRICS.DIM;
  return {
    TargetValue: target,
    CustomizedMetricSpecification: {
      Namespace: METRICS.NAMESPACE,
      MetricName: METRICS.LOAD,
      Dimensions: [
        { Name: D.APP, Value: app },
        { Name: D.GROUP, Value: group },
        { Name: D.VERSION, Value: version },
      ],
      Statistic: "Average",
      Unit: "Count/Second",
    },
    ScaleOutCooldown: SCALE_OUT_COOLDOWN_S,
    ScaleInCooldown: SCALE_IN_COOLDOWN_S,
  };
}

/** The target-tracking configuration on ALB requests per target (per minute) of one target group. */
export function requestsPolicy(resourceLabel: string, target: number): TargetTrackingScalingPolicyConfiguration {
  return {
    TargetValue: target,
    PredefinedMetricSpecification: { PredefinedMetricType: "ALBRequestCountPerTarget", ResourceLabel: resourceLabel },
    ScaleOutCooldown: SCALE_OUT_COOLDOWN_S,
    ScaleInCooldown: SCALE_IN_COOLDOWN_S,
  };
}

/**
 * The `ResourceLabel` of ALBRequestCountPerTarget: `app/<lb name>/<lb id>/targetgroup/<tg name>/<tg id>`,
 * from the listener's ARN (`…:listener/app/<lb name>/<lb id>/<listener id>`) and the target group's
 * (`…:targetgroup/<tg name>/<tg id>`).
 */
export function albResourceLabel(listenerArn: string, targetGroupArn: string): string {
  const lb = /:listener\/(app\/[^/]+\/[^/]+)\/[^/]+$/.exec(listenerArn)?.[1];
  const tg = /:(targetgroup\/[^/]+\/[^/]+)$/.exec(targetGroupArn)?.[1];
  if (lb === undefined) throw new Error(`not an application load balancer listener ARN: ${listenerArn}`);
  if (tg === undefined) throw new Error(`not a target group ARN: ${targetGroupArn}`);
  return `${lb}/${tg}`;
}

/** Puts one target-tracking policy on a version service's scalable target (which must be registered). */
export async function putTargetTracking(
  aws: AwsClients,
  clusterName: string,
  service: string,
  policyName: string,
  config: TargetTrackingScalingPolicyConfiguration,
  call: <T>(api: string, resource: string, fn: () => Promise<T>) => Promise<T> = callAws,
): Promise<void> {
  const resourceId = `service/${clusterName}/${service}`;
  await call("application-autoscaling:PutScalingPolicy", `${resourceId} (policy ${policyName})`, () =>
    aws.scaling.send(
      new PutScalingPolicyCommand({
        ServiceNamespace: "ecs",
        ResourceId: resourceId,
        ScalableDimension: "ecs:service:DesiredCount",
        PolicyName: policyName,
        PolicyType: "TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration: config,
      }),
    ),
  );
}

/**
 * Scale-in protection of the tasks agents report busy (serving component calls). The control plane
 * calls ECS for them, not the agents: a group's task role is also the app's (its code holds the
 * role's credentials), and protection is no right for app code to hold. It remembers what it set, so
 * a steady state costs no call: a busy report sets protection when it is off or half its time has
 * passed; an idle report, or the replica stopping, clears it.
 */
export class TaskProtection {
  /** Task ARN → when the protection this control plane set expires (ms since the epoch). */
  private readonly until = new Map<string, number>();
  /** Each task's reports, applied in order, off the reporting request's path. */
  private readonly chains = new Map<string, Promise<void>>();
  /** After a failed call, busy reports are ignored until then: a failing API is not retried with every heartbeat. */
  private pausedUntil = 0;

  constructor(
    private readonly aws: AwsClients,
    private readonly cluster: string,
    private readonly call: <T>(api: string, resource: string, fn: () => Promise<T>) => Promise<T> = callAws,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Applies a report in the background (after the task's earlier ones), so a slow or failing ECS call
   * never delays the agent's heartbeat. `onError` hears a failure, after which busy reports pause for
   * {@link PAUSE_AFTER_FAILURE_MS}.
   */
  reportInBackground(taskArn: string, busy: boolean, onError: (err: Error) => void): Promise<void> {
    if (busy && this.now() < this.pausedUntil) return this.chains.get(taskArn) ?? Promise.resolve();
    const next = (this.chains.get(taskArn) ?? Promise.resolve()).then(() =>
      this.report(taskArn, busy).catch((err: Error) => {
        this.pausedUntil = this.now() + PAUSE_AFTER_FAILURE_MS;
        onError(err);
      }),
    );
    this.chains.set(taskArn, next);
    void next.finally(() => {
      if (this.chains.get(taskArn) === next) this.chains.delete(taskArn);
    });
    return next;
  }

  /** Whether this control plane holds a (not yet expired) protection of the task. */
  protectedNow(taskArn: string): boolean {
    return (this.until.get(taskArn) ?? 0) > this.now();
  }

  /** A replica's report: busy ones are protected (renewed at half time), idle ones released. */
  async report(taskArn: string, busy: boolean): Promise<void> {
    const until = this.until.get(taskArn);
    const halfLeft = until !== undefined && until - this.now() > (PROTECTION_MINUTES * 60_000) / 2;
    if (busy && halfLeft) return;
    if (!busy && until === undefined) return;
    await this.set([taskArn], busy);
  }

  /**
   * Clears the protection of tasks that stop: of those this control plane protected, or with `all`, of
   * every one given (when the stack is deleted).
   */
  async release(taskArns: readonly string[], opts: { all?: boolean } = {}): Promise<void> {
    // A report still in flight goes first: it must not protect the task again after this.
    await Promise.all(taskArns.flatMap((t) => this.chains.get(t) ?? []));
    const held = opts.all ? [...taskArns] : taskArns.filter((t) => this.until.has(t));
    for (let i = 0; i < held.length; i += 10) await this.set(held.slice(i, i + 10), false);
  }

  /** Every task this control plane has protected (and not released). */
  held(): string[] {
    return [...this.until.keys()];
  }

  private async set(tasks: string[], enabled: boolean): Promise<void> {
    const out = await this.call("ecs:UpdateTaskProtection", `task ${tasks.join(", ")}`, () =>
      this.aws.ecs.send(
        new UpdateTaskProtectionCommand({
          cluster: this.cluster,
          tasks,
          protectionEnabled: enabled,
          ...(enabled ? { expiresInMinutes: PROTECTION_MINUTES } : {}),
        }),
      ),
    );
    const failed = new Map((out.failures ?? []).map((f) => [f.arn ?? "", f.reason ?? "unknown"]));
    for (const t of tasks) {
      // A task that is gone (MISSING, TASK_NOT_VALID) holds nothing any more either way.
      if (enabled && !failed.has(t)) this.until.set(t, this.now() + PROTECTION_MINUTES * 60_000);
      else this.until.delete(t);
    }
    if (enabled && failed.size > 0)
      throw new Error(
        `ecs:UpdateTaskProtection: ${[...failed].map(([arn, reason]) => `${arn.split("/").pop()}: ${reason}`).join("; ")} (only tasks of an ECS service can be protected)`,
      );
  }
}
