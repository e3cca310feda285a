import { createConnection, createServer, type Server, type Socket } from "node:net";
import { lstat, unlink } from "node:fs/promises";
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from "node:tls";
import { CodecError, Reader } from "../codec/codec.js";
import { type CallContext, UNSAMPLED_TRACEPARENT, callStorage } from "../core/call.js";
import { CallCancelledError, DeadlineExceededError, TransportError } from "../core/errors.js";
import { formatAddress, parseAddress } from "./address.js";
import { AUTH_REFUSED, NONCE_SIZE, checkAuth, handshakeProof, newNonce, proofMatches, type PeerIdentity, type RpcAuth } from "./auth.js";
import {
  ConnectionCloseLog,
  DEFAULT_CLOSE_LOG_WINDOW_MS,
  DEFAULT_SERVER_LIMITS,
  type InboundBudget,
  type Pausable,
  processInboundBudget,
} from "./budget.js";
import { type ByteCounters, Channel, type ChannelSink } from "./channel.js";
import {
  DEFAULT_MAX_FRAME_SIZE,
  FrameError,
  FrameTooLargeError,
  FrameType,
  RPC_PROTOCOL_VERSION,
  RequestFlag,
  Status,
  encodableWireError,
  toWireError,
  writeChallenge,
  writeGoaway,
  writeHelloErr,
  writeHelloOk,
  writeResponse,
} from "./frames.js";
import type { RpcLogger } from "./logger.js";
import { type CallObserver, turnClock, turnNow } from "./observer.js";
import { peerIdentity, serverTlsOptions, type RpcTls } from "./tls.js";

/** One servable method. */
export interface MethodHandler {
  /** Full method name for errors and logs, e.g. `"hello/Reverser.reverse"`. */
  readonly name: string;
  /** Runs the method; may return a value or a promise. Runs inside the call's {@link CallContext}. */
  readonly fn: (args: unknown[]) => unknown;
  /** Told the request + response payload bytes of each call answered (for per-method traffic metrics). */
  readonly countBytes?: ((bytes: number) => void) | undefined;
  /** Told each served call's outcome and time to serve (per-method metrics), measured around `fn`. */
  readonly observer?: CallObserver | undefined;
}

/** How to build an {@link RpcServer}. */
export interface RpcServerOptions {
  /** Finds the handler for a method id (ids are agreed through the method table). */
  lookup: (methodId: number) => MethodHandler | undefined;
  /** Hash of the method table; clients with a different one are refused at HELLO. */
  methodTableHash: string;
  /**
   * This server's deployment version: a client of another version is refused at HELLO (versions never
   * mix). Default "": unversioned, accepts every client.
   */
  deploymentId?: string;
  /** Where protocol errors and lifecycle events go. */
  logger: RpcLogger;
  /** Largest frame accepted or sent (default 16 MiB). */
  maxFrameSize?: number;
  /** A connection that has not sent HELLO by then is closed (default 10 s). */
  handshakeTimeoutMs?: number;
  /**
   * The deployment key and this server's identity: every client must prove it holds the key (see
   * auth.ts) before any of its requests runs. Default: clients are not authenticated.
   */
  auth?: RpcAuth | undefined;
  /**
   * Whether the authenticated `caller` may call method `methodId`: undefined if it may, else why not (the
   * call fails with that message and nothing runs). Default: every caller may call every method.
   */
  authorize?: ((methodId: number, caller: PeerIdentity | undefined) => string | undefined) | undefined;
  /**
   * Serve over TLS 1.3 only: clients must present a certificate from `tls.ca` naming a weavelet of this
   * deployment (see tls.ts); the certificate's identity is the caller `authorize` sees.
   */
  tls?: RpcTls | undefined;
  /** Connections served at once; more are refused at accept (default 10,000). */
  maxConnections?: number;
  /** A frame must arrive whole within this long of its first byte (default 30 s). */
  frameTimeoutMs?: number;
  /** While a frame is arriving, some of its bytes must arrive at least this often (default 10 s). */
  frameProgressTimeoutMs?: number;
  /** A connection with no call in flight and no bytes received for this long is closed with GOAWAY (default 5 min). */
  idleTimeoutMs?: number;
  /** Budget of inbound bytes held in partly received frames (default: the one shared by the process). */
  inboundBudget?: InboundBudget;
  /** Closed or refused connections are logged as one summary line per window of this length (default 10 s). */
  closeLogWindowMs?: number;
}

/** Running totals, cheap to read; they feed metrics. */
export interface RpcServerStats extends ByteCounters {
  /** Connections accepted so far. */
  connectionsAccepted: number;
  /** Connections open now. */
  connectionsOpen: number;
  /** Requests received. */
  calls: number;
  /** Requests answered with APP_ERROR. */
  appErrors: number;
  /** Requests answered with SYSTEM_ERROR. */
  systemErrors: number;
  /** Requests cancelled by the caller (CANCEL frames that found their call). */
  cancelled: number;
  /** Connections closed because the peer broke the protocol. */
  protocolErrors: number;
  /** Handshakes refused (failed authentication, another version or method table). */
  refusedHellos: number;
  /** Requests refused because their caller may not call the method. */
  unauthorized: number;
  /** Connections refused because `maxConnections` were open. */
  connectionsRefused: number;
  /** Connections closed for a handshake or frame that did not arrive in time. */
  connectionsTimedOut: number;
  /** Connections closed for idling. */
  connectionsIdleClosed: number;
  /** Calls forgotten because their deadline passed while the handler still ran (its signal aborted). */
  expired: number;
}

/** How long a client told to go away for idling has to close the connection itself. */
const IDLE_CLOSE_GRACE_MS = 5000;

/** Default bound on how long `close()` waits for in-flight calls. */
const DEFAULT_CLOSE_GRACE_MS = 10_000;

/**
 * Serves component methods over TCP or a Unix socket. Each request runs inside `callStorage.run` with
 * the caller's deadline, cancellation, trace context and metadata; a misbehaving peer only ever costs
 * its own connection.
 */
export class RpcServer {
  /** Counters since construction. */
  readonly stats: RpcServerStats = {
    bytesIn: 0,
    bytesOut: 0,
    connectionsAccepted: 0,
    connectionsOpen: 0,
    calls: 0,
    appErrors: 0,
    systemErrors: 0,
    cancelled: 0,
    protocolErrors: 0,
    refusedHellos: 0,
    unauthorized: 0,
    connectionsRefused: 0,
    connectionsTimedOut: 0,
    connectionsIdleClosed: 0,
    expired: 0,
  };
  /** @internal */ readonly opts: Required<Omit<RpcServerOptions, "auth" | "authorize" | "tls">> &
    Pick<RpcServerOptions, "auth" | "authorize" | "tls">;
  private server: Server | undefined;
  private boundAddress: string | undefined;
  private readonly conns = new Set<ServerConn>();
  private closingPromise: Promise<void> | undefined;
  private closing = false;
  private sweeper: NodeJS.Timeout | undefined;
  /** @internal Summarizes closed and refused connections in the log. */
  readonly closeLog: ConnectionCloseLog;

  constructor(opts: RpcServerOptions) {
    // Field by field: a spread would let an explicit `undefined` override a default.
    this.opts = {
      lookup: opts.lookup,
      methodTableHash: opts.methodTableHash,
      deploymentId: opts.deploymentId ?? "",
      logger: opts.logger,
      maxFrameSize: opts.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE,
      auth: opts.auth === undefined ? undefined : checkAuth(opts.auth),
      authorize: opts.authorize,
      tls: opts.tls,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? DEFAULT_SERVER_LIMITS.handshakeTimeoutMs,
      maxConnections: opts.maxConnections ?? DEFAULT_SERVER_LIMITS.maxConnections,
      frameTimeoutMs: opts.frameTimeoutMs ?? DEFAULT_SERVER_LIMITS.frameTimeoutMs,
      frameProgressTimeoutMs: opts.frameProgressTimeoutMs ?? DEFAULT_SERVER_LIMITS.frameProgressTimeoutMs,
      idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_SERVER_LIMITS.idleTimeoutMs,
      inboundBudget: opts.inboundBudget ?? processInboundBudget,
      closeLogWindowMs: opts.closeLogWindowMs ?? DEFAULT_CLOSE_LOG_WINDOW_MS,
    };
    this.closeLog = new ConnectionCloseLog(this.opts.logger, this.opts.closeLogWindowMs);
  }

  /** The address being served (as returned by `listen`), or undefined before `listen`. */
  get address(): string | undefined {
    return this.boundAddress;
  }

  /**
   * Starts listening on `"host:port"` (port 0 picks a free one) or `"unix:/path"`. Resolves to the bound
   * address in the same form, e.g. `"127.0.0.1:41234"`.
   */
  async listen(address: string): Promise<string> {
    if (this.server) throw new Error("RpcServer is already listening");
    if (this.closing) throw new Error("RpcServer is closed");
    const a = parseAddress(address);
    if (a.kind === "unix") await removeStaleSocket(a.path);
    const tls = this.opts.tls;
    const server =
      tls === undefined
        ? createServer({ noDelay: true }, (socket) => this.accept(socket))
        : createTlsServer(serverTlsOptions(tls), (socket) => this.accept(socket));
    // A client without a certificate from the CA (or with an expired one) fails the TLS handshake.
    server.on("tlsClientError", (err: Error, socket: Socket) => {
      this.stats.refusedHellos++;
      this.opts.logger.warn("rpc: TLS handshake with client failed", { remote: socket.remoteAddress, error: err.message });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      const done = (): void => {
        server.off("error", reject);
        resolve();
      };
      if (a.kind === "unix") server.listen({ path: a.path }, done);
      else server.listen({ host: a.host, port: a.port }, done);
    }).catch((err: unknown) => {
      this.server = undefined;
      throw err;
    });
    server.on("error", (err) => this.opts.logger.error("rpc server error", { address, error: String(err) }));
    const bound = server.address();
    this.boundAddress =
      a.kind === "unix" || bound === null || typeof bound === "string"
        ? address
        : formatAddress({ kind: "tcp", host: bound.address, port: bound.port });
    // One timer checks every connection's timeouts: no timer per frame or per chunk on the hot path. Its
    // period is a quarter of the shortest timeout (2.5 s by default), so an idle process rarely wakes; with
    // TLS at most 1 s, as it also ends connections whose client certificate expired.
    const o = this.opts;
    const tick = Math.max(20, Math.min(o.tls ? 1000 : Infinity, o.frameTimeoutMs / 4, o.frameProgressTimeoutMs / 4, o.idleTimeoutMs / 4));
    this.sweeper = setInterval(sweepServer, tick, this);
    this.sweeper.unref();
    this.opts.logger.info("rpc server listening", { address: this.boundAddress });
    return this.boundAddress;
  }

  /**
   * Replaces the TLS credentials (a renewed certificate): connections accepted from now on present the
   * new certificate and trust the new CA; open connections keep what they agreed on. Only for a server
   * created with `tls`, and only for the same deployment.
   */
  updateTls(tls: RpcTls): void {
    const now = this.opts.tls;
    if (now === undefined) throw new Error("RpcServer.updateTls: this server was created without tls; it cannot switch to TLS");
    if (tls.identity.deploymentId !== now.identity.deploymentId)
      throw new Error(`RpcServer.updateTls: the new credentials are for ${tls.identity.deploymentId}, not ${now.identity.deploymentId}`);
    this.opts.tls = tls;
    (this.server as TlsServer | undefined)?.setSecureContext(serverTlsOptions(tls));
  }

  /**
   * Stops accepting connections, tells clients to send nothing new (GOAWAY), waits up to `graceMs` for
   * in-flight calls to finish, then closes every connection (aborting the signals of calls still running).
   * `close(0)` is an abrupt stop.
   */
  close(graceMs = DEFAULT_CLOSE_GRACE_MS): Promise<void> {
    this.closingPromise ??= this.doClose(graceMs);
    return this.closingPromise;
  }

  private async doClose(graceMs: number): Promise<void> {
    this.closing = true;
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
    const server = this.server;
    const stopped = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    const conns = [...this.conns];
    for (const c of conns) {
      if (graceMs > 0) c.goAway();
      else c.destroy(new TransportError("server shut down"));
    }
    if (graceMs > 0 && conns.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const all = Promise.all(conns.map((c) => c.closed));
      const timedOut = await Promise.race([
        all.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(resolve, graceMs, true);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        this.opts.logger.warn("rpc server: in-flight calls still running at close; aborting them", { graceMs });
        for (const c of this.conns) c.destroy(new TransportError("server shut down"));
      }
    }
    await Promise.all(conns.map((c) => c.closed));
    await stopped;
    this.closeLog.flush();
    this.opts.logger.info("rpc server closed", { address: this.boundAddress });
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.conns.size >= this.opts.maxConnections) {
      this.stats.connectionsRefused++;
      this.closeLog.note("over-limit", `${socket.remoteAddress ?? "unix"}:${socket.remotePort ?? 0}`, `${this.conns.size} open`);
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    if (this.opts.tls !== undefined) {
      // The CA vouched for the certificate; it must also name a weavelet of this deployment.
      const peer = peerIdentity((socket as TLSSocket).getPeerX509Certificate());
      if (peer === undefined || peer.deploymentId !== this.opts.tls.identity.deploymentId) {
        this.stats.refusedHellos++;
        this.opts.logger.warn("rpc: refusing client: its certificate names no weavelet of this deployment", {
          remote: socket.remoteAddress,
          identity: peer === undefined ? "none" : `${peer.deploymentId}/${peer.group}`,
        });
        socket.destroy();
        return;
      }
    }
    const conn = new ServerConn(this, socket);
    this.conns.add(conn);
    this.stats.connectionsAccepted++;
    this.stats.connectionsOpen++;
    void conn.closed.then(() => {
      this.conns.delete(conn);
      this.stats.connectionsOpen--;
    });
  }

  /** Calls being served now, over all connections. */
  get inflightCalls(): number {
    let n = 0;
    for (const c of this.conns) n += c.inflightCount;
    return n;
  }

  /** @internal Closes connections whose frame, progress or idle time ran out; forgets calls past their deadline. */
  sweep(): void {
    const now = Date.now();
    for (const c of this.conns) c.check(now);
  }
}

function sweepServer(server: RpcServer): void {
  server.sweep();
}

/**
 * Runs one call inside its context and sends the response. A handler that returns a value (not a
 * promise) is answered at once, with no promise at all; one that returns a promise is awaited in
 * {@link finishCall}. Plain functions: no closure per call.
 */
function serveCall(server: RpcServer, conn: ServerConn, call: ServerCall, method: MethodHandler, args: unknown[]): void {
  // From the turn the request was read in (its arrival) to the result, read afresh at the end so that a
  // handler's own synchronous work always counts.
  const t0 = method.observer === undefined ? 0 : turnClock();
  let r: unknown;
  try {
    r = callStorage.run(call, method.fn, args);
  } catch (err) {
    failCall(server, conn, call, method, t0, err);
    return;
  }
  if (isThenable(r)) {
    void finishCall(server, conn, call, method, t0, r);
    return;
  }
  method.observer?.ok(performance.now() - t0);
  conn.respond(call, Status.OK, r, method.name, method.countBytes);
}

/** Answers a call whose handler returned a promise, once it settles. */
async function finishCall(
  server: RpcServer,
  conn: ServerConn,
  call: ServerCall,
  method: MethodHandler,
  t0: number,
  r: PromiseLike<unknown>,
): Promise<void> {
  let value: unknown;
  try {
    value = await r;
  } catch (err) {
    failCall(server, conn, call, method, t0, err);
    return;
  }
  method.observer?.ok(performance.now() - t0);
  conn.respond(call, Status.OK, value, method.name, method.countBytes);
}

/** Answers a call whose handler threw (or whose promise rejected) with the error. */
function failCall(server: RpcServer, conn: ServerConn, call: ServerCall, method: MethodHandler, t0: number, err: unknown): void {
  method.observer?.fail(performance.now() - t0);
  server.stats.appErrors++;
  conn.respond(call, Status.APP_ERROR, toWireError(err), method.name, method.countBytes);
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}

/** Removes a leftover Unix socket file nobody is listening on (a crashed previous run). */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isSocket()) return;
  const alive = await new Promise<boolean>((resolve) => {
    const s = createConnection({ path });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (!alive) await unlink(path).catch(() => {});
}

/**
 * The server side of one call: its CallContext. The AbortSignal is created only when someone reads it
 * (most handlers never do), and so is the deadline timer that aborts it.
 */
class ServerCall implements CallContext {
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reason: Error | undefined;
  private finished = false;
  /** Set when the caller no longer wants the response. */
  cancelled = false;
  /** Payload bytes of the REQUEST frame. */
  requestBytes = 0;

  constructor(
    readonly id: number,
    readonly deadline: number | undefined,
    readonly traceparent: string | undefined,
    readonly metadata: Readonly<Record<string, string>> | undefined,
    readonly method: string,
  ) {}

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.reason !== undefined) {
        this.controller.abort(this.reason);
      } else if (this.deadline !== undefined && !this.finished) {
        const ms = this.deadline - Date.now();
        if (ms <= 0) this.expire();
        else this.timer = setTimeout(expireCall, Math.min(ms, 0x7fffffff), this);
      }
    }
    return this.controller.signal;
  }

  /** Aborts the call's signal (once). */
  abort(reason: Error): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.controller?.abort(reason);
  }

  /** The deadline passed. */
  expire(): void {
    this.abort(new DeadlineExceededError(`${this.method}: deadline exceeded`));
  }

  /** True once the deadline passed: the caller has given up and reports DeadlineExceededError itself. */
  get expired(): boolean {
    return this.reason instanceof DeadlineExceededError || (this.deadline !== undefined && turnNow() >= this.deadline);
  }

  /** The handler is done: no more timers. */
  finish(): void {
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
  }
}

function expireCall(call: ServerCall): void {
  call.expire();
}

function onHandshakeTimeout(conn: ServerConn): void {
  conn.handshakeTimedOut();
}

/** One accepted connection. */
class ServerConn implements ChannelSink, Pausable {
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private readonly channel: Channel;
  private readonly inflight = new Map<number, ServerCall>();
  private readonly reader = new Reader(Buffer.alloc(0));
  private readonly remote: string;
  private greeted = false;
  /** Between CHALLENGE and the client's PROOF: what the proof must cover. */
  private challenge: { client: PeerIdentity; clientNonce: Buffer; serverNonce: Buffer; hash: string } | undefined;
  /** The authenticated client (undefined when the server does not authenticate). */
  private peer: PeerIdentity | undefined;
  private goingAway = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  /** When bytes last arrived, or a response was last sent (for the idle timeout). */
  private lastActiveAt = Date.now();
  /** When bytes last arrived (for the progress timeout). */
  private lastReadAt = this.lastActiveAt;
  /** When the frame now arriving started (0: none is). */
  private frameStartedAt = 0;
  /** The channel's frame count when that frame started (a later count means a new frame started). */
  private framesAtStart = 0;
  /** Bytes of the inbound budget this connection holds. */
  private held = 0;
  /** Paused by the inbound budget. */
  private paused = false;
  /** When GOAWAY was sent for idling (0: not sent). */
  private idleGoAwayAt = 0;
  /** TLS: when the client's certificate expires (ms since the epoch; 0: no TLS, or already acted on). */
  private peerNotAfter = 0;

  constructor(
    private readonly server: RpcServer,
    socket: Socket,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.remote = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort ?? 0}` : "unix";
    this.channel = new Channel(socket, this, server.opts.maxFrameSize, server.stats);
    if (server.opts.tls !== undefined) {
      const cert = (socket as TLSSocket).getPeerX509Certificate();
      this.peer = peerIdentity(cert);
      this.peerNotAfter = cert ? Date.parse(cert.validTo) || 0 : 0;
    }
    this.handshakeTimer = setTimeout(onHandshakeTimeout, server.opts.handshakeTimeoutMs, this);
    this.handshakeTimer.unref();
  }

  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    const r = this.reader;
    r.buf = buf;
    r.pos = start;
    r.end = end;
    if (type === FrameType.REQUEST && this.greeted) this.onRequest(r);
    else if (type === FrameType.CANCEL && this.greeted) this.onCancel(r);
    else if (type === FrameType.HELLO && !this.greeted && this.challenge === undefined && !this.goingAway) this.onHello(r);
    else if (type === FrameType.PROOF && this.challenge !== undefined) this.onProof(r);
    else throw new FrameError(this.greeted ? `unexpected frame type ${type}` : `expected HELLO, got frame type ${type}`);
  }

  onClose(error: Error | undefined): void {
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.server.opts.inboundBudget.remove(this, this.held);
    this.held = 0;
    if (error !== undefined && (error instanceof FrameError || error instanceof CodecError)) {
      this.server.stats.protocolErrors++;
      this.server.closeLog.note("protocol-error", this.remote, error.message);
    } else if (error !== undefined && !(error instanceof TransportError)) {
      this.server.opts.logger.debug("rpc: connection error", { remote: this.remote, error: error.message });
    }
    const reason = new TransportError("connection to the caller closed");
    for (const call of this.inflight.values()) call.abort(reason);
    this.inflight.clear();
    this.resolveClosed();
  }

  /** Sends GOAWAY; closes as soon as nothing is in flight. */
  goAway(): void {
    if (this.goingAway) return;
    this.goingAway = true;
    if (!this.greeted) {
      this.channel.end();
      return;
    }
    writeGoaway(this.channel.writer);
    if (this.inflight.size === 0) this.channel.end();
    else this.channel.scheduleFlush();
  }

  /** Closes now; running calls see their signal abort with `reason`. */
  destroy(reason: Error): void {
    for (const call of this.inflight.values()) call.abort(reason);
    this.channel.destroy(reason);
  }

  handshakeTimedOut(): void {
    this.handshakeTimer = undefined;
    if (this.greeted) return;
    this.server.stats.connectionsTimedOut++;
    this.server.closeLog.note("handshake-timeout", this.remote);
    this.channel.destroy();
  }

  /** @internal A chunk was read: track the frame in progress and this connection's share of the budget. */
  afterRead(): void {
    const ch = this.channel;
    const now = turnNow();
    this.lastReadAt = now;
    this.lastActiveAt = now;
    if (!ch.framePending) this.frameStartedAt = 0;
    else if (this.frameStartedAt === 0 || ch.framesIn !== this.framesAtStart) {
      this.frameStartedAt = now;
      this.framesAtStart = ch.framesIn;
    }
    const held = ch.bufferedIn;
    if (held !== this.held) {
      const before = this.held;
      this.held = held;
      this.server.opts.inboundBudget.update(this, before, held);
    }
  }

  /** @internal Stops reading: the inbound budget is spent. */
  pause(): void {
    this.paused = true;
    this.channel.socket.pause();
  }

  /** @internal Reads again. */
  resume(): void {
    this.paused = false;
    this.lastReadAt = Date.now(); // waiting for the budget is not the peer's slowness
    if (!this.channel.isClosed) this.channel.socket.resume();
  }

  /** Calls in flight on this connection. */
  get inflightCount(): number {
    return this.inflight.size;
  }

  /** @internal Applies the frame, progress and idle timeouts at `now`; forgets calls past their deadline. */
  check(now: number): void {
    if (this.channel.isClosed) return;
    if (this.inflight.size > 0) this.forgetExpired(now);
    const o = this.server.opts;
    if (this.frameStartedAt !== 0) {
      const frameAge = now - this.frameStartedAt;
      const stalled = !this.paused && now - this.lastReadAt >= o.frameProgressTimeoutMs;
      if (frameAge >= o.frameTimeoutMs || stalled) {
        this.server.stats.connectionsTimedOut++;
        const detail = stalled ? `no bytes for ${now - this.lastReadAt} ms` : `frame still incomplete after ${frameAge} ms`;
        this.server.closeLog.note("frame-timeout", this.remote, detail);
        this.channel.destroy(new TransportError(`frame not received in time: ${detail}`));
      }
      return;
    }
    if (now - this.lastReadAt >= 1000) this.channel.trim();
    if (this.idleGoAwayAt !== 0) {
      // Told to go away for idling: the client closes once it has seen GOAWAY; one that doesn't is cut off.
      if (now - this.idleGoAwayAt >= IDLE_CLOSE_GRACE_MS && this.inflight.size === 0) this.channel.destroy();
      return;
    }
    if (this.peerNotAfter !== 0 && now >= this.peerNotAfter && this.greeted && !this.goingAway) {
      // The client's certificate expired (TLS checks it only at the handshake). Closed like an idle
      // connection: GOAWAY, calls in flight finish, a request that crossed it is still served; the client
      // reconnects with its renewed certificate (ours moves its calls shortly before, client.ts).
      this.peerNotAfter = 0;
      this.server.opts.logger.info("rpc: the client's certificate expired; closing the connection once its calls finish", {
        remote: this.remote,
      });
      this.idleGoAwayAt = now;
      writeGoaway(this.channel.writer);
      this.channel.scheduleFlush();
      return;
    }
    if (this.greeted && !this.goingAway && this.inflight.size === 0 && now - this.lastActiveAt >= o.idleTimeoutMs) {
      this.server.stats.connectionsIdleClosed++;
      this.server.closeLog.note("idle", this.remote, `idle for ${now - this.lastActiveAt} ms`);
      // GOAWAY, but keep reading: a request that crossed it on the wire is still served, and the client
      // closes its side when it has nothing in flight (like gRPC's MAX_CONNECTION_IDLE).
      this.idleGoAwayAt = now;
      writeGoaway(this.channel.writer);
      this.channel.scheduleFlush();
    }
  }

  /**
   * Calls whose deadline passed are forgotten: the caller has already failed them, so their records
   * (and whatever the arguments hold) must not outlive a handler that never returns. Their signal aborts
   * with DeadlineExceededError; a late result is dropped.
   */
  private forgetExpired(now: number): void {
    for (const call of this.inflight.values()) {
      if (call.deadline === undefined || call.deadline > now) continue;
      this.inflight.delete(call.id);
      call.expire();
      call.finish();
      this.server.stats.expired++;
    }
    if (this.inflight.size === 0) {
      this.lastActiveAt = now;
      if (this.goingAway) this.channel.end();
    }
  }

  private onHello(r: Reader): void {
    const version = r.u32();
    const hash = r.value();
    const deploymentId = r.done ? "" : r.value();
    const group = r.done ? undefined : r.value();
    const nonce = r.done ? undefined : r.value();
    if (typeof hash !== "string" || typeof deploymentId !== "string" || !r.done) throw new FrameError("malformed HELLO");
    if ((group !== undefined && typeof group !== "string") || (nonce !== undefined && !(nonce instanceof Uint8Array))) {
      throw new FrameError("malformed HELLO");
    }
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    const auth = this.server.opts.auth;
    if (version !== RPC_PROTOCOL_VERSION) {
      this.refuse(`RPC protocol version mismatch: client speaks version ${version}, server speaks version ${RPC_PROTOCOL_VERSION}`);
      return;
    }
    if (auth !== undefined) {
      // Nothing about this server is told to a client before it proves it holds the key.
      if (group === undefined || nonce === undefined) return this.refuse("client did not authenticate", AUTH_REFUSED);
      if (nonce.length !== NONCE_SIZE) return this.refuse(`client nonce of ${nonce.length} bytes`, AUTH_REFUSED);
      if (deploymentId !== auth.identity.deploymentId) {
        return this.refuse(`client claims deployment ${JSON.stringify(deploymentId)}`, AUTH_REFUSED);
      }
      const client = { deploymentId, group };
      const clientNonce = Buffer.from(nonce);
      const serverNonce = newNonce();
      this.challenge = { client, clientNonce, serverNonce, hash };
      const proof = handshakeProof(auth.key, "server", this.transcript(auth, client, clientNonce, serverNonce, hash));
      writeChallenge(this.channel.writer, auth.identity.deploymentId, auth.identity.group, serverNonce, proof);
      this.channel.scheduleFlush();
      // The client's PROOF is due within the same handshake time.
      this.handshakeTimer = setTimeout(onHandshakeTimeout, this.server.opts.handshakeTimeoutMs, this);
      this.handshakeTimer.unref();
      return;
    }
    if (nonce !== undefined) {
      this.refuse("client asks for authentication, but this server has no deployment key");
      return;
    }
    this.accept(deploymentId, hash);
  }

  /** The client's answer to our CHALLENGE. */
  private onProof(r: Reader): void {
    const proof = r.value();
    if (!(proof instanceof Uint8Array) || !r.done) throw new FrameError("malformed PROOF");
    if (this.handshakeTimer !== undefined) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    const auth = this.server.opts.auth!;
    const c = this.challenge!;
    this.challenge = undefined;
    const expected = handshakeProof(auth.key, "client", this.transcript(auth, c.client, c.clientNonce, c.serverNonce, c.hash));
    if (!proofMatches(expected, proof)) {
      this.refuse(`wrong proof from a client claiming group ${JSON.stringify(c.client.group)}`, AUTH_REFUSED);
      return;
    }
    this.peer = c.client;
    // An authenticated peer is one of this deployment's weavelets: it may learn why it is refused.
    this.accept(c.client.deploymentId, c.hash);
  }

  private transcript(auth: RpcAuth, client: PeerIdentity, clientNonce: Buffer, serverNonce: Buffer, hash: string) {
    return { protocolVersion: RPC_PROTOCOL_VERSION, methodTableHash: hash, client, server: auth.identity, clientNonce, serverNonce };
  }

  /** Greets a client whose HELLO (and proof) checked out, unless its version or method table differ. */
  private accept(deploymentId: string, hash: string): void {
    const expected = this.server.opts.methodTableHash;
    if (deploymentId !== this.server.opts.deploymentId && deploymentId !== "" && this.server.opts.deploymentId !== "") {
      this.refuse(
        `deployment version mismatch: client is version ${JSON.stringify(deploymentId)}, server is version ` +
          `${JSON.stringify(this.server.opts.deploymentId)} (two versions of an app never call each other)`,
      );
      return;
    }
    if (hash !== expected) {
      this.refuse(
        `method table hash mismatch: client has ${JSON.stringify(hash)}, server has ${JSON.stringify(expected)} ` +
          `(caller and callee were built from different versions of the app)`,
      );
      return;
    }
    this.greeted = true;
    writeHelloOk(this.channel.writer);
    this.channel.scheduleFlush();
  }

  /** Refuses the handshake: logs `reason`, tells the client `told` (default: the reason), closes. */
  private refuse(reason: string, told = reason): void {
    this.server.stats.refusedHellos++;
    this.server.opts.logger.warn("rpc: refusing client", { remote: this.remote, reason });
    writeHelloErr(this.channel.writer, told);
    this.channel.end();
  }

  private onRequest(r: Reader): void {
    const stats = this.server.stats;
    const requestBytes = r.end - r.pos;
    const id = r.u32();
    const methodId = r.u32();
    const remaining = r.u32();
    const flags = r.u8();
    let traceparent: string | undefined;
    let metadata: Record<string, string> | undefined;
    if (flags & RequestFlag.TRACEPARENT) {
      const t = r.value();
      if (typeof t !== "string") throw new FrameError("REQUEST traceparent is not a string");
      traceparent = t;
    } else if (flags & RequestFlag.UNSAMPLED) traceparent = UNSAMPLED_TRACEPARENT;
    if (flags & RequestFlag.METADATA) metadata = checkMetadata(r.value());
    const args = r.value();
    if (!Array.isArray(args)) throw new FrameError("REQUEST args is not an array");
    if (!r.done) throw new FrameError("trailing bytes after REQUEST");
    if (this.inflight.has(id)) throw new FrameError(`duplicate request id ${id}`);
    stats.calls++;

    let method: MethodHandler | undefined;
    try {
      method = this.server.opts.lookup(methodId);
    } catch (err) {
      this.server.opts.logger.error("rpc: method lookup failed", { methodId, error: String(err) });
    }
    if (method === undefined) {
      this.sendSystemError(id, `unknown method id ${methodId} (the caller's and this server's method tables disagree)`);
      return;
    }
    const authorize = this.server.opts.authorize;
    const refusal = authorize === undefined ? undefined : authorize(methodId, this.peer);
    if (refusal !== undefined) {
      stats.unauthorized++;
      this.sendSystemError(id, refusal);
      return;
    }
    // The clock of the turn that read the request: one read for a whole batch of requests.
    const deadline = remaining === 0 ? undefined : turnNow() + remaining;
    const call = new ServerCall(id, deadline, traceparent, metadata, method.name);
    call.requestBytes = requestBytes;
    this.inflight.set(id, call);
    serveCall(this.server, this, call, method, args);
  }

  private onCancel(r: Reader): void {
    const id = r.u32();
    if (!r.done) throw new FrameError("malformed CANCEL");
    const call = this.inflight.get(id);
    if (call === undefined) return; // already answered: the CANCEL crossed our response
    call.cancelled = true;
    this.server.stats.cancelled++;
    call.abort(new CallCancelledError(`${call.method}: cancelled by the caller`));
  }

  /** @internal Sends a finished call's response (unless nobody is waiting for it). */
  respond(call: ServerCall, status: number, value: unknown, methodName: string, countBytes?: (bytes: number) => void): void {
    call.finish();
    if (this.inflight.get(call.id) !== call) return; // the connection closed meanwhile
    this.inflight.delete(call.id);
    if (this.inflight.size === 0) this.lastActiveAt = turnNow();
    // After the deadline the caller has failed the call on its own; a late reply (often the handler's
    // reaction to its aborted signal) would only race with that and confuse the error it sees.
    if (!call.cancelled && !call.expired && !this.channel.isClosed) {
      const w = this.channel.writer;
      const max = this.server.opts.maxFrameSize;
      const before = w.pos;
      try {
        writeResponse(w, call.id, status, value, max);
        countBytes?.(call.requestBytes + w.pos - before);
      } catch (err) {
        if (err instanceof CodecError) {
          // The handler returned (or threw) something unencodable: report it as the handler's error.
          this.server.stats.appErrors++;
          const wire = status === Status.APP_ERROR ? encodableWireError(value as ReturnType<typeof toWireError>) : toWireError(err);
          writeResponse(w, call.id, Status.APP_ERROR, wire, max);
        } else if (err instanceof FrameTooLargeError) {
          this.sendSystemError(call.id, `response of ${methodName} is too large: ${err.message}`);
        } else {
          this.sendSystemError(call.id, `cannot send response of ${methodName}: ${String(err)}`);
        }
      }
      this.channel.scheduleFlush();
    }
    if (this.goingAway && this.inflight.size === 0) this.channel.end();
  }

  private sendSystemError(id: number, message: string): void {
    this.server.stats.systemErrors++;
    writeResponse(this.channel.writer, id, Status.SYSTEM_ERROR, message, this.server.opts.maxFrameSize);
    this.channel.scheduleFlush();
  }
}

function checkMetadata(v: unknown): Record<string, string> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new FrameError("REQUEST metadata is not an object");
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (typeof o[k] !== "string") throw new FrameError(`REQUEST metadata value for ${JSON.stringify(k)} is not a string`);
  }
  return o as Record<string, string>;
}
