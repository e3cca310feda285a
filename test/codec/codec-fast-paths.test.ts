// The codec's speed paths must be invisible: short-string decoding, compiled object shapes (decoder),
// and whatever else only kicks in after a value has been seen a few times.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Writer, decode, encode } from "../../runtime/codec/codec.js";

function rt<T>(v: T): unknown {
  return decode(encode(v));
}

/** Decodes the same bytes `times` times (shapes compile after a few), checking each result. */
function repeatedly(v: unknown, times = 12): void {
  const bytes = encode(v);
  for (let i = 0; i < times; i++) assert.deepStrictEqual(decode(bytes), v, `decode #${i + 1}`);
}

test("strings of every short length, ASCII or not, at every position", () => {
  for (let n = 0; n <= 40; n++) {
    const ascii = Array.from({ length: n }, (_, i) => String.fromCharCode(32 + ((i * 7) % 95))).join("");
    assert.equal(rt(ascii), ascii);
    assert.deepStrictEqual(rt({ [ascii || "k"]: ascii }), { [ascii || "k"]: ascii });
    for (let at = 0; at < n; at += 5) {
      const s = ascii.slice(0, at) + "é" + ascii.slice(at + 1);
      assert.equal(rt(s), s);
      const t = ascii.slice(0, at) + "\u0000\u007f" + ascii.slice(at + 2);
      assert.equal(rt(t), t);
    }
  }
});

test("objects decoded through compiled shapes equal the originals, keep key order and are independent", () => {
  const rows = Array.from({ length: 50 }, (_, i) => ({
    id: i,
    name: `n${i}`,
    price: i + 0.25,
    tags: [`t${i}`],
    extra: i % 3 ? null : undefined,
  }));
  const back = rt(rows) as typeof rows;
  assert.deepStrictEqual(back, rows);
  for (const r of back) {
    assert.deepStrictEqual(Object.keys(r), ["id", "name", "price", "tags", "extra"]);
    assert.equal(Object.getPrototypeOf(r), Object.prototype);
    assert.ok(Object.prototype.hasOwnProperty.call(r, "extra"), "undefined values stay own properties");
  }
  back[0]!.name = "changed";
  back[1]!.tags.push("x");
  assert.deepStrictEqual(rt(rows), rows, "no decoded value aliases another");
  // Integer-like keys are ordered like any object's; the same key set in another order is another shape.
  repeatedly({ b: 1, a: 2, 1: "one", 0: "zero" });
  repeatedly({ a: 2, b: 1 });
  repeatedly({ b: 1, a: 2 });
  const ba = rt({ b: 1, a: 2 }) as object;
  assert.deepStrictEqual(Object.keys(ba), ["b", "a"]);
  // Sizes around the shape limit (32 keys), and the empty object.
  for (const n of [0, 1, 31, 32, 33, 100]) repeatedly(Object.fromEntries(Array.from({ length: n }, (_, i) => [`key${i}`, i])));
});

test("keys that are awkward in JS source are plain data in compiled shapes", () => {
  const keys = [
    '"}; throw new Error("injected"); ({"',
    "\u2028",
    "\u2029",
    'a"b',
    "\\",
    "`${x}`",
    "constructor",
    "toString",
    "hasOwnProperty",
    "__defineGetter__",
    "",
    " ",
    "0x10",
    "-1",
    "1.5",
    "😀",
  ]; // (a lone surrogate becomes U+FFFD by design)
  const o = Object.fromEntries(keys.map((k, i) => [k, i]));
  const bytes = encode(o);
  for (let i = 0; i < 10; i++) {
    const back = decode(bytes) as Record<string, unknown>;
    assert.deepStrictEqual(Object.keys(back).sort(), Object.keys(o).sort());
    for (const k of Object.keys(o)) assert.equal(back[k], o[k]);
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
  }
  for (const k of keys) repeatedly({ [k]: k, z: 1 });
});

test("__proto__ keys stay inert however often the shape repeats", () => {
  // Hand-encoded [{ "__proto__": { polluted: true }, "a": 1 } x 20].
  const w = new Writer();
  w.u8(0xa0 | 15); // fixarray(15)
  for (let i = 0; i < 15; i++) {
    w.u8(0xb2);
    for (const [k, v] of [
      [
        "__proto__",
        () => {
          w.u8(0xb1);
          w.u8(0x80 | 8);
          for (const b of Buffer.from("polluted")) w.u8(b);
          w.u8(0xc3);
        },
      ],
      ["a", () => w.u8(1)],
    ] as const) {
      w.u8(0x80 | k.length);
      for (const b of Buffer.from(k)) w.u8(b);
      v();
    }
  }
  const out = decode(w.toBuffer()) as Record<string, unknown>[];
  assert.equal(out.length, 15);
  for (const o of out) {
    assert.equal(Object.getPrototypeOf(o), Object.prototype);
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(o, "__proto__")?.value, { polluted: true });
    assert.equal(o["a"], 1);
  }
  assert.equal(({} as Record<string, unknown>)["polluted"], undefined);
});

test("duplicate keys on the wire: the last value wins, compiled or not", () => {
  // [{a: 1, a: 2} x 12], hand-encoded (the encoder never writes duplicates).
  const bytes = [0xa0 | 12];
  for (let i = 0; i < 12; i++) bytes.push(0xb2, 0x81, 0x61, 0x01, 0x81, 0x61, 0x02);
  const out = decode(Uint8Array.from(bytes)) as Record<string, unknown>[];
  for (const o of out) assert.deepStrictEqual(o, { a: 2 });
});

test("thousands of distinct shapes (table collisions, compile budget) still decode correctly", () => {
  for (let s = 0; s < 3000; s++) {
    const v = { [`f${s}`]: s, [`g${s % 7}`]: `v${s}`, common: true };
    const bytes = encode([v, v, v, v, v, v]);
    assert.deepStrictEqual(decode(bytes), [v, v, v, v, v, v]);
  }
});

test("encoder shapes: same bytes as the generic path, for every kind of record", () => {
  class Point {
    constructor(
      public x: number,
      public y: number,
    ) {}
    get norm(): number {
      return Math.hypot(this.x, this.y);
    }
  }
  const withGetter = Object.defineProperty({ a: 1 }, "g", { get: () => "got", enumerable: true });
  const proxy = new Proxy({ p: 1, q: "two" }, { get: (t, k) => (k === "q" ? "proxied" : Reflect.get(t, k)) });
  const samples: unknown[] = [
    { id: 1, name: "a", price: 1.5, tags: ["x"] },
    withGetter,
    proxy,
    { 2: "two", 1: "one", b: true, a: false },
    { ["k".repeat(600)]: 1, short: 2 }, // keys too long to compile: generic path
    { '"}; throw 1; //': 1, "\u2028": 2, é: 3, "😀": 4 },
  ];
  for (const v of samples) {
    const first = encode(v);
    for (let i = 0; i < 10; i++) assert.ok(encode(v).equals(first), `encoding #${i + 1} of ${JSON.stringify(v)?.slice(0, 60)} is stable`);
  }
  assert.equal(new Point(3, 4).norm, 5);
  assert.throws(() => encode(new Point(3, 4)), /an instance of class Point/, "class instances are refused, not flattened");
  assert.deepStrictEqual(rt(withGetter), { a: 1, g: "got" });
  assert.deepStrictEqual(rt(proxy), { p: 1, q: "proxied" });
  // Same keys, different values; a key set in another order.
  const mixed = [
    { x: 1, y: 2 },
    { x: 5, y: 6 },
    { y: 7, x: 8 },
    { x: 9, y: 10 },
  ];
  for (let i = 0; i < 6; i++)
    assert.deepStrictEqual(rt(mixed), [
      { x: 1, y: 2 },
      { x: 5, y: 6 },
      { y: 7, x: 8 },
      { x: 9, y: 10 },
    ]);
});

test("encoder shapes: errors name the right path once a shape is compiled", () => {
  const ok = { id: 1, cb: 2, nested: { deep: 3 } };
  for (let i = 0; i < 10; i++) encode(ok);
  assert.throws(
    () => encode({ id: 1, cb: () => 1, nested: { deep: 3 } }),
    (e: Error & { path?: string }) => e.name === "CodecError" && e.path === "value.cb",
  );
  assert.throws(
    () => encode([{ id: 1, cb: 2, nested: { deep: Symbol("s") } }]),
    (e: Error & { path?: string }) => e.name === "CodecError" && e.path === "value[0].nested.deep",
  );
  const cyclic: Record<string, unknown> = { id: 1, cb: 2, nested: { deep: 3 } };
  (cyclic["nested"] as Record<string, unknown>)["deep"] = cyclic;
  assert.throws(() => encode(cyclic), /cyclic/);
  // And the writer is usable afterwards.
  assert.deepStrictEqual(rt(ok), ok);
});

test("thousands of distinct encoder shapes (collisions, compile budget) still encode correctly", () => {
  for (let s = 0; s < 3000; s++) {
    const v = { [`f${s}`]: s, [`g${s % 7}`]: `v${s}`, common: true };
    const arr = [v, v, v, v, v, v];
    assert.deepStrictEqual(rt(arr), arr);
  }
});

test("short arrays (literal fast path) and longer ones decode with every element present, in order", () => {
  for (let n = 0; n <= 7; n++) {
    const a = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? { i } : i % 3 === 1 ? [i, `s${i}`] : undefined));
    const back = rt(a) as unknown[];
    assert.deepStrictEqual(back, a);
    for (let i = 0; i < n; i++) assert.ok(i in back, `element ${i} of ${n} is present`);
    assert.deepStrictEqual(rt([a, a]), [a, a]);
  }
});
