// Codec-only row, run in its own process (fresh JIT, nothing else running):
// `node dist/bench/codecs.js` with BENCH_CODEC_MS = time budget per measurement (ms), BENCH_ROUNDS = rounds.
// Prints one RESULT_MARKER line with, per codec and payload size, encoded bytes and ops/s of
// encode, decode and encode+decode, all on the same values.
import { performance } from "node:perf_hooks";
import { Packr } from "msgpackr";
import { decode as twDecode, encode as twEncode } from "../runtime/codec/codec.js";
import { RESULT_MARKER } from "./measure.js";
import { type Payload, PAYLOAD_SIZES, checkEcho, payload, protoDecode, protoEncode } from "./payloads.js";

export interface CodecResult {
  bytes: number;
  encodeOps: number;
  decodeOps: number;
  roundTripOps: number;
}

interface Codec {
  name: string;
  encode(v: Payload): Uint8Array;
  decode(b: Uint8Array): unknown;
}

// Plain self-describing msgpack (no shared record structures), like the other self-describing codecs.
const packr = new Packr({ useRecords: false });

export const CODECS: readonly Codec[] = [
  { name: "tsweaver", encode: (v) => twEncode(v), decode: (b) => twDecode(b) },
  {
    name: "JSON",
    encode: (v) => Buffer.from(JSON.stringify(v), "utf8"),
    decode: (b) => JSON.parse(Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8")) as unknown,
  },
  // pack() returns a view of msgpackr's reusable buffer: fine, each encoding is decoded before the next.
  { name: "msgpackr", encode: (v) => packr.pack(v), decode: (b) => packr.unpack(b) as unknown },
  { name: "protobufjs", encode: (v) => protoEncode(v), decode: (b) => protoDecode(b) },
];

let sink = 0;

/** Ops/s of `fn`, run in batches until `ms` pass (or `maxOps` ops). */
function opsPerSec(fn: () => void, ms: number, maxOps: number): number {
  const start = performance.now();
  const deadline = start + ms;
  let ops = 0;
  let now = start;
  while (ops < maxOps && now < deadline) {
    for (let i = 0; i < 64; i++) fn();
    ops += 64;
    now = performance.now();
  }
  return ops / ((now - start) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Every codec on every payload, `ms` per measurement split over `rounds` interleaved rounds (each round
 * measures every codec once), medians over the rounds: background load on the machine comes and goes,
 * and interleaving spreads it over all codecs alike.
 */
export function measureCodecs(ms: number, rounds: number): Record<string, CodecResult> {
  const maxOps = 5_000_000;
  interface Bench {
    key: string;
    bytes: number;
    enc: () => void;
    dec: () => void;
    both: () => void;
    runs: { encodeOps: number[]; decodeOps: number[]; roundTripOps: number[] };
  }
  const benches: Bench[] = [];
  for (const size of PAYLOAD_SIZES) {
    const value = payload(size);
    for (const c of CODECS) {
      const bytes = c.encode(value);
      checkEcho(value, c.decode(bytes));
      const copy = Uint8Array.from(bytes);
      const b: Bench = {
        key: `${c.name}/${size}`,
        bytes: bytes.length,
        enc: () => {
          sink += c.encode(value).length;
        },
        dec: () => {
          sink += c.decode(copy) === undefined ? 0 : 1;
        },
        both: () => {
          sink += c.decode(c.encode(value)) === undefined ? 0 : 1;
        },
        runs: { encodeOps: [], decodeOps: [], roundTripOps: [] },
      };
      // Warm-up: let the JIT settle on all three paths.
      opsPerSec(b.both, ms / 3, maxOps);
      benches.push(b);
    }
  }
  const per = ms / rounds;
  for (let r = 0; r < rounds; r++) {
    for (const b of benches) {
      b.runs.encodeOps.push(opsPerSec(b.enc, per, maxOps));
      b.runs.decodeOps.push(opsPerSec(b.dec, per, maxOps));
      b.runs.roundTripOps.push(opsPerSec(b.both, per, maxOps));
    }
  }
  const out: Record<string, CodecResult> = {};
  for (const b of benches) {
    out[b.key] = {
      bytes: b.bytes,
      encodeOps: median(b.runs.encodeOps),
      decodeOps: median(b.runs.decodeOps),
      roundTripOps: median(b.runs.roundTripOps),
    };
  }
  if (sink === -1) console.log(sink);
  return out;
}

if (process.env["BENCH_CODEC_MS"] !== undefined) {
  const r = measureCodecs(Number(process.env["BENCH_CODEC_MS"]), Number(process.env["BENCH_ROUNDS"] ?? 1));
  process.stdout.write(RESULT_MARKER + JSON.stringify(r) + "\n");
}
