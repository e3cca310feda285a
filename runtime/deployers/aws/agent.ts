import { DiscoverInstancesCommand } from "@aws-sdk/client-servicediscovery";
import type { Server } from "node:http";
import { componentConfigs, groupsOf, loadConfig, MAIN_COMPONENT, type AppConfig } from "../../core/config.js";
import { listAppComponents } from "../../core/components.js";
import { Envelope, type EnvelopeHandler } from "../../envelope/envelope.js";
import type { RpcCertificate } from "../../protos/runtime.js";
import { appUser, type AppUser } from "./appuser.js";
import { newKeyAndCsr } from "./certs.js";
import { AwsClients, callAws } from "./clients.js";
import { ATTR, ENV } from "./contract.js";
import { checkIntervalMs, Discovery, DISCOVERY_CALLS_PER_SECOND } from "./discovery.js";
import { METHOD_CALLS, METHOD_ERRORS, SERVED_CALLS } from "../../telemetry/methods.js";
import { emfLines } from "./emf.js";
import { serveHealth } from "./health.js";
import { jsonLogger, writeJsonLogs } from "./jsonlog.js";
import { taskIdentity, type TaskIdentity } from "./metadata.js";
import { ControlApiClient, type ReplicaReport } from "./protocol.js";

/** The agent's configuration, from the task environment the stack sets. */
export interface AgentEnv {
  app: string;
  deployment: string;
  /** The version this task runs: it only discovers, and only talks to, replicas of the same version. */
  version: string;
  configFile: string;
  namespace: string;
  controlPlaneService: string;
  rpcPort: number;
  /** Loopback port of the health endpoint the container health check asks. */
  healthPort: number;
  secret: string;
  group: string;
  components: string[];
  /** How often Cloud Map is checked for replica changes (ms), per Cloud Map service the weavelet calls. */
  discoveryMs: number;
  /** Cloud Map calls per second the checks aim for when the weavelet calls many groups (discovery.ts). */
  discoveryCallsPerSecond?: number | undefined;
  /** How often readiness is re-reported, which restores lost registrations (ms). */
  heartbeatMs: number;
}

function required(name: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name} is not set; the agent runs in the task the stack defines (infra/)`);
  return v;
}

export function agentEnvFromProcess(): AgentEnv {
  return {
    app: required(ENV.APP),
    deployment: required(ENV.DEPLOYMENT),
    version: required(ENV.VERSION),
    configFile: required(ENV.CONFIG),
    namespace: required(ENV.NAMESPACE),
    controlPlaneService: required(ENV.CONTROLPLANE_SERVICE),
    rpcPort: Number(required(ENV.RPC_PORT)),
    healthPort: Number(required(ENV.HEALTH_PORT)),
    secret: required(ENV.SECRET),
    group: required(ENV.GROUP),
    components: required(ENV.COMPONENTS).split(",").filter(Boolean),
    discoveryMs: Number(process.env["TSWEAVER_DISCOVERY_MS"] ?? 1_000),
    discoveryCallsPerSecond: Number(process.env["TSWEAVER_DISCOVERY_CALLS_PER_SECOND"] ?? DISCOVERY_CALLS_PER_SECOND),
    heartbeatMs: Number(process.env["TSWEAVER_HEARTBEAT_MS"] ?? 15_000),
  };
}

/**
 * Variables of the agent's environment the weavelet inherits; everything else stays with the agent: the
 * deployment secret, the metadata endpoint and the agent's own settings. The task role's credential
 * endpoint is passed on: the role is the group's own, holding only what the app was given (weaver.toml's
 * `permissions`, CDK grants) besides discovering this namespace's replicas. The app's own variables come
 * from weaver.toml's `env` and `secrets` ({@link appSecretsEnv}).
 */
const WEAVELET_INHERITS: readonly (string | RegExp)[] = [
  "PATH",
  "HOME",
  "LANG",
  /^LC_[A-Z]+$/,
  "TZ",
  "TMPDIR",
  "NODE_ENV",
  "NODE_V8_COVERAGE",
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  /^OTEL_[A-Z_]+$/,
  // The AWS SDK's container credential provider (the group's task role).
  "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
  "TSWEAVER_LOG_LEVEL",
  "TSWEAVER_METRICS",
];

/** The part of `env` a weavelet may see ({@link WEAVELET_INHERITS}). */
export function weaveletBaseEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && WEAVELET_INHERITS.some((p) => (typeof p === "string" ? p === k : p.test(k)))) out[k] = v;
  }
  return out;
}

/**
 * The app's secret environment variables (named in {@link ENV.APP_SECRETS}; ECS set their values from
 * Secrets Manager or SSM): the weavelet gets them, unlike the agent's own secret.
 */
export function appSecretsEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of (env[ENV.APP_SECRETS] ?? "").split(",").filter(Boolean)) {
    const v = env[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/** How long a stopping weavelet gets to finish its in-flight work once no new work reaches it. */
const WEAVELET_STOP_GRACE_MS = 10_000;

/** A certificate is renewed once this share of its remaining lifetime has passed. */
const RENEW_AT = 2 / 3;
/** A failed renewal is tried again after this long (or sooner, close to expiry). */
const RENEW_RETRY_MS = 30_000;

/**
 * The task agent: the entrypoint of every group task. It starts the app under an Envelope, relays the
 * weavelet's requests to the control plane (authenticated with the deployment secret), reports its
 * replica ready, and keeps the weavelet's routing info current from Cloud Map.
 */
export class Agent {
  private envelope: Envelope | undefined;
  private identity: TaskIdentity | undefined;
  private config: AppConfig | undefined;
  private groupOf = new Map<string, string>();
  private readonly discovery: Discovery;
  private readonly listeners: Record<string, number> = {};
  private client: ControlApiClient | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private healthServer: Server | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  /** When the weavelet's current certificate expires (ms since the epoch). */
  private certificateExpiry = 0;
  private stopping = false;
  private locateAttempts = 0;
  private unhealthy = false;
  private unsentSpans = 0;
  /** Method call totals at the previous report (reports carry the difference). */
  private lastReportAt = Date.now();
  private readonly log = jsonLogger("agent");

  constructor(
    private readonly env: AgentEnv,
    private readonly aws = new AwsClients(),
  ) {
    this.discovery = new Discovery({
      aws,
      namespace: env.namespace,
      version: env.version,
      periodMs: env.discoveryMs,
      callsPerSecond: env.discoveryCallsPerSecond,
      update: async (info) => {
        await this.envelope?.updateRoutingInfo(info);
      },
      log: (msg, attrs) => (msg === "discovery failed" ? this.log.warn(msg, attrs) : this.log.info(msg, attrs)),
    });
  }

  /** The control plane client, bound to this task (available once its identity is known). */
  private get control(): ControlApiClient {
    this.client ??= new ControlApiClient(this.env.secret, this.identity!, () => this.locateControlPlane());
    return this.client;
  }

  /** Starts the weavelet and reports it ready; resolves when it is registered. */
  async start(): Promise<void> {
    this.identity = await taskIdentity();
    // Loopback only: the task's own health check asks it. (A task the test harness emulates has a
    // loopback address of its own, shared with no other task: it binds there.)
    const healthHost = this.identity.ip.startsWith("127.") ? this.identity.ip : "127.0.0.1";
    this.healthServer = await serveHealth(this.env.healthPort, healthHost, async (timeoutMs) =>
      this.envelope?.running && !this.stopping ? this.envelope.getHealth(timeoutMs) : undefined,
    );
    this.config = loadConfig(this.env.configFile);
    const all = listAppComponents(this.config);
    for (const g of groupsOf(this.config, all)) for (const c of g.components) this.groupOf.set(c, g.name);
    const config = componentConfigs(this.config, this.env.components);
    const user = this.appUser();
    // No certificate, no weavelet: component calls on AWS are TLS only (the weavelet refuses plaintext too).
    const certificate = await this.requestCertificate();
    const envelope = new Envelope({
      binary: this.config.binary,
      args: this.config.args,
      baseEnv: { ...weaveletBaseEnv(process.env), ...(user ? { HOME: user.home } : {}), ...appSecretsEnv(process.env) },
      ...(user ? { user: { uid: user.uid, gid: user.gid } } : {}),
      env: this.config.env,
      nodeArgs: this.config.nodeArgs,
      weaveletArgs: {
        app: this.env.app,
        // The version is the weavelet's deployment id: its RPC handshake refuses peers of other versions.
        deploymentId: this.env.version,
        id: this.identity.taskId,
        runMain: this.env.components.includes(MAIN_COMPONENT),
        internalAddress: `${this.identity.ip}:${this.env.rpcPort}`,
        group: this.env.group,
        components: this.env.components,
        config,
        callTimeoutMs: { ...this.config.callTimeoutMs },
      },
      rpcSecurity: { key: new Uint8Array(0), certificate, requireTls: true },
    });
    this.envelope = envelope;
    await envelope.serve(this.handler());
    void this.envelope.exited.then((info) => {
      if (this.stopping) return;
      // The weavelet died: this task is done; ECS replaces it. Deregister now rather than at reconcile.
      this.log.error("weavelet exited", { code: String(info.code), signal: String(info.signal) });
      void this.stop(1);
    });
    const health = await this.envelope.getHealth();
    if (health !== "HEALTHY") throw new Error(`the weavelet reports ${health} after its handshake`);
    await this.control.ready(this.report());
    this.log.info("replica ready", { group: this.env.group, address: this.envelope.dialAddress });
    this.heartbeatTimer = setInterval(
      () => void this.heartbeat().catch((err: Error) => this.log.warn("heartbeat failed", { err: err.message })),
      this.env.heartbeatMs,
    );
    this.pollTimer = setInterval(() => void this.discovery.tick(), this.env.discoveryMs);
    this.scheduleRenewal();
  }

  /**
   * The user the app runs as: another than the agent's, so that no code of the app can read the
   * deployment secret from the agent's environment or memory (appuser.ts). An agent that is not root
   * cannot switch users: it says what that exposes and runs the app as itself.
   */
  private appUser(): AppUser | undefined {
    const user = appUser(process.env);
    if (user === undefined) {
      this.log.warn("the agent does not run as root: the app runs as the agent's user and can read its environment and memory", {
        uid: String(process.getuid?.()),
        fix: "run group tasks' containers as user 0 (the stack's task definitions do); the agent starts the app as TSWEAVER_APP_USER",
      });
      return undefined;
    }
    this.log.info("the app runs as its own user", { user: user.name, uid: String(user.uid), gid: String(user.gid) });
    return user;
  }

  /**
   * A certificate for this task's weavelet: a fresh ECDSA key pair (the private key never leaves this
   * task: it goes to the weavelet over the control pipe only) and the control plane's signature on its
   * CSR, for the identity the control plane verifies (this task's group and version).
   */
  private async requestCertificate(): Promise<RpcCertificate> {
    const { key, csr } = await newKeyAndCsr(this.identity!.taskId);
    const reply = await this.control.certificate({
      taskArn: this.identity!.taskArn,
      group: this.env.group,
      version: this.env.version,
      csr,
    });
    this.certificateExpiry = Date.parse(reply.notAfter);
    this.log.info("certificate received", { notAfter: reply.notAfter });
    return { certificatePem: reply.certificate, privateKeyPem: key, caPem: reply.ca };
  }

  /** Renews the weavelet's certificate once {@link RENEW_AT} of its remaining lifetime has passed. */
  private scheduleRenewal(delayMs = (this.certificateExpiry - Date.now()) * RENEW_AT): void {
    clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => void this.renew(), Math.max(0, Math.min(delayMs, 0x7fffffff)));
    this.renewTimer.unref();
  }

  private async renew(): Promise<void> {
    if (this.stopping) return;
    try {
      const certificate = await this.requestCertificate();
      await this.envelope!.updateCertificate(certificate);
      this.scheduleRenewal();
    } catch (err) {
      const leftMs = this.certificateExpiry - Date.now();
      // Past expiry, peers refuse this weavelet's connections and it refuses theirs: calls fail closed.
      const attrs = { err: (err as Error).message, expiresInMs: String(Math.round(leftMs)) };
      if (leftMs > 0) this.log.warn("cannot renew the weavelet's certificate", attrs);
      else this.log.error("cannot renew the weavelet's certificate: it has expired", attrs);
      this.scheduleRenewal(Math.min(RENEW_RETRY_MS, Math.max(1_000, leftMs / 4)));
    }
  }

  /**
   * Drains and exits with `code`: deregisters from Cloud Map and the listeners' target groups, keeps
   * serving while the load balancer's deregistration delay and one discovery period of the other agents
   * pass (requests and calls may still arrive until then), then stops the weavelet, which finishes its
   * in-flight work (its RPC server sends GOAWAY). A weavelet that already died is not waited for.
   */
  async stop(code = 0): Promise<never> {
    if (!this.stopping) {
      this.stopping = true;
      clearInterval(this.heartbeatTimer);
      clearTimeout(this.renewTimer);
      let delaySeconds = 0;
      if (this.identity) {
        const reply = await this.control
          .stopping(this.report())
          .catch((err: Error) => (this.log.warn("cannot deregister", { err: err.message }), undefined));
        delaySeconds = reply?.deregistrationDelaySeconds ?? 0;
      }
      if (this.envelope?.running && code === 0) {
        // Other agents notice within their check interval, which is longest in an agent that calls every group.
        const groups = new Set(this.groupOf.values()).size;
        const stalenessMs = checkIntervalMs(groups, this.env.discoveryMs, this.env.discoveryCallsPerSecond);
        const waitMs = delaySeconds * 1000 + stalenessMs;
        this.log.info("draining: deregistered; serving until callers and the load balancer stop sending", {
          waitMs: String(waitMs),
          deregistrationDelaySeconds: String(delaySeconds),
          discoveryMs: String(this.env.discoveryMs),
          discoveryStalenessMs: String(stalenessMs),
        });
        await new Promise((r) => setTimeout(r, waitMs));
      }
      // Routing stays current while draining: the weavelet's own calls still go to live replicas.
      clearInterval(this.pollTimer);
      this.log.info("stopping the weavelet", { graceMs: String(WEAVELET_STOP_GRACE_MS) });
      await this.envelope?.stop(WEAVELET_STOP_GRACE_MS);
      this.client?.close();
      this.healthServer?.close();
    }
    process.exit(code);
  }

  /**
   * Re-reports readiness (restoring a lost registration), or, while the weavelet is not healthy, takes
   * the replica out of routing until it is again.
   */
  private async heartbeat(): Promise<void> {
    const health = await this.envelope!.getHealth().catch(() => "UNHEALTHY" as const);
    if (health === "HEALTHY") {
      if (this.unhealthy) this.log.info("weavelet healthy again: re-registering", {});
      this.unhealthy = false;
      await this.control.ready({ ...this.report(), ...(await this.callsSinceLastReport()) });
      if (this.unsentSpans > 0) {
        const count = this.unsentSpans;
        this.unsentSpans = 0;
        await this.control.spans({ count });
      }
    } else if (!this.unhealthy) {
      this.unhealthy = true;
      this.log.warn("weavelet unhealthy: deregistering until it recovers", { health });
      await this.control.stopping(this.report());
    }
  }

  /**
   * Component method calls (and failures) this weavelet made since the previous report, for the rollout's
   * error rate, and whether it served any (a busy replica is protected from scale-in). The same metric
   * deltas go to CloudWatch as EMF lines on stdout (awslogs ships them).
   */
  private async callsSinceLastReport(): Promise<{ calls: number; errors: number; busy: boolean }> {
    const metrics = await this.envelope!.getMetrics().catch(() => []);
    const now = Date.now();
    const { lines, dropped } = emfLines(
      metrics,
      { app: this.config?.name ?? "", group: this.env.group, version: this.env.version },
      now - this.lastReportAt,
    );
    this.lastReportAt = now;
    process.stdout.write(lines.join("\n") + "\n");
    if (dropped > 0) this.log.warn("user metric series over the per-report limit were not published", { dropped });
    // GetMetrics returns deltas since the previous call: the sums are this interval's counts.
    const sum = (name: string) => metrics.filter((m) => m.name === name).reduce((a, m) => a + m.value, 0);
    return { calls: sum(METHOD_CALLS), errors: sum(METHOD_ERRORS), busy: sum(SERVED_CALLS) > 0 };
  }

  private report(): ReplicaReport {
    return {
      taskArn: this.identity!.taskArn,
      taskId: this.identity!.taskId,
      group: this.env.group,
      ip: this.identity!.ip,
      port: this.env.rpcPort,
      weaveletId: this.identity!.taskId,
      version: this.env.version,
      listeners: { ...this.listeners },
    };
  }

  private handler(): EnvelopeHandler {
    return {
      activateComponent: async ({ component, routed }) => {
        const group = this.groupOf.get(component);
        if (!group) throw new Error(`unknown component ${component}: not registered in ${this.config!.binary}`);
        await this.control.activate({
          taskArn: this.identity!.taskArn,
          group: this.env.group,
          component,
          routed,
          version: this.env.version,
          componentGroup: group,
        });
        await this.discovery
          .watch(component, group, routed)
          .catch((err: Error) => this.log.warn("discovery failed", { component, err: err.message }));
      },
      getListenerAddress: async ({ name }) => {
        const { port } = await this.control.listenerPort({ listener: name });
        return { address: `${this.identity!.ip}:${port}` };
      },
      exportListener: async ({ listener, address }) => {
        const port = Number(address.slice(address.lastIndexOf(":") + 1));
        this.listeners[listener] = port;
        try {
          const { url } = await this.control.exportListener({
            taskArn: this.identity!.taskArn,
            listener,
            ip: this.identity!.ip,
            port,
            version: this.env.version,
          });
          return { proxyAddress: url.replace(/^https?:\/\//, ""), error: "" };
        } catch (err) {
          return { proxyAddress: "", error: (err as Error).message };
        }
      },
      // Logs go to this task's stdout as JSON lines (awslogs ships them); relaying them through the control
      // plane would make it a bottleneck and lose lines while it restarts.
      handleLogEntries: ({ entries }) => writeJsonLogs(entries),
      // Without an OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT in weaver.toml's env), spans are only
      // counted; the count goes to the control plane with the next heartbeat, not one request per batch.
      handleTraceSpans: ({ spans }) => {
        this.unsentSpans += spans.length;
      },
    };
  }

  private async locateControlPlane(): Promise<string> {
    const out = await callAws(
      "servicediscovery:DiscoverInstances",
      `service ${this.env.controlPlaneService} in namespace ${this.env.namespace}`,
      () =>
        this.aws.serviceDiscovery.send(
          new DiscoverInstancesCommand({
            NamespaceName: this.env.namespace,
            ServiceName: this.env.controlPlaneService,
            HealthStatus: "ALL",
          }),
        ),
    );
    const all = (out.Instances ?? []).filter((i) => i.Attributes?.[ATTR.IPV4]);
    if (all.length === 0) throw new Error(`no control plane registered in ${this.env.namespace}/${this.env.controlPlaneService} yet`);
    // More than one while a replaced control plane's registration lingers: rotate so a dead one is not retried forever.
    const inst = all[this.locateAttempts++ % all.length]!;
    return `http://${inst.Attributes![ATTR.IPV4]}:${inst.Attributes![ATTR.PORT]}`;
  }
}

/** `tsweaver aws agent`: the entrypoint of every group task. */
export async function agentCommand(): Promise<void> {
  const env = agentEnvFromProcess();
  const agent = new Agent(env);
  process.on("SIGTERM", () => void agent.stop(0));
  process.on("SIGINT", () => void agent.stop(0));
  try {
    await agent.start();
  } catch (err) {
    jsonLogger("agent").error("agent failed to start", { err: (err as Error).message });
    await agent.stop(1);
  }
}
