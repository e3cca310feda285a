// The non-tsweaver peers: servers (run in a child process: `node dist/bench/peer-server.js raw|grpc|http`,
// which prints "READY <port>" once listening) and the matching clients (run in the bench process).
import * as grpc from "@grpc/grpc-js";
import http from "node:http";
import net from "node:net";
import { Writer, decode, encodeValue } from "../runtime/codec/codec.js";
import { Connection } from "../runtime/rpc/client.js";
import { RpcServer } from "../runtime/rpc/server.js";
import type { RpcTls } from "../runtime/rpc/tls.js";
import { silentLogger } from "../runtime/rpc/logger.js";
import { type Payload, PayloadType } from "./payloads.js";
import { startProfile, stopProfile } from "./profile.js";

export type PeerKind = "raw" | "raw-codec" | "grpc" | "http" | "rpc" | "rpc-tls";

// ---------------------------------------------------------------------------------------------------
// Raw node:net echo: frames are `u32 length (LE) | body`; the server sends every complete frame back.
// The client's body is `u32 request id | payload bytes`, so calls can be multiplexed on one socket.

export function rawServer(): net.Server {
  return net.createServer({ noDelay: true }, (socket) => {
    let pending: Buffer | undefined;
    socket.on("data", (chunk: Buffer) => {
      const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      const off = completeFrames(buf);
      if (off > 0) socket.write(buf.subarray(0, off)); // every complete frame, as one write
      pending = off < buf.length ? buf.subarray(off) : undefined;
    });
    socket.on("error", () => socket.destroy());
  });
}

/** Where the complete `u32 length | body` frames at the start of `buf` end. */
function completeFrames(buf: Buffer): number {
  let off = 0;
  while (buf.length - off >= 4) {
    const len = buf.readUInt32LE(off);
    if (buf.length - off - 4 < len) break;
    off += 4 + len;
  }
  return off;
}

/**
 * Row 1b, the floor for a self-describing payload: the raw echo, but the server decodes each frame's
 * payload with tsweaver's codec and encodes the value again for the echo (one decode and one encode per
 * call, like a server handling a call), writing a chunk's replies as one batch from one reused buffer.
 */
function rawCodecServer(): net.Server {
  return net.createServer({ noDelay: true }, (socket) => {
    let pending: Buffer | undefined;
    const w = new Writer(64 * 1024);
    socket.on("data", (chunk: Buffer) => {
      const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      const stop = completeFrames(buf);
      let off = 0;
      while (off < stop) {
        const len = buf.readUInt32LE(off);
        const value = decode(buf.subarray(off + 8, off + 4 + len));
        const start = w.pos;
        w.u32(0);
        w.u32(buf.readUInt32LE(off + 4)); // the request id
        encodeValue(w, value);
        w.patchU32(start, w.pos - start - 4);
        off += 4 + len;
      }
      if (w.pos > 0) {
        socket.write(w.buf.subarray(0, w.pos));
        // The socket keeps a reference to bytes it could not send at once: continue in a fresh buffer.
        if (socket.writableLength !== 0) w.buf = Buffer.allocUnsafe(w.buf.length);
        w.reset();
      }
      pending = stop < buf.length ? buf.subarray(stop) : undefined;
    });
    socket.on("error", () => socket.destroy());
  });
}

/** A multiplexed raw-socket client: `call(bytes)` resolves when the frame comes back. */
export class RawClient {
  private readonly socket: net.Socket;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; decodeReply: boolean }>();
  /** Where {@link callValue} encodes. */
  private readonly writer = new Writer(64 * 1024);
  private nextId = 1;
  private pending: Buffer | undefined;
  private corked = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
  }

  /** Connects to a loopback TCP port, or to a Unix socket path. */
  static connect(target: number | string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const to = typeof target === "string" ? { path: target } : { host: "127.0.0.1", port: target, noDelay: true };
      const s = net.connect(to, () => {
        s.off("error", reject);
        resolve(new RawClient(s));
      });
      s.once("error", reject);
    });
  }

  /** Sends `body` (already-encoded payload bytes) and resolves when the echo arrives. */
  call(body: Uint8Array): Promise<void> {
    const frame = Buffer.allocUnsafe(8 + body.length);
    frame.writeUInt32LE(4 + body.length, 0);
    frame.set(body, 8);
    return this.send(frame, false) as Promise<void>;
  }

  /** Sends `frame` (its length set, its id not yet) and resolves when the echo arrives, decoded if `decodeReply`. */
  private send(frame: Buffer, decodeReply: boolean): Promise<unknown> {
    const id = this.nextId++ >>> 0;
    frame.writeUInt32LE(id, 4);
    // Frames written in one tick go out in one syscall (like tsweaver's and grpc's write batching).
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(uncork, this);
    }
    this.socket.write(frame);
    return new Promise<unknown>((resolve) => this.waiting.set(id, { resolve, decodeReply }));
  }

  /**
   * Row 1b: encodes `value` with tsweaver's codec into the request frame, and resolves with the echo
   * decoded (one encode and one decode per call, like a caller).
   */
  callValue(value: unknown): Promise<unknown> {
    const w = this.writer;
    w.reset();
    w.pos = 8;
    encodeValue(w, value);
    const frame = w.toBuffer();
    frame.writeUInt32LE(frame.length - 4, 0);
    return this.send(frame, true);
  }

  /** @internal */
  uncork(): void {
    this.corked = false;
    this.socket.uncork();
  }

  private onData(chunk: Buffer): void {
    const buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    let off = 0;
    while (buf.length - off >= 8) {
      const len = buf.readUInt32LE(off);
      if (buf.length - off - 4 < len) break;
      const id = buf.readUInt32LE(off + 4);
      const w = this.waiting.get(id);
      if (w !== undefined) {
        this.waiting.delete(id);
        w.resolve(w.decodeReply ? decode(buf.subarray(off + 8, off + 4 + len)) : undefined);
      }
      off += 4 + len;
    }
    this.pending = off < buf.length ? buf.subarray(off) : undefined;
  }

  close(): void {
    this.socket.destroy();
  }
}

function uncork(c: RawClient): void {
  c.uncork();
}

// ---------------------------------------------------------------------------------------------------
// gRPC (grpc-js) unary call, protobuf-serialized with protobufjs: the usual way a Node service does it.

const serialize = (p: Payload): Buffer => Buffer.from(PayloadType.encode(p).finish());
const deserialize = (b: Buffer): Payload => PayloadType.decode(b) as unknown as Payload;

const benchService: grpc.ServiceDefinition = {
  echo: {
    path: "/bench.Bench/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  },
};

function grpcServer(): Promise<number> {
  const server = new grpc.Server();
  server.addService(benchService, {
    echo: (call: grpc.ServerUnaryCall<Payload, Payload>, cb: grpc.sendUnaryData<Payload>) => cb(null, call.request),
  });
  return new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
}

type EchoFn = (p: Payload, cb: (err: grpc.ServiceError | null, res?: Payload) => void) => void;

/** A grpc-js client (one channel, HTTP/2 multiplexed). */
export class GrpcClient {
  private readonly client: grpc.Client & { echo: EchoFn };

  constructor(port: number) {
    const Ctor = grpc.makeGenericClientConstructor(benchService, "Bench");
    this.client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { echo: EchoFn };
  }

  call(p: Payload): Promise<Payload> {
    return new Promise((resolve, reject) => this.client.echo(p, (err, res) => (err ? reject(err) : resolve(res!))));
  }

  close(): void {
    this.client.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// node:http keep-alive POST with a JSON body; the server parses it and sends it back as JSON.

function httpServer(): http.Server {
  return http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Payload;
      const out = JSON.stringify(body);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(out) });
      res.end(out);
    });
  });
}

/** A node:http client with a keep-alive agent (one socket per concurrent request, reused). */
export class HttpClient {
  private readonly agent: http.Agent;

  constructor(
    private readonly port: number,
    maxSockets: number,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  }

  call(p: Payload): Promise<Payload> {
    const body = JSON.stringify(p);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: this.port,
          method: "POST",
          path: "/echo",
          agent: this.agent,
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            try {
              resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Payload);
            } catch (err) {
              reject(err);
            }
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------
// tsweaver's RPC transport alone (RpcServer + Connection, one echo method), over plain TCP or TLS 1.3:
// what TLS adds to a call. The server's TLS credentials come in BENCH_RPC_TLS (JSON RpcTls).

/** Environment variable carrying the rpc-tls server's credentials. */
export const RPC_TLS_ENV = "BENCH_RPC_TLS";
const RPC_HASH = "bench-rpc";

async function rpcServer(tls: RpcTls | undefined): Promise<number> {
  const address = await rpcEchoServer(tls, "127.0.0.1:0");
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** Serves the rpc rows' echo method on `address` ("host:port" or "unix:/path"); resolves to the bound address. */
export function rpcEchoServer(tls: RpcTls | undefined, address: string): Promise<string> {
  const server = new RpcServer({
    lookup: (id) => (id === 0 ? { name: "bench/Rpc.echo", fn: (args) => args[0] } : undefined),
    methodTableHash: RPC_HASH,
    deploymentId: tls?.identity.deploymentId ?? "",
    logger: silentLogger,
    tls,
  });
  return server.listen(address);
}

/** A client of the rpc peers: one Connection, optionally TLS. */
export class RpcClient {
  private readonly conn: Connection;
  /** `to`: a loopback TCP port, or an RPC address ("unix:/path"). */
  constructor(to: number | string, tls: RpcTls | undefined) {
    this.conn = new Connection(typeof to === "number" ? `127.0.0.1:${to}` : to, {
      methodTableHash: RPC_HASH,
      deploymentId: tls?.identity.deploymentId ?? "",
      tls,
    });
  }
  call(p: Payload): Promise<unknown> {
    return this.conn.call(0, "bench/Rpc.echo", [p]);
  }
  close(): void {
    void this.conn.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Server entry point.

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as net.AddressInfo).port;
}

/** Starts the named server, prints `READY <port>`, and exits when stdin closes. */
export async function serve(kind: string): Promise<void> {
  startProfile(); // --cpu-prof runs only
  let port: number;
  if (kind === "raw") port = await listen(rawServer());
  else if (kind === "raw-codec") port = await listen(rawCodecServer());
  else if (kind === "grpc") port = await grpcServer();
  else if (kind === "http") port = await listen(httpServer());
  else if (kind === "rpc") port = await rpcServer(undefined);
  else if (kind === "rpc-tls") port = await rpcServer(JSON.parse(process.env[RPC_TLS_ENV] ?? "null") as RpcTls);
  else throw new Error(`unknown peer ${kind} (want raw, raw-codec, grpc, http, rpc or rpc-tls)`);
  process.stdout.write(`READY ${port}\n`);
  // The bench process closes our stdin (or dies): then we go too.
  const exit = (): void => void stopProfile(`peer-${kind}`).finally(() => process.exit(0));
  process.stdin.on("end", exit);
  process.stdin.on("error", exit);
  process.stdin.resume();
}
