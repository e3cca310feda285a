import { rmSync } from "node:fs";
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { withCallOptions } from "../../runtime/core/call.js";
import { CallCancelledError, DeadlineExceededError, TransportError } from "../../runtime/core/errors.js";
import { Balancer } from "../../runtime/rpc/balancer.js";
import { ConnectionPool } from "../../runtime/rpc/client.js";
import { HASH, startServer, type Methods } from "../support/rpc.js";
import { deferred, tempDir, waitFor } from "../support/index.js";

/** Methods that say which server answered; `block` waits until `gate` opens. */
function named(name: string, gate?: Promise<void>): Methods {
  return {
    who: () => name,
    block: async () => {
      await gate;
      return name;
    },
  };
}
const WHO = 0;
const BLOCK = 1;

function pool(): ConnectionPool {
  return new ConnectionPool({ methodTableHash: HASH });
}

test("round robin across two replicas (one TCP, one unix socket)", async () => {
  const tmp = tempDir("tsw-rpc-");
  const a = await startServer(named("A"));
  const b = await startServer(named("B"), `unix:${join(tmp, "b.sock")}`);
  const p = pool();
  const bal = new Balancer("test/Svc", p);
  try {
    bal.update([a.address, b.address]);
    await waitFor("both replicas healthy", () => p.connections().every((c) => c.healthy), 5000, 10);
    const counts: Record<string, number> = { A: 0, B: 0 };
    for (let i = 0; i < 20; i++) counts[(await bal.call(WHO, "who", [])) as string]!++;
    assert.deepStrictEqual(counts, { A: 10, B: 10 });
    // Concurrent calls spread too.
    const many = (await Promise.all(Array.from({ length: 100 }, () => bal.call(WHO, "who", [])))) as string[];
    assert.equal(many.filter((x) => x === "A").length, 50);
  } finally {
    bal.close();
    await p.close();
    await a.server.close();
    await b.server.close();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("two components at one address share one connection", async () => {
  const a = await startServer(named("A"));
  const p = pool();
  const b1 = new Balancer("test/One", p);
  const b2 = new Balancer("test/Two", p);
  try {
    b1.update([a.address]);
    b2.update([a.address]);
    assert.equal(await b1.call(WHO, "who", []), "A");
    assert.equal(await b2.call(WHO, "who", []), "A");
    assert.equal(p.connections().length, 1);
    assert.equal(a.server.stats.connectionsAccepted, 1);
    // Releasing it from one balancer keeps it for the other.
    b1.update([]);
    assert.equal(await b2.call(WHO, "who", []), "A");
    assert.equal(p.connections().length, 1);
  } finally {
    b1.close();
    b2.close();
    await p.close();
    await a.server.close();
  }
});

test("a replica killed mid-run: retryable calls move to the other replica, non-retryable ones fail", async () => {
  const never = new Promise<void>(() => {});
  const a = await startServer(named("A", never));
  const b = await startServer(named("B"));
  const p = pool();
  const bal = new Balancer("test/Svc", p);
  try {
    // Pin the in-flight calls to A by giving the balancer only A at first.
    bal.update([a.address]);
    const retryable = Array.from({ length: 5 }, () => bal.call(BLOCK, "block", [], { retryable: true }));
    const fragile = bal.call(BLOCK, "block", [], { retryable: false }).then(
      () => "resolved",
      (e: unknown) => e,
    );
    await waitFor("calls to reach A", () => a.server.stats.calls === 6, 5000, 10);
    bal.update([a.address, b.address]);
    await waitFor("B healthy", () => p.get(b.address)?.healthy === true, 5000, 10);
    await a.server.close(0); // abrupt: in-flight calls are lost with the connection
    assert.deepStrictEqual(await Promise.all(retryable), ["B", "B", "B", "B", "B"]);
    const err = await fragile;
    assert.ok(err instanceof TransportError, String(err));
    // New calls avoid the dead replica.
    for (let i = 0; i < 5; i++) assert.equal(await bal.call(WHO, "who", [], { retryable: false }), "B");
  } finally {
    bal.close();
    await p.close();
    await b.server.close();
  }
});

test("retries stop after maxAttempts and never outlive the deadline", async () => {
  const a = await startServer(named("A"));
  const addr = a.address;
  await a.server.close();
  const p = pool();
  const bal = new Balancer("test/Svc", p, { maxAttempts: 3, retryBackoffMs: 1 });
  try {
    bal.update([addr]);
    await assert.rejects(bal.call(WHO, "who", []), TransportError);
    const t0 = Date.now();
    await assert.rejects(
      withCallOptions({ timeoutMs: 30 }, () => bal.call(WHO, "who", [])),
      (e: unknown) => e instanceof TransportError || e instanceof DeadlineExceededError,
    );
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    bal.close();
    await p.close();
  }
});

test("reconnects after the server restarts on the same port", async () => {
  const a = await startServer(named("A1"));
  const p = pool();
  const bal = new Balancer("test/Svc", p);
  try {
    bal.update([a.address]);
    assert.equal(await bal.call(WHO, "who", []), "A1");
    await a.server.close();
    await assert.rejects(bal.call(WHO, "who", [], { retryable: false }), TransportError);
    const again = await startServer(named("A2"), a.address);
    try {
      assert.equal(again.address, a.address);
      await waitFor("reconnect", () => p.get(a.address)?.healthy === true, 10_000, 10);
      assert.equal(await bal.call(WHO, "who", []), "A2");
      assert.ok((p.get(a.address)?.stats.connects ?? 0) >= 2);
    } finally {
      await again.server.close();
    }
  } finally {
    bal.close();
    await p.close();
  }
});

test("removing a replica drains it: its in-flight call completes, new calls go elsewhere", async () => {
  const gate = deferred();
  const a = await startServer(named("A", gate.promise));
  const b = await startServer(named("B"));
  const p = pool();
  const bal = new Balancer("test/Svc", p);
  try {
    bal.update([a.address]);
    const inflight = bal.call(BLOCK, "block", []);
    await waitFor("call to reach A", () => a.server.stats.calls === 1, 5000, 10);
    const connA = p.get(a.address)!;
    bal.update([b.address]);
    assert.equal(connA.state, "draining");
    assert.equal(p.get(a.address), undefined);
    for (let i = 0; i < 4; i++) assert.equal(await bal.call(WHO, "who", []), "B");
    assert.equal(a.server.stats.calls, 1, "no new calls reach the removed replica");
    gate.resolve();
    assert.equal(await inflight, "A");
    await waitFor("drained connection to close", () => connA.state === "closed", 5000, 10);
    assert.deepStrictEqual(bal.addresses, [b.address]);
  } finally {
    bal.close();
    await p.close();
    await a.server.close();
    await b.server.close();
  }
});

test("a call made before any replica is known waits for the first update", async () => {
  const a = await startServer(named("A"));
  const p = pool();
  const bal = new Balancer("test/Svc", p);
  try {
    const pending = bal.call(WHO, "who", []);
    await new Promise((r) => setTimeout(r, 50));
    bal.update([a.address]);
    assert.equal(await pending, "A");
  } finally {
    bal.close();
    await p.close();
    await a.server.close();
  }
});

test("waiting for replicas is bounded by the deadline, the default wait, and cancellation", async () => {
  const p = pool();
  const bal = new Balancer("test/Svc", p, { replicaWaitMs: 100 });
  try {
    await assert.rejects(
      withCallOptions({ timeoutMs: 30 }, () => bal.call(WHO, "who", [])),
      DeadlineExceededError,
    );
    await assert.rejects(
      bal.call(WHO, "who", []),
      (e: unknown) => e instanceof TransportError && /no replicas of test\/Svc/.test(e.message),
    );
    const ac = new AbortController();
    const call = withCallOptions({ signal: ac.signal }, () => bal.call(WHO, "who", []));
    ac.abort();
    await assert.rejects(call, CallCancelledError);
    const closing = bal.call(WHO, "who", []);
    bal.close();
    await assert.rejects(closing, TransportError);
  } finally {
    bal.close();
    await p.close();
  }
});

test("a replica that keeps timing out is ejected, probed after its ejection period, and back once it answers", async () => {
  const gate = deferred();
  const a = await startServer(named("A"));
  const b = await startServer({ who: async () => (await gate.promise, "B") });
  const p = pool();
  const bal = new Balancer("test/Svc", p, { ejectAfterFailures: 3, ejectionMs: 400 });
  try {
    bal.update([a.address, b.address]);
    await waitFor("both replicas healthy", () => p.connections().every((c) => c.healthy), 5000, 10);
    const bConn = p.get(b.address)!;
    const call = (): Promise<unknown> => withCallOptions({ timeoutMs: 100 }, () => bal.call(WHO, "who", []));
    // Round robin sends every other call to B, which times out; after 3 in a row B is ejected.
    let timeouts = 0;
    for (let i = 0; i < 6; i++) await call().catch((e: unknown) => (assert.ok(e instanceof DeadlineExceededError), timeouts++));
    assert.equal(timeouts, 3);
    assert.equal(bal.ejections, 1);
    assert.ok(bal.isEjected(bConn));
    for (let i = 0; i < 20; i++) assert.equal(await call(), "A", "while B is ejected every call goes to A");
    // After the period one call probes B; it times out again, and B is ejected for twice as long.
    await waitFor("B's ejection to end", () => !bal.isEjected(bConn), 5000, 20);
    const probe = await Promise.allSettled([call(), call()]);
    assert.equal(probe.filter((r) => r.status === "rejected").length, 1, "exactly one probe goes to B");
    assert.equal(bal.ejections, 2);
    // B answers again: after its (longer) period the probe succeeds and B is back in the rotation.
    gate.resolve();
    await waitFor("B's second ejection to end", () => !bal.isEjected(bConn), 5000, 20);
    const seen = new Set<unknown>();
    for (let i = 0; i < 6; i++) seen.add(await call());
    assert.deepEqual([...seen].sort(), ["A", "B"]);
    assert.equal(bal.ejections, 2);
  } finally {
    bal.close();
    await p.close();
    await a.server.close(0);
    await b.server.close(0);
  }
});

test("an ejected replica still serves when it is the only one that can", async () => {
  const gate = deferred();
  const b = await startServer({ who: async () => (await gate.promise, "B") });
  const a = await startServer(named("A"));
  const p = pool();
  const bal = new Balancer("test/Svc", p, { ejectAfterFailures: 2, ejectionMs: 60_000 });
  try {
    bal.update([a.address, b.address]);
    await waitFor("both replicas healthy", () => p.connections().every((c) => c.healthy), 5000, 10);
    for (let i = 0; i < 4; i++) await withCallOptions({ timeoutMs: 50 }, () => bal.call(WHO, "who", [])).catch(() => {});
    assert.ok(bal.isEjected(p.get(b.address)!));
    await a.server.close(0);
    gate.resolve();
    await waitFor("A to be seen down", () => p.get(a.address)?.healthy === false, 5000, 10);
    assert.equal(await bal.call(WHO, "who", []), "B");
  } finally {
    bal.close();
    await p.close();
    await b.server.close(0);
  }
});
