import type { Socket } from "node:net";
import { Writer } from "../codec/codec.js";
import { FrameReader, type FrameSink } from "./frames.js";

/** Byte counters a channel adds to (shared by all channels of a server or a connection). */
export interface ByteCounters {
  /** Bytes received. */
  bytesIn: number;
  /** Bytes handed to the socket. */
  bytesOut: number;
}

/** What a channel reports to its owner. */
export interface ChannelSink extends FrameSink {
  /** The socket closed; `error` is why, if it wasn't a clean close. Called exactly once. */
  onClose(error: Error | undefined): void;
  /** Called after each chunk of received bytes has been split into frames (servers keep their budgets here). */
  afterRead?(): void;
}

const WRITER_SIZE = 16 * 1024;
/**
 * A channel's first writer buffer is small and grows with what it sends: thousands of connections that
 * never get past HELLO (a flood) must not cost 16 KiB each.
 */
const FIRST_WRITER_SIZE = 256;
/** A writer buffer grown beyond this by a burst is replaced by a small one after the flush. */
const MAX_KEPT_WRITER = 1024 * 1024;

/**
 * One socket's framing and write batching, used by both client and server.
 *
 * Frames are encoded straight into one reusable {@link Writer}; everything queued during a tick goes out
 * as a single `socket.write` on `process.nextTick` (after the current synchronous burst and its promise
 * reactions), so a burst of small calls or responses costs one syscall. While the socket reports
 * backpressure, frames keep accumulating and go out as one write at 'drain'.
 */
export class Channel {
  /** Frames queued for the next flush. */
  readonly writer = new Writer(FIRST_WRITER_SIZE);
  /** While true, queued frames are kept back (a client holds requests until the handshake is done). */
  hold: boolean;
  private readonly reader: FrameReader;
  private flushQueued = false;
  private closing = false;
  private closed = false;
  private error: Error | undefined;

  constructor(
    readonly socket: Socket,
    private readonly sink: ChannelSink,
    maxFrameSize: number,
    private readonly counters: ByteCounters,
    hold = false,
  ) {
    this.hold = hold;
    this.reader = new FrameReader(maxFrameSize, sink);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.flush());
    socket.on("error", (err: Error) => {
      this.error ??= err;
    });
    socket.on("close", () => this.onSocketClose());
  }

  /** True once the channel is closing or closed: nothing more will be sent or delivered. */
  get isClosed(): boolean {
    return this.closing || this.closed;
  }

  /** True while part of a frame has arrived and the rest has not. */
  get framePending(): boolean {
    return this.reader.pending;
  }

  /** Bytes held for the frame still arriving. */
  get bufferedIn(): number {
    return this.reader.buffered;
  }

  /** Frames received so far. */
  get framesIn(): number {
    return this.reader.frames;
  }

  /** Lets go of buffers kept for frames that are not arriving. */
  trim(): void {
    this.reader.trim();
  }

  /** Sends whatever is queued on the next tick. */
  scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    process.nextTick(flushChannel, this);
  }

  /** Sends whatever is queued now (unless held or the socket needs to drain). */
  flush(force = false): void {
    this.flushQueued = false;
    const w = this.writer;
    const n = w.pos;
    if (n === 0 || this.closed || (this.hold && !force)) return;
    if (!force && this.socket.writableNeedDrain) return; // 'drain' flushes the accumulated batch
    w.pos = 0;
    this.counters.bytesOut += n;
    const socket = this.socket;
    socket.write(w.buf.subarray(0, n));
    // Usually the kernel takes the whole batch synchronously and the socket keeps no reference to it:
    // the writer's buffer is free again, no copy needed. Otherwise (a partial write, or a write queued
    // behind another) the socket owns those bytes until it is done, and the writer continues in a fresh
    // buffer. A buffer grown large by a burst is let go either way.
    // The fresh buffer starts at the size this one grew to (unless beyond the kept maximum): when the kernel's
    // buffer is the limit (a Unix socket's is ~208 KiB, loopback TCP's grows to MiBs), the next batch is
    // as large, and growing to it again from 16 KiB would copy it several times over.
    if (socket.writableLength !== 0 || w.buf.length > MAX_KEPT_WRITER)
      w.buf = Buffer.allocUnsafe(w.buf.length > MAX_KEPT_WRITER ? WRITER_SIZE : w.buf.length);
  }

  /** Sends what is queued, then half-closes; the channel closes when the peer closes its side. */
  end(): void {
    if (this.isClosed) return;
    this.closing = true;
    this.hold = false;
    this.flush(true);
    this.reader.stop();
    this.socket.end();
    // A peer that never closes its side must not keep the socket open forever.
    setTimeout(destroySocket, 5000, this.socket).unref();
  }

  /** Closes the socket now; queued frames are dropped. `error` is reported to the sink as the reason. */
  destroy(error?: Error): void {
    if (this.closed) return;
    this.error ??= error;
    this.closing = true;
    this.reader.stop();
    this.writer.reset();
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.counters.bytesIn += chunk.length;
    if (this.isClosed) return;
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
    }
    this.sink.afterRead?.();
  }

  private onSocketClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    this.reader.stop();
    this.writer.reset();
    this.sink.onClose(this.error);
  }
}

function flushChannel(c: Channel): void {
  c.flush();
}

function destroySocket(s: Socket): void {
  s.destroy();
}
