/**
 * An agent's view of the replicas its weavelet calls, kept current from Cloud Map within a call budget.
 *
 * Cloud Map's DiscoverInstances and DiscoverInstancesRevision are throttled per account and region and
 * shared by every app, so an agent checks each Cloud Map service (one per group) once per period, however
 * many of its components live there, and spreads the checks of many services so that it makes about
 * `callsPerSecond` calls a second. The instances are read (DiscoverInstances) only when the revision
 * changed, and every {@link FULL_REFRESH_EVERY}th check instead of the revision check.
 */
import { DiscoverInstancesCommand, DiscoverInstancesRevisionCommand } from "@aws-sdk/client-servicediscovery";
import { computeAssignment } from "../../core/routing.js";
import type { RoutingInfo } from "../../protos/runtime.js";
import { type AwsClients, callAws } from "./clients.js";
import { ATTR } from "./contract.js";

/** Every Nth check re-reads the instances even if the revision did not change (revisions can collide on some implementations). */
export const FULL_REFRESH_EVERY = 10;

/** Default Cloud Map calls per second an agent spends on checks when it watches many services. */
export const DISCOVERY_CALLS_PER_SECOND = 1;

/**
 * The longest a service goes unchecked whatever the budget: a stopping replica keeps serving this long
 * (plus its load balancer's delay) after deregistering, within the task's stop timeout (infra/).
 */
export const DISCOVERY_MAX_INTERVAL_MS = 3_000;

export interface DiscoveryOptions {
  readonly aws: AwsClients;
  readonly namespace: string;
  /** Only this version's replicas are discovered: versions never call each other. */
  readonly version: string;
  /** The shortest interval between two checks of one service (ms): TSWEAVER_DISCOVERY_MS. */
  readonly periodMs: number;
  /** Check calls per second to aim for when many services are watched. */
  readonly callsPerSecond?: number | undefined;
  /** Hands a component's new routing info to the weavelet. */
  readonly update: (info: RoutingInfo) => Promise<void>;
  readonly log?: (msg: string, attrs: Record<string, string>) => void;
  /** The clock checks are scheduled by (ms since the epoch); tests drive it. */
  readonly now?: () => number;
}

/** A component the weavelet calls; its routing info is pushed when its group's replicas change. */
interface Watcher {
  readonly component: string;
  readonly routed: boolean;
  /** Local assignment version: increases with every replica-set change this agent sees. */
  version: bigint;
  /** The replicas last pushed to the weavelet for this component (none yet: nothing to push). */
  pushed: string[];
}

/** One Cloud Map service (a group) and every watched component that lives in it. */
interface ServiceWatch {
  readonly group: string;
  readonly components: Watcher[];
  revision: number | undefined;
  replicas: string[] | undefined;
  checks: number;
  /** When the service is next due (ms since the epoch). */
  dueAt: number;
  busy: Promise<void> | undefined;
}

/**
 * The interval between two checks of one service when `services` are watched: the period, stretched to
 * keep to `callsPerSecond`, but never beyond {@link DISCOVERY_MAX_INTERVAL_MS} (or the period, if longer).
 */
export function checkIntervalMs(services: number, periodMs: number, callsPerSecond = DISCOVERY_CALLS_PER_SECOND): number {
  const budgeted = (Math.max(1, services) * 1000) / callsPerSecond;
  return Math.max(periodMs, Math.min(budgeted, DISCOVERY_MAX_INTERVAL_MS));
}

export class Discovery {
  private readonly services = new Map<string, ServiceWatch>();

  private readonly now: () => number;

  constructor(private readonly opts: DiscoveryOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Services watched. */
  get size(): number {
    return this.services.size;
  }

  /**
   * Starts watching a component of `group`. The first component of a group reads its replicas now; the
   * others get the replicas already known, without an AWS call.
   */
  async watch(component: string, group: string, routed: boolean): Promise<void> {
    let s = this.services.get(group);
    if (s?.components.some((c) => c.component === component)) return;
    const w: Watcher = { component, routed, version: 0n, pushed: [] };
    if (s === undefined) {
      s = { group, components: [w], revision: undefined, replicas: undefined, checks: 0, dueAt: 0, busy: undefined };
      this.services.set(group, s);
      await this.check(s);
      return;
    }
    s.components.push(w);
    await s.busy?.catch(() => {});
    await (s.replicas !== undefined ? this.push(s, w) : this.check(s));
  }

  /** Checks every service that is due (call it every period); failures are logged and retried when next due. */
  async tick(now = this.now()): Promise<void> {
    const due = [...this.services.values()].filter((s) => s.dueAt <= now && s.busy === undefined);
    for (const s of due)
      await this.check(s).catch((err: Error) => this.opts.log?.("discovery failed", { group: s.group, err: err.message }));
  }

  private check(s: ServiceWatch): Promise<void> {
    s.busy ??= this.checkNow(s).finally(() => {
      s.busy = undefined;
      s.dueAt = this.now() + checkIntervalMs(this.services.size, this.opts.periodMs, this.opts.callsPerSecond);
    });
    return s.busy;
  }

  private async checkNow(s: ServiceWatch): Promise<void> {
    s.checks++;
    const where = `service ${s.group} in namespace ${this.opts.namespace}`;
    const full = s.revision === undefined || s.checks % FULL_REFRESH_EVERY === 0;
    if (!full) {
      const rev = await callAws("servicediscovery:DiscoverInstancesRevision", where, () =>
        this.opts.aws.serviceDiscovery.send(
          new DiscoverInstancesRevisionCommand({ NamespaceName: this.opts.namespace, ServiceName: s.group }),
        ),
      );
      if (Number(rev.InstancesRevision ?? 0) === s.revision) return;
    }
    const out = await callAws("servicediscovery:DiscoverInstances", where, () =>
      // Only this version's replicas: versions never call each other (the RPC handshake enforces it too).
      this.opts.aws.serviceDiscovery.send(
        new DiscoverInstancesCommand({
          NamespaceName: this.opts.namespace,
          ServiceName: s.group,
          HealthStatus: "ALL",
          MaxResults: 1000,
          QueryParameters: { [ATTR.VERSION]: this.opts.version },
        }),
      ),
    );
    s.revision = Number(out.InstancesRevision ?? 0);
    s.replicas = [
      ...new Set(
        (out.Instances ?? [])
          .map((i) => `${i.Attributes?.[ATTR.IPV4]}:${i.Attributes?.[ATTR.PORT]}`)
          .filter((a) => !a.startsWith("undefined")),
      ),
    ].sort();
    for (const w of s.components) await this.push(s, w);
  }

  /** Hands a component its group's replicas, if they changed since it last got them. */
  private async push(s: ServiceWatch, w: Watcher): Promise<void> {
    const replicas = s.replicas ?? [];
    if (w.pushed.join() === replicas.join()) return;
    w.pushed = replicas;
    const info: RoutingInfo = { component: w.component, local: false, replicas };
    if (w.routed) {
      // Every agent computes the same assignment from the same replica set, so they agree without talking.
      const a = computeAssignment(replicas, ++w.version);
      info.assignment = { version: String(a.version), slices: a.slices.map((sl) => ({ start: String(sl.start), replicas: [sl.replica] })) };
    }
    await this.opts.update(info);
    this.opts.log?.("routing updated", { component: w.component, replicas: replicas.join(",") });
  }
}
