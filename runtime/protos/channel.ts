import type { Duplex } from "node:stream";
import { type BodyKind, type ControlBodies, type ControlMessage, decodeControl, encodeControl } from "./runtime.js";

/** Largest control frame accepted; profiles are the biggest messages. */
const MAX_CONTROL_FRAME = 256 * 1024 * 1024;

/** What a request handler returns: the reply's body kind and body. */
export type ControlReply = { [K in BodyKind]: [K, ControlBodies[K]] }[BodyKind];

/** Serves requests arriving on a control channel. Throwing sends an error reply. */
export type ControlRequestHandler = (kind: BodyKind, body: ControlBodies[BodyKind]) => Promise<ControlReply> | ControlReply;

/**
 * A bidirectional request/reply channel over one byte stream (the envelope↔weavelet pipe): frames are a
 * 4-byte big-endian length then a ControlMessage; both sides send requests concurrently.
 */
export class ControlChannel {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: ControlMessage) => void; reject: (e: Error) => void }>();
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private closedError: Error | undefined;
  private readonly closeListeners: ((err: Error) => void)[] = [];

  constructor(
    private readonly stream: Duplex,
    private readonly handler: ControlRequestHandler,
    private readonly peer: string,
  ) {
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("error", (err) => this.fail(new Error(`control channel to ${peer}: ${err.message}`)));
    stream.on("close", () => this.fail(new Error(`control channel to ${peer} closed`)));
    stream.on("end", () => this.fail(new Error(`control channel to ${peer} closed`)));
  }

  /** Sends a request and resolves with the reply message (rejects on an error reply or channel loss). */
  request<K extends BodyKind>(kind: K, body: ControlBodies[K]): Promise<ControlMessage> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise<ControlMessage>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.write(encodeControl(id, false, "", kind, body));
    });
  }

  /** Sends a request whose reply is not awaited (logs, spans): failures only matter if the channel is gone. */
  notify<K extends BodyKind>(kind: K, body: ControlBodies[K]): void {
    this.request(kind, body).catch(() => {});
  }

  /** Called once when the channel fails or closes. */
  onClose(listener: (err: Error) => void): void {
    if (this.closedError) listener(this.closedError);
    else this.closeListeners.push(listener);
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  close(): void {
    this.fail(new Error(`control channel to ${this.peer} closed`));
    this.stream.destroy();
  }

  private write(payload: Uint8Array): void {
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(payload.length, 0);
    this.stream.cork();
    this.stream.write(header);
    this.stream.write(payload);
    process.nextTick(() => this.stream.uncork());
  }

  private onData(chunk: Buffer): void {
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    while (this.bufferedBytes >= 4) {
      const head = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.bufferedBytes);
      this.buffered = [head];
      const len = head.readUInt32BE(0);
      if (len > MAX_CONTROL_FRAME) {
        this.protocolError(`frame of ${len} bytes exceeds the ${MAX_CONTROL_FRAME} byte limit`);
        return;
      }
      if (head.length < 4 + len) return;
      const frame = head.subarray(4, 4 + len);
      const rest = head.subarray(4 + len);
      this.buffered = rest.length ? [rest] : [];
      this.bufferedBytes = rest.length;
      let msg: ControlMessage;
      try {
        msg = decodeControl(frame);
      } catch (err) {
        this.protocolError(`malformed frame: ${(err as Error).message}`);
        return;
      }
      this.dispatch(msg);
    }
  }

  private dispatch(msg: ControlMessage): void {
    if (msg.reply) {
      const waiter = this.pending.get(msg.id);
      if (!waiter) return;
      this.pending.delete(msg.id);
      if (msg.error) waiter.reject(new Error(msg.error));
      else waiter.resolve(msg);
      return;
    }
    if (!msg.kind || msg.body === undefined) {
      this.write(encodeControl(msg.id, true, "request without a body", undefined, undefined));
      return;
    }
    Promise.resolve()
      .then(() => this.handler(msg.kind!, msg.body!))
      .then(
        ([kind, body]) => {
          if (!this.closedError) this.write(encodeControl(msg.id, true, "", kind, body));
        },
        (err: unknown) => {
          const text = err instanceof Error ? err.message : String(err);
          if (!this.closedError) this.write(encodeControl(msg.id, true, text || "request failed", undefined, undefined));
        },
      );
  }

  private protocolError(what: string): void {
    this.fail(new Error(`control channel to ${this.peer}: ${what}`));
    this.stream.destroy();
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const waiter of this.pending.values()) waiter.reject(err);
    this.pending.clear();
    for (const listener of this.closeListeners.splice(0)) listener(err);
  }
}
