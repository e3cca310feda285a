import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type MultiDeployer } from "../../../runtime/deployers/multi/deployer.js";
import { ROOT, alive, get, getJson, tempDir, waitFor, writeConfig } from "../../support/index.js";
import { deployForTest } from "../../support/multi.js";

const APP = path.join(ROOT, "dist/test/fixtures/apps/routed.js");
const KEYS = Array.from({ length: 24 }, (_, i) => `user-${i}`);

describe("routed components on multi: key affinity, and slices move when a replica dies", () => {
  const dir = tempDir();
  let deployer: MultiDeployer;
  let base = "";

  /** Calls owner(key) `times` times per key; returns key → set of pids that answered. */
  async function owners(times: number): Promise<Map<string, Set<number>>> {
    const out = new Map<string, Set<number>>();
    for (let t = 0; t < times; t++) {
      for (const key of KEYS) {
        const pid = await getJson<number>(`${base}/owner?key=${key}`);
        out.set(key, (out.get(key) ?? new Set()).add(pid));
      }
    }
    return out;
  }

  before(async () => {
    const config = writeConfig(
      `[tsweaver]\nbinary = ${JSON.stringify(APP)}\n[multi]\nreplicas = 3\n[multi.listeners.api]\naddress = "127.0.0.1:0"\n`,
      dir,
    );
    ({ deployer, base } = await deployForTest(config, path.join(dir, "state"), "api"));
    await waitFor("3 shard replicas", () => deployer.pids().get("test-shard")?.length === 3);
    await waitFor("3 main replicas behind the proxy", () => deployer.status().listeners[0]?.replicas === 3);
  });

  after(async () => {
    await deployer.stop();
  });

  test("calls with the same key go to the same replica; keys spread over replicas", async () => {
    // Each main replica learns the 3-replica assignment; then every key has exactly one owner.
    const seen = await waitFor("stable affinity", async () => {
      const o = await owners(3);
      return [...o.values()].every((s) => s.size === 1) ? o : undefined;
    });
    const pids = new Set([...seen.values()].map((s) => [...s][0]!));
    assert.ok(pids.size >= 2, `keys spread over replicas (${pids.size})`);
    for (const pid of pids) assert.ok(deployer.pids().get("test-shard")!.includes(pid));
    // Unrouted methods still go round-robin.
    const plain = new Set<number>();
    for (let i = 0; i < 18; i++) plain.add(await getJson<number>(`${base}/plain`));
    assert.equal(plain.size, 3);
  });

  test("the hosting replicas report per-slice load against the assignment", async () => {
    await owners(1);
    const loads = await deployer.loads();
    const shardLoads = [...loads.entries()]
      .filter(([id]) => id.startsWith("test-shard"))
      .flatMap(([, l]) => l.filter((c) => c.component === "test/Shard"));
    assert.equal(shardLoads.length, 3);
    for (const l of shardLoads) {
      assert.ok(BigInt(l.assignmentVersion) > 0n);
      assert.ok(l.slices.length > 0);
    }
    assert.ok(
      shardLoads.some((l) => l.slices.some((s) => s.callsPerSecond > 0)),
      "some slice took calls",
    );
  });

  test("when a replica dies its slices move: every call still succeeds, and affinity holds again", async () => {
    const before = await owners(1);
    const victim = [...before.values()].map((s) => [...s][0]!)[0]!;
    process.kill(victim, "SIGKILL");
    for (const key of KEYS) {
      const r = await get(`${base}/owner?key=${key}`);
      assert.equal(r.status, 200, r.body);
      assert.notEqual(JSON.parse(r.body), victim, "no call answered by the dead replica");
    }
    await waitFor(
      "replacement replica",
      () => deployer.pids().get("test-shard")?.length === 3 && !deployer.pids().get("test-shard")!.includes(victim),
    );
    const after = await waitFor("stable affinity again", async () => {
      const o = await owners(2);
      return [...o.values()].every((s) => s.size === 1) ? o : undefined;
    });
    for (const s of after.values()) assert.ok(alive([...s][0]!));
  });
});
