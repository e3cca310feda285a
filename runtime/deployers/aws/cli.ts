import { RegisterScalableTargetCommand } from "@aws-sdk/client-application-auto-scaling";
import { DescribeStacksCommand } from "@aws-sdk/client-cloudformation";
import { FilterLogEventsCommand } from "@aws-sdk/client-cloudwatch-logs";
import { DescribeServicesCommand, DescribeTasksCommand, ListTasksCommand, UpdateServiceCommand, type Task } from "@aws-sdk/client-ecs";
import { DeregisterTargetsCommand, DescribeTargetHealthCommand } from "@aws-sdk/client-elastic-load-balancing-v2";
import { DeregisterInstanceCommand, ListInstancesCommand } from "@aws-sdk/client-servicediscovery";
import { loadConfig } from "../../core/config.js";
import type { LogEntry } from "../../protos/runtime.js";
import { formatLogEntry, parseSince } from "../../telemetry/logfmt.js";
import { AwsClients, callAws } from "./clients.js";
import { defaultStackName, OUTPUTS, type GroupsOutput, type ListenersOutput } from "./config.js";

/** Where the CLI finds the deployment: weaver.toml's `[aws] stack`, or `--stack`. */
export interface StackOptions {
  config?: string | undefined;
  stack?: string;
}

/** What the CLI reads from the stack's outputs. */
export interface Deployment {
  stack: string;
  cluster: string;
  mainGroup: string;
  groups: GroupsOutput;
  listeners: ListenersOutput;
  logGroup: string;
}

export function stackName(opts: StackOptions): string {
  if (opts.stack) return opts.stack;
  if (!opts.config) throw new Error("name the app: pass its weaver.toml, or --stack NAME");
  const config = loadConfig(opts.config);
  const stack = config.deployers["aws"]?.["stack"];
  return typeof stack === "string" ? stack : defaultStackName(config.name);
}

export async function readDeployment(aws: AwsClients, opts: StackOptions): Promise<Deployment> {
  const stack = stackName(opts);
  const out = await callAws("cloudformation:DescribeStacks", `stack ${stack}`, () => aws.cloudFormation.send(new DescribeStacksCommand({ StackName: stack }))).catch((err: Error) => {
    if (/does not exist/.test(err.message)) throw new Error(`stack ${stack} not found in ${process.env["AWS_REGION"] ?? "the default region"}: deploy it first (npx cdk deploy -c config=weaver.toml), or pass --stack`);
    throw err;
  });
  const outputs = new Map((out.Stacks?.[0]?.Outputs ?? []).map((o) => [o.OutputKey ?? "", o.OutputValue ?? ""]));
  const need = (key: string) => {
    const v = outputs.get(key);
    if (v === undefined) throw new Error(`stack ${stack} has no output ${key}: is it a tsweaver stack deployed from this version (npx cdk deploy)?`);
    return v;
  };
  return {
    stack,
    cluster: need(OUTPUTS.CLUSTER_NAME),
    mainGroup: need(OUTPUTS.MAIN_GROUP),
    groups: JSON.parse(need(OUTPUTS.GROUPS)) as GroupsOutput,
    listeners: JSON.parse(outputs.get(OUTPUTS.LISTENERS) ?? "{}") as ListenersOutput,
    logGroup: need(OUTPUTS.LOG_GROUP),
  };
}

/** Current tasks of a group's service (not stopped), and stopped ones with their reasons. */
async function groupTasks(aws: AwsClients, d: Deployment, service: string): Promise<{ live: Task[]; stopped: Task[] }> {
  const arns: string[] = [];
  for (const desiredStatus of ["RUNNING", "STOPPED"] as const) {
    const page = await callAws("ecs:ListTasks", `service ${service}`, () => aws.ecs.send(new ListTasksCommand({ cluster: d.cluster, serviceName: service, desiredStatus })));
    arns.push(...(page.taskArns ?? []));
  }
  const tasks: Task[] = [];
  for (let i = 0; i < arns.length; i += 100) {
    const page = await callAws("ecs:DescribeTasks", `tasks of service ${service}`, () => aws.ecs.send(new DescribeTasksCommand({ cluster: d.cluster, tasks: arns.slice(i, i + 100) })));
    tasks.push(...(page.tasks ?? []));
  }
  const mine = tasks.filter((t) => t.group === `service:${service}`);
  return { live: mine.filter((t) => t.lastStatus !== "STOPPED" && t.desiredStatus !== "STOPPED"), stopped: mine.filter((t) => t.lastStatus === "STOPPED" || t.desiredStatus === "STOPPED") };
}

async function instanceCount(aws: AwsClients, serviceId: string): Promise<number> {
  const out = await callAws("servicediscovery:ListInstances", `service ${serviceId}`, () => aws.serviceDiscovery.send(new ListInstancesCommand({ ServiceId: serviceId })));
  return new Set((out.Instances ?? []).map((i) => i.Id)).size;
}

async function targetStates(aws: AwsClients, targetGroupArn: string): Promise<string[]> {
  const out = await callAws("elasticloadbalancing:DescribeTargetHealth", `target group ${targetGroupArn}`, () => aws.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: targetGroupArn })));
  return (out.TargetHealthDescriptions ?? []).map((t) => t.TargetHealth?.State ?? "unknown");
}

/** Raises a group's service to `floor` tasks and records the floor for autoscaling and the control plane. */
async function setFloor(aws: AwsClients, d: Deployment, group: string, floor: number): Promise<void> {
  const g = d.groups[group]!;
  await callAws("application-autoscaling:RegisterScalableTarget", `service/${d.cluster}/${g.service}`, () =>
    aws.scaling.send(new RegisterScalableTargetCommand({ ServiceNamespace: "ecs", ResourceId: `service/${d.cluster}/${g.service}`, ScalableDimension: "ecs:service:DesiredCount", MinCapacity: floor, MaxCapacity: Math.max(floor, g.max) })),
  ).catch((err: Error) => process.stderr.write(`warning: ${err.message}\n`));
  await callAws("ecs:UpdateService", `service ${g.service}`, () => aws.ecs.send(new UpdateServiceCommand({ cluster: d.cluster, service: g.service, desiredCount: floor })));
}

/** `tsweaver aws activate`: raise main's group and wait until it is running, registered and healthy. */
export async function activateCommand(opts: StackOptions & { replicas?: number; timeout?: number }, out: (line: string) => void = (l) => process.stdout.write(l + "\n")): Promise<void> {
  const aws = new AwsClients();
  const d = await readDeployment(aws, opts);
  const main = d.groups[d.mainGroup];
  if (!main) throw new Error(`stack ${d.stack}: main group ${d.mainGroup} is missing from the Groups output`);
  const floor = opts.replicas ?? main.min;
  if (!Number.isInteger(floor) || floor < 1) throw new Error(`--replicas must be a positive integer (got ${opts.replicas})`);
  const described = await callAws("ecs:DescribeServices", `service ${main.service}`, () => aws.ecs.send(new DescribeServicesCommand({ cluster: d.cluster, services: [main.service] })));
  if (!described.services?.[0]) throw new Error(`ECS service ${main.service} not found in cluster ${d.cluster}`);
  out(`activating ${d.stack}: group ${d.mainGroup} → ${floor} task(s)`);
  await setFloor(aws, d, d.mainGroup, Math.max(floor, described.services[0].desiredCount ?? 0));
  const started = Date.now();
  const deadline = started + (opts.timeout ?? 600) * 1000;
  const knownStopped = new Set((await groupTasks(aws, d, main.service)).stopped.map((t) => t.taskArn));
  let last = "";
  for (;;) {
    const { live, stopped } = await groupTasks(aws, d, main.service);
    const newlyStopped = stopped.filter((t) => !knownStopped.has(t.taskArn));
    const running = live.filter((t) => t.lastStatus === "RUNNING").length;
    const pending = live.length - running;
    const registered = await instanceCount(aws, main.discoveryServiceId);
    const health = await Promise.all(Object.entries(d.listeners).map(async ([name, l]) => [name, await targetStates(aws, l.targetGroupArn)] as const));
    const healthy = health.map(([name, states]) => `${name} ${states.filter((s) => s === "healthy").length}/${states.length} healthy`).join(", ");
    const line = `  tasks: ${pending} pending, ${running}/${floor} running · registered replicas: ${registered}/${floor}${healthy ? ` · targets: ${healthy}` : ""}`;
    if (line !== last) out(line);
    last = line;
    if (newlyStopped.length >= 3 || (newlyStopped.length > 0 && running === 0 && Date.now() - started > 30_000)) {
      const reasons = newlyStopped.map((t) => `  task ${t.taskArn?.split("/").pop()}: ${t.stoppedReason ?? "stopped"}${t.containers?.[0]?.reason ? ` (${t.containers[0].reason})` : ""}`);
      throw new Error(`group ${d.mainGroup} is failing to start; stopped tasks:\n${reasons.join("\n")}\nsee: tsweaver aws logs --component stderr`);
    }
    const listenersReady = health.every(([, states]) => states.some((s) => s === "healthy"));
    if (running >= floor && registered >= floor && listenersReady) break;
    if (Date.now() > deadline) {
      const unhealthy = health.filter(([, s]) => !s.some((x) => x === "healthy")).map(([n]) => n);
      throw new Error(`timed out after ${opts.timeout ?? 600} s: ${line.trim()}${unhealthy.length ? `; no healthy target for ${unhealthy.join(", ")} (check health_check_path)` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 1_000));
  }
  out(`${d.stack} is active (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  for (const [name, l] of Object.entries(d.listeners)) out(`listener ${name}: ${l.url}`);
}

/** `tsweaver aws status`: groups, tasks, registered replicas, listeners and target health. */
export async function awsStatusCommand(opts: StackOptions & { json?: boolean }, out: (line: string) => void = (l) => process.stdout.write(l + "\n")): Promise<void> {
  const aws = new AwsClients();
  const d = await readDeployment(aws, opts);
  const services = await callAws("ecs:DescribeServices", `cluster ${d.cluster}`, () =>
    aws.ecs.send(new DescribeServicesCommand({ cluster: d.cluster, services: Object.values(d.groups).map((g) => g.service) })),
  );
  const groups = await Promise.all(
    Object.entries(d.groups).map(async ([name, g]) => {
      const s = services.services?.find((x) => x.serviceName === g.service);
      const { live } = await groupTasks(aws, d, g.service);
      return {
        group: name,
        desired: s?.desiredCount ?? 0,
        running: live.filter((t) => t.lastStatus === "RUNNING").length,
        pending: live.filter((t) => t.lastStatus !== "RUNNING").length,
        registered: await instanceCount(aws, g.discoveryServiceId),
        health: "",
      };
    }),
  );
  for (const g of groups) g.health = g.desired === 0 ? "inactive" : g.registered >= g.desired && g.running >= g.desired ? "healthy" : g.running === 0 ? "starting" : "degraded";
  const listeners = await Promise.all(
    Object.entries(d.listeners).map(async ([name, l]) => {
      const states = await targetStates(aws, l.targetGroupArn);
      return { listener: name, url: l.url, targets: states.length, healthy: states.filter((s) => s === "healthy").length };
    }),
  );
  if (opts.json) {
    out(JSON.stringify({ stack: d.stack, groups, listeners }, null, 2));
    return;
  }
  out(`STACK ${d.stack}  cluster ${d.cluster}`);
  const rows = [["GROUP", "DESIRED", "RUNNING", "PENDING", "REGISTERED", "HEALTH"], ...groups.map((g) => [g.group, String(g.desired), String(g.running), String(g.pending), String(g.registered), g.health])];
  out(table(rows));
  if (listeners.length) out(table([["LISTENER", "URL", "TARGETS", "HEALTHY"], ...listeners.map((l) => [l.listener, l.url, String(l.targets), String(l.healthy)])]));
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => "  " + r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

/** `tsweaver aws deactivate`: every group to 0 tasks, every replica and target deregistered. */
export async function deactivateCommand(opts: StackOptions & { timeout?: number }, out: (line: string) => void = (l) => process.stdout.write(l + "\n")): Promise<void> {
  const aws = new AwsClients();
  const d = await readDeployment(aws, opts);
  for (const group of Object.keys(d.groups)) await setFloor(aws, d, group, 0);
  out(`deactivating ${d.stack}: every group set to 0 tasks`);
  const deadline = Date.now() + (opts.timeout ?? 300) * 1000;
  for (;;) {
    const live = (await Promise.all(Object.values(d.groups).map(async (g) => (await groupTasks(aws, d, g.service)).live.length))).reduce((a, b) => a + b, 0);
    if (live === 0) break;
    if (Date.now() > deadline) throw new Error(`timed out: ${live} task(s) still running`);
    await new Promise((r) => setTimeout(r, 1_000));
  }
  // Tasks deregister themselves when they stop; remove whatever a crash left behind.
  for (const [group, g] of Object.entries(d.groups)) {
    const list = await callAws("servicediscovery:ListInstances", `service ${g.discoveryServiceId}`, () => aws.serviceDiscovery.send(new ListInstancesCommand({ ServiceId: g.discoveryServiceId })));
    for (const id of new Set((list.Instances ?? []).map((i) => i.Id!))) {
      await callAws("servicediscovery:DeregisterInstance", `instance ${id} (group ${group})`, () => aws.serviceDiscovery.send(new DeregisterInstanceCommand({ ServiceId: g.discoveryServiceId, InstanceId: id }))).catch(() => {});
    }
  }
  for (const l of Object.values(d.listeners)) {
    const health = await callAws("elasticloadbalancing:DescribeTargetHealth", `target group ${l.targetGroupArn}`, () => aws.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: l.targetGroupArn })));
    const targets = (health.TargetHealthDescriptions ?? []).map((t) => t.Target!).filter(Boolean);
    if (targets.length) await callAws("elasticloadbalancing:DeregisterTargets", `target group ${l.targetGroupArn}`, () => aws.elb.send(new DeregisterTargetsCommand({ TargetGroupArn: l.targetGroupArn, Targets: targets })));
  }
  out(`${d.stack} is inactive: no tasks, replicas or targets`);
}

/** `tsweaver aws logs`: the app's CloudWatch logs, filtered, optionally followed. */
export async function awsLogsCommand(opts: StackOptions & { follow?: boolean; component?: string; since?: string }, out: (line: string) => void = (l) => process.stdout.write(l + "\n")): Promise<void> {
  const aws = new AwsClients();
  const d = await readDeployment(aws, opts);
  let startTime = Math.floor(parseSince(opts.since ?? "10m") / 1000);
  const seen = new Set<string>();
  const color = process.stdout.isTTY === true;
  for (;;) {
    let token: string | undefined;
    let newest = startTime;
    do {
      const page = await callAws("logs:FilterLogEvents", `log group ${d.logGroup}`, () => aws.logs.send(new FilterLogEventsCommand({ logGroupName: d.logGroup, startTime, nextToken: token })));
      for (const ev of page.events ?? []) {
        if (seen.has(ev.eventId ?? "")) continue;
        seen.add(ev.eventId ?? "");
        newest = Math.max(newest, ev.timestamp ?? 0);
        let entry: LogEntry;
        try {
          entry = JSON.parse(ev.message ?? "") as LogEntry;
        } catch {
          entry = { app: "", version: "", component: "stdout", node: ev.logStreamName?.split("/").pop() ?? "", timeMicros: String((ev.timestamp ?? 0) * 1000), level: "info", file: "", line: 0, msg: ev.message ?? "", attrs: {} };
        }
        if (opts.component && entry.component !== opts.component) continue;
        out(formatLogEntry({ ...entry, attrs: entry.attrs ?? {} }, color));
      }
      token = page.nextToken;
    } while (token);
    if (!opts.follow) return;
    startTime = newest;
    await new Promise((r) => setTimeout(r, 2_000));
  }
}
