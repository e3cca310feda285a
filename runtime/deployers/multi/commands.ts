import { createReadStream, existsSync, mkdirSync, readdirSync, rmSync, statSync, watch, writeFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { loadConfig } from "../../core/config.js";
import type { LogEntry } from "../../protos/runtime.js";
import { textTable } from "../../core/table.js";
import type { ColocationAdviceReply } from "../../telemetry/advise.js";
import { formatLogEntry, parseSince } from "../../telemetry/logfmt.js";
import { quantile, type StoredSeries } from "../../telemetry/metricstore.js";
import type { StoredSpan, TraceSummary } from "../../telemetry/tracestore.js";
import type { ReplicaProfile } from "./admin.js";
import { MultiDeployer } from "./deployer.js";
import { listDeployments, observedStatus, stateRoot, type DeploymentDir, type DeploymentStatus } from "./state.js";

/** `tsweaver multi deploy weaver.toml`: runs until SIGINT/SIGTERM, then stops everything. */
export async function deployCommand(configFile: string): Promise<void> {
  const deployer = new MultiDeployer(loadConfig(configFile));
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`tsweaver: ${signal} received\n`);
    void deployer.stop().then(() => process.exit(0));
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  try {
    await deployer.deploy();
  } catch (err) {
    await deployer.stop();
    throw err;
  }
  // Runs until a signal stops it (exit 0) or the deployment fails on its own (exit 1 with the cause).
  const err = await deployer.failed;
  if (stopping) return;
  stopping = true;
  await deployer.stop();
  throw err;
}

function liveState(status: DeploymentStatus): string {
  const s = observedStatus(status).state;
  return s === "dead" ? "dead (deployer gone)" : s;
}

/** `tsweaver multi status`: deployments, groups, replicas and listeners. */
export function statusCommand(opts: { all?: boolean; json?: boolean }): void {
  const deployments = listDeployments()
    .map((d) => d.readStatus())
    .filter((s): s is DeploymentStatus => s !== undefined)
    .map(observedStatus)
    .filter((s) => opts.all || liveState(s) === "running");
  if (opts.json) {
    process.stdout.write(JSON.stringify(deployments, null, 2) + "\n");
    return;
  }
  if (deployments.length === 0) {
    process.stdout.write(
      `no running deployments in ${stateRoot()} (start one with: tsweaver multi deploy weaver.toml; --all shows stopped ones)\n`,
    );
    return;
  }
  for (const s of deployments) {
    process.stdout.write(
      `DEPLOYMENT ${s.deploymentId}  app ${s.app}  ${liveState(s)}  since ${s.startedAt}  deployer pid ${s.deployerPid}\n`,
    );
    const rows: string[][] = [["GROUP", "COMPONENTS", "REPLICA", "PID", "ADDRESS", "STATE", "HEALTH", "RESTARTS"]];
    for (const g of s.groups) {
      if (g.replicas.length === 0) rows.push([g.name, g.components.join(","), "-", "-", "-", "not started", "-", "-"]);
      for (const r of g.replicas)
        rows.push([g.name, g.components.join(","), r.id, String(r.pid || "-"), r.address || "-", r.state, r.health, String(r.restarts)]);
    }
    process.stdout.write(textTable(rows) + "\n");
    if (s.listeners.length) {
      process.stdout.write(
        textTable([["LISTENER", "ADDRESS", "REPLICAS"], ...s.listeners.map((l) => [l.name, `http://${l.address}`, String(l.replicas)])]) +
          "\n",
      );
    }
    process.stdout.write("\n");
  }
}

/** Filters for `tsweaver multi logs`. */
export interface LogFilter {
  deployment?: string | undefined;
  component?: string;
  level?: string;
  weavelet?: string;
  grep?: string;
  since?: string;
  follow?: boolean;
}

const LEVELS = ["debug", "info", "warn", "error"];

/** `tsweaver multi logs`: prints (and with --follow, tails) a deployment's logs. */
export async function logsCommand(f: LogFilter): Promise<void> {
  const dir = pickDeployment(f.deployment);
  if (f.level && !LEVELS.includes(f.level)) throw new Error(`--level ${f.level}: use one of ${LEVELS.join(", ")}`);
  const minLevel = f.level ? LEVELS.indexOf(f.level) : 0;
  const since = f.since ? parseSince(f.since) : 0;
  const color = process.stdout.isTTY === true;
  const keep = (e: LogEntry) =>
    (!f.component || e.component === f.component) &&
    LEVELS.indexOf(e.level) >= minLevel &&
    (!f.weavelet || e.node.startsWith(f.weavelet)) &&
    (!f.grep || e.msg.includes(f.grep) || Object.values(e.attrs).some((v) => v.includes(f.grep!))) &&
    Number(e.timeMicros) >= since;
  const print = (line: string) => {
    if (!line) return;
    let e: LogEntry;
    try {
      e = JSON.parse(line) as LogEntry;
    } catch {
      return;
    }
    if (keep(e)) process.stdout.write(formatLogEntry(e, color) + "\n");
  };
  for (const file of dir.logFiles()) {
    for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) print(line);
  }
  if (!f.follow) return;
  await follow(dir, print);
}

async function follow(dir: DeploymentDir, print: (line: string) => void): Promise<void> {
  let offset = existsSync(dir.logFile) ? statSync(dir.logFile).size : 0;
  let partial = "";
  let reading = false;
  const readMore = async () => {
    if (reading) return;
    reading = true;
    try {
      if (!existsSync(dir.logFile)) return;
      const size = statSync(dir.logFile).size;
      if (size < offset) offset = 0; // rotated
      if (size === offset) return;
      const stream = createReadStream(dir.logFile, { start: offset, end: size - 1, encoding: "utf8" });
      for await (const chunk of stream) partial += chunk as string;
      offset = size;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      lines.forEach(print);
    } finally {
      reading = false;
    }
  };
  watch(dir.dir, () => void readMore());
  // fs.watch can miss events on some filesystems; poll as a backstop.
  setInterval(() => void readMore(), 500);
  await new Promise(() => {});
}

function pickDeployment(id: string | undefined): DeploymentDir {
  const all = listDeployments();
  if (all.length === 0) throw new Error(`no deployments in ${stateRoot()}; start one with: tsweaver multi deploy weaver.toml`);
  if (!id) return all[0]!;
  const match = all.filter((d) => d.deploymentId.startsWith(id));
  if (match.length !== 1)
    throw new Error(
      `deployment ${id}: ${match.length === 0 ? "not found" : "ambiguous"} (known: ${all.map((d) => d.deploymentId).join(", ")})`,
    );
  return match[0]!;
}

/** The admin server of a running deployment (the newest, or the one whose id starts with `id`). */
function adminOf(id: string | undefined): { dir: DeploymentDir; status: DeploymentStatus; base: string; token: string } {
  const running = listDeployments().filter((d) => {
    const s = d.readStatus();
    return s !== undefined && liveState(s) === "running";
  });
  const all = id ? running.filter((d) => d.deploymentId.startsWith(id)) : running;
  if (all.length === 0) {
    throw new Error(
      id
        ? `no running deployment ${id} in ${stateRoot()} (tsweaver multi status --all lists them)`
        : `no running deployments in ${stateRoot()}; start one with: tsweaver multi deploy weaver.toml`,
    );
  }
  if (id && all.length > 1) throw new Error(`deployment ${id} is ambiguous (${all.map((d) => d.deploymentId).join(", ")})`);
  const dir = all[0]!;
  const status = dir.readStatus()!;
  if (!status.admin) throw new Error(`deployment ${status.deploymentId} has no admin server (started by an older tsweaver)`);
  return { dir, status, base: `http://${status.admin}`, token: dir.readAdminToken() };
}

/** A request to a deployment's admin server, with its token; errors name the deployment and the reason. */
async function adminFetch(
  admin: { base: string; token: string },
  path: string,
  timeoutMs = 30_000,
  method: "GET" | "POST" = "GET",
): Promise<Response> {
  const { base, token } = admin;
  let res: Response;
  try {
    res = await fetch(base + path, { method, headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new Error(`cannot reach the deployment's admin server at ${base}: ${(err as Error).message}`);
  }
  if (!res.ok) throw new Error(`${path}: ${res.status} ${(await res.text()).trim()}`);
  return res;
}

/** Options of `tsweaver multi metrics`. */
export interface MetricsOptions {
  deployment?: string | undefined;
  component?: string;
  name?: string;
  replicas?: boolean;
  json?: boolean;
}

/** `tsweaver multi metrics`: the deployment's metrics, summed over replicas (or per replica). */
export async function metricsCommand(o: MetricsOptions): Promise<void> {
  const admin = adminOf(o.deployment);
  const q = new URLSearchParams();
  if (o.component) q.set("component", o.component);
  if (o.name) q.set("name", o.name);
  if (o.replicas) q.set("replicas", "1");
  const { series } = (await (await adminFetch(admin, `/api/metrics?${q}`)).json()) as { series: StoredSeries[] };
  if (o.json) {
    process.stdout.write(JSON.stringify(series, null, 2) + "\n");
    return;
  }
  if (series.length === 0) {
    process.stdout.write(`no metrics${o.component ? ` for component ${o.component}` : ""}${o.name ? ` named *${o.name}*` : ""} yet\n`);
    return;
  }
  const rows = [["NAME", "LABELS", "VALUE"]];
  for (const s of series)
    rows.push([
      s.name,
      Object.entries(s.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(" "),
      formatValue(s),
    ]);
  process.stdout.write(textTable(rows) + "\n");
}

function formatValue(s: StoredSeries): string {
  const n = (v: number | undefined) => (v === undefined ? "-" : Number.isInteger(v) ? String(v) : v.toFixed(3));
  if (s.kind !== "HISTOGRAM") return n(s.value);
  return `count=${s.count} mean=${n(s.count ? s.value / s.count : undefined)} p50=${n(quantile(s.bounds, s.counts, 0.5))} p99=${n(quantile(s.bounds, s.counts, 0.99))}`;
}

/** Options of `tsweaver multi traces`. */
export interface TracesOptions {
  deployment?: string | undefined;
  component?: string;
  limit?: string;
  trace?: string;
  json?: boolean;
}

const ms = (micros: number) => `${(micros / 1000).toFixed(micros < 10_000 ? 3 : 1)} ms`;

/** `tsweaver multi traces`: recent traces, or one trace's spans as a timeline. */
export async function tracesCommand(o: TracesOptions): Promise<void> {
  const admin = adminOf(o.deployment);
  if (o.trace) {
    const { spans } = (await (await adminFetch(admin, `/api/trace?id=${encodeURIComponent(o.trace)}`)).json()) as { spans: StoredSpan[] };
    if (o.json) {
      process.stdout.write(JSON.stringify(spans, null, 2) + "\n");
      return;
    }
    process.stdout.write(timeline(spans));
    return;
  }
  const q = new URLSearchParams({ limit: o.limit ?? "20" });
  if (o.component) q.set("component", o.component);
  const { traces } = (await (await adminFetch(admin, `/api/traces?${q}`)).json()) as { traces: TraceSummary[] };
  if (o.json) {
    process.stdout.write(JSON.stringify(traces, null, 2) + "\n");
    return;
  }
  if (traces.length === 0) {
    process.stdout.write("no traces yet (TSWEAVER_TRACE_SAMPLE and TSWEAVER_TRACE_RATE set how many calls are traced)\n");
    return;
  }
  const rows = [["TRACE", "ROOT", "START", "DURATION", "SPANS", "ERRORS", "COMPONENTS"]];
  for (const t of traces) {
    rows.push([
      t.traceId,
      t.root,
      new Date(t.startMicros / 1000).toISOString().slice(11, 23),
      ms(t.durationMicros),
      String(t.spans),
      String(t.errors),
      t.components.join(","),
    ]);
  }
  process.stdout.write(textTable(rows) + "\n");
}

/** A text timeline of a trace: one line per span, indented under its parent, with a bar. */
export function timeline(spans: readonly StoredSpan[]): string {
  if (spans.length === 0) return "";
  const start = Math.min(...spans.map((s) => s.startMicros));
  const total = Math.max(1, Math.max(...spans.map((s) => s.endMicros)) - start);
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, StoredSpan[]>();
  for (const s of spans) {
    const p = ids.has(s.parentSpanId) ? s.parentSpanId : "";
    children.set(p, [...(children.get(p) ?? []), s]);
  }
  const WIDTH = 40;
  const lines = [`trace ${spans[0]!.traceId}: ${spans.length} spans, ${ms(total)}`];
  const walk = (parent: string, depth: number) => {
    for (const s of (children.get(parent) ?? []).sort((a, b) => a.startMicros - b.startMicros)) {
      const from = Math.floor(((s.startMicros - start) / total) * WIDTH);
      const len = Math.max(1, Math.round(((s.endMicros - s.startMicros) / total) * WIDTH));
      const bar = " ".repeat(from) + "#".repeat(Math.min(len, WIDTH - from));
      const kind = s.kind === 2 ? "client" : s.kind === 1 ? "server" : "span";
      const err = s.statusCode === 2 ? `  ERROR ${s.statusMessage}` : "";
      lines.push(
        `  |${bar.padEnd(WIDTH)}| +${ms(s.startMicros - start).padStart(10)} ${ms(s.endMicros - s.startMicros).padStart(10)}  ${"  ".repeat(depth)}${kind} ${s.name} @${s.attributes["tsweaver.weavelet"] ?? "?"}${err}`,
      );
      walk(s.spanId, depth + 1);
    }
  };
  walk("", 0);
  return lines.join("\n") + "\n";
}

/** `tsweaver multi dashboard`: prints the URL of a running deployment's dashboard (and opens it with --open). */
export async function dashboardCommand(o: { deployment?: string | undefined; open?: boolean }): Promise<string> {
  const admin = adminOf(o.deployment);
  const { status } = admin;
  // A one-time link (a URL holding the token itself would stay valid in browser history and be visible
  // in the opener's command line); opening it sets the token as an HttpOnly cookie.
  const { ticket } = (await (await adminFetch(admin, "/api/login-ticket", 5_000, "POST")).json()) as { ticket: string };
  const url = `${admin.base}/login?ticket=${ticket}`;
  process.stdout.write(`${url}\n`);
  if (o.open) {
    const opener = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open";
    const { spawn } = await import("node:child_process");
    const child = spawn(opener, [url], { stdio: "ignore", detached: true });
    child.on("error", () =>
      process.stderr.write(`tsweaver: cannot run ${opener}; open ${url} in a browser (deployment ${status.deploymentId})\n`),
    );
    child.unref();
  }
  return url;
}

/** Options of `tsweaver multi advise`. */
export interface AdviseOptions {
  deployment?: string | undefined;
  window?: string;
  maxComponents?: string;
  separate?: string[];
  minShare?: string;
  json?: boolean;
}

/** `tsweaver multi advise`: which components to colocate, from the deployment's measured call graph. */
export async function adviseCommand(o: AdviseOptions): Promise<ColocationAdviceReply> {
  const admin = adminOf(o.deployment);
  const windowSec = parseDuration(o.window ?? "60s") / 1000;
  const q = new URLSearchParams({ window: String(windowSec) });
  if (o.maxComponents !== undefined) q.set("max", o.maxComponents);
  if (o.minShare !== undefined) q.set("min_share", o.minShare);
  if (o.separate?.length) q.set("separate", o.separate.join(","));
  const advice = (await (await adminFetch(admin, `/api/advice?${q}`)).json()) as ColocationAdviceReply;
  if (o.json) {
    process.stdout.write(JSON.stringify(advice, null, 2) + "\n");
    return advice;
  }
  const out = (s: string) => process.stdout.write(s + "\n");
  if (advice.edges.length === 0 || advice.windowSec === 0) {
    out(
      `no calls between components in the last ${windowSec} s of deployment ${admin.status.deploymentId}: send it traffic (or widen --window) first`,
    );
    return advice;
  }
  const rate = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
  const bytes = (n: number | undefined) =>
    n === undefined
      ? "-"
      : n >= 1 << 20
        ? `${(n / (1 << 20)).toFixed(1)} MiB`
        : n >= 1024
          ? `${(n / 1024).toFixed(1)} KiB`
          : `${n.toFixed(0)} B`;
  out(
    `Colocation advice for deployment ${admin.status.deploymentId} (app ${admin.status.app}), from ${advice.windowSec.toFixed(0)} s of calls:`,
  );
  const { now, advised } = advice;
  out(
    textTable([
      ["", "CROSS-PROCESS CALLS/S", "BYTES/S"],
      ["now", rate(now.callsPerSec), bytes(now.bytesPerSec)],
      ["advised", rate(advised.callsPerSec), bytes(advised.bytesPerSec)],
      ["saved", rate(now.callsPerSec - advised.callsPerSec), bytes(now.bytesPerSec - advised.bytesPerSec)],
    ]) + "\n",
  );
  const where = (remote: boolean) => (remote ? "across processes" : "in-process");
  out(
    textTable([
      ["COMPONENTS", "CALLS/S", "BYTES/S", "NOW", "ADVISED"],
      ...advice.edges.map((e) => [
        `${e.a} ↔ ${e.b}`,
        rate(e.callsPerSec),
        bytes(e.bytesPerSec),
        where(e.remoteNow),
        where(e.remoteAdvised),
      ]),
    ]) + "\n",
  );
  for (const h of advice.held) out(`held back: ${h}`);
  if (!advice.changed) {
    out("the current grouping is already what the advice would pick: keep it");
  } else {
    out(`put this in the [tsweaver] section of the app's weaver.toml (replacing any colocate line) and redeploy:`);
    out(`  ${advice.toml}`);
  }
  return advice;
}

/** "10s", "500ms", "2m", "3h", "7d" or a number of seconds → ms. */
export function parseDuration(d: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(d.trim());
  if (!m) throw new Error(`duration ${d}: use e.g. 10s, 500ms, 2m, 3h or 7d`);
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? "s") as "s"]);
}

/** Options of `tsweaver multi gc`. */
export interface GcOptions {
  /** Only deployments that ended (last status update) longer ago than this ("7d", "12h"; default 7d). */
  olderThan?: string;
  /** List what would be removed, remove nothing. */
  dryRun?: boolean;
}

/**
 * `tsweaver multi gc`: removes the state directories (status, logs, traces, profiles) of deployments
 * that stopped, or whose deployer is gone, longer ago than `olderThan`. A deployment whose deployer
 * still runs is never touched. Returns the ids removed (or that would be, with dryRun).
 */
export function gcCommand(o: GcOptions): string[] {
  const olderThanMs = parseDuration(o.olderThan ?? "7d");
  const now = Date.now();
  const removed: string[] = [];
  let kept = 0;
  for (const dir of listDeployments()) {
    const status = dir.readStatus();
    if (!status) continue; // not written by a deployer we know: leave it alone
    const state = observedStatus(status).state;
    const endedAt = Math.max(Date.parse(status.updatedAt) || 0, statSync(dir.statusFile).mtimeMs);
    if (state === "running" || state === "stopping" || now - endedAt < olderThanMs) {
      kept++;
      continue;
    }
    const size = dirBytes(dir.dir);
    if (!o.dryRun) rmSync(dir.dir, { recursive: true, force: true });
    removed.push(status.deploymentId);
    process.stdout.write(
      `${o.dryRun ? "would remove" : "removed"} ${status.deploymentId}  app ${status.app}  ${state}  last update ${new Date(endedAt).toISOString()}  ${(size / 1024 / 1024).toFixed(1)} MiB\n`,
    );
  }
  process.stderr.write(
    `tsweaver: ${removed.length} deployment${removed.length === 1 ? "" : "s"} ${o.dryRun ? "to remove" : "removed"}, ${kept} kept (running, or ended less than ${o.olderThan ?? "7d"} ago) in ${stateRoot()}\n`,
  );
  return removed;
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}

/** Options of `tsweaver multi profile`. */
export interface ProfileOptions {
  deployment?: string | undefined;
  cpu?: string;
  heap?: boolean;
  group?: string;
  out?: string;
}

/**
 * `tsweaver multi profile`: a CPU profile (or heap snapshot) of every replica of a group (or of all
 * groups), written as .cpuprofile/.heapsnapshot files to open in Chrome DevTools; prints the directory.
 */
export async function profileCommand(o: ProfileOptions): Promise<string> {
  const admin = adminOf(o.deployment);
  const { status, dir } = admin;
  const ms = parseDuration(o.cpu ?? "10s");
  const kind = o.heap ? "heap" : "cpu";
  const q = new URLSearchParams({ kind, ms: String(ms) });
  if (o.group) q.set("group", o.group);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  const out = path.resolve(o.out ?? path.join(dir.dir, "profiles", stamp));
  process.stderr.write(
    kind === "cpu"
      ? `tsweaver: profiling ${o.group ?? "every group"} of ${status.deploymentId} for ${ms / 1000} s...\n`
      : `tsweaver: taking heap snapshots of ${o.group ?? "every group"}...\n`,
  );
  const { profiles } = (await (await adminFetch(admin, `/api/profile?${q}`, ms + 120_000, "POST")).json()) as {
    profiles: ReplicaProfile[];
  };
  mkdirSync(out, { recursive: true });
  for (const p of profiles) {
    const file = path.join(out, `${p.replica}-${p.pid}.${kind === "cpu" ? "cpuprofile" : "heapsnapshot"}`);
    writeFileSync(file, p.profile);
    process.stderr.write(`  ${path.basename(file)}  (${p.group}, ${(p.profile.length / 1024).toFixed(0)} KiB)\n`);
  }
  process.stderr.write(
    `tsweaver: ${profiles.length} ${kind === "cpu" ? "CPU profiles" : "heap snapshots"}; open them in Chrome DevTools (Performance or Memory tab, Load profile):\n`,
  );
  process.stdout.write(out + "\n");
  return out;
}
