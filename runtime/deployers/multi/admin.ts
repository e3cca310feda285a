import { randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { adviseColocation, colocateToml, type ColocationAdviceReply } from "../../telemetry/advise.js";
import { callGraph, charts } from "../../telemetry/graph.js";
import type { AdminBackend } from "../../telemetry/dashboard.js";
import type { StoredSeries } from "../../telemetry/metricstore.js";
import { parseHostPort } from "../../rpc/address.js";

// The backend interface and the shapes the page reads live in a lower layer (the AWS deployer implements them too).
export type { AdminBackend, DeploymentSummary, ReplicaProfile } from "../../telemetry/dashboard.js";

/** Settings of an {@link AdminServer} beyond its backend and token. */
export interface AdminServerOptions {
  /** The command that prints a fresh login link, named when a link has expired. @default "tsweaver multi dashboard --open" */
  loginCommand?: string;
  /** Where a program finds the token, named when a request lacks it. @default "the token file in the deployment's state directory" */
  tokenSource?: string;
}

/** Longest CPU profile /api/profile takes. */
export const MAX_PROFILE_MS = 5 * 60_000;

/** Query filters of /api/metrics (and `tsweaver multi metrics`). */
export interface MetricsQuery {
  /** Only series about this component (label component or caller). */
  component?: string | undefined;
  /** Only series whose name contains this. */
  name?: string | undefined;
  /** One series per replica instead of sums over replicas. */
  replicas?: boolean;
}

/** Filters /api/metrics applies. */
export function filterSeries(series: StoredSeries[], q: MetricsQuery): StoredSeries[] {
  return series
    .filter((s) => !q.component || s.labels["component"] === q.component || s.labels["caller"] === q.component)
    .filter((s) => !q.name || s.name.includes(q.name))
    .sort((a, b) => a.name.localeCompare(b.name) || JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)));
}

const LEVELS = ["debug", "info", "warn", "error"];

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Route = (
  url: URL,
  req: http.IncomingMessage,
) => Promise<{ type: string; body: string | Buffer }> | { type: string; body: string | Buffer };

/** How long a one-time dashboard login link stays valid. */
export const LOGIN_TICKET_MS = 60_000;
/** Login links not yet used, at most (older ones are dropped). */
const MAX_TICKETS = 16;

/** A new admin token: 256 random bits, URL-safe. */
export function newAdminToken(): string {
  return randomBytes(32).toString("base64url");
}

function sameToken(got: string | undefined, want: string): boolean {
  if (got === undefined) return false;
  const a = Buffer.from(got);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

const JSON_TYPE = "application/json; charset=utf-8";
const json = (v: unknown) => ({ type: JSON_TYPE, body: JSON.stringify(v) });

/**
 * The multi deployer's local admin server (loopback only): the dashboard (/), the Prometheus endpoint
 * (/metrics) and the JSON APIs the CLI and the dashboard use (/api/status, /api/metrics, /api/graph,
 * /api/charts, /api/logs, /api/traces, /api/trace?id=; POST /api/profile?ms=&group=&kind=cpu|heap).
 *
 * Every request must carry the deployment's admin token (a file of mode 0600 in its state directory):
 * as `authorization: Bearer <token>` (the CLI, Prometheus), or as the HttpOnly, SameSite=Strict cookie
 * a browser gets from a one-time login link (POST /api/login-ticket → GET /login?ticket=…, what
 * `tsweaver multi dashboard` prints). Refused before that: a Host that is not a loopback name (DNS
 * rebinding), an Origin other than the server's own and cross-site fetches (other web pages, including
 * other local ports). No CORS headers are ever sent. What costs or changes something (profiles, heap
 * snapshots, login tickets) is POST only.
 */
export class AdminServer {
  private readonly server: http.Server;
  private readonly routes = new Map<string, { method: "GET" | "POST"; fn: Route }>();
  /** Unused login tickets → when they expire. */
  private readonly tickets = new Map<string, number>();
  /** "host:port" once listening. */
  address = "";

  constructor(
    private readonly backend: AdminBackend,
    /** The deployment's admin token (see the class comment). */
    private readonly token: string,
    private readonly options: AdminServerOptions = {},
  ) {
    if (token.length < 32) throw new Error("admin server: the admin token must have at least 32 characters");
    this.server = http.createServer((req, res) => void this.serve(req, res));
    this.route("/metrics", async () => {
      await this.backend.collectMetrics();
      return { type: "text/plain; version=0.0.4; charset=utf-8", body: this.backend.metricStore.prometheus() };
    });
    for (const [file, type] of [
      ["index.html", "text/html; charset=utf-8"],
      ["app.js", "text/javascript; charset=utf-8"],
      ["style.css", "text/css; charset=utf-8"],
    ] as const) {
      this.route(file === "index.html" ? "/" : `/${file}`, () => ({ type, body: dashboardFile(file) }));
    }
    this.route("/favicon.ico", () => ({ type: "image/svg+xml", body: FAVICON }));
    this.route("/api/status", async () => json(await this.backend.status()));
    this.route("/api/deployments", async () => json({ deployments: await this.backend.deployments() }));
    this.route("/api/metrics", async (url) => {
      await this.backend.collectMetrics();
      const q: MetricsQuery = {
        component: url.searchParams.get("component") ?? undefined,
        name: url.searchParams.get("name") ?? undefined,
        replicas: url.searchParams.get("replicas") === "1",
      };
      const store = this.backend.metricStore;
      return json({ series: filterSeries(q.replicas ? store.all() : store.aggregate(), q) });
    });
    this.route("/api/graph", async (url) => {
      await this.backend.collectMetrics();
      const fallback = this.backend.graphWindowSec ?? 30;
      const windowSec = Number(url.searchParams.get("window") ?? fallback);
      const components = (await this.backend.status()).groups.flatMap((g) => g.components);
      return json(
        callGraph(
          this.backend.metricStore,
          (Number.isFinite(windowSec) && windowSec > 0 ? windowSec : fallback) * 1000,
          components,
          this.backend.edgeLatency?.(),
        ),
      );
    });
    this.route("/api/advice", async (url) => {
      await this.backend.collectMetrics();
      const q = url.searchParams;
      const windowSec = Number(q.get("window") ?? 60);
      if (!(Number.isFinite(windowSec) && windowSec > 0)) throw new HttpError(400, "window: a number of seconds > 0");
      const maxComponents = q.has("max") ? Number(q.get("max")) : undefined;
      if (maxComponents !== undefined && !(Number.isInteger(maxComponents) && maxComponents >= 1))
        throw new HttpError(400, "max: the most components per group, an integer ≥ 1");
      const minShare = q.has("min_share") ? Number(q.get("min_share")) : undefined;
      if (minShare !== undefined && !(minShare >= 0 && minShare <= 1)) throw new HttpError(400, "min_share: a fraction within 0..1");
      const groups = (await this.backend.status()).groups;
      const separate = (q.get("separate") ?? "").split(",").filter((c) => c !== "");
      const known = new Set(groups.flatMap((g) => g.components));
      const unknown = separate.filter((c) => !known.has(c));
      if (unknown.length)
        throw new HttpError(400, `separate: unknown component ${unknown.join(", ")} (components: ${[...known].join(", ")})`);
      const graph = callGraph(this.backend.metricStore, windowSec * 1000, [...known], this.backend.edgeLatency?.());
      const advice = adviseColocation(
        graph,
        groups.map((g) => g.components),
        { separate, ...(maxComponents !== undefined ? { maxComponents } : {}), ...(minShare !== undefined ? { minShare } : {}) },
      );
      // `toml`: the advice as weaver.toml's colocate line, formatted in one place for the page and the CLI.
      const reply: ColocationAdviceReply = { ...advice, toml: colocateToml(advice.colocate) };
      return json(reply);
    });
    this.route("/api/charts", async () => {
      await this.backend.collectMetrics();
      return json({ charts: charts(this.backend.metricStore) });
    });
    this.route("/api/traces", async (url) => {
      const limit = Math.min(Math.max(Number(url.searchParams.get("limit") ?? 50) || 50, 1), 1000);
      const note = await this.backend.collectTraces?.();
      return json({
        traces: this.backend.traceStore.recent(limit, url.searchParams.get("component") ?? undefined),
        ...(note ? { note } : {}),
      });
    });
    this.route("/api/trace", (url) => {
      const id = url.searchParams.get("id") ?? "";
      const spans = this.backend.traceStore.trace(id);
      if (!spans) throw new HttpError(404, `trace ${id}: not found (it may have been dropped: the deployer keeps the newest 20,000 spans)`);
      return json({ traceId: spans[0]!.traceId, spans });
    });
    this.route("/api/login-ticket", () => json({ ticket: this.newTicket(), expiresInMs: LOGIN_TICKET_MS }), "POST");
    this.route(
      "/api/profile",
      async (url) => {
        const kind = (url.searchParams.get("kind") ?? "cpu").toUpperCase();
        if (kind !== "CPU" && kind !== "HEAP") throw new HttpError(400, "kind: use cpu or heap");
        const ms = Number(url.searchParams.get("ms") ?? 10_000);
        if (!(ms > 0 && ms <= MAX_PROFILE_MS))
          throw new HttpError(400, `ms: a CPU profile lasts from 1 ms to ${MAX_PROFILE_MS / 60_000} minutes`);
        const profile = this.backend.profile?.bind(this.backend);
        if (!profile) throw new HttpError(501, "profiles are not available for this deployment");
        const want = url.searchParams.get("group");
        const groups = (await this.backend.status()).groups;
        // A group by name, or the group of a component.
        const chosen = want ? groups.filter((g) => g.name === want || g.components.includes(want)) : groups;
        if (want && chosen.length === 0)
          throw new HttpError(404, `no group or component ${want} (groups: ${groups.map((g) => g.name).join(", ")})`);
        const running = chosen.filter((g) => g.replicas.some((r) => r.state === "running"));
        if (running.length === 0)
          throw new HttpError(409, `${want ? `group ${chosen[0]!.name} has` : "there are"} no running replicas to profile`);
        return json({
          kind: kind.toLowerCase(),
          ms,
          profiles: await profile(
            kind,
            ms,
            running.map((g) => g.name),
          ),
        });
      },
      "POST",
    );
    this.route("/api/logs", async (url) => {
      const n = Math.min(Math.max(Number(url.searchParams.get("n") ?? 200) || 200, 1), 5000);
      const component = url.searchParams.get("component");
      const level = url.searchParams.get("level");
      const grep = url.searchParams.get("grep");
      if (level && !LEVELS.includes(level)) throw new HttpError(400, `level ${level}: use one of ${LEVELS.join(", ")}`);
      const min = level ? LEVELS.indexOf(level) : 0;
      const entries = (await this.backend.recentLogs()).filter(
        (e) =>
          (!component || e.component === component) &&
          LEVELS.indexOf(e.level) >= min &&
          (!grep || e.msg.includes(grep) || Object.values(e.attrs).some((v) => v.includes(grep))),
      );
      return json({ entries: entries.slice(-n) });
    });
  }

  /** Adds (or replaces) a route (GET, which also answers HEAD, unless said otherwise). */
  route(path: string, fn: Route, method: "GET" | "POST" = "GET"): void {
    this.routes.set(path, { method, fn });
  }

  private get loginCommand(): string {
    return this.options.loginCommand ?? "tsweaver multi dashboard --open";
  }

  /** The cookie that carries the token: named after the port, since cookies are shared by every port of a host. */
  private get cookieName(): string {
    return `tsweaver_admin_${this.address.slice(this.address.lastIndexOf(":") + 1)}`;
  }

  private newTicket(): string {
    const now = Date.now();
    for (const [t, until] of this.tickets) if (until <= now || this.tickets.size >= MAX_TICKETS) this.tickets.delete(t);
    const ticket = randomBytes(24).toString("base64url");
    this.tickets.set(ticket, now + LOGIN_TICKET_MS);
    return ticket;
  }

  /** A one-time URL that logs a browser in to the dashboard (valid {@link LOGIN_TICKET_MS}). */
  loginUrl(): string {
    return `http://${this.address}/login?ticket=${this.newTicket()}`;
  }

  /** Exchanges a login ticket for the token cookie, then shows the dashboard. */
  private login(url: URL, res: http.ServerResponse): void {
    const ticket = url.searchParams.get("ticket") ?? "";
    const until = this.tickets.get(ticket);
    this.tickets.delete(ticket);
    if (until === undefined || until < Date.now())
      throw new HttpError(401, `this login link was used already or has expired: run \`${this.loginCommand}\` again`);
    res
      .writeHead(303, {
        location: "/",
        "set-cookie": `${this.cookieName}=${this.token}; HttpOnly; SameSite=Strict; Path=/`,
        "cache-control": "no-store",
        "referrer-policy": "no-referrer",
      })
      .end();
  }

  /** Listens on `address` (default 127.0.0.1:0); resolves to "host:port". */
  async listen(address = "127.0.0.1:0"): Promise<string> {
    const { host, port } = parseHostPort(address);
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", (err) => reject(new Error(`admin server: cannot listen on ${address}: ${err.message}`)));
      this.server.listen(port, host, () => resolve());
    });
    const bound = this.server.address() as AddressInfo;
    this.address = `${bound.family === "IPv6" ? `[${bound.address}]` : bound.address}:${bound.port}`;
    return this.address;
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      if (!isLoopbackHost(req.headers.host))
        throw new HttpError(403, "the admin server answers only requests addressed to a loopback host");
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${req.headers.host}`)
        throw new HttpError(403, `requests from other origins (${origin.slice(0, 100)}) are refused`);
      const site = req.headers["sec-fetch-site"];
      if (site === "cross-site" || site === "same-site") throw new HttpError(403, "requests from other web pages are refused");
      const url = new URL(req.url ?? "/", "http://admin");
      if (url.pathname === "/login" && req.method === "GET") return this.login(url, res);
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
      if (!sameToken(bearer, this.token) && !sameToken(cookieValue(req.headers.cookie, this.cookieName), this.token))
        throw new HttpError(
          401,
          `the admin token is missing or wrong: use \`${this.loginCommand}\` (browser) or ${this.options.tokenSource ?? "the token file in the deployment's state directory"} (authorization: Bearer)`,
        );
      const route = this.routes.get(url.pathname);
      if (!route) throw new HttpError(404, `no such page: ${url.pathname}`);
      const method = req.method === "HEAD" ? "GET" : req.method;
      if (method !== route.method) {
        res.setHeader("allow", route.method === "GET" ? "GET, HEAD" : "POST");
        throw new HttpError(405, `${req.method} ${url.pathname}: use ${route.method}`);
      }
      const { type, body } = await route.fn(url, req);
      res
        .writeHead(200, {
          "content-type": type,
          "cache-control": "no-store",
          "x-content-type-options": "nosniff",
          "x-frame-options": "DENY",
        })
        .end(req.method === "HEAD" ? undefined : body);
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      if (!res.headersSent) res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
      res.end(`${(err as Error).message}\n`);
    }
  }
}

const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#111827"/><path d="M3 5h10M8 5v7" stroke="#93c5fd" stroke-width="2.2"/></svg>`;

let dashboardDir: string | undefined;

/** A file of the dashboard (runtime/deployers/multi/dashboard/ in the package), read on each request. */
function dashboardFile(name: string): Buffer {
  if (dashboardDir === undefined) {
    let dir = path.dirname(fileURLToPath(import.meta.url));
    // Static files are not compiled: from dist/runtime/deployers/multi, find the package root's copy.
    const rel = path.join("runtime", "deployers", "multi", "dashboard");
    for (let i = 0; i < 8 && !existsSync(path.join(dir, rel, "index.html")); i++) dir = path.dirname(dir);
    const found = path.join(dir, rel);
    if (!existsSync(path.join(found, "index.html")))
      throw new HttpError(500, "tsweaver: dashboard/ not found next to the package; the installation is incomplete");
    dashboardDir = found;
  }
  return readFileSync(path.join(dashboardDir, name));
}

function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host
    .replace(/:\d+$/, "")
    .replace(/^\[|\]$/g, "")
    .toLowerCase();
  return name === "localhost" || name === "::1" || /^127\.\d+\.\d+\.\d+$/.test(name);
}
