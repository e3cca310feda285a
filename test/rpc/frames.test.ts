// Framing and write batching under awkward chunking: split frames reuse one assembly buffer, and the
// channel reuses its writer buffer when the kernel took a batch synchronously.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { Connection } from "../../runtime/rpc/client.js";
import { FrameReader } from "../../runtime/rpc/frames.js";
import { HASH, startServer } from "../support/rpc.js";

/** Builds `u32 length | u8 type | body` frames. */
function frame(type: number, body: Buffer): Buffer {
  const f = Buffer.allocUnsafe(5 + body.length);
  f.writeUInt32LE(1 + body.length, 0);
  f[4] = type;
  body.copy(f, 5);
  return f;
}

test("FrameReader delivers every frame intact whatever the chunk boundaries", () => {
  let seed = 42;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let round = 0; round < 20; round++) {
    const bodies: Buffer[] = [];
    for (let i = 0; i < 60; i++) {
      const size = [0, 1, 3, 100, 5000, 16 * 1024, 70_000, 300_000][rand(8)]!;
      bodies.push(randomBytes(size));
    }
    const stream = Buffer.concat(bodies.map((b, i) => frame(1 + (i % 7), b)));
    const got: { type: number; body: Buffer }[] = [];
    // Copy at delivery: a frame's bytes are only lent for the duration of the call.
    const reader = new FrameReader(1 << 20, {
      onFrame: (type, buf, start, end) => got.push({ type, body: Buffer.from(buf.subarray(start, end)) }),
    });
    let off = 0;
    while (off < stream.length) {
      const n = Math.min(stream.length - off, [1, 2, 3, 5, 64, 1000, 8192, 65536, 200_000][rand(9)]!);
      reader.push(stream.subarray(off, off + n));
      off += n;
    }
    assert.equal(got.length, bodies.length, `round ${round}: frame count`);
    got.forEach((g, i) => {
      assert.equal(g.type, 1 + (i % 7));
      assert.ok(g.body.equals(bodies[i]!), `round ${round}: frame ${i} (${bodies[i]!.length} bytes) intact`);
    });
  }
});

test("bursts of large distinct calls and responses arrive intact (partial writes, buffer reuse)", async () => {
  const s = await startServer({ echo: (args) => args[0], rev: (args) => Buffer.from(args[0] as Buffer).reverse() });
  const c = new Connection(s.address, { methodTableHash: HASH });
  try {
    for (let round = 0; round < 3; round++) {
      // Bursts bigger than a socket buffer: some writes complete later, in the background.
      const inputs = Array.from({ length: 64 }, (_, i) => randomBytes(20_000 + i * 1500));
      const outs = await Promise.all(inputs.map((b, i) => c.call(i % 2 ? s.ids.echo! : s.ids.rev!, i % 2 ? "echo" : "rev", [b])));
      outs.forEach((o, i) => {
        const want = i % 2 ? inputs[i]! : Buffer.from(inputs[i]!).reverse();
        assert.ok(Buffer.isBuffer(o) && want.equals(o), `call ${i} of round ${round}`);
      });
      // Then small ones on the same connection (the writer goes back to a small buffer).
      const small = await Promise.all(Array.from({ length: 200 }, (_, i) => c.call(s.ids.echo!, "echo", [{ i, s: `x${i}` }])));
      small.forEach((o, i) => assert.deepStrictEqual(o, { i, s: `x${i}` }));
    }
  } finally {
    await c.close();
    await s.server.close();
  }
});
