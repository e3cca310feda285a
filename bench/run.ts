// The benchmark suite: `npm run bench` (full) or `npm run bench -- --quick` (smoke run).
//
// Every row is measured in this one run on this machine, server and client in separate processes on
// loopback, after a warm-up, at concurrency 1 and 64 with a ~100 B and a ~10 KB payload:
//   1 raw       node:net echo of length-prefixed frames (server: a child process; client: this process)
//   1b rawcodec the same with one codec encode and one decode per side (the client encodes the payload
//               and decodes the echo, the server decodes each frame and encodes it again): the floor
//               for a self-describing payload
//   2 tsweaver  a component call across processes: the app in bench/app.ts deployed by MultiDeployer
//               (replicas = 1): main's weavelet calls BenchService's weavelet through its real stub,
//               on a connection authenticated with the deployment key (multi's default)
//   2 plaintext the same without authentication (MultiOptions.plaintextCalls): what authentication costs
//   2 tcp       the same over loopback TCP (MultiOptions.tcpCalls) instead of multi's Unix domain sockets
//   2 notelemetry the same with the weavelets' telemetry off (TSWEAVER_METRICS=0, TSWEAVER_TRACING=0):
//               what the default per-method metrics and sampled tracing cost, measured in the same run
//   3 grpc      @grpc/grpc-js unary call, protobufjs serialization (child server; client here)
//   4 http      node:http keep-alive POST, JSON body both ways (child server; client here)
//   5 colocated ctx.get(BenchService) in one process (single-process deployer) vs a direct async call, as
//               deployed processes run it (no value check), and again with `node app.js`'s development
//               default, the value check (TSWEAVER_CHECK_VALUES=1: an encoding per call; informational)
//   6 codec     tsweaver codec vs JSON vs msgpackr vs protobufjs, encode+decode of the same values
//   7 rpc       tsweaver's RPC transport alone (RpcServer in a child, Connection here), plain TCP, and
//     rpc-tls   the same over TLS 1.3 with certificates from a deployment CA (what AWS calls will pay)
//   8 tls       row 2's component call over loopback TCP with TLS 1.3 and a certificate per weavelet from
//               a deployment CA, no deployment key: what the AWS deployer's weavelets do by default
//     tcp-plaintext  the same over loopback TCP with neither TLS nor authentication: row 8's baseline
// then the issue's targets as ratios with PASS/MISS. Rows 1-4 run in 5 interleaved rounds (each cell of
// each row once per round) and report the median over the rounds: the machine's background load drifts,
// and interleaving makes it hit every row alike (the codec row does the same over its codecs; the
// colocated row alternates direct and colocated cells).
//
// Flags: --quick (or BENCH_QUICK=1): a few hundred calls per cell; --json: also print one
// `BENCH_JSON {...}` line with every number; --rows=raw,tsweaver,...: a subset of rows; --sizes=small,large
// and --conc=1,64: a subset of cells (colocated and codec rows always run all of theirs);
// --cpu-prof=DIR: the tsweaver weavelets, the peer servers and this process (the other rows' clients)
// CPU-profile themselves (see profile.ts) into DIR;
// --weavelet-env=K=V: extra environment for the tsweaver processes (e.g. TSWEAVER_METRICS=0);
// --node-arg=FLAG (repeatable): a Node.js flag for every process of the run: the weavelets (`node_args`),
// the child processes (peer servers, colocated and codec rows), and this process (the peer rows' client;
// V8 flags only, e.g. --no-incremental-marking, set with v8.setFlagsFromString).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { encode as twEncode } from "../runtime/codec/codec.js";
import { loadConfig } from "../runtime/core/config.js";
import { MultiDeployer } from "../runtime/deployers/multi/deployer.js";
import type { CodecResult } from "./codecs.js";
import {
  type Bounds,
  type CellRequest,
  type CellResult,
  type ColocatedResult,
  FULL,
  QUICK,
  RESULT_MARKER,
  closedLoop,
  medianOf,
  perRound,
} from "./measure.js";
import { GrpcClient, HttpClient, RPC_TLS_ENV, RawClient, RpcClient, type PeerKind } from "./peers.js";
import { PAYLOAD_SIZES, type PayloadSize, checkEcho, payload } from "./payloads.js";
import { startProfile, stopProfile } from "./profile.js";
import type { RpcTls } from "../runtime/rpc/tls.js";
import type { RpcCertificate } from "../runtime/protos/runtime.js";
import { issue, newCa } from "../test/support/certs.js";

/** Rounds of a full run (a quick run does one). */
const ROUNDS = 5;
const HERE = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
let CONCURRENCY: readonly number[] = [1, 64];
let SIZES: readonly PayloadSize[] = PAYLOAD_SIZES;
/** `--node-arg=FLAG`: Node.js flags for every process of the run. */
const NODE_ARGS: string[] = [];
/** Rows measured as network rows: set up once, then measured cell by cell, interleaved. */
const NET_ROWS = [
  "raw",
  "rawcodec",
  "tsweaver",
  "plaintext",
  "tcp",
  "notelemetry",
  "grpc",
  "http",
  "rpc",
  "rpc-tls",
  "tls",
  "tcp-plaintext",
] as const;
type NetRowName = (typeof NET_ROWS)[number];
const ALL_ROWS = [...NET_ROWS, "colocated", "codec"] as const;
type RowName = (typeof ALL_ROWS)[number];

interface Cell {
  row: string;
  size: PayloadSize;
  concurrency: number;
  result: CellResult;
}

interface Options {
  quick: boolean;
  json: boolean;
  rows: Set<RowName>;
  cpuProfDir: string | undefined;
  /** Extra environment for the tsweaver weavelets (`--weavelet-env=K=V`, repeatable). */
  weaveletEnv: Record<string, string>;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    quick: process.env["BENCH_QUICK"] === "1",
    json: false,
    rows: new Set(ALL_ROWS),
    cpuProfDir: undefined,
    weaveletEnv: {},
  };
  for (const a of argv) {
    if (a === "--quick") o.quick = true;
    else if (a === "--json") o.json = true;
    else if (a.startsWith("--rows=")) {
      const names = a.slice(7).split(",");
      for (const n of names)
        if (!(ALL_ROWS as readonly string[]).includes(n)) throw new Error(`unknown row ${n} (rows: ${ALL_ROWS.join(", ")})`);
      o.rows = new Set(names as RowName[]);
    } else if (a.startsWith("--cpu-prof=")) o.cpuProfDir = path.resolve(a.slice(11));
    else if (a.startsWith("--weavelet-env=")) {
      const kv = a.slice(15);
      const eq = kv.indexOf("=");
      if (eq <= 0) throw new Error(`--weavelet-env wants KEY=VALUE, got ${kv}`);
      o.weaveletEnv[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (a.startsWith("--node-arg=")) NODE_ARGS.push(a.slice(11));
    else if (a.startsWith("--sizes="))
      SIZES = a
        .slice(8)
        .split(",")
        .map((x) => ((PAYLOAD_SIZES as readonly string[]).includes(x) ? (x as PayloadSize) : fail(`unknown size ${x}`)));
    else if (a.startsWith("--conc="))
      CONCURRENCY = a
        .slice(7)
        .split(",")
        .map((x) => (Number(x) >= 1 ? Number(x) : fail(`bad concurrency ${x}`)));
    else
      throw new Error(
        `unknown argument ${a} (use --quick, --json, --rows=..., --sizes=..., --conc=..., --cpu-prof=DIR, --weavelet-env=K=V, --node-arg=FLAG)`,
      );
  }
  return o;
}

function fail(msg: string): never {
  throw new Error(msg);
}

function log(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------------
// Child processes

/** Runs a compiled bench script; resolves to the line after `marker` (or the first line for READY). */
function startChild(
  script: string,
  args: string[],
  env: Record<string, string>,
): { child: ChildProcess; line: (marker: string, timeoutMs: number) => Promise<string> } {
  const child = spawn(process.execPath, [...NODE_ARGS, path.join(HERE, script), ...args], {
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  let exited = false;
  createInterface({ input: child.stdout! }).on("line", (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  child.once("exit", () => {
    exited = true;
    for (const w of waiters.splice(0)) w();
  });
  const line = (marker: string, timeoutMs: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${script}: no "${marker.trim()}" line within ${timeoutMs} ms`)), timeoutMs);
      const check = (): void => {
        const l = lines.find((x) => x.startsWith(marker));
        if (l !== undefined) {
          clearTimeout(timer);
          resolve(l.slice(marker.length));
        } else if (exited) {
          clearTimeout(timer);
          reject(new Error(`${script} exited without a "${marker.trim()}" line; output: ${lines.join("\n").slice(-2000)}`));
        } else waiters.push(check);
      };
      check();
    });
  return { child, line };
}

/** A network row, set up once and then measured cell by cell (interleaved with the other rows). */
interface NetRow {
  name: NetRowName;
  measure(size: PayloadSize, concurrency: number, b: Bounds): Promise<CellResult>;
  close(): Promise<void>;
}

/** `--cpu-prof=DIR`: where the peer servers and this process write their CPU profiles too. */
let PEER_PROFILE_DIR: string | undefined;

/** A peer server in a child process. */
interface Peer {
  port: number;
  /** CPU time (user + system) used so far by the peer and this process (its client), µs. */
  cpuMicros: () => Promise<number>;
  stop(): void;
}

/** CPU time (user + system) process `pid` has used, µs, from /proc (Linux; 10 ms ticks). */
function procCpuMicros(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1e6) / CLOCK_TICKS_PER_SEC;
  } catch {
    return NaN; // not Linux: the CPU column shows NaN rather than a wrong figure
  }
}
/** USER_HZ: the unit of /proc/<pid>/stat's times (100 on every Linux architecture Node runs on). */
const CLOCK_TICKS_PER_SEC = 100;

async function startPeer(kind: PeerKind, env: Record<string, string> = {}): Promise<Peer> {
  const profiling: Record<string, string> = PEER_PROFILE_DIR !== undefined ? { BENCH_CPU_PROF_DIR: PEER_PROFILE_DIR } : {};
  const { child, line } = startChild("peer-server.js", [kind], { ...env, ...profiling });
  try {
    const port = Number(await line("READY ", 20_000));
    return {
      port,
      cpuMicros: async () => {
        const u = process.cpuUsage();
        return u.user + u.system + procCpuMicros(child.pid);
      },
      stop: () => {
        child.stdin!.end();
        // A profiling peer writes its profile when its stdin ends, then exits.
        if (PEER_PROFILE_DIR === undefined) child.kill();
        else setTimeout(() => child.kill(), 10_000).unref();
      },
    };
  } catch (err) {
    child.kill();
    throw err;
  }
}

async function rawRow(): Promise<NetRow> {
  const peer = await startPeer("raw");
  const client = await RawClient.connect(peer.port);
  // The bytes tsweaver puts on the wire for this payload: same size, but no encoding or decoding work.
  const bodies = { small: twEncode(payload("small")), large: twEncode(payload("large")) };
  return {
    name: "raw",
    measure: (size, c, b) => closedLoop(() => client.call(bodies[size]), c, b, peer.cpuMicros),
    close: async () => {
      client.close();
      peer.stop();
    },
  };
}

/** Row 1b: the raw echo plus one codec encode and one decode per side (see peers.ts). */
async function rawCodecRow(): Promise<NetRow> {
  const peer = await startPeer("raw-codec");
  const client = await RawClient.connect(peer.port);
  return echoRow("rawcodec", peer, { call: (p) => client.callValue(p), close: () => client.close() });
}

/** A row that sends each payload through `client` and checks the echo before measuring. */
function echoRow(name: NetRow["name"], peer: Peer, client: { call(p: unknown): Promise<unknown>; close(): void }): NetRow {
  return {
    name,
    measure: async (size, c, b) => {
      const p = payload(size);
      checkEcho(p, await client.call(p));
      return closedLoop(() => client.call(p), c, b, peer.cpuMicros);
    },
    close: async () => {
      client.close();
      peer.stop();
    },
  };
}

/** Row 8: component calls over loopback TCP with TLS 1.3 (AWS's default), and without (its baseline). */
type TlsPathRow = "tls" | "tcp-plaintext";

/** The certificates MultiOptions.tlsCalls hands each weavelet of row 8: from one fresh deployment CA. */
async function benchCertificates(): Promise<(deploymentId: string, group: string) => Promise<RpcCertificate>> {
  const ca = await newCa("bench deployment CA");
  return async (deploymentId, group) => {
    const t = await issue(ca, { deploymentId, group });
    return { certificatePem: t.cert, privateKeyPem: t.key, caPem: t.ca };
  };
}

async function grpcRow(): Promise<NetRow> {
  const peer = await startPeer("grpc");
  const client = new GrpcClient(peer.port);
  return echoRow("grpc", peer, client);
}

/** tsweaver's RPC transport alone, plain or TLS 1.3 (a deployment CA and two weavelet certificates). */
async function rpcRow(withTls: boolean): Promise<NetRow> {
  let serverTls: RpcTls | undefined;
  let clientTls: RpcTls | undefined;
  if (withTls) {
    const ca = await newCa("bench deployment CA");
    serverTls = await issue(ca, { deploymentId: "bench", group: "server" });
    clientTls = await issue(ca, { deploymentId: "bench", group: "client" });
  }
  const peer = await startPeer(withTls ? "rpc-tls" : "rpc", serverTls ? { [RPC_TLS_ENV]: JSON.stringify(serverTls) } : {});
  const client = new RpcClient(peer.port, clientTls);
  return echoRow(withTls ? "rpc-tls" : "rpc", peer, client);
}

async function httpRow(): Promise<NetRow> {
  const peer = await startPeer("http");
  // One keep-alive socket per concurrent request (HTTP/1.1 has no multiplexing), reused across calls.
  const client = new HttpClient(peer.port, Math.max(...CONCURRENCY));
  return echoRow("http", peer, client);
}

function postJson(address: string, pathname: string, body: unknown, timeoutMs: number): Promise<unknown> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      `http://${address}${pathname}`,
      { method: "POST", agent: false, timeout: timeoutMs, headers: { "content-type": "application/json" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () =>
          res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`POST ${pathname}: ${res.statusCode} ${text}`)),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error(`POST ${pathname} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(data);
  });
}

/** The weavelet environment that turns off both kinds of default telemetry. */
const TELEMETRY_OFF: Record<string, string> = { TSWEAVER_METRICS: "0", TSWEAVER_TRACING: "0" };

/**
 * Deploys bench/app.ts with MultiDeployer (replicas = 1); cells are measured by main's weavelet. `plaintext`:
 * the weavelets do not authenticate their connections (the default does); `tcp`: they talk over loopback
 * TCP (the default is Unix domain sockets); `notelemetry`: the weavelets run with telemetry off (no per-method
 * metrics, no tracing).
 */
async function tsweaverRow(
  cpuProfDir: string | undefined,
  weaveletEnv: Record<string, string>,
  variant: "tsweaver" | "plaintext" | "tcp" | "notelemetry" | TlsPathRow = "tsweaver",
): Promise<NetRow> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tsweaver-bench-"));
  const env: Record<string, string> = { ...weaveletEnv, ...(variant === "notelemetry" ? TELEMETRY_OFF : {}) };
  if (cpuProfDir !== undefined) {
    mkdirSync(cpuProfDir, { recursive: true });
    env["BENCH_CPU_PROF_DIR"] = cpuProfDir;
  }
  const file = path.join(dir, "weaver.toml");
  writeFileSync(
    file,
    `[tsweaver]
name = "bench"
binary = ${JSON.stringify(path.join(HERE, "app.js"))}
env = ${tomlInline(env)}
node_args = ${JSON.stringify(NODE_ARGS)}

[multi]
replicas = 1

[multi.listeners.bench]
address = "127.0.0.1:0"
`,
  );
  const deployer = new MultiDeployer(loadConfig(file), {
    stateDir: path.join(dir, "state"),
    printLogs: false,
    progress: () => {},
    plaintextCalls: variant === "plaintext" || variant === "tcp-plaintext",
    tcpCalls: variant === "tcp" || variant === "tcp-plaintext" || variant === "tls",
    ...(variant === "tls" ? { tlsCalls: await benchCertificates() } : {}),
  });
  const close = async (): Promise<void> => {
    await deployer.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await deployer.deploy();
    const address = await until("the bench listener", 30_000, async () => (await deployer.listenerAddresses()).get("bench"));
    return {
      name: variant,
      measure: async (size, c, b) => {
        const req: CellRequest = { size, concurrency: c, bounds: b };
        // The first request also waits for BenchService's weavelet to start.
        return (await postJson(address, "/run", req, b.warmupMs + b.maxMs + 60_000)) as CellResult;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Measures every network row in `rounds` rounds; in each round every cell of every row runs once, rows
 * interleaved, so slow drift in the machine's background load hits all rows alike. A cell's figures are
 * the medians over the rounds.
 */
async function netRows(
  names: RowName[],
  rounds: number,
  b: Bounds,
  cpuProfDir: string | undefined,
  weaveletEnv: Record<string, string>,
): Promise<Cell[]> {
  const rows: NetRow[] = [];
  const roundBounds = perRound(b, rounds);
  try {
    for (const n of names) {
      log(`starting ${n}`);
      if (n === "raw") rows.push(await rawRow());
      else if (n === "rawcodec") rows.push(await rawCodecRow());
      else if (n === "tsweaver") rows.push(await tsweaverRow(cpuProfDir, weaveletEnv));
      else if (n === "plaintext" || n === "tcp" || n === "notelemetry") rows.push(await tsweaverRow(cpuProfDir, weaveletEnv, n));
      else if (n === "grpc") rows.push(await grpcRow());
      else if (n === "http") rows.push(await httpRow());
      else if (n === "rpc" || n === "rpc-tls") rows.push(await rpcRow(n === "rpc-tls"));
      else if (n === "tls" || n === "tcp-plaintext") rows.push(await tsweaverRow(cpuProfDir, weaveletEnv, n));
    }
    const results = new Map<string, CellResult[]>();
    for (let round = 1; round <= rounds; round++) {
      log(`round ${round}/${rounds}`);
      for (const size of SIZES) {
        for (const c of CONCURRENCY) {
          for (const row of rows) {
            const key = `${row.name}/${size}/${c}`;
            const r = await row.measure(size, c, roundBounds);
            results.set(key, [...(results.get(key) ?? []), r]);
          }
        }
      }
    }
    const cells: Cell[] = [];
    for (const row of rows) {
      for (const size of SIZES)
        for (const c of CONCURRENCY)
          cells.push({ row: row.name, size, concurrency: c, result: medianOf(results.get(`${row.name}/${size}/${c}`)!) });
    }
    return cells;
  } finally {
    for (const row of rows.reverse()) await row.close().catch((err: unknown) => log(`closing ${row.name}: ${String(err)}`));
  }
}

function tomlInline(env: Record<string, string>): string {
  return `{ ${Object.entries(env)
    .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
    .join(", ")} }`;
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Row 5: the app run directly is the single-process deployer, where ctx.get() returns the local instance.
 * Measured as deployed processes run it (the production default: local calls skip the value check), and
 * again with the check `node app.js` turns on outside production (`TSWEAVER_CHECK_VALUES=1`: arguments
 * and result encoded per call), each against a direct call in the same child process.
 */
async function colocatedRow(b: Bounds, rounds: number, weaveletEnv: Record<string, string>): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const checked of [false, true]) {
    const { child, line } = startChild("app.js", [], {
      ...weaveletEnv,
      BENCH_MODE: "colocated",
      BENCH_BOUNDS: JSON.stringify(b),
      BENCH_ROUNDS: String(rounds),
      TSWEAVER_CHECK_VALUES: checked ? "1" : "0",
    });
    try {
      const r = JSON.parse(await line(RESULT_MARKER, 8 * (b.warmupMs + b.maxMs) + 30_000)) as ColocatedResult;
      for (const size of SIZES) {
        for (const c of CONCURRENCY) {
          cells.push({ row: checked ? "direct-checked" : "direct", size, concurrency: c, result: r.direct[`${size}/${c}`]! });
          cells.push({ row: checked ? "colocated-checked" : "colocated", size, concurrency: c, result: r.colocated[`${size}/${c}`]! });
        }
      }
    } finally {
      child.kill();
    }
  }
  return cells;
}

async function codecRow(quick: boolean): Promise<Record<string, CodecResult>> {
  const ms = quick ? 30 : 1000;
  const { child, line } = startChild("codecs.js", [], { BENCH_CODEC_MS: String(ms), BENCH_ROUNDS: String(quick ? 1 : ROUNDS) });
  try {
    return JSON.parse(await line(RESULT_MARKER, 40 * ms + 30_000)) as Record<string, CodecResult>;
  } finally {
    child.kill();
  }
}

// ---------------------------------------------------------------------------------------------------
// Report

const ROW_TITLES: Record<string, string> = {
  raw: "1 raw node:net echo",
  rawcodec: "1b raw echo + codec",
  tsweaver: "2 tsweaver cross-process",
  plaintext: "2 same, not authenticated",
  tcp: "2 same, loopback TCP",
  notelemetry: "2 same, telemetry off",
  grpc: "3 grpc-js unary (protobuf)",
  http: "4 node:http keep-alive JSON",
  direct: "5 direct async call",
  colocated: "5 tsweaver colocated",
  "direct-checked": "5 direct (values-checked run)",
  "colocated-checked": "5 colocated, values checked",
  rpc: "7 tsweaver RPC, plain TCP",
  "rpc-tls": "7 tsweaver RPC, TLS 1.3",
  tls: "8 cross-process, TCP + TLS 1.3",
  "tcp-plaintext": "8 same, TCP, no TLS, no auth",
};

interface Target {
  target: string;
  cell: string;
  ratio: number;
  goal: string;
  pass: boolean;
}

function fmtUs(us: number): string {
  return us >= 100 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us.toFixed(2);
}

function fmtOps(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function table(headers: string[], rows: string[][], alignLeft: number): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    "| " + cells.map((c, i) => (i < alignLeft ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ") + " |";
  const sep = "|" + widths.map((w, i) => (i < alignLeft ? ":" + "-".repeat(w + 1) : "-".repeat(w + 1) + ":")).join("|") + "|";
  return [line(headers), sep, ...rows.map(line)].join("\n");
}

function find(cells: Cell[], row: string, size: PayloadSize, c: number): CellResult | undefined {
  return cells.find((x) => x.row === row && x.size === size && x.concurrency === c)?.result;
}

function targets(cells: Cell[]): Target[] {
  const out: Target[] = [];
  for (const size of SIZES) {
    const tw1 = find(cells, "tsweaver", size, 1);
    const raw1 = find(cells, "raw", size, 1);
    if (tw1 && raw1) {
      const r = tw1.p50Us / raw1.p50Us;
      out.push({ target: "cross-process p50 vs raw echo", cell: `${size} c=1`, ratio: r, goal: "<= 1.3x", pass: r <= 1.3 });
    }
  }
  out.push(...floorTargets(cells));
  for (const size of SIZES) {
    for (const c of CONCURRENCY) {
      const auth = find(cells, "tsweaver", size, c);
      const plain = find(cells, "plaintext", size, c);
      if (!auth || !plain) continue;
      // Time per call with authentication relative to without (throughput ratio inverted).
      const r = plain.opsPerSec / auth.opsPerSec;
      out.push({ target: "authenticated vs plaintext time/call", cell: `${size} c=${c}`, ratio: r, goal: "<= 1.1x", pass: r <= 1.1 });
    }
  }
  for (const size of SIZES) {
    for (const c of CONCURRENCY) {
      const unix = find(cells, "tsweaver", size, c);
      const tcp = find(cells, "tcp", size, c);
      if (!unix || !tcp) continue;
      // Multi's default, Unix sockets, must be at least as fast as loopback TCP: time per call, TCP ÷ Unix.
      const r = unix.opsPerSec / tcp.opsPerSec;
      out.push({ target: "loopback TCP vs Unix socket time/call", cell: `${size} c=${c}`, ratio: r, goal: ">= 1x", pass: r >= 1 });
    }
  }
  for (const size of SIZES) {
    for (const c of CONCURRENCY) {
      const on = find(cells, "tsweaver", size, c);
      const off = find(cells, "notelemetry", size, c);
      if (!on || !off) continue;
      // Time per call with the default telemetry relative to without it.
      const r = off.opsPerSec / on.opsPerSec;
      out.push({ target: "default telemetry vs off time/call", cell: `${size} c=${c}`, ratio: r, goal: "<= 1.1x", pass: r <= 1.1 });
      if (on.cpuUsPerCall === undefined || off.cpuUsPerCall === undefined) continue;
      // The same in CPU per call: what the telemetry costs, less disturbed by other work on the machine.
      const rc = on.cpuUsPerCall / off.cpuUsPerCall;
      out.push({ target: "default telemetry vs off CPU/call", cell: `${size} c=${c}`, ratio: rc, goal: "<= 1.1x", pass: rc <= 1.1 });
    }
  }
  for (const size of SIZES) {
    const plain = find(cells, "rpc", size, 64);
    const tls = find(cells, "rpc-tls", size, 64);
    if (!plain || !tls) continue;
    const r = plain.opsPerSec / tls.opsPerSec;
    out.push({ target: "TLS 1.3 vs plain TCP time/call", cell: `${size} c=64`, ratio: r, goal: "<= 1.5x", pass: r <= 1.5 });
  }
  out.push(...tlsPathTargets(cells));
  out.push(...smallCallTargets(cells));
  for (const [peer, goal] of [
    ["grpc", 5],
    ["http", 2],
  ] as const) {
    for (const size of SIZES) {
      for (const c of CONCURRENCY) {
        const tw = find(cells, "tsweaver", size, c);
        const other = find(cells, peer, size, c);
        if (!tw || !other) continue;
        const r = tw.opsPerSec / other.opsPerSec;
        out.push({
          target: `throughput vs ${peer === "grpc" ? "grpc-js" : "node:http JSON"}`,
          cell: `${size} c=${c}`,
          ratio: r,
          goal: `>= ${goal}x`,
          pass: r >= goal,
        });
      }
    }
  }
  for (const size of SIZES) {
    for (const c of CONCURRENCY) {
      const co = find(cells, "colocated", size, c);
      const d = find(cells, "direct", size, c);
      if (!co || !d) continue;
      // Time per call relative to a direct call (throughput ratio inverted).
      const r = d.opsPerSec / co.opsPerSec;
      out.push({ target: "colocated call time vs direct", cell: `${size} c=${c}`, ratio: r, goal: "<= 3x", pass: r <= 3 });
    }
  }
  for (const size of SIZES) {
    for (const c of CONCURRENCY) {
      const co = find(cells, "colocated-checked", size, c);
      const d = find(cells, "direct-checked", size, c);
      if (!co || !d) continue;
      // Informational: the development aid's cost (an encoding of the arguments and result per call).
      const r = d.opsPerSec / co.opsPerSec;
      out.push({ target: "colocated, values checked, vs direct", cell: `${size} c=${c}`, ratio: r, goal: "(info)", pass: true });
    }
  }
  return out;
}

/** Large payloads against row 1b, the floor for a self-describing payload (raw echo + one encode and one decode per side). */
function floorTargets(cells: Cell[]): Target[] {
  const out: Target[] = [];
  const tw1 = find(cells, "tsweaver", "large", 1);
  const floor1 = find(cells, "rawcodec", "large", 1);
  if (tw1 && floor1) {
    const r = tw1.p50Us / floor1.p50Us;
    out.push({ target: "cross-process p50 vs raw echo + codec", cell: "large c=1", ratio: r, goal: "<= 1.3x", pass: r <= 1.3 });
  }
  const tw64 = find(cells, "tsweaver", "large", 64);
  const floor64 = find(cells, "rawcodec", "large", 64);
  if (tw64 && floor64) {
    const r = tw64.opsPerSec / floor64.opsPerSec;
    out.push({ target: "throughput vs raw echo + codec", cell: "large c=64", ratio: r, goal: ">= 0.7x", pass: r >= 0.7 });
  }
  return out;
}

/**
 * Small calls at c=64 against the floor, raw echo's ops/s: the full call path (row 2) has a goal; the
 * transport alone (row 7) is shown beside it, to tell what the stack above the transport costs.
 */
function smallCallTargets(cells: Cell[]): Target[] {
  const out: Target[] = [];
  const raw = find(cells, "raw", "small", 64);
  if (raw === undefined) return out;
  const full = find(cells, "tsweaver", "small", 64);
  if (full !== undefined) {
    const r = full.opsPerSec / raw.opsPerSec;
    out.push({ target: "cross-process throughput vs raw echo", cell: "small c=64", ratio: r, goal: ">= 0.4x", pass: r >= 0.4 });
  }
  const rpc = find(cells, "rpc", "small", 64);
  if (rpc !== undefined) {
    const r = rpc.opsPerSec / raw.opsPerSec;
    out.push({ target: "RPC transport alone vs raw echo", cell: "small c=64", ratio: r, goal: "(info)", pass: true });
  }
  return out;
}

/** Row 8: TLS 1.3 through real weavelets and stubs vs plaintext, both over loopback TCP. */
function tlsPathTargets(cells: Cell[]): Target[] {
  const out: Target[] = [];
  for (const size of SIZES) {
    for (const c of CONCURRENCY) {
      const tls = find(cells, "tls", size, c);
      const plain = find(cells, "tcp-plaintext", size, c);
      if (!tls || !plain) continue;
      // Time per call with TLS relative to without (throughput ratio inverted); the goal is set at c=64.
      const r = plain.opsPerSec / tls.opsPerSec;
      const goal = c === 64 ? "<= 1.5x" : "(info)";
      out.push({ target: "TLS vs plaintext time/call, full path", cell: `${size} c=${c}`, ratio: r, goal, pass: c !== 64 || r <= 1.5 });
    }
  }
  return out;
}

function report(cells: Cell[], codecs: Record<string, CodecResult> | undefined, quick: boolean, ts: Target[]): string {
  const rows: string[][] = [];
  for (const cell of cells) {
    const r = cell.result;
    rows.push([
      ROW_TITLES[cell.row] ?? cell.row,
      cell.size,
      String(cell.concurrency),
      fmtUs(r.p50Us),
      fmtUs(r.p99Us),
      fmtOps(r.opsPerSec),
      r.cpuUsPerCall === undefined ? "-" : fmtUs(r.cpuUsPerCall),
      String(r.calls),
    ]);
  }
  if (codecs !== undefined) {
    for (const size of SIZES) {
      for (const [key, c] of Object.entries(codecs)) {
        const [name, sz] = key.split("/");
        if (sz !== size) continue;
        rows.push([
          `6 codec ${name} (${c.bytes} B)`,
          size,
          "-",
          `enc ${fmtOps(c.encodeOps)}/s`,
          `dec ${fmtOps(c.decodeOps)}/s`,
          fmtOps(c.roundTripOps),
          "-",
          "-",
        ]);
      }
    }
  }
  const main = table(["benchmark", "payload", "c", "p50 µs", "p99 µs", "ops/s", "CPU µs/call", "calls"], rows, 2);
  const tgt = table(
    ["target", "cell", "ratio", "goal", "result"],
    ts.map((t) => [t.target, t.cell, `${t.ratio.toFixed(2)}x`, t.goal, t.pass ? "PASS" : "MISS"]),
    2,
  );
  const note = quick ? "\n(quick smoke run: too few calls for the numbers to mean anything)\n" : "";
  return `${main}\n\nops/s: completed calls per second (codec rows: encode+decode round trips per second); CPU µs/call: user + system time of client and server per call (both weavelets; the peer rows: this process and the peer's)\n\n${tgt}\n${note}`;
}

// ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  for (const flag of NODE_ARGS) v8.setFlagsFromString(flag);
  if (opts.cpuProfDir !== undefined) {
    mkdirSync(opts.cpuProfDir, { recursive: true });
    PEER_PROFILE_DIR = opts.cpuProfDir;
    process.env["BENCH_CPU_PROF_DIR"] = opts.cpuProfDir;
    startProfile(); // this process: the clients of rows 1, 1b, 3, 4 and 7
  }
  const b = opts.quick ? QUICK : FULL;
  const cells: Cell[] = [];
  let codecs: Record<string, CodecResult> | undefined;
  const started = Date.now();
  // Other work on the machine inflates latencies (most of all at c=1): the header says how busy it was.
  const loadBefore = os.loadavg();
  const step = async (name: RowName, fn: () => Promise<Cell[]>): Promise<void> => {
    if (!opts.rows.has(name)) return;
    log(`${name}...`);
    cells.push(...(await fn()));
  };
  const net = NET_ROWS.filter((n) => opts.rows.has(n));
  if (net.length > 0) cells.push(...(await netRows(net, opts.quick ? 1 : ROUNDS, b, opts.cpuProfDir, opts.weaveletEnv)));
  await step("colocated", () => colocatedRow(b, opts.quick ? 1 : ROUNDS, opts.weaveletEnv));
  if (opts.rows.has("codec")) {
    log("codec...");
    codecs = await codecRow(opts.quick);
  }
  const ts = targets(cells);
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(" ");
  process.stdout.write(
    `\ntsweaver benchmarks (${opts.quick ? "quick" : "full"} run, ${((Date.now() - started) / 1000).toFixed(0)} s): node ${process.version}, ` +
      `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), ${os.platform()}; load average ${load(loadBefore)} before, ${load(os.loadavg())} after\n\n`,
  );
  process.stdout.write(report(cells, codecs, opts.quick, ts) + "\n");
  if (opts.json) process.stdout.write("BENCH_JSON " + JSON.stringify({ cells, codecs, targets: ts }) + "\n");
  await stopProfile("bench");
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
