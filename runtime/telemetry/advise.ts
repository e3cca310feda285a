import type { CallGraph } from "./graph.js";

/**
 * The colocation advisor: from a deployment's measured call graph, which components to put in one group
 * (one process per replica) so the heaviest cross-process edges become in-process calls, within limits
 * the user sets. Greedy on edge weight: a merge is kept when it pays (the pair carries at least
 * `minShare` of all traffic) and the merged group stays within `maxComponents`.
 */

/** Limits the advice keeps to. */
export interface ColocationLimits {
  /** Most components in one group (default 4): a bigger group scales, fails and deploys as one unit. */
  maxComponents?: number;
  /** Components that stay in a group of their own (e.g. routed ones, or ones scaled apart). */
  separate?: readonly string[];
  /** A pair carrying less than this share of all call traffic is not worth merging (default 0.05). */
  minShare?: number;
}

/** One caller–callee pair of components (both directions summed). */
export interface AdvisedEdge {
  a: string;
  b: string;
  callsPerSec: number;
  /** Estimated; undefined when none of the pair's methods has been served across processes yet. */
  bytesPerSec: number | undefined;
  /** Whether the pair's calls cross processes today, and with the advice. */
  remoteNow: boolean;
  remoteAdvised: boolean;
}

/** Calls and bytes per second that cross processes. */
export interface CrossTraffic {
  callsPerSec: number;
  bytesPerSec: number;
}

export interface ColocationAdvice {
  /** Length of the window the rates are over (s). */
  windowSec: number;
  /** The advised `colocate` groups (two or more components each); components not listed stay alone. */
  colocate: string[][];
  /** Whether the advice differs from the deployment's current grouping. */
  changed: boolean;
  now: CrossTraffic;
  advised: CrossTraffic;
  /** Every pair with calls, heaviest first. */
  edges: AdvisedEdge[];
  /** Merges the limits prevented, and why, heaviest first. */
  held: string[];
}

/**
 * A call is worth about this many bytes of payload: one cross-process call costs roughly what copying,
 * framing and decoding 16 KiB costs (from bench/: a small call's time at c=1 vs a large one's), so a
 * pair's weight is calls/s + bytes/s ÷ 16 KiB.
 */
export const BYTES_PER_CALL = 16 * 1024;

export const DEFAULT_MAX_COMPONENTS = 4;
export const DEFAULT_MIN_SHARE = 0.05;

/** The advice for `graph`, whose components are grouped as `current` today (unlisted ones alone). */
export function adviseColocation(
  graph: CallGraph,
  current: readonly (readonly string[])[],
  limits: ColocationLimits = {},
): ColocationAdvice {
  const maxComponents = limits.maxComponents ?? DEFAULT_MAX_COMPONENTS;
  const minShare = limits.minShare ?? DEFAULT_MIN_SHARE;
  const separate = new Set(limits.separate ?? []);
  if (!(Number.isInteger(maxComponents) && maxComponents >= 1))
    throw new RangeError(`maxComponents must be an integer ≥ 1, got ${maxComponents}`);
  if (!(minShare >= 0 && minShare <= 1)) throw new RangeError(`minShare must be within 0..1, got ${minShare}`);

  const groupNow = new Map<string, number>();
  current.forEach((g, i) => g.forEach((c) => groupNow.set(c, i)));
  const sameNow = (a: string, b: string) => groupNow.has(a) && groupNow.get(a) === groupNow.get(b);

  // Both directions of a pair summed; calls from outside the app (no caller) and self-calls cost nothing to place.
  const pairs = new Map<string, AdvisedEdge>();
  for (const e of graph.edges) {
    if (e.caller === "" || e.callee === "" || e.caller === e.callee || e.callsPerSec <= 0) continue;
    const [a, b] = e.caller < e.callee ? [e.caller, e.callee] : [e.callee, e.caller];
    const key = `${a}\u0000${b}`;
    const p = pairs.get(key) ?? { a, b, callsPerSec: 0, bytesPerSec: undefined, remoteNow: !sameNow(a, b), remoteAdvised: true };
    p.callsPerSec += e.callsPerSec;
    if (e.bytesPerSec !== undefined) p.bytesPerSec = (p.bytesPerSec ?? 0) + e.bytesPerSec;
    pairs.set(key, p);
  }
  const weight = (p: AdvisedEdge) => p.callsPerSec + (p.bytesPerSec ?? 0) / BYTES_PER_CALL;
  const edges = [...pairs.values()].sort((x, y) => weight(y) - weight(x) || x.a.localeCompare(y.a) || x.b.localeCompare(y.b));
  const total = edges.reduce((s, p) => s + weight(p), 0);

  // Union–find over components; each root holds its group's members.
  const parent = new Map<string, string>();
  const members = new Map<string, string[]>();
  const find = (c: string): string => {
    let r = c;
    while (parent.has(r) && parent.get(r) !== r) r = parent.get(r)!;
    return r;
  };
  const add = (c: string) => {
    if (parent.has(c)) return;
    parent.set(c, c);
    members.set(c, [c]);
  };
  for (const c of graph.components) add(c);
  for (const p of edges) {
    add(p.a);
    add(p.b);
  }

  const held: string[] = [];
  for (const p of edges) {
    if (total === 0 || weight(p) < minShare * total) break;
    const ra = find(p.a);
    const rb = find(p.b);
    if (ra === rb) continue;
    const share = `${((weight(p) / total) * 100).toFixed(0)}% of the traffic`;
    const alone = [p.a, p.b].filter((c) => separate.has(c));
    if (alone.length > 0) {
      held.push(`${p.a} ↔ ${p.b} (${share}): ${alone.join(" and ")} kept separate`);
      continue;
    }
    const size = members.get(ra)!.length + members.get(rb)!.length;
    if (size > maxComponents) {
      held.push(`${p.a} ↔ ${p.b} (${share}): the group would have ${size} components, more than the limit of ${maxComponents}`);
      continue;
    }
    parent.set(rb, ra);
    members.set(ra, [...members.get(ra)!, ...members.get(rb)!]);
    members.delete(rb);
  }

  const colocate = [...members.values()]
    .filter((g) => g.length > 1)
    .map((g) => [...g].sort())
    .sort((x, y) => x[0]!.localeCompare(y[0]!));
  const now: CrossTraffic = { callsPerSec: 0, bytesPerSec: 0 };
  const advised: CrossTraffic = { callsPerSec: 0, bytesPerSec: 0 };
  for (const p of edges) {
    p.remoteAdvised = find(p.a) !== find(p.b);
    for (const [cross, t] of [
      [p.remoteNow, now],
      [p.remoteAdvised, advised],
    ] as const) {
      if (!cross) continue;
      t.callsPerSec += p.callsPerSec;
      t.bytesPerSec += p.bytesPerSec ?? 0;
    }
  }
  const key = (gs: readonly (readonly string[])[]) =>
    JSON.stringify(
      gs
        .filter((g) => g.length > 1)
        .map((g) => [...g].sort())
        .sort(),
    );
  return { windowSec: graph.windowSec, colocate, changed: key(colocate) !== key(current), now, advised, edges, held };
}

/** The advice as the admin server's /api/advice answers it: with the line to paste ({@link colocateToml}). */
export interface ColocationAdviceReply extends ColocationAdvice {
  toml: string;
}

/** The advice as the `colocate` line of weaver.toml's [tsweaver] section. */
export function colocateToml(colocate: readonly (readonly string[])[]): string {
  return `colocate = [${colocate.map((g) => `[${g.map((c) => JSON.stringify(c)).join(", ")}]`).join(", ")}]`;
}
