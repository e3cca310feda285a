// Decode cost is bounded by input size: hostile inputs that would allocate far more than they weigh are
// refused early (no timing asserts: the assertions are on where and how decoding stops).
import { test } from "node:test";
import assert from "node:assert/strict";
import { CodecError, MAX_DECODED_VALUES, decode, encode, Reader } from "../../runtime/codec/codec.js";
import { payload } from "../../bench/payloads.js";

/** An array tag with `count` elements, each the bytes `elem`. */
function arrayOf(count: number, elem: number[]): Buffer {
  const b = Buffer.alloc(5 + count * elem.length);
  b[0] = 0xd0;
  b.writeUInt32LE(count, 1);
  for (let i = 0; i < count; i++) b.set(elem, 5 + i * elem.length);
  return b;
}

/** Decodes `b`, expecting the allocation-budget refusal; returns the byte where it stopped. */
function refusedAt(b: Buffer): number {
  let err: unknown;
  try {
    decode(b);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof CodecError, `expected a CodecError, got ${String(err)}`);
  const m = /more objects than its size allows \(at byte (\d+)/.exec(err.message);
  assert.ok(m, err.message);
  return Number(m[1]);
}

const MiB = 1024 * 1024;

test("floods of empty containers and heavy values in 16 MiB are refused within their first few hundred KB", () => {
  const floods: Record<string, number[]> = {
    "empty objects": [0xb0],
    "empty arrays": [0xa0],
    "empty Maps": [0xd2, 0, 0, 0, 0],
    "empty Sets": [0xd3, 0, 0, 0, 0],
    "empty Uint8Arrays": [0xd4, 0, 0, 0, 0],
    "empty Buffers": [0xd5, 0, 0, 0, 0],
    "empty ArrayBuffers": [0xd7, 1, 0, 0, 0, 0],
    Dates: [0xd6, 0, 0, 0, 0, 0, 0, 0, 0],
    "small bigints": [0xcc, 0, 1, 0, 0, 0, 7],
    "2-character strings": [0x82, 0x61, 0x62],
    "[1, 2] pairs": [0xa2, 1, 2],
    // 8 input bytes for ~100 heap bytes each: within the container charge alone, not with its slots.
    "7-element arrays of small numbers": [0xa7, 1, 2, 3, 4, 5, 6, 7],
    "{a: 1} records": [0xb1, 0x81, 0x61, 1],
  };
  for (const [name, elem] of Object.entries(floods)) {
    const b = arrayOf(Math.floor((16 * MiB - 5) / elem.length), elem);
    const at = refusedAt(b);
    assert.ok(at < 512 * 1024, `${name}: refused only at byte ${at}`);
  }
});

test("a long array's full length is allocated only after its first elements decoded within budget", () => {
  // 16M elements declared: the refusal comes from the elements, before a 128 MiB slot array exists.
  const before = process.memoryUsage().arrayBuffers + process.memoryUsage().heapUsed;
  const at = refusedAt(arrayOf(16 * MiB - 5, [0xb0]));
  assert.ok(at < 100_000);
  const after = process.memoryUsage().arrayBuffers + process.memoryUsage().heapUsed;
  assert.ok(after - before < 64 * MiB, `decoding grew memory by ${after - before} bytes`);
});

test("element counts are checked against the bytes left before anything is allocated", () => {
  const cases: [string, number[]][] = [
    ["array of 2^32-1", [0xd0, 0xff, 0xff, 0xff, 0xff, 1, 2]],
    ["object of 10 pairs in 15 bytes", [0xd1, 10, 0, 0, 0, ...new Array<number>(15).fill(0)]],
    ["Map of 8 pairs in 10 bytes", [0xd2, 8, 0, 0, 0, ...new Array<number>(10).fill(0)]],
    ["Set of 100 in 50 bytes", [0xd3, 100, 0, 0, 0, ...new Array<number>(50).fill(0)]],
  ];
  for (const [name, bytes] of cases) assert.throws(() => decode(Buffer.from(bytes)), /truncated input/, name);
});

test("real data is not refused: records, numbers, strings, nulls and big bigints of many megabytes", () => {
  const records = Array.from({ length: 200 }, () => payload("large"));
  assert.equal((decode(encode(records)) as unknown[]).length, 200);
  const numbers = Array.from({ length: 500_000 }, (_, i) => i * 1.5);
  assert.deepEqual(decode(encode(numbers)), numbers);
  const words = Array.from({ length: 200_000 }, (_, i) => `word-${i}`);
  assert.deepEqual(decode(encode(words)), words);
  const nulls = new Array<null>(2 * MiB).fill(null);
  assert.equal((decode(encode(nulls)) as unknown[]).length, nulls.length);
  const pairs = Array.from({ length: 5000 }, (_, i) => [i & 0x7f, 1]);
  assert.deepEqual(decode(encode(pairs)), pairs, "small values pass whatever their shape");
  const big = -(1n << (8n * BigInt(4 * MiB))) + 12345n;
  assert.equal(decode(encode(big)), big);
  // A Reader (the RPC frame path) applies the same budget to each value it reads.
  const r = new Reader(arrayOf(4 * MiB, [0xb0]));
  assert.throws(() => r.value(), /more objects than its size allows/);
});

test("a value decodes to at most MAX_DECODED_VALUES objects, arrays and strings, whatever their density", () => {
  // { id, qty } records: dense enough to pass the size budget, so only the count can stop them.
  const record = [0xb2, 0x82, 0x69, 0x64, 0xc8, 1, 0, 0, 1, 0x83, 0x71, 0x74, 0x79, 7];
  // The outer array, the records and the two keys (decoded once, then taken from the process's key cache).
  const most = decode(arrayOf(MAX_DECODED_VALUES - 3, record)) as unknown[];
  assert.equal(most.length, MAX_DECODED_VALUES - 3);
  assert.deepEqual(most[0], { id: 0x01000001, qty: 7 });
  assert.throws(
    () => decode(arrayOf(MAX_DECODED_VALUES, record)),
    (err: unknown) =>
      err instanceof CodecError &&
      /more than 524,288 objects, arrays and strings \(at byte \d+\); send bulk data as typed arrays/.test(err.message),
  );
  // Numbers, nulls and typed arrays allocate nothing per element: counts far past the limit decode.
  const numbers = new Float64Array(2 * MAX_DECODED_VALUES).fill(0.5);
  assert.equal((decode(encode(Array.from(numbers))) as unknown[]).length, numbers.length);
  assert.equal((decode(encode(numbers)) as Float64Array).length, numbers.length);
});
