// The attack of the RPC fault run (rpc.ts), in a process of its own: 2,000 connections sending HELLO and
// half a frame, 128 declaring 16 MiB frames and sending part of them, 10,000 random frames on 100
// connections. Exits once the replica has closed every one. `node dist/bench/faults/attacker.js <port>`
import { connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { Writer } from "../../runtime/codec/codec.js";
import { FrameType, writeHello } from "../../runtime/rpc/frames.js";

/** The attack's size; each can be changed with the environment variable of the same name in capitals. */
export const ATTACK = {
  halfFrameConns: Number(process.env["HALF_FRAME_CONNS"] ?? 2000),
  bigDeclared: Number(process.env["BIG_DECLARED"] ?? 128),
  bigSentBytes: Number(process.env["BIG_SENT_BYTES"] ?? 1024 * 1024),
  randomFrames: Number(process.env["RANDOM_FRAMES"] ?? 10_000),
};

const HALF_FRAME_CONNS = ATTACK.halfFrameConns;
const BIG_DECLARED = ATTACK.bigDeclared;
const BIG_SENT_BYTES = ATTACK.bigSentBytes;
const RANDOM_FRAMES = ATTACK.randomFrames;

const hello = (): Buffer => {
  const w = new Writer();
  writeHello(w, "faults");
  return w.toBuffer();
};

function open(port: number, first: Buffer): Promise<Socket> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.on("error", () => {});
    s.resume();
    s.once("connect", () => s.write(first, () => resolve(s)));
    s.once("close", () => resolve(s));
  });
}

async function attack(port: number): Promise<void> {
  const socks: Socket[] = [];
  // 2,000 connections sending HELLO and half a frame.
  const half = Buffer.alloc(505);
  half.writeUInt32LE(1001, 0);
  half[4] = FrameType.REQUEST;
  for (let i = 0; i < HALF_FRAME_CONNS; i += 100) {
    socks.push(
      ...(await Promise.all(Array.from({ length: Math.min(100, HALF_FRAME_CONNS - i) }, () => open(port, Buffer.concat([hello(), half]))))),
    );
  }
  // 128 connections declaring 16 MiB frames and sending part of them.
  const big = Buffer.alloc(5 + BIG_SENT_BYTES);
  big.writeUInt32LE(16 * 1024 * 1024, 0);
  big[4] = FrameType.REQUEST;
  socks.push(...(await Promise.all(Array.from({ length: BIG_DECLARED }, () => open(port, Buffer.concat([hello(), big]))))));
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
    socks.push(await open(port, Buffer.concat(parts)));
  }
  await Promise.all(socks.map((s) => new Promise((r) => (s.closed ? r(undefined) : s.once("close", r)))));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await attack(Number(process.argv[2]));
