// The control protocol (protos/runtime.proto): its version, and encoding of its messages. The message
// types are generated into ./gen/runtime.ts (`npm run gen`); this module only names and encodes them.
import protobuf from "protobufjs";
import { descriptor, PACKAGE, type ControlMessage as ControlFrame, type WeaveletArgs } from "./gen/runtime.js";

export type * from "./gen/runtime.js";

/**
 * The control protocol version. An envelope and a weavelet refuse each other unless they agree.
 * Bump on any incompatible change to protos/runtime.proto or to its framing.
 */
export const CONTROL_PROTOCOL_VERSION = 3;

const root = protobuf.Root.fromJSON(descriptor);
const ControlMessageType = root.lookupType(`${PACKAGE}.ControlMessage`);
const WeaveletArgsType = root.lookupType(`${PACKAGE}.WeaveletArgs`);

// 64-bit integers as decimal strings and enums by name: what the generated types declare.
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, defaults: true, arrays: true, objects: true, oneofs: true };

/** The kinds of body a ControlMessage can carry: the names of its `body` oneof members. */
export type BodyKind = NonNullable<ControlFrame["body"]>;

/** The body type of each body kind. */
export type ControlBodies = { [K in BodyKind]: NonNullable<ControlFrame[K]> };

/** One decoded control frame, its body narrowed by its kind. */
export type ControlMessage = {
  [K in BodyKind | "none"]: { id: number; reply: boolean; error: string } & (K extends BodyKind
    ? { kind: K; body: ControlBodies[K] }
    : { kind: undefined; body: undefined });
}[BodyKind | "none"];

/** Encodes a control frame: a request (`reply` false) or the reply to request `id`. */
export function encodeControl<K extends BodyKind>(
  id: number,
  reply: boolean,
  error: string,
  kind: K | undefined,
  body: ControlBodies[K] | undefined,
): Uint8Array {
  const obj: Record<string, unknown> = { id, reply, error };
  if (kind !== undefined) obj[kind] = body ?? {};
  // fromObject, not verify(): verify rejects the decimal strings we use for 64-bit integers.
  return ControlMessageType.encode(ControlMessageType.fromObject(obj)).finish();
}

/** Decodes a control frame; throws on malformed input (the caller closes the channel). */
export function decodeControl(bytes: Uint8Array): ControlMessage {
  const frame = ControlMessageType.toObject(ControlMessageType.decode(bytes), TO_OBJECT) as ControlFrame;
  const head = { id: Number(frame.id), reply: frame.reply, error: frame.error };
  const kind = frame.body;
  if (kind === undefined) return { ...head, kind: undefined, body: undefined };
  return { ...head, kind, body: frame[kind] ?? {} } as ControlMessage;
}

/** WeaveletArgs as the envelope passes them in the environment (base64 of the protobuf encoding). */
export function encodeWeaveletArgs(args: WeaveletArgs): string {
  return Buffer.from(WeaveletArgsType.encode(WeaveletArgsType.fromObject(args)).finish()).toString("base64");
}

/** The inverse of encodeWeaveletArgs. */
export function decodeWeaveletArgs(b64: string): WeaveletArgs {
  const msg = WeaveletArgsType.decode(Buffer.from(b64, "base64"));
  return WeaveletArgsType.toObject(msg, TO_OBJECT) as WeaveletArgs;
}
