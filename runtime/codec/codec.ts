/**
 * A fast, self-describing binary codec for component call arguments and results.
 *
 * Every value starts with one tag byte. Small integers, short strings, short arrays and small objects
 * carry their value or length in the tag itself, so the common cases cost one byte of overhead.
 * Multi-byte integers and lengths are little-endian.
 *
 * ```
 * 0x00–0x7f  positive fixint 0..127           0xc9  uint32   (4 bytes)
 * 0x80–0x9f  fixstr, 0..31 UTF-8 bytes follow 0xca  float64  (8 bytes; keeps -0, NaN, ±Infinity)
 * 0xa0–0xaf  fixarray, 0..15 values follow    0xcb  bigint64 (8 bytes, two's complement)
 * 0xb0–0xbf  fixobject, 0..15 key/value pairs 0xcc  bigint   (u8 sign, u32 n, n magnitude bytes, big-endian)
 * 0xc0  undefined                             0xcd  str8 / 0xce str16 / 0xcf str32 (length, UTF-8 bytes)
 * 0xc1  null                                  0xd0  array  (u32 count, values)
 * 0xc2  false                                 0xd1  object (u32 count, string key + value pairs)
 * 0xc3  true                                  0xd2  Map    (u32 count, key + value pairs)
 * 0xc4  int8                                  0xd3  Set    (u32 count, values)
 * 0xc5  uint8                                 0xd4  Uint8Array (u32 n, bytes)
 * 0xc6  int16                                 0xd5  Buffer     (u32 n, bytes)
 * 0xc7  uint16                                0xd6  Date   (float64 ms since epoch; NaN for invalid)
 * 0xc8  int32                                 0xd7  other typed array / ArrayBuffer (u8 kind, u32 n, bytes)
 * 0xe0–0xff  negative fixint -32..-1          0xd8–0xdf reserved
 * ```
 *
 * Object keys are always strings (any string tag). Plain objects are encoded as their own enumerable
 * properties; errors are not special (rpc transmits them separately). Class instances (other than the
 * built-ins above), functions, symbols, promises and cycles are rejected with a {@link CodecError}
 * naming the path to the value.
 * The decoder never trusts lengths: every read is bounds-checked, element counts are capped by the bytes
 * left, and nesting is capped at {@link MAX_DEPTH}, so garbage input yields a CodecError, never a hang.
 */

/** Maximum nesting of arrays/objects/maps/sets. Deeper values (and cycles) are rejected. */
export const MAX_DEPTH = 256;

/** Largest bigint magnitude decoded, in bytes (V8 itself caps bigints at 2^30 bits = 128 MiB). */
export const MAX_BIGINT_BYTES = 16 * 1024 * 1024;

/** A value cannot be encoded, or bytes cannot be decoded. */
export class CodecError extends Error {
  override readonly name = "CodecError";
  /** Where in the encoded value the problem is, e.g. `args[1].user.callback` (encode errors only). */
  readonly path: string | undefined;
  constructor(message: string, path?: string) {
    super(message);
    this.path = path;
  }
}

// ---------------------------------------------------------------------------------------------------
// Tags

const T_FIXSTR = 0x80;
const T_FIXARRAY = 0xa0;
const T_FIXOBJ = 0xb0;
const T_UNDEFINED = 0xc0;
const T_NULL = 0xc1;
const T_FALSE = 0xc2;
const T_TRUE = 0xc3;
const T_INT8 = 0xc4;
const T_UINT8 = 0xc5;
const T_INT16 = 0xc6;
const T_UINT16 = 0xc7;
const T_INT32 = 0xc8;
const T_UINT32 = 0xc9;
const T_FLOAT64 = 0xca;
const T_BIGINT64 = 0xcb;
const T_BIGINT = 0xcc;
const T_STR8 = 0xcd;
const T_STR16 = 0xce;
const T_STR32 = 0xcf;
const T_ARRAY = 0xd0;
const T_OBJECT = 0xd1;
const T_MAP = 0xd2;
const T_SET = 0xd3;
const T_BYTES = 0xd4;
const T_BUFFER = 0xd5;
const T_DATE = 0xd6;
const T_TYPED = 0xd7;

/** Typed-array kinds for T_TYPED, by index. DataView and ArrayBuffer round-trip as themselves. */
const TYPED_KINDS = [
  Int8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
] as const;
const KIND_DATAVIEW = 10;
const KIND_ARRAYBUFFER = 11;

// Scratch space to move float64/int64 bits without a DataView per buffer. Byte order is fixed
// little-endian on the wire; on a big-endian host the scratch bytes are reversed.
const scratchF64 = new Float64Array(1);
const scratchI64 = new BigInt64Array(scratchF64.buffer);
const scratch8 = new Uint8Array(scratchF64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Node's native string fast paths (undocumented but stable since v0.x); fall back to portable APIs.
interface NodeStringBuffer {
  utf8Write?(s: string, offset: number, length: number): number;
  utf8Slice?(start: number, end: number): string;
}
const bufferProto = Buffer.prototype as unknown as NodeStringBuffer;
const nativeUtf8Write = bufferProto.utf8Write;
const nativeUtf8Slice = bufferProto.utf8Slice;
const textDecoder = new TextDecoder();

// ---------------------------------------------------------------------------------------------------
// Writer

const INITIAL_WRITER_SIZE = 8192;

/**
 * A growable output buffer. Keep one per connection (or per thread of work) and reuse it across
 * messages: `pos` is the write position and bytes `[0, pos)` are the output so far.
 */
export class Writer {
  /** The backing buffer; replaced (not grown in place) when more room is needed. */
  buf: Buffer;
  /** Number of bytes written so far. */
  pos = 0;

  constructor(initialSize = INITIAL_WRITER_SIZE) {
    this.buf = Buffer.allocUnsafe(Math.max(16, initialSize));
  }

  /** Makes sure `n` more bytes fit after `pos`. */
  ensure(n: number): void {
    if (this.pos + n > this.buf.length) this.grow(n);
  }

  private grow(n: number): void {
    const size = Math.max(this.buf.length * 2, this.pos + n);
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** Forgets everything written (keeps the buffer for reuse). */
  reset(): void {
    this.pos = 0;
  }

  /** A copy of the bytes written so far. */
  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }

  /** Appends one byte. */
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  /** Appends a little-endian u32. */
  u32(v: number): void {
    this.ensure(4);
    writeU32(this.buf, this.pos, v);
    this.pos += 4;
  }

  /** Overwrites a little-endian u32 at `at` (for length prefixes written after the body). */
  patchU32(at: number, v: number): void {
    writeU32(this.buf, at, v);
  }
}

function writeU32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v;
  buf[at + 1] = v >>> 8;
  buf[at + 2] = v >>> 16;
  buf[at + 3] = v >>> 24;
}

// ---------------------------------------------------------------------------------------------------
// Encoding

/** Internal: an encode failure on its way up the recursion, collecting the path as it goes. */
class PathError extends Error {
  readonly segments: string[] = [];
}

/**
 * Ancestors of the value being encoded, by depth, from {@link CYCLE_WATCH_DEPTH} on: only read at
 * {@link MAX_DEPTH} to tell a cycle (of up to MAX_DEPTH - CYCLE_WATCH_DEPTH values) from deep nesting.
 * Shallower values are not recorded: storing them into this long-lived array would, while V8 marks the
 * old generation, mark every encoded graph live and get it promoted (see readObject).
 */
const ancestors: unknown[] = [];
const CYCLE_WATCH_DEPTH = MAX_DEPTH / 2;

/**
 * Appends one value to `w`. On failure `w` is left as it was and a {@link CodecError} naming the path
 * (starting with `root`) is thrown.
 */
export function encodeValue(w: Writer, value: unknown, root = "value"): void {
  const start = w.pos;
  try {
    enc(w, value, 0);
  } catch (err) {
    w.pos = start;
    throw finishError(err, root);
  } finally {
    ancestors.length = 0;
  }
}

/** Appends call arguments (or any list) to `w` as one array value; paths in errors start with `root`. */
export function encodeValues(values: readonly unknown[], w: Writer, root = "args"): void {
  encodeValue(w, values, root);
}

const sharedWriter = new Writer(64 * 1024);

/** Encodes one value into a fresh buffer. */
export function encode(value: unknown): Buffer {
  sharedWriter.reset();
  encodeValue(sharedWriter, value, "value");
  const out = sharedWriter.toBuffer();
  // Don't keep a huge buffer alive because of one big value.
  if (sharedWriter.buf.length > 1 << 20) sharedWriter.buf = Buffer.allocUnsafe(64 * 1024);
  sharedWriter.reset();
  return out;
}

function finishError(err: unknown, root: string): unknown {
  if (!(err instanceof PathError)) return err;
  let path = root;
  for (let i = err.segments.length - 1; i >= 0; i--) path += err.segments[i];
  return new CodecError(`cannot encode ${err.message} at ${path}`, path);
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function keySegment(key: string): string {
  return IDENT.test(key) ? "." + key : "[" + JSON.stringify(key) + "]";
}

function mapKeySegment(key: unknown, index: number): string {
  if (typeof key === "string") return `.get(${JSON.stringify(key)})`;
  if (typeof key === "number" || typeof key === "boolean") return `.get(${String(key)})`;
  return `.<entry ${index}>`;
}

function annotate(err: unknown, segment: string): unknown {
  if (err instanceof PathError) err.segments.push(segment);
  return err;
}

function enc(w: Writer, v: unknown, depth: number): void {
  switch (typeof v) {
    case "string":
      encString(w, v);
      return;
    case "number":
      encNumber(w, v);
      return;
    case "boolean":
      w.ensure(1);
      w.buf[w.pos++] = v ? T_TRUE : T_FALSE;
      return;
    case "undefined":
      w.ensure(1);
      w.buf[w.pos++] = T_UNDEFINED;
      return;
    case "object":
      if (v === null) {
        w.ensure(1);
        w.buf[w.pos++] = T_NULL;
      } else {
        encObject(w, v, depth);
      }
      return;
    case "bigint":
      encBigInt(w, v);
      return;
    case "function":
      throw new PathError(`a function${v.name ? ` (${v.name})` : ""}`);
    case "symbol":
      throw new PathError(`a symbol (${v.toString()})`);
  }
}

function encNumber(w: Writer, v: number): void {
  w.ensure(9);
  const buf = w.buf;
  let p = w.pos;
  if ((v | 0) === v) {
    if (v === 0 && 1 / v < 0) {
      // -0 === 0 and (-0 | 0) === 0: only a float keeps the sign.
      buf[p] = T_FLOAT64;
      writeF64(buf, p + 1, v);
      w.pos = p + 9;
      return;
    }
    if (v >= -32 && v < 128) {
      buf[p] = v & 0xff;
      w.pos = p + 1;
    } else if (v >= -128 && v < 128) {
      buf[p] = T_INT8;
      buf[p + 1] = v & 0xff;
      w.pos = p + 2;
    } else if (v >= 0 && v < 256) {
      buf[p] = T_UINT8;
      buf[p + 1] = v;
      w.pos = p + 2;
    } else if (v >= -32768 && v < 32768) {
      buf[p++] = T_INT16;
      buf[p++] = v;
      buf[p++] = v >> 8;
      w.pos = p;
    } else if (v >= 0 && v < 65536) {
      buf[p++] = T_UINT16;
      buf[p++] = v;
      buf[p++] = v >> 8;
      w.pos = p;
    } else {
      buf[p] = T_INT32;
      writeU32(buf, p + 1, v);
      w.pos = p + 5;
    }
  } else if (v >>> 0 === v) {
    buf[p] = T_UINT32;
    writeU32(buf, p + 1, v);
    w.pos = p + 5;
  } else {
    buf[p] = T_FLOAT64;
    writeF64(buf, p + 1, v);
    w.pos = p + 9;
  }
}

function writeF64(buf: Uint8Array, at: number, v: number): void {
  scratchF64[0] = v;
  copyScratchOut(buf, at);
}

function copyScratchOut(buf: Uint8Array, at: number): void {
  if (LITTLE_ENDIAN) {
    buf[at] = scratch8[0]!;
    buf[at + 1] = scratch8[1]!;
    buf[at + 2] = scratch8[2]!;
    buf[at + 3] = scratch8[3]!;
    buf[at + 4] = scratch8[4]!;
    buf[at + 5] = scratch8[5]!;
    buf[at + 6] = scratch8[6]!;
    buf[at + 7] = scratch8[7]!;
  } else {
    for (let i = 0; i < 8; i++) buf[at + i] = scratch8[7 - i]!;
  }
}

function encBigInt(w: Writer, v: bigint): void {
  if (BigInt.asIntN(64, v) === v) {
    w.ensure(9);
    w.buf[w.pos] = T_BIGINT64;
    scratchI64[0] = v;
    copyScratchOut(w.buf, w.pos + 1);
    w.pos += 9;
    return;
  }
  const neg = v < 0n;
  let hex = (neg ? -v : v).toString(16);
  if (hex.length & 1) hex = "0" + hex;
  const n = hex.length >>> 1;
  w.ensure(6 + n);
  const buf = w.buf;
  let p = w.pos;
  buf[p++] = T_BIGINT;
  buf[p++] = neg ? 1 : 0;
  writeU32(buf, p, n);
  p += 4;
  buf.write(hex, p, n, "hex");
  w.pos = p + n;
}

/** Writes a string value. Short ASCII strings take a pure-JS path; long ones use the native UTF-8 writer. */
function encString(w: Writer, s: string): void {
  const len = s.length;
  if (len < 32) {
    w.ensure(2 + len * 3);
    const buf = w.buf;
    const start = w.pos;
    let p = start + 1;
    let i = 0;
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[p++] = c;
    }
    if (i === len) {
      buf[start] = T_FIXSTR | len;
      w.pos = p;
      return;
    }
    if (len * 3 < 32) {
      // Still fits a fixstr whatever the encoding: continue in place after the ASCII prefix.
      p = utf8WriteJs(buf, p, s, i);
      buf[start] = T_FIXSTR | (p - start - 1);
      w.pos = p;
      return;
    }
    // Needs a str8 header: move the ASCII prefix one byte right to make room for the length.
    buf.copyWithin(start + 2, start + 1, start + 1 + i);
    p = utf8WriteJs(buf, start + 2 + i, s, i);
    buf[start] = T_STR8;
    buf[start + 1] = p - start - 2;
    w.pos = p;
    return;
  }
  // Reserve the worst case (3 bytes per UTF-16 unit) and patch the length after writing; for big strings
  // measure exactly instead, so a 100 MB string does not reserve 300 MB.
  const max = len < 65536 ? len * 3 : Buffer.byteLength(s, "utf8");
  const header = max < 256 ? 2 : max < 65536 ? 3 : 5;
  w.ensure(header + max);
  const buf = w.buf;
  const start = w.pos;
  const at = start + header;
  const n = len < 64 ? utf8WriteJs(buf, at, s, 0) - at : writeUtf8Native(buf, s, at, max);
  if (header === 2) {
    buf[start] = T_STR8;
    buf[start + 1] = n;
  } else if (header === 3) {
    buf[start] = T_STR16;
    buf[start + 1] = n;
    buf[start + 2] = n >>> 8;
  } else {
    buf[start] = T_STR32;
    writeU32(buf, start + 1, n);
  }
  w.pos = at + n;
}

function writeUtf8Native(buf: Buffer, s: string, at: number, max: number): number {
  return nativeUtf8Write !== undefined ? nativeUtf8Write.call(buf, s, at, max) : buf.write(s, at, max, "utf8");
}

/** UTF-8 encodes `s` from char `i` at `p`; lone surrogates become U+FFFD like Buffer/TextEncoder do. */
function utf8WriteJs(buf: Uint8Array, p: number, s: string, i: number): number {
  const len = s.length;
  for (; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      buf[p++] = c;
    } else if (c < 0x800) {
      buf[p++] = 0xc0 | (c >> 6);
      buf[p++] = 0x80 | (c & 0x3f);
    } else if (c < 0xd800 || c > 0xdfff) {
      buf[p++] = 0xe0 | (c >> 12);
      buf[p++] = 0x80 | ((c >> 6) & 0x3f);
      buf[p++] = 0x80 | (c & 0x3f);
    } else {
      const d = c <= 0xdbff && i + 1 < len ? s.charCodeAt(i + 1) : 0;
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        buf[p++] = 0xf0 | (cp >> 18);
        buf[p++] = 0x80 | ((cp >> 12) & 0x3f);
        buf[p++] = 0x80 | ((cp >> 6) & 0x3f);
        buf[p++] = 0x80 | (cp & 0x3f);
      } else {
        buf[p++] = 0xef;
        buf[p++] = 0xbf;
        buf[p++] = 0xbd;
      }
    }
  }
  return p;
}

function writeHeader(w: Writer, fixBase: number, longTag: number, n: number): void {
  w.ensure(5);
  if (n < 16) {
    w.buf[w.pos++] = fixBase | n;
  } else {
    w.buf[w.pos] = longTag;
    writeU32(w.buf, w.pos + 1, n);
    w.pos += 5;
  }
}

/** Writes `tag` + u32 `n`, reserving room for `reserve` more bytes after it. */
function writeLenTag(w: Writer, tag: number, n: number, reserve = 0): void {
  w.ensure(5 + reserve);
  w.buf[w.pos] = tag;
  writeU32(w.buf, w.pos + 1, n);
  w.pos += 5;
}

function writeRaw(w: Writer, src: Uint8Array): void {
  w.buf.set(src, w.pos);
  w.pos += src.length;
}

function encObject(w: Writer, o: object, depth: number): void {
  if (depth >= CYCLE_WATCH_DEPTH) {
    if (depth >= MAX_DEPTH) {
      for (let i = CYCLE_WATCH_DEPTH; i < depth; i++) {
        if (ancestors[i] === o) throw new PathError("a cyclic structure (value contains itself)");
      }
      throw new PathError(`a value nested deeper than ${MAX_DEPTH} levels (cyclic structure?)`);
    }
    ancestors[depth] = o;
  }
  const d = depth + 1;
  if (Array.isArray(o)) {
    const n = o.length;
    writeHeader(w, T_FIXARRAY, T_ARRAY, n);
    let i = 0;
    try {
      for (; i < n; i++) enc(w, o[i], d);
    } catch (err) {
      throw annotate(err, `[${i}]`);
    }
    return;
  }
  const proto: unknown = Object.getPrototypeOf(o);
  if (proto === Object.prototype || proto === null) {
    encPlain(w, o as Record<string, unknown>, d);
  } else if (o instanceof Uint8Array) {
    writeLenTag(w, o instanceof Buffer ? T_BUFFER : T_BYTES, o.length, o.length);
    writeRaw(w, o);
  } else if (o instanceof Date) {
    w.ensure(9);
    w.buf[w.pos] = T_DATE;
    writeF64(w.buf, w.pos + 1, o.getTime());
    w.pos += 9;
  } else if (o instanceof Map) {
    writeLenTag(w, T_MAP, o.size);
    let i = 0;
    let key: unknown;
    try {
      for (const [k, v] of o as Map<unknown, unknown>) {
        key = k;
        enc(w, k, d);
        enc(w, v, d);
        i++;
      }
    } catch (err) {
      throw annotate(err, mapKeySegment(key, i));
    }
  } else if (o instanceof Set) {
    writeLenTag(w, T_SET, o.size);
    let i = 0;
    try {
      for (const v of o as Set<unknown>) {
        enc(w, v, d);
        i++;
      }
    } catch (err) {
      throw annotate(err, `.<element ${i}>`);
    }
  } else if (ArrayBuffer.isView(o)) {
    encTyped(w, o);
  } else if (o instanceof ArrayBuffer) {
    encTypedBytes(w, KIND_ARRAYBUFFER, new Uint8Array(o));
  } else if (o instanceof Promise) {
    throw new PathError("a Promise (missing await?)");
  } else if (o instanceof WeakMap || o instanceof WeakSet) {
    throw new PathError(`a ${o.constructor.name}`);
  } else {
    // A class instance would arrive without its prototype and methods: refused rather than silently
    // changed, so that a value means the same on both sides of a call.
    const cls = (o as { constructor?: { name?: unknown } }).constructor?.name;
    throw new PathError(
      `an instance of class ${typeof cls === "string" && cls !== "" ? cls : "(anonymous)"} (only plain data crosses a call: plain objects, arrays, Map, Set, Date, typed arrays; pass its fields, e.g. { ...value })`,
    );
  }
}

function encPlain(w: Writer, o: Record<string, unknown>, d: number): void {
  const keys = Object.keys(o);
  const n = keys.length;
  if (n > 0 && n <= ENC_SHAPE_MAX_KEYS) {
    const fn = encoderFor(keys, n);
    if (fn !== undefined) {
      fn(w, o, d);
      return;
    }
  }
  writeHeader(w, T_FIXOBJ, T_OBJECT, n);
  let i = 0;
  try {
    for (; i < n; i++) {
      const k = keys[i]!;
      encString(w, k);
      enc(w, o[k], d);
    }
  } catch (err) {
    throw annotate(err, keySegment(keys[i]!));
  }
}

// Encoder shapes: the mirror of the decoder's. Writing an object generically costs, per property, a
// megamorphic keyed load (`o[k]` with k only known at run time) and encoding the key string. Once a key
// sequence has been seen a few times, a function is compiled that writes the header and the keys' bytes
// as constants and reads each property by a constant name (a fast, monomorphic load for records of one
// class or literal). Sequences are found in a small direct-mapped table by a cheap hash of the keys, then
// compared key by key. Same bytes out as the generic path; same error paths.
type ShapeEncoder = (w: Writer, o: Record<string, unknown>, d: number) => void;
const ENC_SHAPE_MAX_KEYS = 32;
/** Keys longer than this in total (encoded) are not worth compiling into constants. */
const ENC_SHAPE_MAX_KEY_BYTES = 512;
const ENC_SHAPE_TABLE_SIZE = 1024;
const ENC_SHAPE_COMPILE_AFTER = 4;
interface EncShape {
  readonly keys: string[];
  hits: number;
  fn: ShapeEncoder | undefined;
}
const encShapes = new Array<EncShape | undefined>(ENC_SHAPE_TABLE_SIZE).fill(undefined);
let encShapeCompileBudget = 4096;

function encoderFor(keys: string[], n: number): ShapeEncoder | undefined {
  let h = n;
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    const len = k.length;
    // charCodeAt past the end is NaN, which `|` turns into 0.
    h = Math.imul(h ^ ((len << 16) | (k.charCodeAt(0) << 8) | k.charCodeAt(len - 1)), 0x9e3779b1);
  }
  const slot = h >>> 22; // top 10 bits = ENC_SHAPE_TABLE_SIZE slots
  const shape = encShapes[slot];
  if (shape === undefined || !sameKeys(shape.keys, keys, n)) {
    encShapes[slot] = { keys, hits: 1, fn: undefined };
    return undefined;
  }
  if (shape.fn === undefined && ++shape.hits >= ENC_SHAPE_COMPILE_AFTER) {
    shape.fn = compileEncoder(shape.keys);
    shape.hits = -Infinity; // compiled or refused: don't try again
  }
  return shape.fn;
}

function compileEncoder(keys: readonly string[]): ShapeEncoder | undefined {
  if (encShapeCompileBudget <= 0) return undefined;
  // The bytes the generic path writes for the header and for each key.
  const scratch = new Writer(64);
  writeHeader(scratch, T_FIXOBJ, T_OBJECT, keys.length);
  const header = [...scratch.buf.subarray(0, scratch.pos)];
  const keyBytes = keys.map((k) => {
    scratch.reset();
    encString(scratch, k);
    return [...scratch.buf.subarray(0, scratch.pos)];
  });
  if (keyBytes.reduce((t, b) => t + b.length, 0) > ENC_SHAPE_MAX_KEY_BYTES) return undefined;
  encShapeCompileBudget--;
  const put = (bytes: number[]): string =>
    `w.ensure(${bytes.length}); b = w.buf; p = w.pos; ${bytes.map((x, j) => `b[p + ${j}] = ${x};`).join(" ")} w.pos = p + ${bytes.length};`;
  const lines = [`let i = 0, b, p;`, `try {`, `  ${put(header.concat(keyBytes[0]!))}`];
  keys.forEach((k, i) => {
    if (i > 0) lines.push(`  i = ${i}; ${put(keyBytes[i]!)}`);
    // JSON.stringify makes every key a valid JS string literal, whatever its characters.
    lines.push(`  enc(w, o[${JSON.stringify(k)}], d);`);
  });
  lines.push(`} catch (err) {`, `  throw annotate(err, keySegment(keys[i]));`, `}`);
  try {
    const factory = new Function("enc", "annotate", "keySegment", "keys", `return function (w, o, d) {\n${lines.join("\n")}\n};`) as (
      ...a: unknown[]
    ) => ShapeEncoder;
    return factory(enc, annotate, keySegment, keys);
  } catch {
    encShapeCompileBudget = 0; // e.g. node --disallow-code-generation-from-strings
    return undefined;
  }
}

function encTyped(w: Writer, v: ArrayBufferView): void {
  const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof DataView) {
    encTypedBytes(w, KIND_DATAVIEW, bytes);
    return;
  }
  for (let k = 0; k < TYPED_KINDS.length; k++) {
    if (v instanceof TYPED_KINDS[k]!) {
      encTypedBytes(w, k, bytes);
      return;
    }
  }
  throw new PathError(`an unsupported binary view (${v.constructor.name})`);
}

function encTypedBytes(w: Writer, kind: number, bytes: Uint8Array): void {
  w.ensure(6 + bytes.length);
  w.buf[w.pos] = T_TYPED;
  w.buf[w.pos + 1] = kind;
  writeU32(w.buf, w.pos + 2, bytes.length);
  w.pos += 6;
  writeRaw(w, bytes);
}

// ---------------------------------------------------------------------------------------------------
// Decoding
//
// Decoder state lives in module variables rather than an object: decoding runs no user code, so it
// cannot be re-entered, and plain variables are the cheapest state V8 offers. `var`, not `let`, because
// V8 does not elide the temporal-dead-zone check on module `let`s read from functions (~10% slower).

/* eslint-disable no-var */
var src: Uint8Array = new Uint8Array(0);
var pos = 0;
var end = 0;
/** Allocation cost charged so far (see {@link charge}). */
var charged = 0;
/** Values allocated so far (see {@link MAX_DECODED_VALUES}). */
var allocated = 0;
/** `pos - budgetBase` is what may be charged: the bytes read so far plus {@link DECODE_SLACK}. */
var budgetBase = 0;
/* eslint-enable no-var */

// Decode cost bounded by input size. Every value the decoder allocates is charged an estimate of its
// heap and time cost, in input bytes; at every point the charges must not exceed the bytes read so far
// plus a slack. A value whose containers average fewer bytes of input than they cost (a flood of empty
// objects or typed arrays: ~50-200 heap bytes and a GC cost per input byte) is refused within the first
// few thousand, before it can allocate gigabytes, while real data (records, strings, numbers) never
// comes near the limit. Small values pass whatever their shape, thanks to the slack.
/** Charges allowed beyond the bytes read: any value of up to ~8,000 containers decodes whatever its size. */
const DECODE_SLACK = 64 * 1024;
/** Cost of an array or plain object (a JS object header). */
const COST_CONTAINER = 8;
/**
 * Cost of an array's element slot (8 heap bytes, and copied by every GC that moves the array): without
 * it, millions of short arrays of one-byte elements (8 input bytes for ~100 heap bytes each) decode
 * within budget but take seconds. Object properties are not charged: objects of known shapes are built
 * in one allocation, several times faster per property.
 */
const COST_SLOT = 1;
/** Cost of a string of 2 or more characters (shorter ones are shared constants); keys are interned, free. */
const COST_STRING = 4;
/** Cost of a Date, a bigint. */
const COST_BOXED = 12;
/** Cost of a Map, a Set, a typed array, an ArrayBuffer or a Buffer (each well over 100 heap bytes). */
const COST_HEAVY = 32;

/**
 * Objects, arrays, strings and boxed values one decode may allocate, whatever its density (524,288).
 * Their cost is mostly the garbage collector's (each is copied as it survives the young generation): a
 * million dense small records take a 16 MiB frame to a second of CPU on a loaded 2-core machine, half a
 * million about half that. Half a million records of any size still decode (gRPC's default 4 MiB
 * message holds fewer), and bulk data goes as typed arrays, bytes or strings, which count one each.
 */
export const MAX_DECODED_VALUES = 1 << 19;

/** Starts a decode of the value at `pos`: a fresh allocation budget. */
function startBudget(): void {
  charged = 0;
  allocated = 0;
  budgetBase = pos - DECODE_SLACK;
}

/** Charges `cost` for a value about to be allocated; refuses the input once it costs more than it brought. */
function charge(cost: number): void {
  if ((charged += cost) > pos - budgetBase) throw overBudget();
  // Every charge but an array slot's is one allocated value.
  if (cost !== COST_SLOT && ++allocated > MAX_DECODED_VALUES) throw tooManyValues();
}

function tooManyValues(): CodecError {
  return new CodecError(
    `input decodes to more than ${MAX_DECODED_VALUES.toLocaleString("en-US")} objects, arrays and strings (at byte ${pos}); ` +
      `send bulk data as typed arrays, bytes or strings, or split it over several calls`,
  );
}

function overBudget(): CodecError {
  return new CodecError(
    `input decodes to more objects than its size allows (at byte ${pos}: ${charged} bytes of allocation charged for ` +
      `${pos - budgetBase - DECODE_SLACK} bytes read); send many small values as typed arrays, strings or fewer, larger records`,
  );
}

/**
 * A cursor over received bytes, for protocols that mix their own fields with codec values.
 * `pos` advances as fields are read; every read is bounds-checked against `end`.
 */
export class Reader {
  /** The bytes being read. */
  buf: Uint8Array;
  /** Next byte to read. */
  pos: number;
  /** One past the last readable byte. */
  end: number;

  constructor(buf: Uint8Array, offset = 0, end = buf.length) {
    this.buf = buf;
    this.pos = offset;
    this.end = end;
  }

  /** Reads one byte. */
  u8(): number {
    if (this.pos >= this.end) throw truncated();
    return this.buf[this.pos++]!;
  }

  /** Reads a little-endian u32. */
  u32(): number {
    const p = this.pos;
    if (p + 4 > this.end) throw truncated();
    const b = this.buf;
    this.pos = p + 4;
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)) + b[p + 3]! * 0x1000000;
  }

  /** Decodes one codec value. */
  value(): unknown {
    src = this.buf;
    pos = this.pos;
    end = this.end;
    startBudget();
    try {
      const v = dec(0);
      this.pos = pos;
      return v;
    } finally {
      src = EMPTY;
    }
  }

  /** True when every byte has been read. */
  get done(): boolean {
    return this.pos >= this.end;
  }
}

const EMPTY = new Uint8Array(0);

/** Decodes one value that must span exactly `bytes`. */
export function decode(bytes: Uint8Array): unknown {
  return decodeExact(bytes, 0, bytes.length);
}

/** Decodes an argument list written by {@link encodeValues}, spanning exactly `[offset, end)`. */
export function decodeValues(buf: Uint8Array, offset = 0, endAt = buf.length): unknown[] {
  const v = decodeExact(buf, offset, endAt);
  if (!Array.isArray(v)) throw new CodecError("expected an argument list (array)");
  return v;
}

function decodeExact(buf: Uint8Array, offset: number, endAt: number): unknown {
  if (offset < 0 || endAt > buf.length || offset > endAt) throw new CodecError("decode range out of bounds");
  src = buf;
  pos = offset;
  end = endAt;
  startBudget();
  try {
    const v = dec(0);
    if (pos !== end) throw new CodecError(`${end - pos} trailing bytes after value`);
    return v;
  } finally {
    src = EMPTY;
  }
}

function truncated(): CodecError {
  return new CodecError("truncated input");
}

function need(n: number): void {
  if (pos + n > end) throw truncated();
}

function readU16(): number {
  need(2);
  const v = src[pos]! | (src[pos + 1]! << 8);
  pos += 2;
  return v;
}

function readU32(): number {
  need(4);
  const p = pos;
  pos = p + 4;
  return (src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16)) + src[p + 3]! * 0x1000000;
}

/**
 * Reads a count of items that each take at least `minSize` bytes (a value: 1, a key + value pair: 2),
 * checked against the bytes left before anything is allocated for them.
 */
function readCount(minSize: number): number {
  const n = readU32();
  if (n * minSize > end - pos) throw truncated();
  return n;
}

function copyScratchIn(): void {
  need(8);
  if (LITTLE_ENDIAN) {
    for (let i = 0; i < 8; i++) scratch8[i] = src[pos + i]!;
  } else {
    for (let i = 0; i < 8; i++) scratch8[7 - i] = src[pos + i]!;
  }
  pos += 8;
}

function readF64(): number {
  copyScratchIn();
  return scratchF64[0]!;
}

function dec(depth: number): unknown {
  if (pos >= end) throw truncated();
  const t = src[pos++]!;
  if (t < 0x80) return t;
  if (t >= 0xe0) return t - 0x100;
  if (t < T_FIXARRAY) return readStr(t & 0x1f);
  if (t < T_FIXOBJ) return readArray(t & 0x0f, depth);
  if (t < T_UNDEFINED) return readObject(t & 0x0f, depth);
  switch (t) {
    case T_UNDEFINED:
      return undefined;
    case T_NULL:
      return null;
    case T_FALSE:
      return false;
    case T_TRUE:
      return true;
    // Integer reads are inlined: a helper call per value measurably slows number-heavy payloads.
    case T_INT8:
      if (pos >= end) throw truncated();
      return (src[pos++]! << 24) >> 24;
    case T_UINT8:
      if (pos >= end) throw truncated();
      return src[pos++]!;
    case T_INT16: {
      const p = pos;
      if (p + 2 > end) throw truncated();
      pos = p + 2;
      return ((src[p]! | (src[p + 1]! << 8)) << 16) >> 16;
    }
    case T_UINT16: {
      const p = pos;
      if (p + 2 > end) throw truncated();
      pos = p + 2;
      return src[p]! | (src[p + 1]! << 8);
    }
    case T_INT32: {
      const p = pos;
      if (p + 4 > end) throw truncated();
      pos = p + 4;
      return src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24);
    }
    case T_UINT32:
      return readU32();
    case T_FLOAT64:
      return readF64();
    case T_BIGINT64:
      charge(COST_BOXED);
      copyScratchIn();
      return scratchI64[0]!;
    case T_BIGINT:
      return readBigInt();
    case T_STR8:
      need(1);
      return readStr(src[pos++]!);
    case T_STR16:
      return readStr(readU16());
    case T_STR32:
      return readStr(readU32());
    case T_ARRAY:
      return readArray(readCount(1), depth);
    case T_OBJECT:
      return readObject(readCount(2), depth);
    case T_MAP:
      return readMap(readCount(2), depth);
    case T_SET:
      return readSet(readCount(1), depth);
    case T_BYTES:
      return readBytes(false);
    case T_BUFFER:
      return readBytes(true);
    case T_DATE:
      charge(COST_BOXED);
      return new Date(readF64());
    case T_TYPED:
      return readTyped();
    default:
      throw new CodecError(`unknown tag 0x${t.toString(16)} at byte ${pos - 1}`);
  }
}

function readStr(n: number): string {
  need(n);
  if (n > 1) charge(COST_STRING);
  const start = pos;
  const stop = start + n;
  pos = stop;
  if (n <= 16) {
    for (let i = start; i < stop; i++) if (src[i]! >= 0x80) return utf8Slice(start, stop);
    return asciiStr(src, start, n);
  }
  return utf8Slice(start, stop);
}

const fromCharCode = String.fromCharCode;

/**
 * `n` (<= 16) ASCII bytes at `p` as a string. One String.fromCharCode call makes the flat string directly,
 * about twice as fast as a concatenation loop or a native slice (a C++ call) at these lengths; from about
 * 20 bytes on, the native slice wins.
 */
function asciiStr(b: Uint8Array, p: number, n: number): string {
  switch (n) {
    case 0:
      return "";
    case 1:
      return fromCharCode(b[p]!);
    case 2:
      return fromCharCode(b[p]!, b[p + 1]!);
    case 3:
      return fromCharCode(b[p]!, b[p + 1]!, b[p + 2]!);
    case 4:
      return fromCharCode(b[p]!, b[p + 1]!, b[p + 2]!, b[p + 3]!);
    case 5:
      return fromCharCode(b[p]!, b[p + 1]!, b[p + 2]!, b[p + 3]!, b[p + 4]!);
    case 6:
      return fromCharCode(b[p]!, b[p + 1]!, b[p + 2]!, b[p + 3]!, b[p + 4]!, b[p + 5]!);
    case 7:
      return fromCharCode(b[p]!, b[p + 1]!, b[p + 2]!, b[p + 3]!, b[p + 4]!, b[p + 5]!, b[p + 6]!);
    case 8:
      return fromCharCode(b[p]!, b[p + 1]!, b[p + 2]!, b[p + 3]!, b[p + 4]!, b[p + 5]!, b[p + 6]!, b[p + 7]!);
    case 9:
      return fromCharCode(b[p]!, b[p + 1]!, b[p + 2]!, b[p + 3]!, b[p + 4]!, b[p + 5]!, b[p + 6]!, b[p + 7]!, b[p + 8]!);
    case 10:
      return fromCharCode(b[p]!, b[p + 1]!, b[p + 2]!, b[p + 3]!, b[p + 4]!, b[p + 5]!, b[p + 6]!, b[p + 7]!, b[p + 8]!, b[p + 9]!);
    case 11:
      return fromCharCode(
        b[p]!,
        b[p + 1]!,
        b[p + 2]!,
        b[p + 3]!,
        b[p + 4]!,
        b[p + 5]!,
        b[p + 6]!,
        b[p + 7]!,
        b[p + 8]!,
        b[p + 9]!,
        b[p + 10]!,
      );
    case 12:
      return fromCharCode(
        b[p]!,
        b[p + 1]!,
        b[p + 2]!,
        b[p + 3]!,
        b[p + 4]!,
        b[p + 5]!,
        b[p + 6]!,
        b[p + 7]!,
        b[p + 8]!,
        b[p + 9]!,
        b[p + 10]!,
        b[p + 11]!,
      );
    case 13:
      return fromCharCode(
        b[p]!,
        b[p + 1]!,
        b[p + 2]!,
        b[p + 3]!,
        b[p + 4]!,
        b[p + 5]!,
        b[p + 6]!,
        b[p + 7]!,
        b[p + 8]!,
        b[p + 9]!,
        b[p + 10]!,
        b[p + 11]!,
        b[p + 12]!,
      );
    case 14:
      return fromCharCode(
        b[p]!,
        b[p + 1]!,
        b[p + 2]!,
        b[p + 3]!,
        b[p + 4]!,
        b[p + 5]!,
        b[p + 6]!,
        b[p + 7]!,
        b[p + 8]!,
        b[p + 9]!,
        b[p + 10]!,
        b[p + 11]!,
        b[p + 12]!,
        b[p + 13]!,
      );
    case 15:
      return fromCharCode(
        b[p]!,
        b[p + 1]!,
        b[p + 2]!,
        b[p + 3]!,
        b[p + 4]!,
        b[p + 5]!,
        b[p + 6]!,
        b[p + 7]!,
        b[p + 8]!,
        b[p + 9]!,
        b[p + 10]!,
        b[p + 11]!,
        b[p + 12]!,
        b[p + 13]!,
        b[p + 14]!,
      );
    case 16:
      return fromCharCode(
        b[p]!,
        b[p + 1]!,
        b[p + 2]!,
        b[p + 3]!,
        b[p + 4]!,
        b[p + 5]!,
        b[p + 6]!,
        b[p + 7]!,
        b[p + 8]!,
        b[p + 9]!,
        b[p + 10]!,
        b[p + 11]!,
        b[p + 12]!,
        b[p + 13]!,
        b[p + 14]!,
        b[p + 15]!,
      );
    default:
      throw new Error("asciiStr: length over 16");
  }
}

function utf8Slice(start: number, stop: number): string {
  return nativeUtf8Slice !== undefined ? nativeUtf8Slice.call(src, start, stop) : textDecoder.decode(src.subarray(start, stop));
}

// Key cache: object keys repeat endlessly (every element of an array of records has the same ones), so
// short keys are looked up by their bytes in a small direct-mapped table instead of being decoded again.
const KEY_CACHE_SIZE = 4096;
const KEY_CACHE_MAX_LEN = 24;
const keyCacheBytes: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(KEY_CACHE_SIZE).fill(undefined);
const keyCacheStrings: string[] = new Array<string>(KEY_CACHE_SIZE).fill("");

/** Key-cache slot of the key {@link readKey} just returned, or -1 if it bypassed the cache. */
/* eslint-disable-next-line no-var */
var keySlot = -1;

function readKey(): string {
  if (pos >= end) throw truncated();
  const t = src[pos++]!;
  let n: number;
  if (t >= T_FIXSTR && t < T_FIXARRAY) n = t & 0x1f;
  else if (t === T_STR8) {
    need(1);
    n = src[pos++]!;
  } else if (t === T_STR16) n = readU16();
  else if (t === T_STR32) n = readU32();
  else throw new CodecError(`object key is not a string (tag 0x${t.toString(16)})`);
  if (n > KEY_CACHE_MAX_LEN || n === 0) {
    keySlot = -1;
    return readStr(n);
  }
  need(n);
  const start = pos;
  // Hash a few bytes, not all: the byte compare below catches collisions anyway.
  const h = Math.imul((n << 24) ^ (src[start]! << 16) ^ (src[start + n - 1]! << 8) ^ src[start + (n >> 1)]!, 0x9e3779b1);
  const slot = h >>> 20; // top 12 bits = KEY_CACHE_SIZE slots
  keySlot = slot;
  const cached = keyCacheBytes[slot];
  if (cached !== undefined && cached.length === n) {
    let i = 0;
    while (i < n && cached[i] === src[start + i]) i++;
    if (i === n) {
      pos = start + n;
      return keyCacheStrings[slot]!;
    }
  }
  // Property keys must be internalized strings; doing it once here saves a string-table lookup per use.
  const s = internalize(readStr(n));
  keyCacheBytes[slot] = copyBytes(start, n);
  keyCacheStrings[slot] = s;
  return s;
}

function internalize(s: string): string {
  // Null prototype: on a plain object, "__proto__" would hit the prototype setter instead.
  const holder = Object.create(null) as Record<string, number>;
  holder[s] = 0;
  return Object.keys(holder)[0] ?? s;
}

function checkDepth(depth: number): void {
  if (depth >= MAX_DEPTH) throw new CodecError(`input nested deeper than ${MAX_DEPTH} levels`);
}

function readArray(n: number, depth: number): unknown[] {
  checkDepth(depth);
  // A short array's slots are charged up front, a longer one's as its elements are decoded (an up-front
  // charge for thousands of elements not yet read would exceed the budget).
  charge(COST_CONTAINER + (n <= SHORT_ARRAY ? COST_SLOT * n : 0));
  const d = depth + 1;
  // Short arrays as literals: one inline allocation of a packed array, about 3x faster than
  // `new Array(n)` plus stores for a two-element array (a record's tags, a pair, a point).
  switch (n) {
    case 0:
      return [];
    case 1:
      return [dec(d)];
    case 2: {
      const a0 = dec(d);
      return [a0, dec(d)];
    }
    case 3: {
      const a0 = dec(d);
      const a1 = dec(d);
      return [a0, a1, dec(d)];
    }
    case 4: {
      const a0 = dec(d);
      const a1 = dec(d);
      const a2 = dec(d);
      return [a0, a1, a2, dec(d)];
    }
  }
  if (n > ARRAY_PREFIX) return readLongArray(n, d);
  const a = new Array<unknown>(n);
  for (let i = 0; i < n; i++) {
    if (i >= SHORT_ARRAY) charge(COST_SLOT);
    a[i] = dec(d);
  }
  return a;
}

/** Arrays of up to this many elements are charged for their slots up front. */
const SHORT_ARRAY = 15;

/** Elements of a long array decoded before the whole array is allocated. */
const ARRAY_PREFIX = 64 * 1024;

/**
 * A long array: its first elements go into a small array, and only once they decoded within budget is
 * the full-length one allocated (8 bytes a slot) — a count of millions of junk elements is refused
 * before it costs that.
 */
function readLongArray(n: number, d: number): unknown[] {
  const head = new Array<unknown>(ARRAY_PREFIX);
  for (let i = 0; i < ARRAY_PREFIX; i++) {
    charge(COST_SLOT);
    head[i] = dec(d);
  }
  const a = new Array<unknown>(n);
  for (let i = 0; i < ARRAY_PREFIX; i++) a[i] = head[i];
  for (let i = ARRAY_PREFIX; i < n; i++) {
    charge(COST_SLOT);
    a[i] = dec(d);
  }
  return a;
}

// Object shapes. Decoding an object by adding properties one by one (`o[k] = v` with a key only known at
// run time) is a megamorphic keyed store per property; records of the same keys are the common case (an
// array of them, or the same call over and over), so once a key sequence has been seen a few times the
// decoder compiles a function returning an object literal with those keys and builds objects with it:
// one allocation with the final hidden class, several times faster. Keys and values are collected on
// per-depth scratch stacks first (keys) and in a fresh array per object (values, see readObject). Shapes live in a small direct-mapped table keyed by the keys' cache
// slots; the number of compiled shapes is capped, so a peer sending ever-new shapes only costs the
// generic path.
const SHAPE_MAX_KEYS = 32;
const SHAPE_TABLE_SIZE = 1024;
/** A shape is compiled once it has been decoded this many times. */
const SHAPE_COMPILE_AFTER = 4;
interface Shape {
  readonly keys: string[];
  hits: number;
  make: ((v: unknown[]) => Record<string, unknown>) | undefined;
}
const shapes = new Array<Shape | undefined>(SHAPE_TABLE_SIZE).fill(undefined);
/** Compilations left for this process (code generation may also be disallowed: then it is 0). */
let shapeCompileBudget = 4096;
const keyStacks: string[][] = [];

function compileShape(keys: readonly string[]): ((v: unknown[]) => Record<string, unknown>) | undefined {
  if (shapeCompileBudget <= 0) return undefined;
  shapeCompileBudget--;
  // JSON.stringify makes every key a valid JS string literal, whatever its characters.
  const body = `return {${keys.map((k, i) => `${JSON.stringify(k)}: v[${i}]`).join(", ")}};`;
  try {
    return new Function("v", body) as (v: unknown[]) => Record<string, unknown>;
  } catch {
    shapeCompileBudget = 0; // e.g. node --disallow-code-generation-from-strings
    return undefined;
  }
}

function readObject(n: number, depth: number): Record<string, unknown> {
  checkDepth(depth);
  charge(COST_CONTAINER);
  if (n === 0) return {};
  if (n > SHAPE_MAX_KEYS) return readObjectGeneric(n, depth);
  let keys = keyStacks[depth];
  if (keys === undefined) keys = keyStacks[depth] = new Array<string>(SHAPE_MAX_KEYS).fill("");
  // The values go into a fresh (young) array, never into a long-lived one: while V8 marks the old
  // generation (incremental marking), a young value stored into a long-lived object is marked live and
  // survives, so a reused scratch array would keep every decoded graph for a whole GC cycle and get it
  // promoted (~40% of a busy client's decoded bytes in the large-payload benchmark). Keys are interned
  // strings, long-lived anyway.
  const vals = new Array<unknown>(n);
  let h = n;
  let shapeable = true;
  for (let i = 0; i < n; i++) {
    const k = readKey();
    // "__proto__" in an object literal would set the prototype: such objects take the generic path.
    if (keySlot < 0 || k === "__proto__") shapeable = false;
    h = (Math.imul(h, 31) + keySlot) | 0;
    keys[i] = k;
    vals[i] = dec(depth + 1);
  }
  let o: Record<string, unknown> | undefined;
  if (shapeable) {
    const slot = Math.imul(h, 0x9e3779b1) >>> 22; // top 10 bits = SHAPE_TABLE_SIZE slots
    const shape = shapes[slot];
    if (shape !== undefined && sameKeys(shape.keys, keys, n)) {
      if (shape.make === undefined && ++shape.hits >= SHAPE_COMPILE_AFTER) {
        shape.make = compileShape(shape.keys);
        shape.hits = -Infinity; // compiled or refused: don't try again
      }
      if (shape.make !== undefined) o = shape.make(vals);
    } else {
      shapes[slot] = { keys: keys.slice(0, n), hits: 1, make: undefined };
    }
  }
  if (o === undefined) {
    o = {};
    for (let i = 0; i < n; i++) setProperty(o, keys[i]!, vals[i]);
  }
  return o;
}

function sameKeys(a: readonly string[], b: readonly string[], n: number): boolean {
  if (a.length !== n) return false;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

function setProperty(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") {
    // Plain assignment would replace the prototype: a peer must never be able to do that.
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  } else {
    o[k] = v;
  }
}

function readObjectGeneric(n: number, depth: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const k = readKey();
    setProperty(o, k, dec(depth + 1));
  }
  return o;
}

function readMap(n: number, depth: number): Map<unknown, unknown> {
  checkDepth(depth);
  charge(COST_HEAVY);
  const m = new Map<unknown, unknown>();
  for (let i = 0; i < n; i++) {
    const k = dec(depth + 1);
    m.set(k, dec(depth + 1));
  }
  return m;
}

function readSet(n: number, depth: number): Set<unknown> {
  checkDepth(depth);
  charge(COST_HEAVY);
  const s = new Set<unknown>();
  for (let i = 0; i < n; i++) s.add(dec(depth + 1));
  return s;
}

function readBytes(asBuffer: boolean): Uint8Array {
  charge(COST_HEAVY);
  const n = readU32();
  need(n);
  const start = pos;
  pos += n;
  // Copies: the source is usually a network frame that will be reused or freed.
  if (asBuffer) {
    const out = Buffer.allocUnsafe(n);
    out.set(src.subarray(start, start + n));
    return out;
  }
  return copyBytes(start, n);
}

/** A plain Uint8Array copy of `n` source bytes (Buffer#slice would alias, and return a Buffer). */
function copyBytes(start: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  if (n <= 32) {
    for (let i = 0; i < n; i++) out[i] = src[start + i]!;
  } else {
    out.set(src.subarray(start, start + n));
  }
  return out;
}

function readTyped(): unknown {
  charge(COST_HEAVY);
  need(1);
  const kind = src[pos++]!;
  const n = readU32();
  need(n);
  const ab = new ArrayBuffer(n);
  new Uint8Array(ab).set(src.subarray(pos, pos + n));
  pos += n;
  if (kind === KIND_ARRAYBUFFER) return ab;
  if (kind === KIND_DATAVIEW) return new DataView(ab);
  const ctor = TYPED_KINDS[kind];
  if (ctor === undefined) throw new CodecError(`unknown typed array kind ${kind}`);
  if (n % ctor.BYTES_PER_ELEMENT !== 0)
    throw new CodecError(`${ctor.name} byte length ${n} is not a multiple of ${ctor.BYTES_PER_ELEMENT}`);
  return new ctor(ab);
}

function readBigInt(): bigint {
  charge(COST_BOXED);
  need(1);
  const sign = src[pos++]!;
  if (sign > 1) throw new CodecError(`bad bigint sign byte ${sign}`);
  const n = readU32();
  need(n);
  if (n === 0) return 0n;
  if (n > MAX_BIGINT_BYTES) throw new CodecError(`bigint of ${n} bytes is over the ${MAX_BIGINT_BYTES}-byte limit`);
  // Native hex conversion: building the string byte by byte in JS cost seconds for megabyte bigints.
  const hex = Buffer.from(src.buffer, src.byteOffset + pos, n).toString("hex");
  pos += n;
  const mag = BigInt("0x" + hex);
  return sign ? -mag : mag;
}
