// RPC fault run: legitimate calls against a replica process while it is flooded with half-frame
// connections, connections declaring 16 MiB frames, and random frames. Reports the legitimate calls'
// success rate and p99 against a quiet baseline, the replica's RSS and fds before and after, and its log
// lines per second. Bounded: every phase has a fixed size. The attack runs in a process of its own and
// the legitimate calls for as long as it does. `npm run build && node dist/bench/faults/rpc.js`
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { withCallOptions } from "../../runtime/core/call.js";
import { Connection } from "../../runtime/rpc/client.js";

import { ATTACK } from "./attacker.js";

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

/** Legitimate calls at concurrency 8 until `done()`; returns latencies and failures. */
async function legit(done: () => boolean): Promise<{ ok: number; failed: number; p99: number; p50: number }> {
  const c = new Connection(address, { methodTableHash: "faults" });
  const lat: number[] = [];
  let failed = 0;
  const payload = { id: 1, name: "legit", tags: ["a", "b"] };
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (!done()) {
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

/** Runs the attack from its own process (attacker.ts), so building and sending it never delays the legitimate calls. */
function attack(): Promise<void> {
  const attacker = spawn(process.execPath, [fileURLToPath(new URL("./attacker.js", import.meta.url)), String(port)], { stdio: "inherit" });
  return new Promise((resolve, reject) =>
    attacker.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`attacker exited with ${code}`)))),
  );
}

await sleep(500);
const idleRss = rssMiB();
const baselineEnd = Date.now() + 3000;
const baseline = await legit(() => Date.now() >= baselineEnd);
// The baseline's own traffic grows V8's young generation; "before" is taken after it, so the difference
// after the attack is what the attack left behind.
await sleep(500);
const before = { rss: rssMiB(), fds: fds() };
const logsBefore = logLines;
const t0 = Date.now();
// The legitimate calls run for as long as the attack does.
let attackOver = false;
const during = legit(() => attackOver);
await attack();
attackOver = true;
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
        halfFrameConns: ATTACK.halfFrameConns,
        declared16MiB: ATTACK.bigDeclared,
        sentPerDeclared: ATTACK.bigSentBytes,
        randomFrames: ATTACK.randomFrames,
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
