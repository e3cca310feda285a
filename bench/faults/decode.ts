// Worst-case decode inputs: one 16 MiB buffer per shape, each an array of the same small value repeated,
// decoded once in a fresh process (so one shape's garbage does not slow the next). Prints whether it
// was refused (and at which byte) or decoded, with the process's CPU time, wall time and heap growth.
// `npm run build && node --expose-gc dist/bench/faults/decode.js [shape]`
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { decode } from "../../runtime/codec/codec.js";

const MiB = 1024 * 1024;
const u8 = (v: number): number[] => [0xc5, v];

/** Each shape: the encoding of one element of the 16 MiB array. */
const SHAPES: Record<string, number[]> = {
  "empty objects": [0xb0],
  "empty arrays": [0xa0],
  "[1, 2] pairs": [0xa2, 1, 2],
  "7-element arrays of fixints (8 bytes)": [0xa7, 1, 2, 3, 4, 5, 6, 7],
  "3-element arrays of int16 (10 bytes)": [0xa3, 0xc6, 1, 1, 0xc6, 1, 1, 0xc6, 1, 1],
  "2-element arrays of int32 (11 bytes)": [0xa2, 0xc8, 1, 0, 0, 1, 0xc8, 1, 0, 0, 1],
  "8-element arrays of uint8 (17 bytes)": [0xa8, ...[1, 2, 3, 4, 5, 6, 7, 8].flatMap((v) => u8(200 + v))],
  "15-element arrays of uint8 (31 bytes)": [0xaf, ...Array.from({ length: 15 }, (_, i) => u8(200 + i)).flat()],
  "{a, b, c} records (10 bytes)": [0xb3, 0x81, 0x61, 1, 0x81, 0x62, 2, 0x81, 0x63, 3],
  "3-character strings": [0x83, 97, 98, 99],
  "4-character strings": [0x84, 97, 98, 99, 100],
  "8-character strings": [0x88, 97, 98, 99, 100, 101, 102, 103, 104],
  nulls: [0xc1],
  "500,000 2-element arrays of int32 (the most that decode)": [0xa2, 0xc8, 1, 0, 0, 1, 0xc8, 1, 0, 0, 1],
  "500,000 {a, b, c} records (the most that decode)": [0xb3, 0x81, 0x61, 1, 0x81, 0x62, 2, 0x81, 0x63, 3],
  "one bigint of 16 MiB": [],
};

function input(shape: string): Buffer {
  if (shape === "one bigint of 16 MiB") {
    const n = 16 * MiB - 6;
    const b = Buffer.alloc(6 + n, 0xab);
    b[0] = 0xcc;
    b[1] = 0;
    b.writeUInt32LE(n, 2);
    return b;
  }
  const elem = SHAPES[shape]!;
  // Most shapes fill 16 MiB; the "500,000" ones hold that many records, just under the codec's value limit.
  const count = shape.startsWith("500,000 ") ? 500_000 : Math.floor((16 * MiB - 5) / elem.length);
  const b = Buffer.alloc(5 + count * elem.length);
  b[0] = 0xd0;
  b.writeUInt32LE(count, 1);
  for (let i = 0; i < count; i++) b.set(elem, 5 + i * elem.length);
  return b;
}

const shape = process.argv[2];
if (shape === undefined) {
  for (const s of Object.keys(SHAPES)) {
    const r = spawnSync(process.execPath, ["--expose-gc", fileURLToPath(import.meta.url), s], { stdio: "inherit" });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
} else {
  const b = input(shape);
  (globalThis as { gc?: () => void }).gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let outcome: string;
  try {
    decode(b);
    outcome = "decoded";
  } catch (err) {
    const at = /at byte (\d+)/.exec((err as Error).message);
    outcome = at ? `refused at byte ${Number(at[1]).toLocaleString("en")}` : `error: ${(err as Error).message}`;
  }
  const cpu = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  const heap = (process.memoryUsage().heapUsed - heap0) / MiB;
  console.log(
    `${shape.padEnd(40)} ${outcome.padEnd(28)} cpu ${((cpu.user + cpu.system) / 1000).toFixed(0).padStart(5)} ms  wall ${wall.toFixed(0).padStart(5)} ms  heap +${heap.toFixed(0)} MiB`,
  );
}
