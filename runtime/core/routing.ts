/**
 * Affinity routing: a routed component's calls carry a 64-bit shard key computed from their arguments;
 * the deployer assigns slices of the key space to replicas, so calls with the same key go to the same
 * replica while the replica set is stable.
 */

/** What a router function may return for a call; it is hashed to a 64-bit shard key. */
export type RoutingKey = string | number | bigint | boolean;

/** One slice: keys from `start` (inclusive) to the next slice's start belong to `replica`. */
export interface SliceOwner {
  start: bigint;
  replica: string;
}

/** A versioned assignment of the key space; slices sorted by start, the first starts at 0. */
export interface KeyAssignment {
  version: bigint;
  slices: SliceOwner[];
}

const MASK64 = (1n << 64n) - 1n;

/** A stable 64-bit hash: two FNV-1a-32 passes with different seeds (cheap 32-bit math, no BigInt loop). */
function hash64(s: string): bigint {
  let a = 0x811c9dc5;
  let b = 0x6c62272e;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193) ^ (b >>> 15);
  }
  // Final avalanche so that short keys spread over the whole space.
  a = Math.imul(a ^ (a >>> 16), 0x85ebca6b);
  a = Math.imul(a ^ (a >>> 13), 0xc2b2ae35) ^ (a >>> 16);
  b = Math.imul(b ^ (b >>> 16), 0x7feb352d);
  b = Math.imul(b ^ (b >>> 15), 0x846ca68b) ^ (b >>> 16);
  return (BigInt(a >>> 0) << 32n) | BigInt(b >>> 0);
}

/** The 64-bit shard key of a routing key. */
export function shardKey(key: RoutingKey): bigint {
  return hash64(`${typeof key}:${String(key)}`);
}

/** Number of slices an assignment divides the key space into (more slices: finer rebalancing). */
export const DEFAULT_SLICES = 256;

/**
 * Assigns `slices` equal slices of the 64-bit key space to replicas by rendezvous hashing: each slice
 * goes to the replica with the highest hash of (slice, replica). When a replica leaves, only its slices
 * move; when one joins, it takes a fair share from every other.
 */
export function computeAssignment(replicas: readonly string[], version: bigint, slices = DEFAULT_SLICES): KeyAssignment {
  if (replicas.length === 0) return { version, slices: [] };
  const width = (1n << 64n) / BigInt(slices);
  const out: SliceOwner[] = [];
  for (let i = 0; i < slices; i++) {
    let best = "";
    let bestScore = -1n;
    for (const r of replicas) {
      const score = hash64(`${i}|${r}`);
      if (score > bestScore || (score === bestScore && r < best)) {
        best = r;
        bestScore = score;
      }
    }
    const start = (width * BigInt(i)) & MASK64;
    // Adjacent slices with one owner merge: fewer slices to search and to send.
    if (out.length > 0 && out[out.length - 1]!.replica === best) continue;
    out.push({ start, replica: best });
  }
  return { version, slices: out };
}

/** Index of the slice holding `key` (binary search over sorted starts). */
export function findSlice(starts: BigUint64Array | readonly bigint[], key: bigint): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (starts[mid]! <= key) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
