/**
 * Component RPC wire format.
 *
 * A connection carries a stream of frames in both directions. Integers are little-endian.
 *
 * ```
 * frame      = u32 length | u8 type | body          length counts type + body (so >= 1), <= max frame size
 *
 * HELLO      (1, client → server, first frame)      u32 protocolVersion | codec string methodTableHash
 *                                                   | [codec string deploymentId]  (absent or "": unversioned)
 *                                                   | [codec string group | codec bytes clientNonce]  (authenticating)
 * CHALLENGE  (8, server → client, answers an         codec string deploymentId | codec string group
 *            authenticating HELLO)                   | codec bytes serverNonce | codec bytes serverProof
 * PROOF      (9, client → server, after CHALLENGE)   codec bytes clientProof
 * HELLO_OK   (2, server → client)                   u32 protocolVersion
 * HELLO_ERR  (3, server → client, then close)       codec string message (names both sides' values; to a
 *                                                   peer that did not authenticate, only "authentication failed")
 * REQUEST    (4, client → server)                   u32 requestId | u32 methodId | u32 remainingMs (0 = no deadline)
 *                                                   | u8 flags | [codec string traceparent]  if flags & 1
 *                                                   | [codec object metadata]               if flags & 2
 *                                                   (flags & 4: the traceparent is UNSAMPLED_TRACEPARENT, not sent)
 *                                                   | codec array args
 * RESPONSE   (5, server → client)                   u32 requestId | u8 status | codec value:
 *                                                     OK (0): the result
 *                                                     APP_ERROR (1): {name, message, stack?, details}
 *                                                     SYSTEM_ERROR (2): message string
 * CANCEL     (6, client → server)                   u32 requestId   (deadline passed or caller aborted)
 * GOAWAY     (7, server → client)                   empty: the server is shutting down; send no new requests,
 *                                                   in-flight ones still get their responses
 * ```
 *
 * With a deployment key (see auth.ts) the handshake is HELLO → CHALLENGE → PROOF → HELLO_OK: each side
 * proves it holds the key with an HMAC over both nonces and both identities, and the server runs nothing
 * before the client's proof checks out.
 *
 * Requests are multiplexed: any number may be outstanding per connection, responses come in completion
 * order and are matched by requestId. A client sends requests only after HELLO_OK. A length over the
 * receiver's maximum, an unknown type or a body that does not parse is a protocol violation: the
 * receiver logs it and closes that connection (and only that one).
 */

import { CodecError, Writer, encodeValue, encodeValues } from "../codec/codec.js";
import { registerError, registeredErrorName } from "../core/errors.js";
import { UNSAMPLED_TRACEPARENT } from "../core/call.js";

// A value that cannot cross a call fails it with a CodecError on either side, rebuilt as one remotely.
registerError(CodecError);

/** Version of this frame format; peers with different versions refuse each other at HELLO. */
export const RPC_PROTOCOL_VERSION = 2;

/** Default maximum frame size (16 MiB), applied to frames sent and received. */
export const DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024;

/** Frame type bytes. */
export const FrameType = {
  HELLO: 1,
  HELLO_OK: 2,
  HELLO_ERR: 3,
  REQUEST: 4,
  RESPONSE: 5,
  CANCEL: 6,
  GOAWAY: 7,
  CHALLENGE: 8,
  PROOF: 9,
} as const;

/** RESPONSE status bytes. */
export const Status = {
  OK: 0,
  APP_ERROR: 1,
  SYSTEM_ERROR: 2,
} as const;

/** REQUEST flag bits: which optional header fields follow. */
export const RequestFlag = {
  TRACEPARENT: 1,
  METADATA: 2,
  /** The call belongs to an unsampled trace: its traceparent is UNSAMPLED_TRACEPARENT (core/call.ts), not encoded. */
  UNSAMPLED: 4,
} as const;

/** Size of the fixed part of a frame: u32 length + u8 type. */
export const FRAME_HEADER_SIZE = 5;

/** The peer broke the protocol (bad length, unknown type, malformed body). Fatal for that connection. */
export class FrameError extends Error {
  override readonly name = "FrameError";
}

/** A frame we were about to send is over the size limit. Fails that one call, not the connection. */
export class FrameTooLargeError extends Error {
  override readonly name = "FrameTooLargeError";
}

/** Receives complete frames: `buf[start, end)` is the body (after the type byte). Valid only during the call. */
export interface FrameSink {
  /** Handles one frame; throwing closes the connection. */
  onFrame(type: number, buf: Buffer, start: number, end: number): void;
}

/** Smallest buffer a split frame is joined into, and the largest one a {@link FrameReader} keeps for the next. */
const MIN_ASSEMBLY = 16 * 1024;
const MAX_KEPT_ASSEMBLY = 1024 * 1024;

/**
 * Splits a byte stream into frames. Frames that arrive whole inside one chunk are handed out in place
 * (no copy). A frame split across chunks is kept as the list of the chunks that carried it, so a partial
 * frame holds exactly the bytes that arrived (never a buffer sized by the length it declares, nor one
 * grown ahead of its bytes), and they go with the connection: a peer that announces 16 MiB and sends
 * 10 bytes costs those 10 bytes. When the last chunk arrives, the chunks are joined in one copy, into
 * a buffer kept for the next split frame when it is at most 1 MiB (frames are only lent out during
 * `onFrame`, so reuse is safe) or a fresh one for a bigger frame.
 */
export class FrameReader {
  /** The chunks (or chunk tails) of the frame being received, in order. */
  private parts: Buffer[] = [];
  /** Size of the frame being received (length prefix included), or 0 when none is. */
  private partialSize = 0;
  /** Bytes of that frame received so far (the sum of `parts`' lengths). */
  private filled = 0;
  /** Where the last split frame of at most 1 MiB was joined; reused for the next one. */
  private assembly: Buffer | undefined;
  private head: Buffer | undefined;
  private stopped = false;
  /** Frames delivered so far. */
  frames = 0;

  constructor(
    private readonly maxFrameSize: number,
    private readonly sink: FrameSink,
  ) {}

  /** True while part of a frame (or of its length prefix) has arrived and the rest has not. */
  get pending(): boolean {
    return this.partialSize > 0 || this.head !== undefined;
  }

  /** Bytes of memory held for the frame still arriving (0 when none is). */
  get buffered(): number {
    return this.filled + (this.head?.length ?? 0);
  }

  /** Lets go of the kept assembly buffer (an idle connection keeps nothing). */
  trim(): void {
    this.assembly = undefined;
  }

  /** Stops delivering frames (the connection is closing) and lets go of every buffer. */
  stop(): void {
    this.stopped = true;
    this.assembly = undefined;
    this.parts = [];
    this.partialSize = 0;
    this.filled = 0;
    this.head = undefined;
  }

  /** Feeds received bytes; delivers every completed frame. Throws FrameError on a bad length prefix. */
  push(chunk: Buffer): void {
    if (this.stopped) return;
    if (this.head !== undefined) {
      // Fewer than 4 bytes of a length prefix were left over: rare, so a concat is fine.
      chunk = Buffer.concat([this.head, chunk]);
      this.head = undefined;
    }
    const n = chunk.length;
    let off = 0;
    if (this.partialSize > 0) {
      const size = this.partialSize;
      const take = Math.min(size - this.filled, n);
      this.parts.push(take === n ? chunk : chunk.subarray(0, take));
      this.filled += take;
      off = take;
      if (this.filled < size) return;
      const buf = this.join(size);
      this.deliver(buf, 0, size);
    }
    while (n - off >= 4 && !this.stopped) {
      const len = (chunk[off]! | (chunk[off + 1]! << 8) | (chunk[off + 2]! << 16)) + chunk[off + 3]! * 0x1000000;
      if (len < 1 || len > this.maxFrameSize) {
        this.stop();
        throw new FrameError(`frame length ${len} outside 1..${this.maxFrameSize}`);
      }
      const total = 4 + len;
      if (n - off >= total) {
        this.deliver(chunk, off, off + total);
        off += total;
      } else {
        // The chunk's tail starts a frame. Kept as a view of the chunk, unless the tail is the smaller
        // half of it: then a copy, so what a partial frame holds stays within twice what it received.
        const rest = n - off;
        this.parts.push(off === 0 ? chunk : rest * 2 < n ? Buffer.from(chunk.subarray(off, n)) : chunk.subarray(off, n));
        this.partialSize = total;
        this.filled = rest;
        return;
      }
    }
    if (off < n && !this.stopped) this.head = Buffer.from(chunk.subarray(off, n));
  }

  /** Joins the received parts of a complete frame of `size` bytes into one buffer (one copy). */
  private join(size: number): Buffer {
    let buf = this.assembly;
    if (buf === undefined || buf.length < size) {
      buf = Buffer.allocUnsafe(Math.max(size, MIN_ASSEMBLY));
      // Keep a modest buffer for the next split frame; a huge one goes once its frame is handled.
      this.assembly = size <= MAX_KEPT_ASSEMBLY ? buf : undefined;
    }
    let at = 0;
    for (const p of this.parts) {
      p.copy(buf, at);
      at += p.length;
    }
    this.parts = [];
    this.partialSize = 0;
    this.filled = 0;
    return buf;
  }

  private deliver(buf: Buffer, frameStart: number, frameEnd: number): void {
    this.frames++;
    this.sink.onFrame(buf[frameStart + 4]!, buf, frameStart + FRAME_HEADER_SIZE, frameEnd);
  }
}

/** Starts a frame in `w`: reserves the length and writes the type. Returns the frame's start offset. */
export function beginFrame(w: Writer, type: number): number {
  w.ensure(FRAME_HEADER_SIZE);
  const start = w.pos;
  w.buf[start + 4] = type;
  w.pos = start + FRAME_HEADER_SIZE;
  return start;
}

/** Finishes the frame begun at `start` (patches its length); rolls it back if it is over `maxFrameSize`. */
export function endFrame(w: Writer, start: number, maxFrameSize: number): void {
  const len = w.pos - start - 4;
  if (len > maxFrameSize) {
    w.pos = start;
    throw new FrameTooLargeError(`frame of ${len} bytes is over the ${maxFrameSize}-byte limit`);
  }
  w.patchU32(start, len);
}

/** Appends a HELLO frame; `auth` (the client's group and nonce) asks the server to authenticate. */
export function writeHello(w: Writer, methodTableHash: string, deploymentId = "", auth?: { group: string; nonce: Uint8Array }): void {
  const start = beginFrame(w, FrameType.HELLO);
  w.u32(RPC_PROTOCOL_VERSION);
  encodeValue(w, methodTableHash, "methodTableHash");
  if (deploymentId !== "" || auth !== undefined) encodeValue(w, deploymentId, "deploymentId");
  if (auth !== undefined) {
    encodeValue(w, auth.group, "group");
    encodeValue(w, auth.nonce, "nonce");
  }
  endFrame(w, start, DEFAULT_MAX_FRAME_SIZE);
}

/** Appends a CHALLENGE frame: the server's identity, nonce and proof. */
export function writeChallenge(w: Writer, deploymentId: string, group: string, nonce: Uint8Array, proof: Uint8Array): void {
  const start = beginFrame(w, FrameType.CHALLENGE);
  encodeValue(w, deploymentId, "deploymentId");
  encodeValue(w, group, "group");
  encodeValue(w, nonce, "nonce");
  encodeValue(w, proof, "proof");
  endFrame(w, start, DEFAULT_MAX_FRAME_SIZE);
}

/** Appends a PROOF frame: the client's proof. */
export function writeProof(w: Writer, proof: Uint8Array): void {
  const start = beginFrame(w, FrameType.PROOF);
  encodeValue(w, proof, "proof");
  endFrame(w, start, DEFAULT_MAX_FRAME_SIZE);
}

/** Appends a HELLO_OK frame. */
export function writeHelloOk(w: Writer): void {
  const start = beginFrame(w, FrameType.HELLO_OK);
  w.u32(RPC_PROTOCOL_VERSION);
  endFrame(w, start, DEFAULT_MAX_FRAME_SIZE);
}

/** Appends a HELLO_ERR frame. */
export function writeHelloErr(w: Writer, message: string): void {
  const start = beginFrame(w, FrameType.HELLO_ERR);
  encodeValue(w, message, "message");
  endFrame(w, start, DEFAULT_MAX_FRAME_SIZE);
}

/**
 * Appends a REQUEST frame. On failure (a CodecError for unencodable arguments, or FrameTooLargeError)
 * the writer is left as it was.
 */
export function writeRequest(
  w: Writer,
  requestId: number,
  methodId: number,
  remainingMs: number,
  traceparent: string | undefined,
  metadata: Readonly<Record<string, string>> | undefined,
  args: readonly unknown[],
  maxFrameSize: number,
): void {
  const start = beginFrame(w, FrameType.REQUEST);
  try {
    w.ensure(13);
    const buf = w.buf;
    let p = w.pos;
    p = putU32(buf, p, requestId);
    p = putU32(buf, p, methodId);
    p = putU32(buf, p, remainingMs);
    // Most calls of a busy process are in unsampled traces: one flag bit says so instead of 55 characters.
    const unsampled = traceparent === UNSAMPLED_TRACEPARENT;
    const sent = traceparent !== undefined && !unsampled;
    buf[p++] =
      (sent ? RequestFlag.TRACEPARENT : unsampled ? RequestFlag.UNSAMPLED : 0) | (metadata !== undefined ? RequestFlag.METADATA : 0);
    w.pos = p;
    if (sent) encodeValue(w, traceparent, "traceparent");
    if (metadata !== undefined) encodeValue(w, metadata, "metadata");
    encodeValues(args, w, "args");
  } catch (err) {
    w.pos = start;
    throw err;
  }
  endFrame(w, start, maxFrameSize);
}

/** Appends a RESPONSE frame; rolls back and throws (CodecError / FrameTooLargeError) if it can't. */
export function writeResponse(w: Writer, requestId: number, status: number, value: unknown, maxFrameSize: number): void {
  const start = beginFrame(w, FrameType.RESPONSE);
  try {
    w.ensure(5);
    w.pos = putU32(w.buf, w.pos, requestId);
    w.buf[w.pos++] = status;
    encodeValue(w, value, status === Status.OK ? "result" : "error");
  } catch (err) {
    w.pos = start;
    throw err;
  }
  endFrame(w, start, maxFrameSize);
}

/** Appends a CANCEL frame. */
export function writeCancel(w: Writer, requestId: number): void {
  const start = beginFrame(w, FrameType.CANCEL);
  w.u32(requestId);
  endFrame(w, start, DEFAULT_MAX_FRAME_SIZE);
}

/** Appends a GOAWAY frame. */
export function writeGoaway(w: Writer): void {
  const start = beginFrame(w, FrameType.GOAWAY);
  endFrame(w, start, DEFAULT_MAX_FRAME_SIZE);
}

function putU32(buf: Buffer, p: number, v: number): number {
  buf[p] = v;
  buf[p + 1] = v >>> 8;
  buf[p + 2] = v >>> 16;
  buf[p + 3] = v >>> 24;
  return p + 4;
}

/** The error object carried by an APP_ERROR response. */
export interface WireError {
  /** The registered name of the thrown error's class (`registerError`); absent when unregistered. */
  type?: string | undefined;
  /** The thrown error's `name`. */
  name: string;
  /** The thrown error's `message`. */
  message: string;
  /** The remote stack trace, if any. */
  stack?: string | undefined;
  /** Own enumerable properties of the thrown error (e.g. `code`). */
  details: Record<string, unknown>;
}

/** Checks a decoded APP_ERROR body; throws FrameError if it isn't one. */
export function asWireError(v: unknown): WireError {
  if (typeof v !== "object" || v === null) throw new FrameError("APP_ERROR body is not an object");
  const o = v as Record<string, unknown>;
  if (typeof o.name !== "string" || typeof o.message !== "string") throw new FrameError("APP_ERROR body lacks name/message");
  if (o.stack !== undefined && typeof o.stack !== "string") throw new FrameError("APP_ERROR stack is not a string");
  if (o.type !== undefined && typeof o.type !== "string") throw new FrameError("APP_ERROR type is not a string");
  const details = o.details;
  if (details !== undefined && (typeof details !== "object" || details === null || Array.isArray(details))) {
    throw new FrameError("APP_ERROR details is not an object");
  }
  return { type: o.type, name: o.name, message: o.message, stack: o.stack, details: (details ?? {}) as Record<string, unknown> };
}

/** Turns anything a handler threw into the APP_ERROR body (see {@link WireError}). */
export function toWireError(err: unknown): WireError {
  if (typeof err !== "object" || err === null) return { name: "Error", message: safeString(err), details: {} };
  const o = err as Record<string, unknown>;
  const name = typeof o.name === "string" ? o.name : "Error";
  const message = typeof o.message === "string" ? o.message : safeString(err);
  const stack = typeof o.stack === "string" ? o.stack : undefined;
  const details: Record<string, unknown> = {};
  // A RemoteCallError rethrown by a handler carries its own details; its bookkeeping fields are not details.
  const inner = o.details;
  const isRemote = typeof o.remoteName === "string" && typeof o.method === "string" && typeof inner === "object" && inner !== null;
  if (isRemote) Object.assign(details, inner);
  for (const k of Object.keys(o)) {
    if (k === "name" || k === "message" || k === "stack") continue;
    if (isRemote && (k === "remoteName" || k === "remoteStack" || k === "method" || k === "details")) continue;
    details[k] = o[k];
  }
  const remoteStack = isRemote && typeof o.remoteStack === "string" ? o.remoteStack : stack;
  const type = registeredErrorName(err);
  return type === undefined ? { name, message, stack: remoteStack, details } : { type, name, message, stack: remoteStack, details };
}

/** Drops details that cannot be encoded, so an odd error property never hides the error itself. */
export function encodableWireError(e: WireError): WireError {
  const details: Record<string, unknown> = {};
  const w = new Writer(256);
  for (const [k, v] of Object.entries(e.details)) {
    try {
      w.reset();
      encodeValue(w, v);
      details[k] = v;
    } catch (err) {
      if (!(err instanceof CodecError)) throw err;
      details[k] = `<not encodable: ${err.message}>`;
    }
  }
  return { ...e, details };
}

function safeString(v: unknown): string {
  try {
    return String(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}
