import assert from "node:assert/strict";
import { test } from "node:test";
import { computeAssignment, findSlice, shardKey } from "../../runtime/core/routing.js";

const R = ["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"];

test("shard keys are stable, 64-bit, and differ by type and value", () => {
  assert.equal(shardKey("user-1"), shardKey("user-1"));
  assert.notEqual(shardKey("user-1"), shardKey("user-2"));
  assert.notEqual(shardKey(1), shardKey("1"));
  for (const k of ["", "a", 42, 10n, true]) {
    const v = shardKey(k);
    assert.ok(v >= 0n && v < 1n << 64n);
  }
});

test("an assignment covers the key space from 0 with sorted slices owned by known replicas", () => {
  const a = computeAssignment(R, 7n);
  assert.equal(a.version, 7n);
  assert.equal(a.slices[0]!.start, 0n);
  for (let i = 1; i < a.slices.length; i++) assert.ok(a.slices[i]!.start > a.slices[i - 1]!.start);
  assert.deepEqual(new Set(a.slices.map((s) => s.replica)), new Set(R));
  assert.deepEqual(computeAssignment([], 1n).slices, []);
});

test("keys spread over replicas, and a departing replica's keys are the only ones that move", () => {
  const owner = (a: ReturnType<typeof computeAssignment>, key: bigint) =>
    a.slices[
      findSlice(
        a.slices.map((s) => s.start),
        key,
      )
    ]!.replica;
  const before = computeAssignment(R, 1n);
  const after = computeAssignment(R.slice(0, 2), 2n);
  const counts = new Map<string, number>();
  let moved = 0;
  for (let i = 0; i < 3000; i++) {
    const k = shardKey(`key-${i}`);
    const o = owner(before, k);
    counts.set(o, (counts.get(o) ?? 0) + 1);
    const o2 = owner(after, k);
    if (o !== R[2]) assert.equal(o2, o, "keys of surviving replicas stay");
    else moved++;
  }
  for (const r of R) assert.ok((counts.get(r) ?? 0) > 600, `replica ${r} owns a fair share (${counts.get(r)})`);
  assert.ok(moved > 0);
});

test("findSlice is a binary search over starts", () => {
  const starts = [0n, 10n, 20n, 30n];
  assert.equal(findSlice(starts, 0n), 0);
  assert.equal(findSlice(starts, 9n), 0);
  assert.equal(findSlice(starts, 10n), 1);
  assert.equal(findSlice(starts, 29n), 2);
  assert.equal(findSlice(starts, (1n << 64n) - 1n), 3);
  assert.equal(findSlice(BigUint64Array.from(starts), 25n), 2);
});
