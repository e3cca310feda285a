// Mutual authentication of component RPC connections with a per-deployment key: a challenge–response in
// both directions at HELLO. Each side proves it holds the key by an HMAC over both nonces and both
// claimed identities, so a proof is good for one connection only (a replayed HELLO meets a fresh nonce)
// and binds who the peer says it is. The key never crosses the wire.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** Who a weavelet is, as it claims at HELLO and proves with the deployment key. */
export interface PeerIdentity {
  /** The deployment (and so the version: versions never call each other). */
  readonly deploymentId: string;
  /** The group of components the weavelet hosts. */
  readonly group: string;
}

/** How a connection or a server authenticates: the deployment key and who this side is. */
export interface RpcAuth {
  /** The deployment's key (at least {@link MIN_KEY_SIZE} random bytes), from the deployer over the control pipe. */
  readonly key: Uint8Array;
  /** This side's identity. */
  readonly identity: PeerIdentity;
}

/** Bytes of each side's nonce. */
export const NONCE_SIZE = 32;
/** Bytes of a proof (HMAC-SHA256). */
export const PROOF_SIZE = 32;
/** Shortest key accepted. */
export const MIN_KEY_SIZE = 32;
/**
 * The one message a refused peer gets, whatever failed (no proof, a wrong proof, another deployment):
 * nothing in it helps the next attempt. The server logs the actual reason.
 */
export const AUTH_REFUSED = "authentication failed";

/** Everything a proof covers. */
export interface Transcript {
  readonly protocolVersion: number;
  readonly methodTableHash: string;
  readonly client: PeerIdentity;
  readonly server: PeerIdentity;
  readonly clientNonce: Uint8Array;
  readonly serverNonce: Uint8Array;
}

/** Checks a key handed to a server or a connection pool. */
export function checkAuth(auth: RpcAuth): RpcAuth {
  if (auth.key.length < MIN_KEY_SIZE)
    throw new Error(`RPC authentication key has ${auth.key.length} bytes; at least ${MIN_KEY_SIZE} needed`);
  return auth;
}

/** A fresh random nonce. */
export function newNonce(): Buffer {
  return randomBytes(NONCE_SIZE);
}

/**
 * The proof `role` sends: HMAC-SHA256 under the key over a role label and the transcript, every field
 * length-prefixed so no two transcripts encode alike. The labels keep a server's proof from ever
 * passing as a client's.
 */
export function handshakeProof(key: Uint8Array, role: "client" | "server", t: Transcript): Buffer {
  const mac = createHmac("sha256", key);
  const field = (v: string | Uint8Array): void => {
    const b = typeof v === "string" ? Buffer.from(v, "utf8") : v;
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32LE(b.length);
    mac.update(len).update(b);
  };
  field(`tsweaver-rpc-${role}`);
  field(String(t.protocolVersion));
  field(t.methodTableHash);
  field(t.client.deploymentId);
  field(t.client.group);
  field(t.server.deploymentId);
  field(t.server.group);
  field(t.clientNonce);
  field(t.serverNonce);
  return mac.digest();
}

/** Constant-time comparison of a received proof with the expected one. */
export function proofMatches(expected: Buffer, received: Uint8Array): boolean {
  return received.length === expected.length && timingSafeEqual(expected, received);
}
