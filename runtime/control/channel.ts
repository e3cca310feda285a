// The control channel both ends of the control protocol speak (protos/runtime.proto): framing, request
// ids, and typed dispatch of requests to an interface (EnvelopeHandler, WeaveletControl in control.ts).
import type { Duplex } from "node:stream";
import { type BodyKind, type ControlBodies, type ControlMessage, decodeControl, encodeControl } from "../protos/runtime.js";

/** Largest control frame accepted; profiles are the biggest messages. */
const MAX_CONTROL_FRAME = 256 * 1024 * 1024;

/** What a request handler returns: the reply's body kind and body. */
export type ControlReply = { [K in BodyKind]: [K, ControlBodies[K]] }[BodyKind];

/** Serves requests arriving on a control channel. Throwing sends an error reply. */
export type ControlRequestHandler = (request: ControlMessage) => Promise<ControlReply> | ControlReply;

/**
 * The requests one side of the protocol serves: request body kind → [method name, reply body kind].
 * One table per interface; the same table builds its server (`serveRequests`) and its stub (`controlStub`).
 */
export type Routes = { readonly [K in BodyKind]?: readonly [method: string, reply: BodyKind] };

/** A reply body as methods return it: nothing for messages without fields. */
type ReplyValue<K extends BodyKind> = keyof ControlBodies[K] extends never ? void : ControlBodies[K];
type MethodOf<R extends Routes, K extends keyof R> = R[K] extends readonly [infer M extends string, BodyKind] ? M : never;
type ReplyOf<R extends Routes, K extends keyof R> = R[K] extends readonly [string, infer P extends BodyKind] ? ReplyValue<P> : never;

/** What serves the requests of a routes table: one method per request. */
export type ControlService<R extends Routes> = {
  [K in keyof R & BodyKind as MethodOf<R, K>]: (request: ControlBodies[K]) => Promise<ReplyOf<R, K>> | ReplyOf<R, K>;
};

/** The caller's view of a routes table: each method sends its request and resolves with the reply. */
export type ControlStub<R extends Routes> = {
  [K in keyof R & BodyKind as MethodOf<R, K>]: (request: ControlBodies[K]) => Promise<ReplyOf<R, K>>;
};

/**
 * A request handler that calls the `service` method `routes` names for each request kind, and answers
 * with the reply kind the table names. Requests not in the table fail, naming `who` could not serve them.
 */
export function serveRequests<R extends Routes>(routes: R, service: ControlService<R>, who: string): ControlRequestHandler {
  const table: Routes = routes;
  // The mapped types above tie each method to its request and reply kinds; here they are looked up by name.
  const methods = service as unknown as Record<string, (body: unknown) => unknown>;
  return async (request) => {
    const route = request.kind && Object.hasOwn(table, request.kind) ? table[request.kind] : undefined;
    if (!route || request.kind === undefined) throw new Error(`${who} cannot handle control request ${request.kind ?? "(none)"}`);
    const [method, replyKind] = route;
    const reply = await methods[method]!.call(service, request.body);
    return [replyKind, reply ?? {}] as ControlReply;
  };
}

/** An object with one method per request of `routes`, each sending it on `channel`. */
export function controlStub<R extends Routes>(channel: ControlChannel, routes: R): ControlStub<R> {
  const stub: Record<string, (body: ControlBodies[BodyKind]) => Promise<unknown>> = {};
  for (const [kind, route] of Object.entries(routes as Routes)) {
    const [method, replyKind] = route!;
    stub[method] = async (body) => {
      const reply = await channel.request(kind as BodyKind, body);
      if (reply.kind !== replyKind)
        throw new Error(`control request ${kind}: expected a ${replyKind} reply, got ${reply.kind ?? "an empty one"}`);
      // Methods replying with an empty message are typed void; their callers ignore the empty body.
      return reply.body;
    };
  }
  return stub as unknown as ControlStub<R>;
}

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

  /** Called once when the channel fails or closes. */
  onClose(listener: (err: Error) => void): void {
    if (this.closedError) listener(this.closedError);
    else this.closeListeners.push(listener);
  }

  /** True once the channel failed or was closed. */
  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** Closes the channel: pending requests reject, the stream is destroyed. */
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
      .then(() => this.handler(msg))
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
