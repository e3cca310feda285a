// RPC fault run: legitimate calls against a replica process while it is flooded with half-frame
// connections, connections declaring 16 MiB frames, and random frames. Reports the legitimate calls'
// success rate and p99 against a quiet baseline, the replica's RSS and fds before and after, and its log
// lines per second. Bounded: every phase has a fixed size. `npm run build && node dist/bench/faults/rpc.js`
import { spawn } from "node:child_process";
import { connect, type Socket } from "node:net";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { Writer } from "../../runtime/codec/codec.js";
import { withCallOptions } from "../../runtime/core/call.js";
import { Connection } from "../../runtime/rpc/client.js";
import { FrameType, writeHello } from "../../runtime/rpc/frames.js";

const HALF_FRAME_CONNS = Number(process.env["HALF_FRAME_CONNS"] ?? 2000);
const BIG_DECLARED = Number(process.env["BIG_DECLARED"] ?? 128);
const BIG_SENT_BYTES = Number(process.env["BIG_SENT_BYTES"] ?? 1024 * 1024);
const RANDOM_FRAMES = Number(process.env["RANDOM_FRAMES"] ?? 10_000);

const child = spawn(process.execPath, [fileURLToPath(new URL("./replica.js", import.meta.url))], { stdio: ["ignore", "pipe", "inherit"] });
let logLines = 0;
const address = await new Promise<string>((resolve) => {
  createInterface({ input: child.stdout! }).on("line", (l) => {
    if (l.startsWith("READY ")) resolve(l.slice(6));
    else logLines++;
  });
});
const port = Number(address.slice(address.lastIndexOf(":") + 1));
const pid = child.pid!;
const rssMiB = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
const fds = (): number => readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const hello = (): Buffer => {
  const w = new Writer();
  writeHello(w, "faults");
  return w.toBuffer();
};

/** Legitimate calls at concurrency 8 for `ms`; returns latencies and failures. */
async function legit(ms: number): Promise<{ ok: number; failed: number; p99: number; p50: number }> {
  const c = new Connection(address, { methodTableHash: "faults" });
  const lat: number[] = [];
  let failed = 0;
  const end = Date.now() + ms;
  const payload = { id: 1, name: "legit", tags: ["a", "b"] };
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (Date.now() < end) {
        const t0 = performance.now();
        try {
          await withCallOptions({ timeoutMs: 5000 }, () => c.call(0, "echo", [payload]));
          lat.push(performance.now() - t0);
        } catch {
          failed++;
        }
      }
    }),
  );
  await c.close();
  lat.sort((a, b) => a - b);
  return { ok: lat.length, failed, p50: lat[Math.floor(lat.length * 0.5)] ?? NaN, p99: lat[Math.floor(lat.length * 0.99)] ?? NaN };
}

function open(first: Buffer): Promise<Socket> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.on("error", () => {});
    s.resume();
    s.once("connect", () => s.write(first, () => resolve(s)));
    s.once("close", () => resolve(s));
  });
}

async function attack(): Promise<void> {
  const socks: Socket[] = [];
  // 2,000 connections sending HELLO and half a frame.
  const half = Buffer.alloc(505);
  half.writeUInt32LE(1001, 0);
  half[4] = FrameType.REQUEST;
  for (let i = 0; i < HALF_FRAME_CONNS; i += 100) {
    socks.push(
      ...(await Promise.all(Array.from({ length: Math.min(100, HALF_FRAME_CONNS - i) }, () => open(Buffer.concat([hello(), half]))))),
    );
  }
  // 128 connections declaring 16 MiB frames and sending part of them.
  const big = Buffer.alloc(5 + BIG_SENT_BYTES);
  big.writeUInt32LE(16 * 1024 * 1024, 0);
  big[4] = FrameType.REQUEST;
  socks.push(...(await Promise.all(Array.from({ length: BIG_DECLARED }, () => open(Buffer.concat([hello(), big]))))));
  // 10,000 random frames, 100 per connection.
  for (let i = 0; i < RANDOM_FRAMES; i += 100) {
    const parts = [hello()];
    for (let j = 0; j < 100; j++) {
      const body = Buffer.from(Array.from({ length: 8 + Math.floor(Math.random() * 64) }, () => Math.floor(Math.random() * 256)));
      const f = Buffer.alloc(5);
      f.writeUInt32LE(body.length + 1, 0);
      f[4] = Math.random() < 0.8 ? FrameType.REQUEST : Math.floor(Math.random() * 10);
      parts.push(f, body);
    }
    socks.push(await open(Buffer.concat(parts)));
  }
  await Promise.all(socks.map((s) => new Promise((r) => (s.closed ? r(undefined) : s.once("close", r)))));
}

await sleep(500);
const idleRss = rssMiB();
const baseline = await legit(3000);
// The baseline's own traffic grows V8's young generation; "before" is taken after it, so the difference
// after the attack is what the attack left behind.
await sleep(500);
const before = { rss: rssMiB(), fds: fds() };
const logsBefore = logLines;
const t0 = Date.now();
const during = legit(8000);
await attack();
const attackSecs = (Date.now() - t0) / 1000;
const underAttack = await during;
await sleep(1000);
const after = { rss: rssMiB(), fds: fds() };
const logs = logLines - logsBefore;
// Freed buffers return to the system only after a garbage collection (the server runs one once the
// flood's connections stopped releasing their partial frames): RSS is also sampled 5 and 10 s after.
await sleep(4000);
const rss5s = rssMiB();
await sleep(5000);
const rss10s = rssMiB();
child.kill();
const total = underAttack.ok + underAttack.failed;
console.log(
  JSON.stringify(
    {
      load: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
      attack: {
        halfFrameConns: HALF_FRAME_CONNS,
        declared16MiB: BIG_DECLARED,
        sentPerDeclared: BIG_SENT_BYTES,
        randomFrames: RANDOM_FRAMES,
        seconds: attackSecs,
      },
      baseline: { calls: baseline.ok, failed: baseline.failed, p50Ms: +baseline.p50.toFixed(2), p99Ms: +baseline.p99.toFixed(2) },
      underAttack: {
        calls: total,
        successRate: +((100 * underAttack.ok) / total).toFixed(3),
        p50Ms: +underAttack.p50.toFixed(2),
        p99Ms: +underAttack.p99.toFixed(2),
        p99VsBaseline: +(underAttack.p99 / baseline.p99).toFixed(2),
      },
      replica: {
        rssMiBIdle: +idleRss.toFixed(1),
        rssMiBBefore: +before.rss.toFixed(1),
        rssMiBAfter: +after.rss.toFixed(1),
        rssMiBAfter5s: +rss5s.toFixed(1),
        rssMiBAfter10s: +rss10s.toFixed(1),
        fdsBefore: before.fds,
        fdsAfter: after.fds,
      },
      logLines: logs,
      logLinesPerSecond: +(logs / attackSecs).toFixed(2),
    },
    null,
    2,
  ),
);
