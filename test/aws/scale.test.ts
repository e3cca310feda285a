/**
 * The AWS API budget at scale: 1,000 replicas over 20 groups in the emulator, without 1,000 processes.
 * The cluster's tasks are real ECS tasks (RunTask, kept RUNNING by the emulator); the replicas report
 * ready to a real ControlPlane in this process (its registrations are real Cloud Map instances), and
 * the agents' discovery (discovery.ts) runs in-process for simulated agents on a simulated clock. Every
 * AWS request is counted by API with an SDK middleware (AwsClients' observer); the rates are printed
 * and the budgets asserted generously. Figures: docs/aws.md, "Scale and API budget".
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  CreateLogStreamCommand,
  DeleteLogGroupCommand,
  PutLogEventsCommand,
} from "@aws-sdk/client-cloudwatch-logs";
import {
  CreateClusterCommand,
  CreateServiceCommand as CreateEcsServiceCommand,
  ECSClient,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  type Task,
} from "@aws-sdk/client-ecs";
import {
  CreateHttpNamespaceCommand,
  CreateServiceCommand,
  DeregisterInstanceCommand,
  ListNamespacesCommand,
  ServiceDiscoveryClient,
} from "@aws-sdk/client-servicediscovery";
import { eniAddress } from "../../runtime/deployers/aws/callers.js";
import { LOG_LATENESS_MS, LogTail } from "../../runtime/deployers/aws/cli.js";
import { AwsClients } from "../../runtime/deployers/aws/clients.js";
import { MAIN_COMPONENT, METRICS, TAGS, versionedServiceName, type GroupsEnv } from "../../runtime/deployers/aws/contract.js";
import { ControlPlane } from "../../runtime/deployers/aws/controlplane.js";
import { Discovery, FULL_REFRESH_EVERY } from "../../runtime/deployers/aws/discovery.js";
import type { JsonLogger } from "../../runtime/deployers/aws/jsonlog.js";
import type { ReplicaReport } from "../../runtime/deployers/aws/protocol.js";
import type { RoutingInfo } from "../../runtime/protos/runtime.js";
import { clientConfig, useEmulator, type Emulator } from "./moto.js";

const GROUPS = 20;
const PER_GROUP = 50;
const REPLICAS = GROUPS * PER_GROUP;
const VERSION = "v0123456789";
const RECONCILE_S = 5;
const HEARTBEAT_S = 15;
/** Simulated agents, and the groups each one's components call (two components per group). */
const AGENTS = 10;
const CALLED_GROUPS = 3;
const SIMULATED_SECONDS = 15;

/** 1,000 "replica ready" lines would drown the figures. */
const quiet: JsonLogger = { info: () => {}, warn: () => {}, error: () => {} };

const group = (i: number) => `g${String(i).padStart(2, "0")}`;
const pages = (n: number) => Math.max(1, Math.ceil(n / 100));

/** AWS requests by API, as the SDK sends them. */
class Calls {
  readonly byApi = new Map<string, number>();
  readonly observe = (api: string): void => void this.byApi.set(api, (this.byApi.get(api) ?? 0) + 1);
  total(prefix = ""): number {
    return [...this.byApi].filter(([k]) => k.startsWith(prefix)).reduce((a, [, n]) => a + n, 0);
  }
  get(api: string): number {
    return this.byApi.get(api) ?? 0;
  }
  reset(): void {
    this.byApi.clear();
  }
  /** `api n/s, ...` with rates over `seconds`, largest first. */
  rates(seconds: number, per = 1): string {
    return [...this.byApi]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${(n / seconds / per).toFixed(3)}/s`)
      .join(", ");
  }
}

/** Runs `fn` over `items`, `width` at a time. */
async function inParallel<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

let emu: Emulator;
let ecs: ECSClient;
let sd: ServiceDiscoveryClient;
before(async () => {
  emu = await useEmulator();
  ecs = new ECSClient(clientConfig(emu.endpoint));
  sd = new ServiceDiscoveryClient(clientConfig(emu.endpoint));
});
after(async () => {
  ecs?.destroy();
  sd?.destroy();
  await emu?.stop();
});

test(`API budget: ${REPLICAS} replicas over ${GROUPS} groups — control plane calls per reconcile grow by a page per 100, agents make ≤ 1 Cloud Map call a second`, async () => {
  const started = Date.now();
  const id = randomBytes(4).toString("hex");
  const deployment = `scale-${id}`;
  const cluster = (await ecs.send(new CreateClusterCommand({ clusterName: deployment }))).cluster!.clusterArn!;
  // Bridge mode: the emulator gives each task a Fargate-like ENI address anyway (moto.ts).
  const taskDefinition = (
    await ecs.send(
      new RegisterTaskDefinitionCommand({ family: deployment, containerDefinitions: [{ name: "app", image: "tsweaver", memory: 512 }] }),
    )
  ).taskDefinition!.taskDefinitionArn!;
  const namespace = `${deployment}.local`;
  await sd.send(new CreateHttpNamespaceCommand({ Name: namespace }));
  const namespaceId = (await sd.send(new ListNamespacesCommand({}))).Namespaces!.find((n) => n.Name === namespace)!.Id!;
  const serviceIds = new Map<string, string>();
  for (const name of ["controlplane", ...Array.from({ length: GROUPS }, (_, i) => group(i))])
    serviceIds.set(name, (await sd.send(new CreateServiceCommand({ Name: name, NamespaceId: namespaceId }))).Service!.Id!);

  // The version's services as the control plane creates them (tagged), and their tasks as ECS runs them.
  const tasks: Task[] = [];
  for (let g = 0; g < GROUPS; g++) {
    await ecs.send(
      new CreateEcsServiceCommand({
        cluster,
        serviceName: versionedServiceName(group(g), VERSION),
        taskDefinition,
        desiredCount: PER_GROUP,
        tags: [
          { key: TAGS.DEPLOYMENT, value: deployment },
          { key: TAGS.VERSION, value: VERSION },
          { key: TAGS.GROUP, value: group(g) },
          { key: TAGS.MIN, value: String(PER_GROUP) },
          { key: TAGS.MAX, value: String(PER_GROUP) },
          ...(g === 0
            ? [
                { key: TAGS.MAIN, value: "true" },
                { key: TAGS.ROLLOUT, value: "live" },
              ]
            : []),
        ],
      }),
    );
  }
  const runs = Array.from({ length: GROUPS * (PER_GROUP / 10) }, (_, i) => group(Math.floor(i / (PER_GROUP / 10))));
  await inParallel(runs, 8, async (g) => {
    const out = await ecs.send(
      new RunTaskCommand({
        cluster,
        taskDefinition,
        count: 10,
        launchType: "FARGATE",
        group: `service:${versionedServiceName(g, VERSION)}`,
      }),
    );
    tasks.push(...(out.tasks ?? []));
  });
  assert.equal(tasks.length, REPLICAS);
  const tasksMs = Date.now() - started;

  const groups: GroupsEnv = Object.fromEntries(
    Array.from({ length: GROUPS }, (_, g) => [
      group(g),
      {
        taskDefinition,
        discoveryServiceId: serviceIds.get(group(g))!,
        components: g === 0 ? [MAIN_COMPONENT, `c${g}a`, `c${g}b`] : [`c${g}a`, `c${g}b`],
        min: PER_GROUP,
        max: PER_GROUP,
        cpuTarget: 70,
      },
    ]),
  );
  const cpCalls = new Calls();
  /** The control plane's EMF lines (its registered-replica counts). */
  const emf: string[] = [];
  const cp = new ControlPlane(
    {
      deployment,
      version: VERSION,
      clusterArn: cluster,
      namespaceId,
      controlPlaneServiceId: serviceIds.get("controlplane")!,
      controlPort: 0,
      rpcPort: 10_000,
      secret: "scale",
      groups,
      listeners: {},
      rollout: { steps: [100], stepSeconds: 1, maxErrorRate: 0.1, healthTimeoutSeconds: 60 },
      vpcId: "",
      subnets: [],
      securityGroup: "",
      assignPublicIp: "DISABLED",
      reconcileMs: RECONCILE_S * 1000,
    },
    new AwsClients(undefined, cpCalls.observe),
    { ...quiet, metrics: (lines) => emf.push(...lines) },
  );

  // Every replica reports ready (the agents' first report): one RegisterInstance each, nothing more.
  const reports: ReplicaReport[] = tasks.map((t) => {
    const taskId = t.taskArn!.split("/").pop()!;
    return {
      taskArn: t.taskArn!,
      taskId,
      group: t.group!.slice("service:".length, -VERSION.length - 1),
      ip: eniAddress(t)!,
      port: 10_000,
      weaveletId: taskId,
      version: VERSION,
      listeners: {},
    };
  });
  await inParallel(reports, 16, async (r) => void (await cp.ready(r)));
  const registering = new Map(cpCalls.byApi);
  assert.equal(registering.get("servicediscovery:RegisterInstance"), REPLICAS, `registrations: ${cpCalls.rates(1)}`);
  assert.ok(cpCalls.get("servicediscovery:ListInstances") <= GROUPS * pages(PER_GROUP), `first reports: ${cpCalls.rates(1)}`);
  const setupMs = Date.now() - started;
  console.log(`scale: tasks ${(tasksMs / 1000).toFixed(1)} s, registrations ${((setupMs - tasksMs) / 1000).toFixed(1)} s`);

  // Reconciles in the steady state: nothing to fix, so only the listings.
  cpCalls.reset();
  emf.length = 0;
  const reconcileStarted = Date.now();
  const RECONCILES = 1;
  for (let i = 0; i < RECONCILES; i++) await cp.reconcile();
  const reconcileMs = (Date.now() - reconcileStarted) / RECONCILES;
  const perReconcile = cpCalls.total() / RECONCILES;
  const reconcileRates = cpCalls.rates(RECONCILES * RECONCILE_S);
  assert.equal(cpCalls.get("servicediscovery:RegisterInstance") + cpCalls.get("servicediscovery:DeregisterInstance"), 0, reconcileRates);
  // What does not depend on replicas: the stack's version, the services (10 a page), the control plane's instances.
  const fixed = 1 + 1 + pages(GROUPS * 10) / 10 + 1;
  const perReplicaPages = 2 * pages(REPLICAS) + GROUPS * pages(PER_GROUP);
  assert.ok(cpCalls.get("ecs:ListTasks") / RECONCILES <= pages(REPLICAS) + 1, reconcileRates);
  assert.ok(cpCalls.get("ecs:DescribeTasks") / RECONCILES <= pages(REPLICAS), reconcileRates);
  assert.ok(cpCalls.get("servicediscovery:ListInstances") / RECONCILES <= GROUPS * pages(PER_GROUP) + 1, reconcileRates);
  assert.ok(perReconcile <= fixed + perReplicaPages + 2, `${perReconcile} calls per reconcile (${reconcileRates})`);
  // Within those calls, the reconcile published every group's registered replicas (the dashboard's metric).
  const registered = emf.map((l) => JSON.parse(l) as Record<string, unknown>).filter((d) => METRICS.REGISTERED_REPLICAS in d);
  assert.equal(registered.length, GROUPS, "one line per group of this version");
  assert.equal(
    registered.reduce((n, d) => n + Number(d[METRICS.REGISTERED_REPLICAS]), 0),
    REPLICAS,
  );

  // A round of heartbeats of every replica (each sends one every 15 s): registered as reported, so no AWS call.
  cpCalls.reset();
  await inParallel(reports, 16, async (r) => void (await cp.ready({ ...r, calls: 10, errors: 0 })));
  const heartbeatCalls = cpCalls.total();
  assert.equal(heartbeatCalls, 0, `heartbeats of ${REPLICAS} replicas: ${cpCalls.rates(HEARTBEAT_S)}`);

  // A registration lost outside the control plane is restored by the next reconcile (the count can fail).
  const lost = reports[7]!;
  await sd.send(new DeregisterInstanceCommand({ ServiceId: serviceIds.get(lost.group)!, InstanceId: lost.taskId }));
  cpCalls.reset();
  await cp.reconcile();
  assert.equal(cpCalls.get("servicediscovery:RegisterInstance"), 1, `restoring a lost registration: ${cpCalls.rates(1)}`);

  // Agents: each hosts one group and calls CALLED_GROUPS others, two components in each, for SIMULATED_SECONDS.
  let now = Date.now();
  const agentCalls = new Calls();
  const routed = new Map<string, RoutingInfo>();
  const agents = Array.from({ length: AGENTS }, (_, a) => ({
    discovery: new Discovery({
      aws: new AwsClients(undefined, agentCalls.observe),
      namespace,
      version: VERSION,
      periodMs: 1000,
      now: () => now,
      update: async (info) => void routed.set(`${a}/${info.component}`, info),
    }),
    calls: Array.from({ length: CALLED_GROUPS }, (_, k) => (a + 1 + k) % GROUPS),
  }));
  await inParallel(agents, 8, async (agent) => {
    for (const g of agent.calls) for (const c of ["a", "b"]) await agent.discovery.watch(`c${g}${c}`, group(g), c === "a");
  });
  assert.equal(routed.size, AGENTS * CALLED_GROUPS * 2);
  for (const info of routed.values()) assert.equal(info.replicas.length, PER_GROUP);
  // The initial reads are one per called group and agent, not one per component.
  assert.equal(agentCalls.get("servicediscovery:DiscoverInstances"), AGENTS * CALLED_GROUPS, agentCalls.rates(1));

  // The steady state: no replica changes.
  agentCalls.reset();
  const tick = async () => {
    now += 1000;
    await inParallel(agents, 8, (agent) => agent.discovery.tick());
  };
  for (let second = 1; second <= SIMULATED_SECONDS; second++) await tick();
  const perAgent = agentCalls.total("servicediscovery:") / AGENTS / SIMULATED_SECONDS;
  const agentRates = agentCalls.rates(SIMULATED_SECONDS, AGENTS);
  assert.ok(perAgent <= 1, `${perAgent.toFixed(3)} Cloud Map calls per agent per second (${agentRates})`);

  // A replica goes: every agent calling its group reads the group once more, and routes around it.
  const changedGroup = agents[0]!.calls[0]!;
  const watchers = agents.filter((a) => a.calls.includes(changedGroup)).length;
  const gone = reports.find((r) => r.group === group(changedGroup))!;
  await cp.stopping(gone);
  agentCalls.reset();
  const CHANGE_SECONDS = 6;
  for (let second = 1; second <= CHANGE_SECONDS; second++) await tick();
  for (const [key, info] of routed)
    if (key.endsWith(`/c${changedGroup}a`))
      assert.ok(!info.replicas.includes(`${gone.ip}:${gone.port}`), `${key} still routes to ${gone.ip}`);
  const reads = agentCalls.get("servicediscovery:DiscoverInstances");
  // Besides the watchers' reads, at most the periodic full re-read of each service (every 10th check, checks ≥ 1 s apart).
  assert.ok(reads >= watchers && reads <= watchers + AGENTS * CALLED_GROUPS, `${reads} reads after one change seen by ${watchers} agents`);

  const line = (s: string) => console.log(`scale: ${s}`);
  line(`${REPLICAS} replicas in ${GROUPS} groups, ${AGENTS} simulated agents calling ${CALLED_GROUPS} groups (2 components each)`);
  line(
    `control plane per reconcile (every ${RECONCILE_S} s): ${perReconcile} calls = ${(perReconcile / RECONCILE_S).toFixed(1)}/s: ${reconcileRates}`,
  );
  line(`one reconcile took ${(reconcileMs / 1000).toFixed(1)} s against the emulator`);
  line(`control plane per heartbeat round (${REPLICAS} replicas, every ${HEARTBEAT_S} s): ${heartbeatCalls} calls`);
  line(`first reports (registration): ${[...registering].map(([k, n]) => `${k} ${n}`).join(", ")}`);
  line(
    `agents: ${perAgent.toFixed(3)} Cloud Map calls per agent per second: ${agentRates} (full re-read every ${FULL_REFRESH_EVERY}th check)`,
  );
  line(`one replica gone: ${reads} DiscoverInstances by the ${watchers} agent(s) calling its group over the next ${CHANGE_SECONDS} s`);
  line(`took ${((Date.now() - started) / 1000).toFixed(1)} s (setup ${(setupMs / 1000).toFixed(1)} s)`);
});

test("logs --follow reads incrementally: one FilterLogEvents a read, each event once, late events within the window too", async () => {
  const logs = new CloudWatchLogsClient(clientConfig(emu.endpoint));
  const logGroup = `/tsweaver/scale-${randomBytes(4).toString("hex")}`;
  try {
    await logs.send(new CreateLogGroupCommand({ logGroupName: logGroup }));
    for (const s of ["main/app/a", "main/app/b"]) await logs.send(new CreateLogStreamCommand({ logGroupName: logGroup, logStreamName: s }));
    const t0 = Date.now() - 60_000;
    const put = (stream: string, at: number, msg: string) =>
      logs.send(
        new PutLogEventsCommand({
          logGroupName: logGroup,
          logStreamName: `main/app/${stream}`,
          logEvents: [{ timestamp: at, message: msg }],
        }),
      );
    for (let i = 0; i < 30; i++) await put(i % 2 ? "a" : "b", t0 + i * 100, `old ${i}`);
    const calls = new Calls();
    const tail = new LogTail(new AwsClients(undefined, calls.observe), logGroup, t0);
    assert.equal((await tail.read()).length, 30);
    assert.deepEqual(await tail.read(), []);
    await put("a", t0 + 5_000, "new on a");
    // Ingested after newer events of the other stream, but within the lateness window: still read, once.
    await put("b", t0 + 5_000 - LOG_LATENESS_MS / 2, "late on b");
    assert.deepEqual(
      (await tail.read()).map((e) => e.message),
      ["late on b", "new on a"],
    );
    assert.deepEqual(await tail.read(), []);
    assert.equal(calls.get("logs:FilterLogEvents"), 4, calls.rates(1));
  } finally {
    await logs.send(new DeleteLogGroupCommand({ logGroupName: logGroup })).catch(() => {});
    logs.destroy();
  }
});
