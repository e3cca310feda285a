import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CodecError,
  MAX_DEPTH,
  Reader,
  Writer,
  decode,
  decodeValues,
  encode,
  encodeValue,
  encodeValues,
} from "../../runtime/codec/codec.js";

function rt<T>(v: T): unknown {
  return decode(encode(v));
}

function same(v: unknown): void {
  assert.deepStrictEqual(rt(v), v);
}

test("primitives round-trip", () => {
  for (const v of [undefined, null, true, false, "", "a", 0, 1, -1]) same(v);
});

test("numbers: every integer width and edge floats", () => {
  const nums = [
    0,
    1,
    31,
    32,
    127,
    128,
    255,
    256,
    -1,
    -31,
    -32,
    -33,
    -127,
    -128,
    -129,
    32767,
    32768,
    -32768,
    -32769,
    65535,
    65536,
    2 ** 31 - 1,
    2 ** 31,
    -(2 ** 31),
    -(2 ** 31) - 1,
    2 ** 32 - 1,
    2 ** 32,
    2 ** 53,
    -(2 ** 53),
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    1.5,
    -1.5,
    0.1,
    1e300,
    5e-324,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
    Infinity,
    -Infinity,
  ];
  for (const n of nums) {
    const back = rt(n);
    assert.ok(Object.is(back, n), `${n} came back as ${String(back)}`);
  }
  assert.ok(Object.is(rt(-0), -0), "-0 keeps its sign");
  assert.ok(Number.isNaN(rt(NaN)));
  // Small ints cost one byte.
  assert.equal(encode(5).length, 1);
  assert.equal(encode(-5).length, 1);
  assert.equal(encode(200).length, 2);
  assert.equal(encode(2 ** 31).length, 5);
});

test("bigints: int64 fast path and arbitrary size", () => {
  const values = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 63n, -(2n ** 63n) - 1n, 2n ** 64n, 2n ** 200n + 12345n, -(3n ** 99n)];
  for (const v of values) assert.equal(rt(v), v);
  assert.equal(encode(42n).length, 9);
});

test("strings: ascii, unicode, emoji, surrogate pairs, long", () => {
  const strs = [
    "hello",
    "x".repeat(31),
    "x".repeat(32),
    "x".repeat(255),
    "x".repeat(70000),
    "héllo wörld",
    "日本語のテキスト",
    "emoji 😀🎉 and 👩‍👩‍👧‍👦",
    "😀".repeat(20),
    "a😀".repeat(100),
    "é".repeat(10),
    "é".repeat(11),
    "é".repeat(31),
    "ascii prefix then ü",
    "long ascii prefix that is more than thirty-two characters then ü",
    "\u0000\u0001\u007f\u0080\u07ff\u0800\uffff",
    "x".repeat(40) + "€".repeat(30),
  ];
  for (const s of strs) assert.equal(rt(s), s, JSON.stringify(s.slice(0, 40)));
  // Lone surrogates cannot be UTF-8: they become U+FFFD, as with Buffer and TextEncoder.
  assert.equal(rt("a\ud800b"), "a\ufffdb");
  assert.equal(rt("x".repeat(100) + "\udc00"), "x".repeat(100) + "\ufffd");
  assert.equal(rt("😀".repeat(40000) + "\ud800"), "😀".repeat(40000) + "\ufffd");
  assert.equal(rt("é".repeat(70000)), "é".repeat(70000));
  assert.equal(encode("abc").length, 4);
});

test("binary: Uint8Array and Buffer are copies of their own type", () => {
  const u = new Uint8Array([1, 2, 3, 250]);
  const back = rt(u) as Uint8Array;
  assert.ok(back instanceof Uint8Array && !Buffer.isBuffer(back));
  assert.deepStrictEqual([...back], [1, 2, 3, 250]);
  const b = Buffer.from("buffer bytes");
  const bb = rt(b) as Buffer;
  assert.ok(Buffer.isBuffer(bb));
  assert.equal(bb.toString(), "buffer bytes");

  // Decoded bytes must not alias the frame they came from.
  const frame = encode({ data: new Uint8Array([7, 7, 7]), buf: Buffer.from([8, 8]) });
  const obj = decode(frame) as { data: Uint8Array; buf: Buffer };
  frame.fill(0);
  assert.deepStrictEqual([...obj.data], [7, 7, 7]);
  assert.deepStrictEqual([...obj.buf], [8, 8]);
  // A subarray view encodes only its own bytes.
  const big = new Uint8Array([0, 1, 2, 3, 4, 5]);
  assert.deepStrictEqual([...(rt(big.subarray(2, 4)) as Uint8Array)], [2, 3]);
});

test("typed arrays, DataView, ArrayBuffer", () => {
  same(new Float64Array([1.5, NaN, -0]));
  same(new Int32Array([1, -2, 3]));
  same(new BigInt64Array([1n, -2n]));
  same(new Uint8ClampedArray([1, 255]));
  const ab = new Uint8Array([9, 8, 7]).buffer;
  assert.deepStrictEqual(new Uint8Array(rt(ab) as ArrayBuffer), new Uint8Array([9, 8, 7]));
  const dv = rt(new DataView(new Uint8Array([1, 2]).buffer)) as DataView;
  assert.ok(dv instanceof DataView && dv.getUint8(1) === 2);
});

test("Date, Map, Set", () => {
  same(new Date(1700000000123));
  assert.ok(Number.isNaN((rt(new Date(NaN)) as Date).getTime()));
  same(
    new Map<unknown, unknown>([
      ["a", 1],
      [2, { x: [1, 2] }],
      [null, new Set([1, "two"])],
    ]),
  );
  same(new Set([1, "a", 3n, null]));
  same(new Map());
  same(new Set());
});

test("arrays: holes become undefined, large arrays", () => {
  // eslint-disable-next-line no-sparse-arrays
  const holes = [1, , 3];
  assert.deepStrictEqual(rt(holes), [1, undefined, 3]);
  const big = Array.from({ length: 100_000 }, (_, i) => (i % 3 === 0 ? i : i % 3 === 1 ? `s${i}` : { i }));
  same(big);
  same([]);
  same(Array.from({ length: 15 }, (_, i) => i));
  same(Array.from({ length: 16 }, (_, i) => i));
});

test("objects: nested, many keys, undefined values kept; class instances refused naming the path", () => {
  same({ a: 1, b: { c: [1, 2, { d: "e" }], f: null, g: undefined }, "weird key!": true, "": 0 });
  const many: Record<string, number> = {};
  for (let i = 0; i < 100; i++) many[`key${i}`] = i;
  same(many);
  class Point {
    constructor(
      public x: number,
      public y: number,
    ) {}
    norm(): number {
      return Math.hypot(this.x, this.y);
    }
  }
  assert.equal(new Point(3, 4).norm(), 5);
  assert.throws(
    () => encodeValues([1, { at: new Point(3, 4) }], new Writer()),
    (err: unknown) =>
      err instanceof CodecError &&
      err.path === "args[1].at" &&
      /an instance of class Point \(only plain data crosses a call/.test(err.message),
  );
  assert.throws(() => encodeValues([new (class {})()], new Writer()), /an instance of class \(anonymous\)/);
  // Null-prototype objects decode as plain objects.
  const np = Object.create(null) as Record<string, number>;
  np.a = 1;
  assert.deepStrictEqual(rt(np), { a: 1 });
  // Errors are not values either: they cross a call when thrown (rpc carries them separately).
  assert.throws(() => rt(Object.assign(new Error("boom"), { code: "E1" })), /an instance of class Error/);
});

test("repeated keys decode to the same values (key cache) and collisions are harmless", () => {
  const rows = Array.from({ length: 1000 }, (_, i) => ({ id: i, name: `n${i}`, email: `e${i}@x`, active: i % 2 === 0 }));
  same(rows);
  // Thousands of distinct short keys overflow the cache: still correct.
  const obj: Record<string, number> = {};
  for (let i = 0; i < 10_000; i++) obj[`k${i}`] = i;
  same(obj);
  same(obj);
  // Same length, different bytes.
  same([{ abcd: 1 }, { abce: 2 }, { abcd: 3 }]);
  // Long keys bypass the cache.
  same({ ["k".repeat(100)]: 1, ["é".repeat(20)]: 2 });
});

test("__proto__ keys from the wire never change the prototype", () => {
  const w = new Writer();
  // Hand-encoded {"__proto__": {"polluted": true}}: fixobj(1), fixstr(9) "__proto__", fixobj(1), "polluted", true.
  w.u8(0xb1);
  const key = Buffer.from("__proto__");
  w.u8(0x80 | key.length);
  for (const b of key) w.u8(b);
  w.u8(0xb1);
  const k2 = Buffer.from("polluted");
  w.u8(0x80 | k2.length);
  for (const b of k2) w.u8(b);
  w.u8(0xc3);
  const o = decode(w.toBuffer()) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(o), Object.prototype);
  assert.deepStrictEqual(Object.getOwnPropertyDescriptor(o, "__proto__")?.value, { polluted: true });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test("encodeValues/decodeValues with a reused writer and offsets", () => {
  const w = new Writer(16); // tiny on purpose: must grow
  w.u32(0xdeadbeef);
  const start = w.pos;
  encodeValues(["a", 1, { b: [2] }], w);
  const mid = w.pos;
  encodeValues([], w);
  const buf = w.toBuffer();
  assert.deepStrictEqual(decodeValues(buf, start, mid), ["a", 1, { b: [2] }]);
  assert.deepStrictEqual(decodeValues(buf, mid, buf.length), []);
  assert.throws(() => decodeValues(encode(5)), CodecError);
  // Reader mixes raw fields and values.
  const r = new Reader(buf, 0, buf.length);
  assert.equal(r.u32(), 0xdeadbeef);
  assert.deepStrictEqual(r.value(), ["a", 1, { b: [2] }]);
  assert.deepStrictEqual(r.value(), []);
  assert.ok(r.done);
  w.reset();
  encodeValues([1], w);
  assert.deepStrictEqual(decodeValues(w.buf, 0, w.pos), [1]);
});

test("functions and symbols are rejected with the path to them", () => {
  const w = new Writer();
  w.u8(0x42);
  assert.throws(
    () => encodeValues([1, { user: { name: "x", callback: () => 1 } }], w),
    (e: unknown) => e instanceof CodecError && e.path === "args[1].user.callback" && /function/.test(e.message),
  );
  assert.equal(w.pos, 1, "a failed encode leaves the writer as it was");
  assert.throws(
    () => encodeValue(w, { list: [1, 2, Symbol("s")] }, "result"),
    (e: unknown) => e instanceof CodecError && e.path === "result.list[2]" && /symbol/.test(e.message),
  );
  assert.throws(
    () => encode({ "odd key": new Map([["k", () => 0]]) }),
    (e: unknown) => e instanceof CodecError && e.path === 'value["odd key"].get("k")',
  );
  assert.throws(
    () => encode(new Set([Symbol.iterator])),
    (e: unknown) => e instanceof CodecError && e.path === "value.<element 0>",
  );
  assert.throws(
    () => encode({ p: Promise.resolve(1) }),
    (e: unknown) => e instanceof CodecError && /Promise/.test(e.message),
  );
});

test("cycles and excessive depth are rejected", () => {
  const a: Record<string, unknown> = { x: 1 };
  a.self = a;
  assert.throws(
    () => encode(a),
    (e: unknown) => e instanceof CodecError && /cyclic/.test(e.message),
  );
  const arr: unknown[] = [];
  arr.push([arr]);
  assert.throws(
    () => encode(arr),
    (e: unknown) => e instanceof CodecError && /cyclic/.test(e.message),
  );
  // A cycle through more than MAX_DEPTH / 2 values is still refused, as too deep a value.
  const ring: Record<string, unknown>[] = Array.from({ length: MAX_DEPTH / 2 + 10 }, (_, i) => ({ i }));
  ring.forEach((o, i) => (o.next = ring[(i + 1) % ring.length]));
  assert.throws(
    () => encode(ring[0]),
    (e: unknown) => e instanceof CodecError && /deeper than 256 levels \(cyclic structure\?\)/.test(e.message),
  );
  // A long chain that ends in a cycle (a linked list with a loop at its end) is named a cycle.
  const chain: Record<string, unknown>[] = Array.from({ length: MAX_DEPTH }, (_, i) => ({ i }));
  chain.forEach((o, i) => (o.next = i + 1 < chain.length ? chain[i + 1] : chain[MAX_DEPTH - 3]));
  assert.throws(
    () => encode(chain[0]),
    (e: unknown) => e instanceof CodecError && /cyclic structure \(value contains itself\)/.test(e.message),
  );
  let deep: unknown = 1;
  for (let i = 0; i < MAX_DEPTH + 5; i++) deep = [deep];
  assert.throws(
    () => encode(deep),
    (e: unknown) => e instanceof CodecError && /deeper/.test(e.message),
  );
  let ok: unknown = 1;
  for (let i = 0; i < MAX_DEPTH - 1; i++) ok = { v: ok };
  same(ok);
  // Shared (non-cyclic) references are fine.
  const shared = { s: 1 };
  same({ a: shared, b: shared, c: [shared, shared] });
});

test("malformed input: deep nesting bomb, unknown tags, trailing bytes", () => {
  assert.throws(() => decode(Buffer.alloc(100_000, 0xa1)), CodecError);
  assert.throws(() => decode(Buffer.from([0xd8])), CodecError);
  assert.throws(() => decode(Buffer.from([1, 2])), CodecError);
  assert.throws(() => decode(Buffer.from([])), CodecError);
  // A huge declared count with few bytes behind it fails fast without allocating.
  assert.throws(() => decode(Buffer.from([0xd0, 0xff, 0xff, 0xff, 0x7f, 1])), CodecError);
  assert.throws(() => decode(Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff])), CodecError);
  // Object keys must be strings.
  assert.throws(() => decode(Buffer.from([0xb1, 0x01, 0x01])), CodecError);
  // Invalid UTF-8 decodes to replacement characters rather than failing.
  assert.equal(decode(Buffer.from([0x82, 0xff, 0xfe])), "\ufffd\ufffd");
});

/** Small deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function decodesOrCodecError(bytes: Uint8Array): void {
  try {
    decode(bytes);
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
  }
}

test("fuzz: random bytes, truncations and bit flips only ever yield CodecError", () => {
  const rand = rng(0xc0dec);
  const sample = encode({
    s: "hello 😀",
    n: [1, -1, 300, 70000, 2 ** 40, 1.5, -0],
    b: [12n, 2n ** 100n],
    m: new Map([[1, new Set(["x"])]]),
    d: new Date(0),
    u: new Uint8Array([1, 2, 3]),
    t: new Float32Array([1, 2]),
    big: "y".repeat(300),
  });
  assert.ok(sample.length > 100);
  // Every truncation of a valid encoding.
  for (let n = 0; n < sample.length; n++) assert.throws(() => decode(sample.subarray(0, n)), CodecError);
  // Random bit flips in a valid encoding.
  for (let i = 0; i < 5000; i++) {
    const copy = Buffer.from(sample);
    const flips = 1 + Math.floor(rand() * 4);
    for (let f = 0; f < flips; f++) {
      const at = Math.floor(rand() * copy.length);
      copy.writeUInt8(copy.readUInt8(at) ^ (1 << Math.floor(rand() * 8)), at);
    }
    decodesOrCodecError(copy);
  }
  // Pure random bytes, biased toward tag bytes so containers and lengths get exercised.
  for (let i = 0; i < 20000; i++) {
    const len = Math.floor(rand() * 64);
    const bytes = new Uint8Array(len);
    for (let j = 0; j < len; j++) bytes[j] = rand() < 0.5 ? 0x80 + Math.floor(rand() * 0x60) : Math.floor(rand() * 256);
    decodesOrCodecError(bytes);
  }
});

test("randomized round trip of generated values", () => {
  const rand = rng(42);
  const gen = (depth: number): unknown => {
    const r = Math.floor(rand() * (depth > 4 ? 8 : 12));
    switch (r) {
      case 0:
        return Math.floor(rand() * 2 ** 32) - 2 ** 31;
      case 1:
        return rand() * 1e6 - 5e5;
      case 2:
        return String.fromCodePoint(
          ...Array.from({ length: Math.floor(rand() * 40) }, () => Math.floor(rand() * 0x2ffff)).filter((c) => c < 0xd800 || c > 0xdfff),
        );
      case 3:
        return rand() < 0.5;
      case 4:
        return null;
      case 5:
        return BigInt(Math.floor(rand() * 2 ** 50)) ** BigInt(1 + Math.floor(rand() * 3)) * (rand() < 0.5 ? -1n : 1n);
      case 6:
        return Math.floor(rand() * 200) - 100;
      case 7:
        return "k" + Math.floor(rand() * 100);
      case 8:
        return Array.from({ length: Math.floor(rand() * 20) }, () => gen(depth + 1));
      case 9: {
        const o: Record<string, unknown> = {};
        for (let i = Math.floor(rand() * 20); i > 0; i--) o["f" + Math.floor(rand() * 30)] = gen(depth + 1);
        return o;
      }
      case 10:
        return new Map(Array.from({ length: Math.floor(rand() * 5) }, () => [gen(depth + 1), gen(depth + 1)] as const));
      default:
        return new Uint8Array(Array.from({ length: Math.floor(rand() * 10) }, () => Math.floor(rand() * 256)));
    }
  };
  for (let i = 0; i < 500; i++) same(gen(0));
});
