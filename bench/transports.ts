// Unix domain socket vs loopback TCP, below the weavelets: the raw node:net echo (row 1's server and
// client) and tsweaver's RPC transport (row 7's RpcServer and Connection), each served over both from
// a child process and measured side by side, Unix and TCP interleaved in every round.
//   node dist/bench/transports.js [--sizes=small,large] [--conc=1,64] [--rounds=5] [--quick]
// Prints per cell the medians of ops/s, p50 and CPU µs per call (client + server), and TCP ÷ Unix
// for each (> 1: the Unix socket is faster or cheaper). Row 2 vs 2c of `npm run bench` is the same
// comparison through the whole stack; this one tells the transport from what runs above it.
import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { encode as twEncode } from "../runtime/codec/codec.js";
import { type CellResult, FULL, QUICK, closedLoop, medianOf, perRound } from "./measure.js";
import { RawClient, RpcClient, rawServer, rpcEchoServer } from "./peers.js";
import { PAYLOAD_SIZES, type PayloadSize, payload } from "./payloads.js";

type Kind = "raw" | "rpc";
type Transport = "unix" | "tcp";

/** Child: serves `kind` on `address`, tells the parent the bound address, answers CPU-time requests. */
async function serveChild(kind: Kind, address: string): Promise<void> {
  let bound: string;
  if (kind === "rpc") bound = await rpcEchoServer(undefined, address);
  else {
    const server = rawServer();
    const unix = address.startsWith("unix:");
    await new Promise<void>((resolve) => (unix ? server.listen(address.slice(5), resolve) : server.listen(0, "127.0.0.1", resolve)));
    const a = server.address();
    bound = unix || a === null || typeof a === "string" ? address : `127.0.0.1:${a.port}`;
  }
  process.send!({ bound });
  process.on("message", () => {
    const u = process.cpuUsage();
    process.send!({ cpu: u.user + u.system });
  });
  process.on("disconnect", () => process.exit(0));
}

interface Peer {
  child: ChildProcess;
  call: (size: PayloadSize) => Promise<unknown>;
  cpuMicros: () => Promise<number>;
  close: () => void;
}

function nextMessage<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const exited = (code: number | null): void => reject(new Error(`transport server exited (${code})`));
    child.once("exit", exited);
    child.once("message", (m) => {
      child.off("exit", exited);
      resolve(m as T);
    });
  });
}

async function startPeer(kind: Kind, transport: Transport, dir: string): Promise<Peer> {
  const address = transport === "unix" ? `unix:${path.join(dir, `${kind}.sock`)}` : "127.0.0.1:0";
  const child = fork(fileURLToPath(import.meta.url), ["serve", kind, address], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const { bound } = await nextMessage<{ bound: string }>(child);
  const port = Number(bound.slice(bound.lastIndexOf(":") + 1));
  const serverCpu = async (): Promise<number> => {
    const reply = nextMessage<{ cpu: number }>(child);
    child.send("cpu");
    return (await reply).cpu;
  };
  const cpuMicros = async (): Promise<number> => {
    const u = process.cpuUsage();
    return u.user + u.system + (await serverCpu());
  };
  if (kind === "raw") {
    const client = await RawClient.connect(transport === "unix" ? bound.slice(5) : port);
    const bodies = { small: twEncode(payload("small")), large: twEncode(payload("large")) };
    return { child, call: (size) => client.call(bodies[size]), cpuMicros, close: () => client.close() };
  }
  const client = new RpcClient(transport === "unix" ? bound : port, undefined);
  const values = { small: payload("small"), large: payload("large") };
  return { child, call: (size) => client.call(values[size]), cpuMicros, close: () => client.close() };
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

async function main(): Promise<void> {
  let sizes: readonly PayloadSize[] = PAYLOAD_SIZES;
  let conc = [1, 64];
  let rounds = 5;
  let quick = false;
  for (const a of process.argv.slice(2)) {
    if (a === "--quick") quick = true;
    else if (a.startsWith("--sizes=")) sizes = a.slice(8).split(",") as PayloadSize[];
    else if (a.startsWith("--conc=")) conc = a.slice(7).split(",").map(Number);
    else if (a.startsWith("--rounds=")) rounds = Number(a.slice(9));
    else throw new Error(`unknown argument ${a} (use --sizes=small,large --conc=1,64 --rounds=N --quick)`);
  }
  if (quick) rounds = 1;
  const bounds = perRound(quick ? QUICK : FULL, rounds);
  const dir = mkdtempSync(path.join(os.tmpdir(), "tsw-transports-"));
  const loadBefore = os.loadavg();
  const lines: string[] = [];
  try {
    for (const kind of ["raw", "rpc"] as const) {
      const peers = { unix: await startPeer(kind, "unix", dir), tcp: await startPeer(kind, "tcp", dir) };
      try {
        for (const size of sizes) {
          for (const c of conc) {
            const runs: Record<Transport, CellResult[]> = { unix: [], tcp: [] };
            for (let r = 0; r < rounds; r++) {
              // Alternate which goes first, so neither always follows the other.
              for (const t of r % 2 === 0 ? (["unix", "tcp"] as const) : (["tcp", "unix"] as const)) {
                const p = peers[t];
                runs[t].push(await closedLoop(() => p.call(size), c, bounds, p.cpuMicros));
              }
            }
            const u = medianOf(runs.unix);
            const t = medianOf(runs.tcp);
            lines.push(
              `| ${kind === "raw" ? "raw node:net echo" : "tsweaver RPC"} | ${size} | ${c} | ` +
                `${Math.round(u.opsPerSec)} / ${Math.round(t.opsPerSec)} | ${fmt(u.p50Us)} / ${fmt(t.p50Us)} | ` +
                `${fmt(u.cpuUsPerCall!)} / ${fmt(t.cpuUsPerCall!)} | ${(u.opsPerSec / t.opsPerSec).toFixed(2)}x | ` +
                `${(t.p50Us / u.p50Us).toFixed(2)}x | ${(t.cpuUsPerCall! / u.cpuUsPerCall!).toFixed(2)}x |`,
            );
          }
        }
      } finally {
        for (const p of Object.values(peers)) {
          p.close();
          p.child.disconnect();
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(" ");
  process.stdout.write(
    `\nUnix socket vs loopback TCP (${rounds} interleaved rounds, medians): node ${process.version}, ${os.cpus().length} CPUs; ` +
      `load average ${load(loadBefore)} before, ${load(os.loadavg())} after\n\n` +
      `| transport | payload | c | ops/s Unix / TCP | p50 µs Unix / TCP | CPU µs/call Unix / TCP | TCP ÷ Unix time/call | TCP ÷ Unix p50 | TCP ÷ Unix CPU/call |\n` +
      `|:--|:--|--:|--:|--:|--:|--:|--:|--:|\n` +
      lines.join("\n") +
      "\n",
  );
}

if (process.argv[2] === "serve") await serveChild(process.argv[3] as Kind, process.argv[4]!);
else
  await main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`transports bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
