import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { CodecError, Reader, Writer } from "../codec/codec.js";
import { type CallContext, callStorage, DEADLINE_SWEEP_MS, SWEPT_DEADLINE_MS } from "../core/call.js";
import { CallCancelledError, DeadlineExceededError, TransportError, remoteError } from "../core/errors.js";
import { parseAddress, type RpcAddress } from "./address.js";
import { AUTH_REFUSED, checkAuth, handshakeProof, newNonce, proofMatches, type RpcAuth } from "./auth.js";
import { type ByteCounters, Channel, type ChannelSink } from "./channel.js";
import {
  DEFAULT_MAX_FRAME_SIZE,
  FrameError,
  FrameType,
  RPC_PROTOCOL_VERSION,
  Status,
  asWireError,
  writeCancel,
  writeHello,
  writeProof,
  writeRequest,
} from "./frames.js";
import { type RpcLogger, silentLogger } from "./logger.js";
import { clientTlsOptions, type RpcTls } from "./tls.js";

/** Settings shared by every connection of a pool. */
export interface ConnectionOptions {
  /** Hash of the caller's method table, sent in HELLO; servers with another table refuse the connection. */
  methodTableHash: string;
  /**
   * The caller's deployment version, sent in HELLO; a server of another version refuses the connection,
   * so two versions of an app never call each other. Default "": unversioned.
   */
  deploymentId?: string;
  /**
   * The deployment key and this weavelet's identity: the connection proves it holds the key and
   * requires the server to prove the same (see auth.ts) before any call is sent. Default: none.
   */
  auth?: RpcAuth | undefined;
  /**
   * Connect over TLS 1.3 with this weavelet's certificate; the server's must come from the same CA and
   * name a weavelet of this deployment (see tls.ts). A function is asked at every connection attempt,
   * so renewed credentials reach new connections. Default: plain TCP.
   */
  tls?: RpcTls | (() => RpcTls) | undefined;
  /** Where connection trouble is reported (default: nowhere). */
  logger?: RpcLogger;
  /** Largest frame sent or accepted (default 16 MiB). */
  maxFrameSize?: number;
  /** Bound on TCP connect + HELLO (default 5 s). */
  connectTimeoutMs?: number;
  /** First reconnect delay after a failure (default 20 ms); doubles per failure, with jitter. */
  backoffMinMs?: number;
  /** Longest reconnect delay (default 2 s). */
  backoffMaxMs?: number;
}

/**
 * Life cycle of a {@link Connection}: `idle` (never connected) → `connecting` (TCP + HELLO) → `ready`;
 * a failure goes to `backoff` and a timer reconnects; `draining` takes no new calls and closes when the
 * in-flight ones settle; `closed` is final.
 */
export type ConnectionState = "idle" | "connecting" | "ready" | "backoff" | "draining" | "closed";

/** Per-connection counters (they survive reconnects). */
export interface ConnectionStats extends ByteCounters {
  /** Calls sent. */
  calls: number;
  /** Connection attempts that failed or dropped. */
  failures: number;
  /** Successful handshakes. */
  connects: number;
}

/** Clamp for Node timers (larger values fire immediately). */
const MAX_TIMER_MS = 0x7fffffff;
/**
 * A TLS connection moves new calls to a new connection this long before either side's certificate
 * expires (the server closes it at the expiry, see RpcServer), so no call meets the server's GOAWAY.
 */
const CERT_RETIRE_LEAD_MS = 1000;

/** A connection closed cleanly (GOAWAY) after living at least this long reconnects at once, without backoff. */
const CLEAN_CLOSE_MIN_LIFE_MS = 1000;
/** Largest remaining time the wire can carry. */
const MAX_WIRE_MS = 0xffffffff;
/**
 * A multiplexed RPC connection to one address (`"host:port"` or `"unix:/path"`). Connects lazily on the
 * first call (or `connect()`), reconnects with exponential backoff after failures, and matches responses
 * to calls by request id. When the socket drops, every call in flight on it rejects with TransportError.
 */
export class Connection implements ChannelSink {
  /** Counters, for metrics. */
  readonly stats: ConnectionStats = { bytesIn: 0, bytesOut: 0, calls: 0, failures: 0, connects: 0 };
  private _state: ConnectionState = "idle";
  private readonly target: RpcAddress;
  private readonly opts: Required<Omit<ConnectionOptions, "auth" | "tls">> & Pick<ConnectionOptions, "auth" | "tls">;
  /** This attempt's nonce, while the server's CHALLENGE is awaited (authenticating connections only). */
  private clientNonce: Buffer | undefined;
  private channel: Channel | undefined;
  private readonly pending = new Map<number, PendingCall>();
  private readonly reader = new Reader(Buffer.alloc(0));
  private nextId = 1;
  private consecutiveFailures = 0;
  private lastError: Error | undefined;
  private goaway = false;
  private handshaken = false;
  /** When the last handshake completed. */
  private connectedAt = 0;
  private connectTimer: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** TLS: where the current channel's frames go (retiring it points them elsewhere). */
  private route: ChannelRoute | undefined;
  /** TLS: fires shortly before a certificate of the current channel expires. */
  private expiryTimer: NodeJS.Timeout | undefined;
  /** TLS channels replaced before a certificate expired, finishing the calls they carry. */
  private readonly retired = new Set<RetiredChannel>();
  /** Runs while calls with a swept (long) deadline are pending. */
  private sweepTimer: NodeJS.Timeout | undefined;
  private closedPromise: Promise<void> | undefined;
  private resolveClosed: (() => void) | undefined;

  constructor(
    readonly address: string,
    opts: ConnectionOptions,
  ) {
    this.target = parseAddress(address);
    // Field by field: a spread would let an explicit `undefined` override a default.
    this.opts = {
      methodTableHash: opts.methodTableHash,
      deploymentId: opts.deploymentId ?? "",
      auth: opts.auth === undefined ? undefined : checkAuth(opts.auth),
      tls: opts.tls,
      logger: opts.logger ?? silentLogger,
      maxFrameSize: opts.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE,
      connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
      backoffMinMs: opts.backoffMinMs ?? 20,
      backoffMaxMs: opts.backoffMaxMs ?? 2000,
    };
  }

  /** Where the connection is in its life cycle. */
  get state(): ConnectionState {
    return this._state;
  }

  /** Connected, handshaken and not told to go away: new calls are expected to succeed. */
  get healthy(): boolean {
    return this._state === "ready" && !this.goaway;
  }

  /** Calls waiting for a response. */
  get inflight(): number {
    return this.pending.size;
  }

  /** The error of the last failed connection attempt, if the connection is not healthy. */
  get lastFailure(): Error | undefined {
    return this.lastError;
  }

  /** Starts connecting now if idle (a warm-up; calls connect lazily anyway). */
  connect(): void {
    if (this._state !== "idle" && this._state !== "backoff") return;
    if (this.reconnectTimer !== undefined) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
    }
    this._state = "connecting";
    this.goaway = false;
    this.handshaken = false;
    const t = this.target;
    const tls = typeof this.opts.tls === "function" ? this.opts.tls() : this.opts.tls;
    let socket: Socket;
    this.route = undefined;
    if (t.kind === "unix") socket = netConnect({ path: t.path });
    else if (tls === undefined) socket = netConnect({ host: t.host, port: t.port, noDelay: true });
    else {
      socket = tlsConnect({ host: t.host, port: t.port, ...clientTlsOptions(tls) });
      socket.setNoDelay(true);
      this.route = new ChannelRoute(this);
    }
    // Requests queue in the channel's writer but are held until HELLO_OK.
    const channel = new Channel(socket, this.route ?? this, this.opts.maxFrameSize, this.stats, true);
    this.channel = channel;
    const auth = this.opts.auth;
    this.clientNonce = auth === undefined ? undefined : newNonce();
    const hello = new Writer(128 + (this.opts.methodTableHash.length + this.opts.deploymentId.length) * 3);
    const proving = auth === undefined ? undefined : { group: auth.identity.group, nonce: this.clientNonce! };
    writeHello(hello, this.opts.methodTableHash, this.opts.deploymentId, proving);
    socket.write(hello.toBuffer()); // node queues it until connected
    this.connectTimer = setTimeout(onConnectTimeout, this.opts.connectTimeoutMs, this, channel);
    this.connectTimer.unref();
  }

  /**
   * Sends one call. `ctx` (default: the caller's current CallContext) supplies the deadline, the abort
   * signal, the traceparent and metadata. Rejects with the callee's error (`remoteError`: its registered class, else RemoteCallError),
   * DeadlineExceededError, CallCancelledError, TransportError (not sent, or the connection dropped), a
   * CodecError (arguments can't be encoded) or a plain Error (the server could not run the method).
   */
  call(
    methodId: number,
    methodName: string,
    args: readonly unknown[],
    ctx: CallContext | undefined = callStorage.getStore(),
  ): Promise<unknown> {
    const signal = ctx?.signal;
    if (signal?.aborted) return Promise.reject(new CallCancelledError(`${methodName}: cancelled before it was sent`));
    const deadline = ctx?.deadline;
    let remaining = 0;
    if (deadline !== undefined) {
      remaining = Math.ceil(deadline - Date.now());
      if (remaining <= 0) return Promise.reject(new DeadlineExceededError(`${methodName}: deadline exceeded before the call was sent`));
      if (remaining > MAX_WIRE_MS) remaining = MAX_WIRE_MS;
    }
    if (this._state === "idle") this.connect();
    const unavailable = this.unavailableReason();
    // Not sent: e.g. the server's GOAWAY (idle connection closed) arrived just before this call, and the
    // connection that replaces it is not up yet. The balancer retries it, whatever the method.
    if (unavailable !== undefined)
      return Promise.reject(new TransportError(`${methodName}: ${unavailable}`, { cause: this.lastError, notSent: true }));
    const channel = this.channel!;

    const id = this.allocId();
    try {
      writeRequest(channel.writer, id, methodId, remaining, ctx?.traceparent, ctx?.metadata, args, this.opts.maxFrameSize);
    } catch (err) {
      if (err instanceof CodecError) return Promise.reject(err);
      return Promise.reject(new Error(`${methodName}: cannot send request: ${err instanceof Error ? err.message : String(err)}`));
    }
    const p = new PendingCall(this, id, methodName);
    const promise = new Promise<unknown>((resolve, reject) => {
      p.resolve = resolve;
      p.reject = reject;
    });
    this.pending.set(id, p);
    this.stats.calls++;
    if (deadline !== undefined && remaining < SWEPT_DEADLINE_MS) p.timer = setTimeout(onCallDeadline, remaining, p);
    else if (deadline !== undefined && remaining <= MAX_TIMER_MS) {
      p.deadline = deadline;
      this.sweepTimer ??= setTimeout(sweepDeadlines, DEADLINE_SWEEP_MS, this);
    }
    if (signal !== undefined) watchSignal(signal, p);
    channel.scheduleFlush();
    return promise;
  }

  /** Takes no new calls; closes once in-flight calls settle. Resolves when closed. */
  drain(): Promise<void> {
    if (this._state === "closed") return Promise.resolve();
    const done = this.whenClosed();
    if (this._state !== "draining") {
      // No more reconnects; a connect in progress keeps its timeout so a dead peer can't stall the drain.
      if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      this._state = "draining";
      this.maybeFinishDrain();
    }
    return done;
  }

  /** Closes now: in-flight calls reject with TransportError. */
  close(): Promise<void> {
    if (this._state === "closed") return Promise.resolve();
    const done = this.whenClosed();
    this.clearTimers();
    this._state = "draining";
    for (const r of this.retired) r.channel.destroy();
    this.failAll(new Error("connection closed locally"));
    if (this.channel !== undefined) this.channel.destroy();
    else this.markClosed();
    return done;
  }

  /** @internal Frames from the server. */
  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    const r = this.reader;
    r.buf = buf;
    r.pos = start;
    r.end = end;
    switch (type) {
      case FrameType.RESPONSE:
        this.onResponse(r);
        return;
      case FrameType.HELLO_OK:
        this.onHelloOk(r);
        return;
      case FrameType.CHALLENGE:
        this.onChallenge(r);
        return;
      case FrameType.HELLO_ERR: {
        const msg = r.value();
        const text = typeof msg === "string" ? msg : "malformed HELLO_ERR";
        const err = new TransportError(`${this.address} refused the connection: ${text}`);
        // Logged once per distinct reason: reconnect attempts would otherwise repeat it every backoff.
        if (this.lastError?.message !== err.message)
          this.opts.logger.error("rpc: server refused connection", { address: this.address, reason: text });
        this.channel?.destroy(err);
        return;
      }
      case FrameType.GOAWAY:
        this.goaway = true;
        this.opts.logger.debug("rpc: server is going away", { address: this.address });
        if (this.pending.size === 0) this.channel?.end();
        return;
      default:
        throw new FrameError(`unexpected frame type ${type}`);
    }
  }

  /** @internal The socket closed. */
  onClose(error: Error | undefined): void {
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.channel = undefined;
    const wasReady = this._state === "ready" && !this.goaway;
    const reason = error ?? new Error(this.goaway ? "server shut down" : "connection closed by the server");
    if (error instanceof FrameError || error instanceof CodecError) {
      this.opts.logger.error("rpc: protocol error from server; connection closed", { address: this.address, error: error.message });
    }
    this.failAll(reason);
    if (this._state === "draining" || this._state === "closed") {
      this.markClosed();
      return;
    }
    if (this.goaway && error === undefined && this.handshaken && Date.now() - this.connectedAt >= CLEAN_CLOSE_MIN_LIFE_MS) {
      // The server closed cleanly after GOAWAY (it closed an idle connection, or is shutting down): not a
      // failure. Connect again at once, so calls queue for the new connection instead of failing during a
      // backoff; a server that is really gone refuses this attempt, which then backs off as usual.
      this._state = "idle";
      this.connect();
      return;
    }
    this.stats.failures++;
    this.lastError = reason;
    this.consecutiveFailures++;
    const base = Math.min(this.opts.backoffMaxMs, this.opts.backoffMinMs * 2 ** Math.min(this.consecutiveFailures - 1, 20));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this._state = "backoff";
    this.opts.logger.debug(wasReady ? "rpc: connection lost; reconnecting" : "rpc: connect failed; retrying", {
      address: this.address,
      error: reason.message,
      delayMs: delay,
    });
    this.reconnectTimer = setTimeout(onReconnect, delay, this);
    this.reconnectTimer.unref();
  }

  /**
   * @internal A call's deadline passed or its signal aborted: drop it, and on cancellation tell the
   * server. A passed deadline needs no message: the server holds the same deadline and aborts the call
   * itself, with DeadlineExceededError; a CANCEL racing its timer would make the callee see a cancellation.
   */
  abandon(p: PendingCall, err: Error): void {
    if (this.pending.get(p.id) !== p) return;
    this.pending.delete(p.id);
    p.cleanup();
    let ch = this.channel;
    for (const r of this.retired) if (r.forget(p.id)) ch = r.channel;
    if (err instanceof CallCancelledError && ch !== undefined && !ch.isClosed) {
      writeCancel(ch.writer, p.id);
      ch.scheduleFlush();
    }
    p.reject(err);
    this.maybeFinishDrain();
  }

  /** @internal */
  connectTimedOut(channel: Channel): void {
    this.connectTimer = undefined;
    if (this.channel !== channel || this.handshaken) return;
    channel.destroy(new Error(`connect + handshake took longer than ${this.opts.connectTimeoutMs} ms`));
  }

  /** The server proved itself (or not): answer with our proof, sent ahead of every held request. */
  private onChallenge(r: Reader): void {
    const deploymentId = r.value();
    const group = r.value();
    const serverNonce = r.value();
    const serverProof = r.value();
    const auth = this.opts.auth;
    const clientNonce = this.clientNonce;
    if (auth === undefined || clientNonce === undefined || this.handshaken) throw new FrameError("unexpected CHALLENGE");
    if (typeof deploymentId !== "string" || typeof group !== "string" || !(serverNonce instanceof Uint8Array)) {
      throw new FrameError("malformed CHALLENGE");
    }
    if (!(serverProof instanceof Uint8Array) || !r.done) throw new FrameError("malformed CHALLENGE");
    this.clientNonce = undefined;
    const t = {
      protocolVersion: RPC_PROTOCOL_VERSION,
      methodTableHash: this.opts.methodTableHash,
      client: auth.identity,
      server: { deploymentId, group },
      clientNonce,
      serverNonce: Buffer.from(serverNonce),
    };
    if (deploymentId !== auth.identity.deploymentId || !proofMatches(handshakeProof(auth.key, "server", t), serverProof)) {
      const err = new TransportError(`${this.address} refused: the server failed to authenticate (${AUTH_REFUSED})`);
      if (this.lastError?.message !== err.message) this.opts.logger.error("rpc: server failed to authenticate", { address: this.address });
      this.channel?.destroy(err);
      return;
    }
    const proof = new Writer(64);
    writeProof(proof, handshakeProof(auth.key, "client", t));
    this.channel!.socket.write(proof.toBuffer()); // requests stay held in the channel until HELLO_OK
  }

  private onHelloOk(r: Reader): void {
    const version = r.u32();
    if (this.handshaken) throw new FrameError("unexpected HELLO_OK");
    // An authenticating client accepts only a server that proved it holds the key.
    if (this.clientNonce !== undefined) throw new FrameError("server accepted without authenticating");
    if (version !== RPC_PROTOCOL_VERSION)
      throw new FrameError(`server speaks protocol version ${version}, we speak ${RPC_PROTOCOL_VERSION}`);
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.handshaken = true;
    this.connectedAt = Date.now();
    if (this._state === "connecting") this._state = "ready";
    this.consecutiveFailures = 0;
    this.lastError = undefined;
    this.stats.connects++;
    this.opts.logger.debug("rpc: connected", { address: this.address });
    const ch = this.channel!;
    ch.hold = false;
    ch.flush();
    if (this.route !== undefined) this.scheduleRetirement(ch);
    this.maybeFinishDrain();
  }

  /**
   * TLS: a certificate is only checked at the handshake, so a connection would outlive it. Shortly before
   * the earlier of both sides' certificates expires, new calls move to a new connection (with the
   * credentials `tls` gives then, renewed by then) and this one finishes its calls, then closes.
   */
  private scheduleRetirement(channel: Channel): void {
    const socket = channel.socket as TLSSocket;
    const expiries = [socket.getPeerX509Certificate(), socket.getX509Certificate()].map((c) => (c ? Date.parse(c.validTo) : NaN));
    const notAfter = Math.min(...expiries.filter((t) => !Number.isNaN(t)));
    if (!Number.isFinite(notAfter)) return;
    const delay = Math.max(0, notAfter - CERT_RETIRE_LEAD_MS - Date.now());
    // Longer than a timer can wait (about 24.8 days): it fires early and the connection is merely renewed early.
    this.expiryTimer = setTimeout(onCertificateExpiry, Math.min(delay, 0x7fffffff), this, channel);
    this.expiryTimer.unref();
  }

  /** @internal A certificate of `channel` is about to expire: new calls go to a new connection. */
  retire(channel: Channel): void {
    this.expiryTimer = undefined;
    const route = this.route;
    if (this.channel !== channel || route === undefined || this._state !== "ready" || this.goaway) return;
    this.opts.logger.info("rpc: a certificate of the connection expires; new calls go to a new connection", { address: this.address });
    const retired = new RetiredChannel(this, channel, new Set(this.pending.keys()));
    this.retired.add(retired);
    route.target = retired;
    this.channel = undefined;
    this._state = "idle";
    this.connect();
    retired.endIfDone();
  }

  /** @internal A response on a retired channel. */
  retiredResponse(buf: Buffer, start: number, end: number): void {
    const r = this.reader;
    r.buf = buf;
    r.pos = start;
    r.end = end;
    this.settle(r);
  }

  /** @internal Whether call `id` still waits for its response. */
  isPending(id: number): boolean {
    return this.pending.has(id);
  }

  /** @internal A retired channel closed: the calls it still carried fail. */
  retiredClosed(retired: RetiredChannel, ids: ReadonlySet<number>, error: Error | undefined): void {
    this.retired.delete(retired);
    const reason = error ?? new Error("connection closed by the server");
    for (const id of ids) {
      const p = this.pending.get(id);
      if (p === undefined) continue;
      this.pending.delete(id);
      p.cleanup();
      p.reject(new TransportError(`${p.method}: connection to ${this.address} lost: ${reason.message}`, { cause: reason }));
    }
    this.maybeFinishDrain();
  }

  private onResponse(r: Reader): void {
    if (!this.handshaken) throw new FrameError("RESPONSE before HELLO_OK");
    this.settle(r);
  }

  /** Settles the call a RESPONSE frame answers. */
  private settle(r: Reader): void {
    const id = r.u32();
    const status = r.u8();
    const p = this.pending.get(id);
    if (p === undefined) return; // abandoned (deadline/cancel): the response crossed our CANCEL
    this.pending.delete(id);
    p.cleanup();
    let value: unknown;
    try {
      value = r.value();
      if (!r.done) throw new FrameError("trailing bytes after RESPONSE");
    } catch (err) {
      p.reject(new TransportError(`${p.method}: malformed response from ${this.address}`, { cause: err }));
      throw err; // closes the connection: we can't trust the rest of the stream
    }
    if (status === Status.OK) {
      p.resolve(value);
    } else if (status === Status.APP_ERROR) {
      const e = asWireError(value);
      p.reject(remoteError(e, p.method));
    } else if (status === Status.SYSTEM_ERROR) {
      p.reject(new Error(`${p.method} failed on ${this.address}: ${typeof value === "string" ? value : "server error"}`));
    } else {
      p.reject(new TransportError(`${p.method}: unknown response status ${status} from ${this.address}`));
      throw new FrameError(`unknown response status ${status}`);
    }
    if (this.goaway && this.pending.size === 0) this.channel?.end();
    else this.maybeFinishDrain();
  }

  private unavailableReason(): string | undefined {
    switch (this._state) {
      case "connecting":
      case "ready":
        return this.goaway ? `${this.address} is shutting down` : undefined;
      case "backoff":
        return `${this.address} is unavailable (reconnecting)${this.lastError ? `: ${this.lastError.message}` : ""}`;
      default:
        return `connection to ${this.address} is ${this._state}`;
    }
  }

  private allocId(): number {
    let id = this.nextId;
    while (this.pending.has(id)) id = id === 0xffffffff ? 1 : id + 1;
    this.nextId = id === 0xffffffff ? 1 : id + 1;
    return id;
  }

  private failAll(reason: Error): void {
    if (this.pending.size === 0) return;
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const p of calls) {
      p.cleanup();
      p.reject(new TransportError(`${p.method}: connection to ${this.address} lost: ${reason.message}`, { cause: reason }));
    }
  }

  private maybeFinishDrain(): void {
    if (this._state !== "draining" || this.pending.size > 0) return;
    if (this.channel !== undefined) this.channel.end();
    else this.markClosed();
  }

  private whenClosed(): Promise<void> {
    this.closedPromise ??= new Promise((resolve) => (this.resolveClosed = resolve));
    return this.closedPromise;
  }

  private markClosed(): void {
    this._state = "closed";
    this.clearTimers();
    this.resolveClosed?.();
  }

  private clearTimers(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    if (this.sweepTimer !== undefined) clearTimeout(this.sweepTimer);
    this.reconnectTimer = undefined;
    this.connectTimer = undefined;
    this.sweepTimer = undefined;
  }

  /** @internal Fails the pending calls whose swept deadline passed; runs again while any remain. */
  sweepDeadlines(): void {
    this.sweepTimer = undefined;
    const now = Date.now();
    let remaining = false;
    for (const p of this.pending.values()) {
      if (p.deadline === 0) continue;
      if (p.deadline <= now) onCallDeadline(p);
      else remaining = true;
    }
    if (remaining) this.sweepTimer = setTimeout(sweepDeadlines, DEADLINE_SWEEP_MS, this);
  }
}

function sweepDeadlines(c: Connection): void {
  c.sweepDeadlines();
}

/** A call waiting for its response. One object per call: it is also the deadline timer's argument. */
class PendingCall {
  resolve!: (value: unknown) => void;
  reject!: (err: unknown) => void;
  timer: NodeJS.Timeout | undefined;
  /** The deadline (ms since the epoch) the connection's sweep enforces; 0: none, or the call has its own timer. */
  deadline = 0;
  signal: AbortSignal | undefined;

  constructor(
    readonly conn: Connection,
    readonly id: number,
    readonly method: string,
  ) {}

  /** The caller's signal aborted. */
  aborted(): void {
    this.conn.abandon(this, new CallCancelledError(`${this.method}: cancelled by the caller`));
  }

  cleanup(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.signal !== undefined) unwatchSignal(this.signal, this);
  }
}

function onCallDeadline(p: PendingCall): void {
  p.conn.abandon(p, new DeadlineExceededError(`${p.method}: deadline exceeded`));
}

function onReconnect(c: Connection): void {
  c.connect();
}

function onConnectTimeout(c: Connection, channel: Channel): void {
  c.connectTimedOut(channel);
}

function onCertificateExpiry(c: Connection, channel: Channel): void {
  c.retire(channel);
}

/**
 * A TLS channel's sink: the connection while the channel carries new calls; once it is retired, the
 * {@link RetiredChannel} that finishes its calls. (Plaintext channels report to the connection directly.)
 */
class ChannelRoute implements ChannelSink {
  constructor(public target: ChannelSink) {}

  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    this.target.onFrame(type, buf, start, end);
  }

  onClose(error: Error | undefined): void {
    this.target.onClose(error);
  }
}

/** A channel that carries no new calls: it delivers the responses of the calls it has, then closes. */
class RetiredChannel implements ChannelSink {
  constructor(
    private readonly conn: Connection,
    readonly channel: Channel,
    private readonly calls: Set<number>,
  ) {}

  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    // GOAWAY (the server's view of the same expiry) changes nothing: this channel takes no new calls anyway.
    if (type !== FrameType.RESPONSE) return;
    this.conn.retiredResponse(buf, start, end);
    this.endIfDone();
  }

  onClose(error: Error | undefined): void {
    this.conn.retiredClosed(this, this.calls, error);
  }

  /** Stops tracking call `id` (abandoned by its caller); true if this channel carried it. */
  forget(id: number): boolean {
    if (!this.calls.delete(id)) return false;
    this.endIfDone();
    return true;
  }

  /** Closes the channel once none of its calls waits any more. */
  endIfDone(): void {
    for (const id of this.calls) if (!this.conn.isPending(id)) this.calls.delete(id);
    if (this.calls.size === 0 && !this.channel.isClosed) this.channel.end();
  }
}

// One 'abort' listener per signal, however many calls share it (a handler's signal is typically reused
// by all its outgoing calls): avoids per-call addEventListener cost and MaxListeners warnings.
const watchers = new WeakMap<AbortSignal, Set<PendingCall>>();

function watchSignal(signal: AbortSignal, p: PendingCall): void {
  p.signal = signal;
  let set = watchers.get(signal);
  if (set === undefined) {
    const calls = new Set<PendingCall>();
    set = calls;
    watchers.set(signal, calls);
    signal.addEventListener(
      "abort",
      () => {
        const list = [...calls];
        calls.clear();
        for (const c of list) c.aborted();
      },
      { once: true },
    );
  }
  set.add(p);
}

function unwatchSignal(signal: AbortSignal, p: PendingCall): void {
  watchers.get(signal)?.delete(p);
}

/**
 * One {@link Connection} per address, shared by every component that lives there. Balancers
 * `acquire` and `release` addresses; a connection no balancer holds any more is drained.
 */
export class ConnectionPool {
  private readonly conns = new Map<string, { conn: Connection; refs: number }>();
  private closed = false;

  constructor(private readonly opts: ConnectionOptions) {}

  /** The shared connection to `address` (created on first use); pair with `release`. */
  acquire(address: string): Connection {
    if (this.closed) throw new TransportError("connection pool is closed");
    let e = this.conns.get(address);
    if (e === undefined) {
      e = { conn: new Connection(address, this.opts), refs: 0 };
      this.conns.set(address, e);
    }
    e.refs++;
    return e.conn;
  }

  /** Drops one reference; the last one drains the connection (in-flight calls finish). */
  release(address: string): void {
    const e = this.conns.get(address);
    if (e === undefined) return;
    if (--e.refs > 0) return;
    this.conns.delete(address);
    void e.conn.drain();
  }

  /** The connection to `address`, if one is held. */
  get(address: string): Connection | undefined {
    return this.conns.get(address)?.conn;
  }

  /** Every connection held, for metrics and health reporting. */
  connections(): Connection[] {
    return [...this.conns.values()].map((e) => e.conn);
  }

  /** Closes every connection now (in-flight calls reject with TransportError). */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(all.map((e) => e.conn.close()));
  }
}
