/**
 * `AlbSimulator`: plays an Application Load Balancer on top of an AWS API emulator that stores ELBv2
 * state but forwards nothing (moto).
 *
 * Taken from the emulator (real SDK v3 ELBv2 calls, every `refreshMs`):
 *  - the load balancer's listeners (DescribeListeners): one local HTTP proxy per listener port, on
 *    127.0.0.1 and a free port ({@link AlbSimulator.urlOf});
 *  - each listener's rules (DescribeRules): priority, conditions and actions, the default rule last.
 *    moto 5.2.1 stores rule conditions and actions as given, including `ForwardConfig.TargetGroups`
 *    weights (a missing weight becomes 1) and fixed-response / redirect configs;
 *  - the target groups the actions name (DescribeTargetGroups): port and health-check settings (path,
 *    port, matcher, interval, timeout, thresholds, enabled), and their
 *    `deregistration_delay.timeout_seconds` attribute (DescribeTargetGroupAttributes; moto's default 300);
 *  - the registered targets (DescribeTargetHealth without a target list). moto deregisters at once and
 *    lists only registered targets, and reports every ip target "healthy" whatever it answers: the
 *    simulator reads only *which* targets are registered, never their health.
 * Decided by the simulator itself:
 *  - target health: its own HTTP health checks per target group (interval and timeout from the group,
 *    or `healthCheckIntervalMs` / `healthCheckTimeoutMs` to scale them down in tests), with the
 *    group's healthy/unhealthy threshold counts; a new target is "initial" until it passes;
 *  - routing: the first rule by priority whose conditions all match (path-pattern, host-header,
 *    http-request-method, http-header, query-string; `*` and `?` wildcards), else the default action;
 *    forward picks a target group by weight (groups of weight 0 never), then round-robin over the
 *    group's healthy targets, or over all its targets when none is healthy (ALB fails open); 503 when
 *    the group has no targets, 502 when the connection to the target fails, 504 after `idleTimeoutMs`;
 *  - draining: a target that is no longer registered gets no new requests; its in-flight requests go on
 *    until they end or the group's deregistration delay passes (then they are cut, as ALB does).
 * Only `ip` targets are routed (the id is the address). One connection per proxied request (no
 * keep-alive towards targets: a reused connection the target is closing would turn into a spurious 502).
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import type net from "node:net";
import {
  DescribeListenersCommand,
  DescribeRulesCommand,
  DescribeTargetGroupAttributesCommand,
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  type Action,
  type Listener,
  type RedirectActionConfig,
  type Rule,
  type RuleCondition,
  type TargetGroup,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { clientConfig, DEFAULT_REGION, sleep } from "./moto.js";

export interface AlbSimulatorOptions {
  /** Emulator endpoint. */
  readonly endpoint: string;
  readonly loadBalancerArn: string;
  readonly region?: string;
  /** How often listeners, rules, target groups and targets are re-read. Default 200 ms. */
  readonly refreshMs?: number;
  /** Health-check interval of every group (instead of its `HealthCheckIntervalSeconds`). */
  readonly healthCheckIntervalMs?: number;
  /** Health-check timeout of every group (instead of its `HealthCheckTimeoutSeconds`). */
  readonly healthCheckTimeoutMs?: number;
  /** A proxied request with no activity for this long gets a 504. Default 60 s (ALB's idle timeout). */
  readonly idleTimeoutMs?: number;
}

/** A target's health as the simulator sees it (ALB's TargetHealth states). */
export type SimTargetState = "initial" | "healthy" | "unhealthy" | "draining" | "unused";

export interface SimTargetHealth {
  /** The target's IP address. */
  readonly id: string;
  readonly port: number;
  readonly state: SimTargetState;
  /** Requests being proxied to it now. */
  readonly inFlight: number;
}

export interface RequestCounts {
  /** Requests routed to it. */
  readonly requests: number;
  /** Requests the simulator answered 502/504 because the target failed (connection, timeout, drain cut). */
  readonly failures: number;
  /** Responses of status >= 500 that the target itself sent. */
  readonly errors: number;
}

export interface TargetGroupStats extends RequestCounts {
  /** Per target, by `ip:port`. */
  readonly targets: Readonly<Record<string, RequestCounts>>;
}

export interface AlbStats {
  /** Requests answered by each listener port (whatever the action). */
  readonly listeners: Readonly<Record<number, number>>;
  /** Per target group ARN. */
  readonly targetGroups: Readonly<Record<string, TargetGroupStats>>;
}

interface Counts {
  requests: number;
  failures: number;
  errors: number;
}

interface HealthSettings {
  enabled: boolean;
  path: string;
  /** A port number, or "traffic-port". */
  port: string;
  matcher: string;
  intervalMs: number;
  timeoutMs: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
}

interface TargetState {
  readonly key: string;
  readonly id: string;
  readonly port: number;
  state: SimTargetState;
  okStreak: number;
  failStreak: number;
  /** Proxied requests in flight: cut when draining ends. */
  readonly active: Set<http.ClientRequest>;
  drainTimer: NodeJS.Timeout | undefined;
  checking: boolean;
}

interface GroupState {
  readonly arn: string;
  name: string;
  port: number;
  health: HealthSettings;
  deregistrationDelayMs: number;
  readonly targets: Map<string, TargetState>;
  rr: number;
  checkTimer: NodeJS.Timeout | undefined;
}

interface ListenerState {
  readonly arn: string;
  readonly port: number;
  readonly server: http.Server;
  readonly localPort: number;
  readonly sockets: Set<net.Socket>;
  /** Non-default rules by ascending priority. */
  rules: Rule[];
  defaultActions: Action[];
}

export class AlbSimulator {
  readonly endpoint: string;
  readonly loadBalancerArn: string;
  private readonly opts: AlbSimulatorOptions;
  private readonly elb: ElasticLoadBalancingV2Client;
  private readonly listeners = new Map<number, ListenerState>();
  private readonly groups = new Map<string, GroupState>();
  private readonly groupCounts = new Map<string, Counts>();
  private readonly targetCounts = new Map<string, Map<string, Counts>>();
  private readonly listenerCounts = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private running = false;
  /** The last error a refresh ran into (the simulator keeps the previous state and tries again). */
  lastError: Error | undefined;

  constructor(opts: AlbSimulatorOptions) {
    this.opts = opts;
    this.endpoint = opts.endpoint;
    this.loadBalancerArn = opts.loadBalancerArn;
    this.elb = new ElasticLoadBalancingV2Client({
      ...clientConfig(opts.endpoint, opts.region ?? process.env["AWS_REGION"] ?? DEFAULT_REGION),
      maxAttempts: 5,
    });
  }

  /** Reads the load balancer once, opens its listeners and starts refreshing. Throws if the first read fails. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.refresh();
    if (this.lastError !== undefined) {
      const err = this.lastError;
      await this.stop();
      throw new Error(`ALB simulator: cannot read load balancer ${this.loadBalancerArn}: ${err.message}`);
    }
    this.schedule();
  }

  /** Stops refreshing and health checks, cuts in-flight requests and closes every listener. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    await this.refreshing;
    for (const g of this.groups.values()) {
      if (g.checkTimer) clearTimeout(g.checkTimer);
      for (const t of g.targets.values()) {
        if (t.drainTimer) clearTimeout(t.drainTimer);
        for (const req of t.active) req.destroy();
      }
    }
    await Promise.all([...this.listeners.values()].map((l) => closeListener(l)));
    this.listeners.clear();
    this.elb.destroy();
  }

  /** The local URL of the listener on `listenerPort` (e.g. 80), `http://127.0.0.1:<port>`. */
  urlOf(listenerPort: number): string {
    const l = this.listeners.get(listenerPort);
    if (l === undefined) {
      throw new Error(
        `ALB simulator: the load balancer has no listener on port ${listenerPort} (listeners: ${[...this.listeners.keys()].join(", ") || "none"})`,
      );
    }
    return `http://127.0.0.1:${l.localPort}`;
  }

  /** Listener ports the simulator serves. */
  listenerPorts(): number[] {
    return [...this.listeners.keys()].sort((a, b) => a - b);
  }

  /** Current health of the group's targets, registered and draining (empty for a group no action names). */
  health(targetGroupArn: string): SimTargetHealth[] {
    const g = this.groups.get(targetGroupArn);
    if (g === undefined) return [];
    return [...g.targets.values()]
      .filter((t) => t.state !== "unused")
      .map((t) => ({ id: t.id, port: t.port, state: t.state, inFlight: t.active.size }));
  }

  /** Request counts since start (or the last {@link resetStats}). */
  stats(): AlbStats {
    const targetGroups: Record<string, TargetGroupStats> = {};
    for (const [arn, c] of this.groupCounts) {
      const targets: Record<string, RequestCounts> = {};
      for (const [key, tc] of this.targetCounts.get(arn) ?? []) targets[key] = { ...tc };
      targetGroups[arn] = { ...c, targets };
    }
    return { listeners: Object.fromEntries(this.listenerCounts), targetGroups };
  }

  /** Counts of one target group (zeros when nothing was routed to it). */
  groupStats(targetGroupArn: string): TargetGroupStats {
    return this.stats().targetGroups[targetGroupArn] ?? { requests: 0, failures: 0, errors: 0, targets: {} };
  }

  resetStats(): void {
    this.groupCounts.clear();
    this.targetCounts.clear();
    this.listenerCounts.clear();
  }

  /** Re-reads the emulator now (after the running refresh, if any): a change made before the call is seen after it. */
  async refresh(): Promise<void> {
    while (this.refreshing) await this.refreshing;
    const run = this.read().then(
      () => {
        this.lastError = undefined;
      },
      (err: unknown) => {
        this.lastError = err as Error;
      },
    );
    this.refreshing = run.finally(() => {
      this.refreshing = undefined;
    });
    await this.refreshing;
  }

  /** Polls `fn` until it returns a truthy value. */
  async waitFor<T>(what: string, fn: () => T, timeoutMs = 20_000): Promise<NonNullable<T>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = fn();
      if (v) return v as NonNullable<T>;
      if (Date.now() > deadline) {
        const groups = [...this.groups.values()].map(
          (g) => `${g.name}: ${[...g.targets.values()].map((t) => `${t.key} ${t.state}`).join(", ") || "no targets"}`,
        );
        throw new Error(
          `ALB simulator: timed out after ${timeoutMs} ms waiting for ${what}; ${groups.join("; ")}${this.lastError ? `; last refresh error: ${this.lastError.message}` : ""}`,
        );
      }
      await sleep(25);
    }
  }

  // ---- Reading the emulator ---------------------------------------------------------------------------

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => void this.refresh().finally(() => this.schedule()), this.opts.refreshMs ?? 200);
  }

  private async read(): Promise<void> {
    const listeners: Listener[] = [];
    let marker: string | undefined;
    do {
      const out = await this.elb.send(new DescribeListenersCommand({ LoadBalancerArn: this.loadBalancerArn, Marker: marker }));
      listeners.push(...(out.Listeners ?? []));
      marker = out.NextMarker;
    } while (marker);

    const rulesOf = new Map<string, Rule[]>();
    for (const l of listeners) {
      const rules: Rule[] = [];
      let m: string | undefined;
      do {
        const out = await this.elb.send(new DescribeRulesCommand({ ListenerArn: l.ListenerArn, Marker: m }));
        rules.push(...(out.Rules ?? []));
        m = out.NextMarker;
      } while (m);
      rulesOf.set(l.ListenerArn!, rules);
    }

    const groupArns = new Set<string>();
    for (const rules of rulesOf.values())
      for (const r of rules) for (const a of r.Actions ?? []) for (const arn of forwardTargets(a).map((t) => t.arn)) groupArns.add(arn);
    const described = new Map<string, TargetGroup>();
    const arns = [...groupArns];
    for (let i = 0; i < arns.length; i += 20) {
      const out = await this.elb.send(new DescribeTargetGroupsCommand({ TargetGroupArns: arns.slice(i, i + 20) }));
      for (const tg of out.TargetGroups ?? []) described.set(tg.TargetGroupArn!, tg);
    }
    const registered = new Map<string, { id: string; port: number }[]>();
    const delays = new Map<string, number>();
    await Promise.all(
      [...described.values()].map(async (tg) => {
        const arn = tg.TargetGroupArn!;
        const [health, attrs] = await Promise.all([
          this.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn })),
          this.elb.send(new DescribeTargetGroupAttributesCommand({ TargetGroupArn: arn })),
        ]);
        registered.set(
          arn,
          (health.TargetHealthDescriptions ?? []).map((d) => ({ id: d.Target!.Id!, port: d.Target!.Port ?? tg.Port ?? 80 })),
        );
        const delay = attrs.Attributes?.find((a) => a.Key === "deregistration_delay.timeout_seconds")?.Value;
        delays.set(arn, Number(delay ?? 300) * 1000);
      }),
    );
    if (!this.running) return;

    for (const tg of described.values())
      this.applyGroup(tg, registered.get(tg.TargetGroupArn!) ?? [], delays.get(tg.TargetGroupArn!) ?? 300_000);
    for (const [arn, g] of this.groups) {
      if (described.has(arn)) continue;
      // No action names the group any more: nothing routes to it, so its targets drain.
      this.applyRegistrations(g, []);
    }
    await this.applyListeners(listeners, rulesOf);
  }

  private applyGroup(tg: TargetGroup, registered: { id: string; port: number }[], deregistrationDelayMs: number): void {
    const arn = tg.TargetGroupArn!;
    const health: HealthSettings = {
      enabled: tg.HealthCheckEnabled !== false,
      path: tg.HealthCheckPath ?? "/",
      port: tg.HealthCheckPort ?? "traffic-port",
      matcher: tg.Matcher?.HttpCode ?? "200",
      intervalMs: this.opts.healthCheckIntervalMs ?? (tg.HealthCheckIntervalSeconds ?? 30) * 1000,
      timeoutMs: this.opts.healthCheckTimeoutMs ?? (tg.HealthCheckTimeoutSeconds ?? 5) * 1000,
      healthyThreshold: tg.HealthyThresholdCount ?? 5,
      unhealthyThreshold: tg.UnhealthyThresholdCount ?? 2,
    };
    let g = this.groups.get(arn);
    if (g === undefined) {
      g = {
        arn,
        name: tg.TargetGroupName ?? arn,
        port: tg.Port ?? 80,
        health,
        deregistrationDelayMs,
        targets: new Map(),
        rr: 0,
        checkTimer: undefined,
      };
      this.groups.set(arn, g);
      this.scheduleChecks(g, 0);
    }
    g.name = tg.TargetGroupName ?? arn;
    g.port = tg.Port ?? 80;
    g.health = health;
    g.deregistrationDelayMs = deregistrationDelayMs;
    this.applyRegistrations(g, registered);
  }

  private applyRegistrations(g: GroupState, registered: { id: string; port: number }[]): void {
    const keys = new Set<string>();
    for (const r of registered) {
      const key = `${r.id}:${r.port}`;
      keys.add(key);
      const t = g.targets.get(key);
      if (t === undefined) {
        g.targets.set(key, {
          key,
          id: r.id,
          port: r.port,
          state: g.health.enabled ? "initial" : "healthy",
          okStreak: 0,
          failStreak: 0,
          active: new Set(),
          drainTimer: undefined,
          checking: false,
        });
      } else if (t.state === "draining" || t.state === "unused") {
        // Registered again: it starts over, as on ALB.
        if (t.drainTimer) clearTimeout(t.drainTimer);
        t.drainTimer = undefined;
        t.state = g.health.enabled ? "initial" : "healthy";
        t.okStreak = 0;
        t.failStreak = 0;
      }
    }
    for (const t of g.targets.values()) {
      if (keys.has(t.key) || t.state === "draining" || t.state === "unused") continue;
      t.state = "draining";
      const end = (): void => {
        t.drainTimer = undefined;
        if (t.state !== "draining") return;
        t.state = "unused";
        for (const req of t.active) req.destroy(new Error("deregistration delay over"));
      };
      if (t.active.size === 0 && g.deregistrationDelayMs === 0) end();
      else {
        t.drainTimer = setTimeout(end, g.deregistrationDelayMs);
        t.drainTimer.unref();
      }
    }
  }

  private async applyListeners(listeners: Listener[], rulesOf: Map<string, Rule[]>): Promise<void> {
    const ports = new Set<number>();
    for (const l of listeners) {
      const port = l.Port!;
      ports.add(port);
      const rules = rulesOf.get(l.ListenerArn!) ?? [];
      const defaultRule = rules.find((r) => r.IsDefault === true || r.Priority === "default");
      const ordered = rules.filter((r) => r !== defaultRule).sort((a, b) => Number(a.Priority) - Number(b.Priority));
      let state = this.listeners.get(port);
      if (state !== undefined && state.arn !== l.ListenerArn) {
        await closeListener(state);
        this.listeners.delete(port);
        state = undefined;
      }
      if (state === undefined) {
        state = await this.openListener(l.ListenerArn!, port);
        this.listeners.set(port, state);
      }
      state.rules = ordered;
      state.defaultActions = defaultRule?.Actions ?? l.DefaultActions ?? [];
    }
    for (const [port, state] of this.listeners) {
      if (ports.has(port)) continue;
      this.listeners.delete(port);
      await closeListener(state);
    }
  }

  private async openListener(arn: string, port: number): Promise<ListenerState> {
    const sockets = new Set<net.Socket>();
    const holder: { state?: ListenerState } = {};
    const server = http.createServer((req, res) => this.handle(holder.state!, req, res));
    server.on("connection", (s: net.Socket) => {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const localPort = (server.address() as net.AddressInfo).port;
    holder.state = { arn, port, server, localPort, sockets, rules: [], defaultActions: [] };
    return holder.state;
  }

  // ---- Health checks ----------------------------------------------------------------------------------

  private scheduleChecks(g: GroupState, delayMs: number): void {
    if (!this.running) return;
    g.checkTimer = setTimeout(() => {
      if (!this.running || !this.groups.has(g.arn)) return;
      if (g.health.enabled)
        for (const t of g.targets.values()) if (t.state !== "draining" && t.state !== "unused" && !t.checking) void this.check(g, t);
      this.scheduleChecks(g, g.health.intervalMs);
    }, delayMs);
    g.checkTimer.unref();
  }

  private async check(g: GroupState, t: TargetState): Promise<void> {
    t.checking = true;
    const port = g.health.port === "traffic-port" ? t.port : Number(g.health.port);
    const status = await probe(`http://${t.id}:${port}${g.health.path}`, g.health.timeoutMs);
    t.checking = false;
    if (t.state === "draining" || t.state === "unused") return;
    if (status !== 0 && matches(g.health.matcher, status)) {
      t.okStreak++;
      t.failStreak = 0;
      if (t.state !== "healthy" && t.okStreak >= g.health.healthyThreshold) t.state = "healthy";
    } else {
      t.failStreak++;
      t.okStreak = 0;
      if (t.state !== "unhealthy" && t.failStreak >= g.health.unhealthyThreshold) t.state = "unhealthy";
    }
  }

  // ---- Routing ----------------------------------------------------------------------------------------

  private handle(l: ListenerState, req: http.IncomingMessage, res: http.ServerResponse): void {
    this.listenerCounts.set(l.port, (this.listenerCounts.get(l.port) ?? 0) + 1);
    const url = new URL(req.url ?? "/", "http://alb.invalid");
    const rule = l.rules.find((r) => (r.Conditions ?? []).every((c) => conditionMatches(c, req, url)));
    const actions = [...(rule?.Actions ?? l.defaultActions)].sort((a, b) => (a.Order ?? 0) - (b.Order ?? 0));
    // Authentication actions come first on ALB; the last action is the one that answers.
    const action = actions[actions.length - 1];
    if (action === undefined) return albError(res, 503, "Service Temporarily Unavailable");
    switch (action.Type) {
      case "forward":
        return this.forward(l, action, req, res);
      case "fixed-response": {
        const c = action.FixedResponseConfig;
        res.writeHead(Number(c?.StatusCode ?? 200), { "content-type": c?.ContentType ?? "text/plain", server: "awselb/2.0" });
        res.end(c?.MessageBody ?? "");
        req.resume();
        return;
      }
      case "redirect": {
        const c: Partial<RedirectActionConfig> = action.RedirectConfig ?? {};
        const host = (req.headers.host ?? "").replace(/:\d+$/, "");
        const subst = (s: string): string =>
          s
            .replace(/#\{protocol\}/g, "http")
            .replace(/#\{host\}/g, host)
            .replace(/#\{port\}/g, String(l.port))
            .replace(/#\{path\}/g, url.pathname.slice(1))
            .replace(/#\{query\}/g, url.search.slice(1));
        const protocol = subst(c.Protocol ?? "#{protocol}").toLowerCase();
        const port = subst(c.Port ?? "#{port}");
        const query = subst(c.Query ?? "#{query}");
        const location = `${protocol}://${subst(c.Host ?? "#{host}")}${port === (protocol === "https" ? "443" : "80") ? "" : `:${port}`}${subst(c.Path ?? "/#{path}")}${query ? `?${query}` : ""}`;
        res.writeHead(c.StatusCode === "HTTP_302" ? 302 : 301, { location, server: "awselb/2.0" }).end();
        req.resume();
        return;
      }
      default:
        return albError(res, 500, `Internal Server Error (action ${action.Type} is not simulated)`);
    }
  }

  private forward(l: ListenerState, action: Action, req: http.IncomingMessage, res: http.ServerResponse): void {
    const choices = forwardTargets(action).filter((c) => c.weight > 0);
    const total = choices.reduce((s, c) => s + c.weight, 0);
    if (total === 0) return albError(res, 503, "Service Temporarily Unavailable");
    let pick = Math.random() * total;
    const choice = choices.find((c) => (pick -= c.weight) < 0) ?? choices[choices.length - 1]!;
    const g = this.groups.get(choice.arn);
    const gc = countsOf(this.groupCounts, choice.arn);
    gc.requests++;
    const live = g === undefined ? [] : [...g.targets.values()].filter((t) => t.state !== "draining" && t.state !== "unused");
    if (g === undefined || live.length === 0) return albError(res, 503, "Service Temporarily Unavailable");
    const healthy = live.filter((t) => t.state === "healthy");
    const pool = healthy.length > 0 ? healthy : live;
    const t = pool[g.rr++ % pool.length]!;
    let tcMap = this.targetCounts.get(g.arn);
    if (tcMap === undefined) this.targetCounts.set(g.arn, (tcMap = new Map()));
    const tc = countsOf(tcMap, t.key);
    tc.requests++;

    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    for (const h of HOP_BY_HOP) delete headers[h];
    const client = req.socket.remoteAddress ?? "";
    headers["x-forwarded-for"] = req.headers["x-forwarded-for"] ? `${String(req.headers["x-forwarded-for"])}, ${client}` : client;
    headers["x-forwarded-proto"] = "http";
    headers["x-forwarded-port"] = String(l.port);
    headers["x-amzn-trace-id"] ??= `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomBytes(12).toString("hex")}`;
    const proxied = http.request({ host: t.id, port: t.port, method: req.method, path: req.url, headers, agent: false });
    t.active.add(proxied);
    let failed = false;
    let clientGone = false;
    const fail = (status: number, why: string): void => {
      // A client that hung up is not a target failure.
      if (failed || clientGone) return;
      failed = true;
      gc.failures++;
      tc.failures++;
      if (!res.headersSent) albError(res, status, why);
      else res.destroy();
    };
    proxied.setTimeout(this.opts.idleTimeoutMs ?? 60_000, () => {
      fail(504, "Gateway Time-out");
      proxied.destroy();
    });
    proxied.on("response", (upstream) => {
      if ((upstream.statusCode ?? 0) >= 500) {
        gc.errors++;
        tc.errors++;
      }
      const out: http.OutgoingHttpHeaders = { ...upstream.headers };
      for (const h of HOP_BY_HOP) delete out[h];
      res.writeHead(upstream.statusCode ?? 502, upstream.statusMessage, out);
      upstream.pipe(res);
      upstream.on("error", () => fail(502, "Bad Gateway"));
      upstream.on("aborted", () => fail(502, "Bad Gateway"));
    });
    proxied.on("error", () => fail(502, "Bad Gateway"));
    proxied.on("close", () => t.active.delete(proxied));
    res.on("close", () => {
      // The client went away: so does the request to the target.
      if (res.writableFinished) return;
      clientGone = !failed;
      proxied.destroy();
    });
    req.pipe(proxied);
  }
}

/** Starts a simulator (convenience: `new AlbSimulator(opts)` + `start()`). */
export async function startAlbSimulator(opts: AlbSimulatorOptions): Promise<AlbSimulator> {
  const alb = new AlbSimulator(opts);
  await alb.start();
  return alb;
}

const HOP_BY_HOP = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"];

/** The target groups a forward action names, with weights (a plain `TargetGroupArn` weighs 1). */
function forwardTargets(a: Action): { arn: string; weight: number }[] {
  if (a.Type !== "forward") return [];
  const weighted = a.ForwardConfig?.TargetGroups ?? [];
  if (weighted.length > 0) return weighted.filter((t) => t.TargetGroupArn).map((t) => ({ arn: t.TargetGroupArn!, weight: t.Weight ?? 1 }));
  return a.TargetGroupArn ? [{ arn: a.TargetGroupArn, weight: 1 }] : [];
}

function countsOf<K>(map: Map<K, Counts>, key: K): Counts {
  let c = map.get(key);
  if (c === undefined) map.set(key, (c = { requests: 0, failures: 0, errors: 0 }));
  return c;
}

function albError(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { "content-type": "text/html", server: "awselb/2.0" });
  res.end(`<html><head><title>${status} ${text}</title></head><body><center><h1>${status} ${text}</h1></center></body></html>\n`);
}

/** ALB's wildcard match: `*` any run of characters, `?` one character. */
function wildcard(pattern: string, value: string, ignoreCase: boolean): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${re}$`, ignoreCase ? "is" : "s").test(value);
}

/** A rule condition: OR over its values. Either the legacy `Values` or the field's config (moto keeps what it was given). */
function conditionMatches(c: RuleCondition, req: http.IncomingMessage, url: URL): boolean {
  switch (c.Field) {
    case "path-pattern": {
      const values = [...(c.Values ?? []), ...(c.PathPatternConfig?.Values ?? [])];
      return values.some((v) => wildcard(v, url.pathname, false));
    }
    case "host-header": {
      const host = (req.headers.host ?? "").replace(/:\d+$/, "");
      const values = [...(c.Values ?? []), ...(c.HostHeaderConfig?.Values ?? [])];
      return values.some((v) => wildcard(v, host, true));
    }
    case "http-request-method":
      return (c.HttpRequestMethodConfig?.Values ?? []).includes(req.method ?? "GET");
    case "http-header": {
      const name = (c.HttpHeaderConfig?.HttpHeaderName ?? "").toLowerCase();
      const raw = req.headers[name];
      const got = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
      return (c.HttpHeaderConfig?.Values ?? []).some((v) => got.some((g) => wildcard(v, g, true)));
    }
    case "query-string":
      return (c.QueryStringConfig?.Values ?? []).some((kv) =>
        [...url.searchParams].some(([k, v]) => (kv.Key === undefined || wildcard(kv.Key, k, true)) && wildcard(kv.Value ?? "*", v, true)),
      );
    default:
      // source-ip and anything newer: not simulated, so the rule never matches rather than matching wrongly.
      return false;
  }
}

/** A health-check matcher ("200", "200,204", "200-299") accepts `status`. */
function matches(matcher: string, status: number): boolean {
  return matcher.split(",").some((part) => {
    const [lo, hi] = part.trim().split("-").map(Number);
    return hi === undefined ? status === lo : status >= lo! && status <= hi;
  });
}

/** Status of a health-check GET, 0 when the connection failed or timed out. */
function probe(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs, headers: { "user-agent": "ELB-HealthChecker/2.0" } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", () => resolve(0));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(0));
  });
}

async function closeListener(l: ListenerState): Promise<void> {
  const closed = new Promise<void>((resolve) => l.server.close(() => resolve()));
  for (const s of l.sockets) s.destroy();
  await closed;
}
