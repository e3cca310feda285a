import { DescribeStacksCommand } from "@aws-sdk/client-cloudformation";
import { paginateFilterLogEvents, type FilteredLogEvent } from "@aws-sdk/client-cloudwatch-logs";
import { DescribeTasksCommand, paginateListTasks, type Task } from "@aws-sdk/client-ecs";
import { DeregisterTargetsCommand, DescribeTargetHealthCommand } from "@aws-sdk/client-elastic-load-balancing-v2";
import { DeregisterInstanceCommand, paginateListInstances, type InstanceSummary } from "@aws-sdk/client-servicediscovery";
import { loadConfig } from "../../core/config.js";
import { textTable } from "../../core/table.js";
import type { LogEntry } from "../../protos/runtime.js";
import { formatLogEntry, parseSince } from "../../telemetry/logfmt.js";
import { AwsClients, awsPages, callAws } from "./clients.js";
import { ATTR, defaultStackName, OUTPUTS, TAGS, versionedServiceName, type GroupsOutput, type ListenersOutput } from "./contract.js";
import { Versions, type LiveVersion } from "./versions.js";

/** Where the CLI finds the deployment: weaver.toml's `[aws] stack`, or `--stack`. */
export interface StackOptions {
  config?: string | undefined;
  stack?: string;
}

/** What the CLI reads from the stack's outputs. */
export interface Deployment {
  stack: string;
  cluster: string;
  /** The version the stack deployed last (the one rolling out, or live). */
  version: string;
  mainGroup: string;
  groups: GroupsOutput;
  listeners: ListenersOutput;
  logGroup: string;
}

type Out = (line: string) => void;
const stdout: Out = (l) => process.stdout.write(l + "\n");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function stackName(opts: StackOptions): string {
  if (opts.stack) return opts.stack;
  if (!opts.config) throw new Error("name the app: pass its weaver.toml, or --stack NAME");
  const config = loadConfig(opts.config);
  const stack = config.deployers["aws"]?.["stack"];
  return typeof stack === "string" ? stack : defaultStackName(config.name);
}

/** The app's `[aws] region`, if its weaver.toml names one. */
export function configuredRegion(opts: StackOptions): string | undefined {
  if (!opts.config) return undefined;
  const region = loadConfig(opts.config).deployers["aws"]?.["region"];
  return typeof region === "string" ? region : undefined;
}

/** AWS clients for the app's stack: in `[aws] region`, else where the SDK's chain (env, profile) points. */
export function clientsFor(opts: StackOptions): AwsClients {
  return new AwsClients(configuredRegion(opts));
}

export async function readDeployment(aws: AwsClients, opts: StackOptions): Promise<Deployment> {
  const stack = stackName(opts);
  const out = await callAws("cloudformation:DescribeStacks", `stack ${stack}`, () =>
    aws.cloudFormation.send(new DescribeStacksCommand({ StackName: stack })),
  ).catch(async (err: Error) => {
    if (/does not exist/.test(err.message))
      throw new Error(
        `stack ${stack} not found in ${await aws.resolvedRegion()}: deploy it first (npx cdk deploy -c config=weaver.toml), ` +
          "pass --stack, or set the region ([aws] region in weaver.toml, AWS_REGION, or your AWS profile's region)",
      );
    throw err;
  });
  const outputs = new Map((out.Stacks?.[0]?.Outputs ?? []).map((o) => [o.OutputKey ?? "", o.OutputValue ?? ""]));
  const need = (key: string) => {
    const v = outputs.get(key);
    if (v === undefined)
      throw new Error(`stack ${stack} has no output ${key}: is it a tsweaver stack deployed from this version (npx cdk deploy)?`);
    return v;
  };
  return {
    stack,
    cluster: need(OUTPUTS.CLUSTER_NAME),
    version: need(OUTPUTS.VERSION),
    mainGroup: need(OUTPUTS.MAIN_GROUP),
    groups: JSON.parse(need(OUTPUTS.GROUPS)) as GroupsOutput,
    listeners: JSON.parse(outputs.get(OUTPUTS.LISTENERS) ?? "{}") as ListenersOutput,
    logGroup: need(OUTPUTS.LOG_GROUP),
  };
}

function versionsOf(aws: AwsClients, d: Deployment): Versions {
  return new Versions(aws, d.cluster, d.stack);
}

/** Current tasks of a service (not stopped), and stopped ones with their reasons. */
async function serviceTasks(aws: AwsClients, d: Deployment, service: string): Promise<{ live: Task[]; stopped: Task[] }> {
  const arns: string[] = [];
  for (const desiredStatus of ["RUNNING", "STOPPED"] as const) {
    const pages = paginateListTasks({ client: aws.ecs, pageSize: 100 }, { cluster: d.cluster, serviceName: service, desiredStatus });
    for await (const page of awsPages("ecs:ListTasks", `service ${service}`, pages)) arns.push(...(page.taskArns ?? []));
  }
  const tasks: Task[] = [];
  for (let i = 0; i < arns.length; i += 100) {
    const page = await callAws("ecs:DescribeTasks", `tasks of service ${service}`, () =>
      aws.ecs.send(new DescribeTasksCommand({ cluster: d.cluster, tasks: arns.slice(i, i + 100) })),
    );
    tasks.push(...(page.tasks ?? []));
  }
  const mine = tasks.filter((t) => t.group === `service:${service}`);
  return {
    live: mine.filter((t) => t.lastStatus !== "STOPPED" && t.desiredStatus !== "STOPPED"),
    stopped: mine.filter((t) => t.lastStatus === "STOPPED" || t.desiredStatus === "STOPPED"),
  };
}

/** Every instance of a Cloud Map service (all pages). */
async function listInstances(aws: AwsClients, serviceId: string): Promise<InstanceSummary[]> {
  const out: InstanceSummary[] = [];
  const pages = paginateListInstances({ client: aws.serviceDiscovery, pageSize: 100 }, { ServiceId: serviceId });
  for await (const page of awsPages("servicediscovery:ListInstances", `service ${serviceId}`, pages)) out.push(...(page.Instances ?? []));
  return out;
}

/** Registered replicas of a group, by version. */
async function instancesByVersion(aws: AwsClients, serviceId: string): Promise<Map<string, string[]>> {
  const by = new Map<string, string[]>();
  for (const i of await listInstances(aws, serviceId)) {
    const v = i.Attributes?.[ATTR.VERSION] ?? "";
    by.set(v, [...(by.get(v) ?? []), i.Id!]);
  }
  return by;
}

/** `tsweaver aws activate`: raise main's group (of the deployed version) and wait until it serves. */
export async function activateCommand(opts: StackOptions & { replicas?: number; timeout?: number }, out: Out = stdout): Promise<void> {
  const aws = clientsFor(opts);
  const d = await readDeployment(aws, opts);
  const versions = versionsOf(aws, d);
  const main = d.groups[d.mainGroup];
  if (!main) throw new Error(`stack ${d.stack}: main group ${d.mainGroup} is missing from the Groups output`);
  const floor = opts.replicas ?? main.min;
  if (!Number.isInteger(floor) || floor < 1) throw new Error(`--replicas must be a positive integer (got ${opts.replicas})`);
  const service = versionedServiceName(d.mainGroup, d.version);
  const started = Date.now();
  const deadline = started + (opts.timeout ?? 600) * 1000;
  const timedOut = (what: string) => new Error(`timed out after ${opts.timeout ?? 600} s: ${what}`);
  // The control plane creates each version's services when it starts; wait for it.
  let svc = (await versions.list()).get(d.version)?.services.get(d.mainGroup);
  if (!svc) out(`waiting for the control plane to create ${service} (version ${d.version})`);
  while (!svc) {
    if (Date.now() > deadline)
      throw timedOut(`service ${service} does not exist: is the control plane running? (tsweaver aws logs --component controlplane)`);
    await sleep(1_000);
    svc = (await versions.list()).get(d.version)?.services.get(d.mainGroup);
  }
  const want = Math.max(floor, svc.desired);
  out(`activating ${d.stack} version ${d.version}: group ${d.mainGroup} → ${want} task(s)`);
  await versions
    .registerScaling(service, want, Math.max(want, main.max), 70)
    .catch((err: Error) => process.stderr.write(`warning: ${err.message}\n`));
  await versions.setDesired(service, want);
  const knownStopped = new Set((await serviceTasks(aws, d, service)).stopped.map((t) => t.taskArn));
  let last = "";
  for (;;) {
    const { live, stopped } = await serviceTasks(aws, d, service);
    const newlyStopped = stopped.filter((t) => !knownStopped.has(t.taskArn));
    const running = live.filter((t) => t.lastStatus === "RUNNING").length;
    const pending = live.length - running;
    const registered = (await instancesByVersion(aws, main.discoveryServiceId)).get(d.version)?.length ?? 0;
    const health = await Promise.all(
      Object.keys(d.listeners).map(async (name) => {
        const tg = await versions.findTargetGroup(name, d.version);
        return [name, tg ? await versions.targetStates(tg) : []] as const;
      }),
    );
    const healthy = health
      .map(([name, states]) => `${name} ${states.filter((s) => s === "healthy").length}/${states.length} healthy`)
      .join(", ");
    const line = `  tasks: ${pending} pending, ${running}/${want} running · registered replicas: ${registered}/${want}${healthy ? ` · targets: ${healthy}` : ""}`;
    if (line !== last) out(line);
    last = line;
    if (newlyStopped.length >= 3 || (newlyStopped.length > 0 && running === 0 && Date.now() - started > 30_000)) {
      const reasons = newlyStopped.map(
        (t) =>
          `  task ${t.taskArn?.split("/").pop()}: ${t.stoppedReason ?? "stopped"}${t.containers?.[0]?.reason ? ` (${t.containers[0].reason})` : ""}`,
      );
      throw new Error(
        `group ${d.mainGroup} is failing to start; stopped tasks:\n${reasons.join("\n")}\nsee: tsweaver aws logs --component stderr`,
      );
    }
    const listenersReady = health.every(([, states]) => states.some((s) => s === "healthy"));
    if (running >= want && registered >= want && listenersReady) break;
    if (Date.now() > deadline) {
      const unhealthy = health.filter(([, s]) => !s.some((x) => x === "healthy")).map(([n]) => n);
      throw timedOut(
        `${line.trim()}${unhealthy.length ? `; no healthy target for ${unhealthy.join(", ")} (check health_check_path)` : ""}`,
      );
    }
    await sleep(1_000);
  }
  out(`${d.stack} is active (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  for (const [name, l] of Object.entries(d.listeners)) out(`listener ${name}: ${l.url}`);
}

/** Every live version: its rollout phase, groups and share of each listener's traffic. */
export interface VersionStatus {
  version: string;
  deployed: boolean;
  phase: string;
  since: string;
  reason: string;
  groups: { group: string; desired: number; running: number; pending: number; registered: number; health: string }[];
  /** Listener → percent of its traffic. */
  traffic: Record<string, number>;
}

async function versionStatuses(
  aws: AwsClients,
  d: Deployment,
): Promise<{ versions: VersionStatus[]; listeners: { listener: string; url: string; targets: number; healthy: number }[] }> {
  const store = versionsOf(aws, d);
  const live = await store.list();
  const registered = new Map<string, Map<string, string[]>>();
  for (const [group, g] of Object.entries(d.groups)) registered.set(group, await instancesByVersion(aws, g.discoveryServiceId));
  const traffic = new Map<string, Record<string, number>>();
  const listeners: { listener: string; url: string; targets: number; healthy: number }[] = [];
  for (const [name, l] of Object.entries(d.listeners)) {
    const rule = await store.rule(l.listenerArn);
    const total = [...(rule?.weights.values() ?? [])].reduce((a, b) => a + b, 0);
    let targets = 0;
    let healthy = 0;
    for (const [arn, w] of rule?.weights ?? []) {
      const v = Versions.versionOfTargetGroup(arn);
      if (v) traffic.set(v, { ...(traffic.get(v) ?? {}), [name]: total === 0 ? 0 : Math.round((100 * w) / total) });
      const states = await store.targetStates(arn);
      if (w > 0) {
        targets += states.length;
        healthy += states.filter((s) => s === "healthy").length;
      }
    }
    listeners.push({ listener: name, url: l.url, targets, healthy });
  }
  const statuses: VersionStatus[] = [];
  for (const v of live.values()) {
    const groups = [...v.services.values()].map((s) => {
      const reg = registered.get(s.group)?.get(v.version)?.length ?? 0;
      return { group: s.group, desired: s.desired, running: s.running, pending: s.pending, registered: reg, health: "" };
    });
    for (const g of groups)
      g.health =
        g.desired === 0
          ? "inactive"
          : g.registered >= g.desired && g.running >= g.desired
            ? "healthy"
            : g.running === 0
              ? "starting"
              : "degraded";
    statuses.push({
      version: v.version,
      deployed: v.version === d.version,
      phase: v.rollout.phase ?? "new",
      since: v.rollout.since ? new Date(v.rollout.since).toISOString() : "",
      reason: v.rollout.reason ?? "",
      groups: groups.sort((a, b) => a.group.localeCompare(b.group)),
      traffic: traffic.get(v.version) ?? {},
    });
  }
  // The deployed version last: it is the newest.
  statuses.sort((a, b) => Number(a.deployed) - Number(b.deployed) || a.version.localeCompare(b.version));
  return { versions: statuses, listeners };
}

/** `tsweaver aws status`: every live version, its groups and rollout phase, and the traffic split. */
export async function awsStatusCommand(opts: StackOptions & { json?: boolean }, out: Out = stdout): Promise<void> {
  const aws = clientsFor(opts);
  const d = await readDeployment(aws, opts);
  const { versions, listeners } = await versionStatuses(aws, d);
  if (opts.json) {
    out(JSON.stringify({ stack: d.stack, deployedVersion: d.version, versions, listeners }, null, 2));
    return;
  }
  out(`STACK ${d.stack}  cluster ${d.cluster}  deployed version ${d.version}`);
  if (versions.length === 0) out("  no version has services yet (the control plane creates them when it starts)");
  const trafficOf = (v: VersionStatus) =>
    Object.entries(v.traffic)
      .map(([l, p]) => `${l} ${p}%`)
      .join(", ") || "-";
  out(
    textTable([
      ["VERSION", "PHASE", "TRAFFIC", "SINCE", "REASON"],
      ...versions.map((v) => [v.version + (v.deployed ? " (deployed)" : ""), v.phase, trafficOf(v), v.since, v.reason]),
    ]),
  );
  out(
    textTable([
      ["VERSION", "GROUP", "DESIRED", "RUNNING", "PENDING", "REGISTERED", "HEALTH"],
      ...versions.flatMap((v) =>
        v.groups.map((g) => [v.version, g.group, String(g.desired), String(g.running), String(g.pending), String(g.registered), g.health]),
      ),
    ]),
  );
  if (listeners.length)
    out(
      textTable([
        ["LISTENER", "URL", "TARGETS", "HEALTHY"],
        ...listeners.map((l) => [l.listener, l.url, String(l.targets), String(l.healthy)]),
      ]),
    );
}

/** `tsweaver aws rollout status`: where the rollout of the deployed version stands. */
export async function rolloutStatusCommand(opts: StackOptions & { json?: boolean }, out: Out = stdout): Promise<void> {
  const aws = clientsFor(opts);
  const d = await readDeployment(aws, opts);
  const { versions } = await versionStatuses(aws, d);
  const mine = versions.find((v) => v.deployed);
  if (opts.json) {
    out(
      JSON.stringify({ stack: d.stack, version: d.version, rollout: mine ?? null, others: versions.filter((v) => !v.deployed) }, null, 2),
    );
    return;
  }
  if (!mine) {
    out(`${d.stack}: version ${d.version} has no services yet (the control plane creates them when it starts)`);
    return;
  }
  out(
    describeRollout(
      mine,
      versions.filter((v) => !v.deployed),
    ),
  );
}

function describeRollout(v: VersionStatus, others: VersionStatus[]): string {
  const traffic =
    Object.entries(v.traffic)
      .map(([l, p]) => `${l} ${p}%`)
      .join(", ") || "no listener traffic";
  const from = others
    .filter((o) => Object.values(o.traffic).some((p) => p > 0) || o.groups.some((g) => g.desired > 0))
    .map((o) => o.version);
  return `version ${v.version}: ${v.phase}${v.reason ? ` (${v.reason})` : ""} · ${traffic}${from.length ? ` · previous: ${from.join(", ")}` : ""}`;
}

/**
 * `tsweaver aws rollout promote|rollback`: the request goes on the deployed version's main service
 * (a tag); the control plane acts on it at its next reconcile, and this waits, with progress, until
 * it has: promote → the version takes all traffic; rollback → the previous version does.
 */
export async function rolloutRequestCommand(
  request: "promote" | "rollback",
  opts: StackOptions & { timeout?: number },
  out: Out = stdout,
): Promise<void> {
  const aws = clientsFor(opts);
  const d = await readDeployment(aws, opts);
  const store = versionsOf(aws, d);
  const mine = (await store.list()).get(d.version);
  const phase = mine?.rollout.phase;
  if (!mine?.main) throw new Error(`version ${d.version} of ${d.stack} has no services yet: nothing to ${request}`);
  if (phase === "rolled-back")
    throw new Error(`version ${d.version} is already rolled back (${mine.rollout.reason ?? ""}); deploy a new version to try again`);
  if (phase === "live" || phase === "draining") {
    if (request === "promote") {
      out(`version ${d.version} already takes all traffic (${phase})`);
      return;
    }
    throw new Error(
      `version ${d.version} already took all traffic and its predecessor is retired (${phase}): roll back by deploying the previous version (cdk deploy)`,
    );
  }
  await store.tag(mine.main.arn, { [TAGS.ROLLOUT_REQUEST]: request });
  out(`${request} requested for version ${d.version} (was ${phase ?? "new"}); waiting for the control plane`);
  const deadline = Date.now() + (opts.timeout ?? 300) * 1000;
  let last = "";
  for (;;) {
    const { versions } = await versionStatuses(aws, d);
    const v = versions.find((x) => x.deployed);
    if (v) {
      const line =
        "  " +
        describeRollout(
          v,
          versions.filter((x) => !x.deployed),
        );
      if (line !== last) out(line);
      last = line;
      const done = request === "promote" ? v.phase === "draining" || v.phase === "live" : v.phase === "rolled-back";
      if (done) {
        out(
          request === "promote"
            ? `version ${d.version} takes all traffic`
            : `rolled back: the previous version takes all traffic; ${d.version} is retired`,
        );
        return;
      }
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${opts.timeout ?? 300} s waiting for the control plane to ${request} (is it running? tsweaver aws logs --component controlplane)`,
      );
    await sleep(1_000);
  }
}

/** `tsweaver aws deactivate`: every version's groups to 0 tasks, every replica and target deregistered. */
export async function deactivateCommand(opts: StackOptions & { timeout?: number }, out: Out = stdout): Promise<void> {
  const aws = clientsFor(opts);
  const d = await readDeployment(aws, opts);
  const store = versionsOf(aws, d);
  const live: LiveVersion[] = [...(await store.list()).values()];
  for (const v of live) {
    for (const s of v.services.values()) {
      await store.deregisterScaling(s.name).catch((err: Error) => process.stderr.write(`warning: ${err.message}\n`));
      await store.setDesired(s.name, 0);
    }
  }
  out(`deactivating ${d.stack}: every group of ${live.length} version(s) set to 0 tasks`);
  const deadline = Date.now() + (opts.timeout ?? 300) * 1000;
  for (;;) {
    let running = 0;
    for (const v of live) for (const s of v.services.values()) running += (await serviceTasks(aws, d, s.name)).live.length;
    if (running === 0) break;
    if (Date.now() > deadline) throw new Error(`timed out: ${running} task(s) still running`);
    await sleep(1_000);
  }
  // Tasks deregister themselves when they stop; remove whatever a crash left behind.
  for (const [group, g] of Object.entries(d.groups)) {
    for (const id of new Set((await listInstances(aws, g.discoveryServiceId)).map((i) => i.Id!))) {
      await callAws("servicediscovery:DeregisterInstance", `instance ${id} (group ${group})`, () =>
        aws.serviceDiscovery.send(new DeregisterInstanceCommand({ ServiceId: g.discoveryServiceId, InstanceId: id })),
      ).catch(() => {});
    }
  }
  for (const name of Object.keys(d.listeners)) {
    for (const v of live) {
      const arn = await store.findTargetGroup(name, v.version);
      if (!arn) continue;
      const health = await callAws("elasticloadbalancing:DescribeTargetHealth", `target group ${arn}`, () =>
        aws.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn })),
      );
      const targets = (health.TargetHealthDescriptions ?? []).map((t) => t.Target!).filter(Boolean);
      if (targets.length)
        await callAws("elasticloadbalancing:DeregisterTargets", `target group ${arn}`, () =>
          aws.elb.send(new DeregisterTargetsCommand({ TargetGroupArn: arn, Targets: targets })),
        ).catch((err: Error) => {
          // A draining agent (or the control plane) deregistered it since DescribeTargetHealth: gone either way.
          if (!/InvalidTarget/.test(err.message)) throw err;
        });
    }
  }
  out(`${d.stack} is inactive: no tasks, replicas or targets`);
}

/** How far back each `logs --follow` read reaches behind the newest event seen: CloudWatch may ingest an event after newer ones. */
export const LOG_LATENESS_MS = 5_000;

/** How often `logs --follow` reads new events. */
const LOG_FOLLOW_MS = 2_000;

/**
 * Reads a log group's events incrementally: each read starts at the newest timestamp seen less
 * {@link LOG_LATENESS_MS} and pages with nextToken, so a read costs one FilterLogEvents call (more only
 * when more than a page is new) however large the group is. Events read twice (in the lateness window)
 * are recognised by id; ids older than the window are forgotten, so memory stays bounded.
 */
export class LogTail {
  private startTime: number;
  /** Ids of the events seen at or after the current start time, with their timestamps. */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly aws: AwsClients,
    private readonly logGroup: string,
    /** Milliseconds since the epoch of the oldest event wanted. */
    since: number,
  ) {
    this.startTime = since;
  }

  /** The events not read before, oldest first. */
  async read(): Promise<FilteredLogEvent[]> {
    const fresh: FilteredLogEvent[] = [];
    const pages = paginateFilterLogEvents({ client: this.aws.logs }, { logGroupName: this.logGroup, startTime: this.startTime });
    for await (const page of awsPages("logs:FilterLogEvents", `log group ${this.logGroup}`, pages)) {
      for (const ev of page.events ?? []) {
        const id = ev.eventId ?? `${ev.logStreamName}/${ev.timestamp}/${ev.message}`;
        if (this.seen.has(id)) continue;
        this.seen.set(id, ev.timestamp ?? 0);
        fresh.push(ev);
      }
    }
    let newest = 0;
    for (const at of this.seen.values()) newest = Math.max(newest, at);
    this.startTime = Math.max(this.startTime, newest - LOG_LATENESS_MS);
    for (const [id, at] of this.seen) if (at < this.startTime) this.seen.delete(id);
    return fresh.sort((a, b) => (a.timestamp ?? 0) - (b.timestamp ?? 0));
  }
}

/** A CloudWatch log line as a log entry: a tsweaver JSON entry, or a plain line of the task's output. */
function logEntryOf(ev: FilteredLogEvent): LogEntry {
  try {
    return JSON.parse(ev.message ?? "") as LogEntry;
  } catch {
    return {
      app: "",
      version: "",
      component: "stdout",
      node: ev.logStreamName?.split("/").pop() ?? "",
      timeMicros: String((ev.timestamp ?? 0) * 1000),
      level: "info",
      file: "",
      line: 0,
      msg: ev.message ?? "",
      attrs: {},
    };
  }
}

/** `tsweaver aws logs`: the app's CloudWatch logs, filtered, optionally followed (until `signal` aborts). */
export async function awsLogsCommand(
  opts: StackOptions & { follow?: boolean; component?: string; since?: string; signal?: AbortSignal },
  out: Out = stdout,
): Promise<void> {
  const aws = clientsFor(opts);
  const d = await readDeployment(aws, opts);
  const tail = new LogTail(aws, d.logGroup, Math.floor(parseSince(opts.since ?? "10m") / 1000));
  const color = process.stdout.isTTY === true;
  for (;;) {
    for (const ev of await tail.read()) {
      const entry = logEntryOf(ev);
      if ("_aws" in entry) continue; // an Embedded Metric Format line: a metric, not a log entry
      if (opts.component && entry.component !== opts.component) continue;
      out(formatLogEntry({ ...entry, attrs: entry.attrs ?? {} }, color));
    }
    if (!opts.follow || opts.signal?.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, LOG_FOLLOW_MS);
      opts.signal?.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    });
    if (opts.signal?.aborted) return;
  }
}
