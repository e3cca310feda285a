// The values every benchmark sends: one struct shape (strings, numbers, a boolean, arrays, nested
// records) at two sizes, plus its protobuf schema for the rows that need one (grpc-js, protobufjs).
import protobuf from "protobufjs";

export interface Item {
  id: number;
  name: string;
  price: number;
  tags: string[];
}

export interface Payload {
  id: number;
  name: string;
  email: string;
  score: number;
  active: boolean;
  tags: string[];
  items: Item[];
}

export type PayloadSize = "small" | "large";
export const PAYLOAD_SIZES: readonly PayloadSize[] = ["small", "large"];

/** ~100 bytes in tsweaver's codec and msgpack, ~130 as JSON. */
function small(): Payload {
  return {
    id: 48213,
    name: "Ada Lovelace",
    email: "ada@example.com",
    score: 98.625,
    active: true,
    tags: ["admin", "beta", "eu-west-1"],
    items: [],
  };
}

/** ~10 KB in tsweaver's codec: the small record plus 120 line items. */
function large(): Payload {
  const p = small();
  const colors = ["red", "green", "blue", "black", "white"];
  for (let i = 0; i < 120; i++) {
    p.items.push({
      id: 100_000 + i * 37,
      name: `item ${i.toString().padStart(4, "0")} deluxe widget`,
      price: Math.round((3.75 + i * 1.13) * 100) / 100 + 0.001,
      tags: [colors[i % colors.length]!, i % 2 ? "large" : "small"],
    });
  }
  return p;
}

/** A fresh copy of the payload of the given size (fresh so no benchmark shares object identity). */
export function payload(size: PayloadSize): Payload {
  return size === "small" ? small() : large();
}

/** Cheap check that an echoed value is the payload sent (shape and a few fields). */
export function checkEcho(sent: Payload, got: unknown): void {
  const g = got as Payload | undefined;
  if (
    typeof g !== "object" ||
    g === null ||
    g.id !== sent.id ||
    g.name !== sent.name ||
    g.score !== sent.score ||
    g.active !== sent.active ||
    !Array.isArray(g.tags) ||
    g.tags.length !== sent.tags.length ||
    (g.items?.length ?? 0) !== sent.items.length ||
    (sent.items.length > 0 && g.items[sent.items.length - 1]!.name !== sent.items[sent.items.length - 1]!.name)
  ) {
    throw new Error(`echo returned something else than was sent: ${JSON.stringify(got)?.slice(0, 200)}`);
  }
}

/** protobufjs schema of {@link Payload}, built from JSON (no .proto file, no code generation). */
export const protoRoot = protobuf.Root.fromJSON({
  nested: {
    bench: {
      nested: {
        Item: {
          fields: {
            id: { type: "int32", id: 1 },
            name: { type: "string", id: 2 },
            price: { type: "double", id: 3 },
            tags: { rule: "repeated", type: "string", id: 4 },
          },
        },
        Payload: {
          fields: {
            id: { type: "int32", id: 1 },
            name: { type: "string", id: 2 },
            email: { type: "string", id: 3 },
            score: { type: "double", id: 4 },
            active: { type: "bool", id: 5 },
            tags: { rule: "repeated", type: "string", id: 6 },
            items: { rule: "repeated", type: "Item", id: 7 },
          },
        },
      },
    },
  },
});

export const PayloadType = protoRoot.lookupType("bench.Payload");

/** protobuf encode of a Payload. */
export function protoEncode(p: Payload): Uint8Array {
  return PayloadType.encode(p).finish();
}

/** protobuf decode to a Payload-shaped message object. */
export function protoDecode(b: Uint8Array): Payload {
  return PayloadType.decode(b) as unknown as Payload;
}
