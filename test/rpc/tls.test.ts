// TLS 1.3 component calls: only a client with a certificate from the deployment CA that names a weavelet
// of this deployment gets a method run; the server's certificate is checked the same way by the client.
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { connect as tlsConnect } from "node:tls";
import { before, test } from "node:test";
import { parseHostPort } from "../../runtime/rpc/address.js";
import { Writer } from "../../runtime/codec/codec.js";
import { Channel } from "../../runtime/rpc/channel.js";
import { Connection } from "../../runtime/rpc/client.js";
import { DEFAULT_MAX_FRAME_SIZE, FrameType, writeHello, writeRequest } from "../../runtime/rpc/frames.js";
import { RpcServer } from "../../runtime/rpc/server.js";
import type { RpcTls } from "../../runtime/rpc/tls.js";
import { issue, newCa, type TestCa } from "../support/certs.js";
import { waitFor } from "../support/index.js";
import { HASH, MemoryLogger } from "../support/rpc.js";

const DEP = "dep-a";
let ca: TestCa;
let serverTls: RpcTls;

before(async () => {
  ca = await newCa();
  serverTls = await issue(ca, { deploymentId: DEP, group: "server" });
});

async function server(tls: RpcTls = serverTls) {
  const ran: string[] = [];
  const callers: (string | undefined)[] = [];
  const logger = new MemoryLogger();
  const s = new RpcServer({
    lookup: (id) => (id === 0 ? { name: "test/Svc.run", fn: (args) => (ran.push(String(args[0])), "ran") } : undefined),
    methodTableHash: HASH,
    deploymentId: DEP,
    logger,
    tls,
    authorize: (_id, caller) => (
      callers.push(caller?.group),
      caller?.group === "banned" ? "group banned may not call test/Svc" : undefined
    ),
  });
  const address = await s.listen("127.0.0.1:0");
  return { s, address, ran, callers, logger };
}

const client = (address: string, tls: RpcTls | undefined) =>
  new Connection(address, { methodTableHash: HASH, deploymentId: DEP, tls, backoffMinMs: 10_000, connectTimeoutMs: 5000 });

async function failure(c: Connection): Promise<string> {
  return c.call(0, "test/Svc.run", ["x"]).then(
    () => assert.fail("the call ran"),
    (e: Error) => e.message,
  );
}

test("a weavelet of the deployment calls over TLS 1.3; the server knows its group from its certificate", async () => {
  const { s, address, ran, callers } = await server();
  const c = client(address, await issue(ca, { deploymentId: DEP, group: "caller" }));
  const banned = client(address, await issue(ca, { deploymentId: DEP, group: "banned" }));
  try {
    assert.equal(await c.call(0, "test/Svc.run", ["a"]), "ran");
    assert.deepEqual(ran, ["a"]);
    assert.deepEqual(callers, ["caller"]);
    await assert.rejects(banned.call(0, "test/Svc.run", ["b"]), /group banned may not call test\/Svc/);
    assert.deepEqual(ran, ["a"]);
  } finally {
    await c.close();
    await banned.close();
    await s.close();
  }
});

test("refused before any method runs: no certificate, another CA, expired, another deployment, TLS 1.2", async () => {
  const { s, address, ran } = await server();
  const otherCa = await newCa("another CA");
  const day = 24 * 3600 * 1000;
  const cases: [string, RpcTls | undefined][] = [
    ["plain TCP", undefined],
    ["another CA", await issue(otherCa, { deploymentId: DEP, group: "caller" })],
    [
      "expired",
      await issue(
        ca,
        { deploymentId: DEP, group: "caller" },
        { notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - day) },
      ),
    ],
    ["another deployment", await issue(ca, { deploymentId: "dep-b", group: "caller" })],
  ];
  try {
    for (const [what, tls] of cases) {
      // The client trusts the server (same CA) but claims its own identity honestly: the server refuses it.
      const c = client(address, tls === undefined ? undefined : { ...tls, ca: ca.pem, identity: { deploymentId: DEP, group: "caller" } });
      try {
        const msg = await failure(c);
        assert.doesNotMatch(msg, new RegExp(`${DEP}|${HASH}`), `${what}: ${msg}`);
      } finally {
        await c.close();
      }
    }
    // A TLS 1.2 client does not get a handshake either.
    const good = await issue(ca, { deploymentId: DEP, group: "caller" });
    const { host, port } = parseHostPort(address);
    const tls12 = tlsConnect({
      host,
      port,
      cert: good.cert,
      key: good.key,
      ca: ca.pem,
      maxVersion: "TLSv1.2",
      checkServerIdentity: () => undefined,
    });
    const err = await new Promise<Error | undefined>((resolve) => {
      tls12.once("secureConnect", () => resolve(undefined));
      tls12.once("error", resolve);
    });
    tls12.destroy();
    assert.ok(err, "a TLS 1.2 handshake succeeded");
    assert.deepEqual(ran, []);
    assert.equal(s.stats.calls, 0);
    assert.ok(s.stats.refusedHellos >= cases.length);
  } finally {
    await s.close();
  }
});

test("a client refuses a server whose certificate is for another deployment or from another CA", async () => {
  const foreign = await server(await issue(ca, { deploymentId: "dep-b", group: "server" }));
  const otherCa = await newCa("another CA");
  const impostor = await server({ ...(await issue(otherCa, { deploymentId: DEP, group: "server" })), ca: ca.pem });
  const mine = await issue(ca, { deploymentId: DEP, group: "caller" });
  const c1 = client(foreign.address, mine);
  const c2 = client(impostor.address, mine);
  try {
    assert.match(await failure(c1), /another deployment/);
    assert.match(await failure(c2), /certificate/);
    assert.deepEqual(foreign.ran, []);
    assert.deepEqual(impostor.ran, []);
  } finally {
    await c1.close();
    await c2.close();
    await foreign.s.close();
    await impostor.s.close();
  }
});

test("renewal: the server presents its new certificate to new connections, clients dial with theirs, open connections keep working", async () => {
  const { s, address, ran } = await server();
  let mine = await issue(ca, { deploymentId: DEP, group: "caller" });
  // The client asks for its credentials at every connection attempt, as a weavelet's pool does.
  const first = new Connection(address, { methodTableHash: HASH, deploymentId: DEP, tls: () => mine, backoffMinMs: 10_000 });
  const { host, port } = parseHostPort(address);
  const presented = (creds: RpcTls) =>
    new Promise<string>((resolve, reject) => {
      const sock = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: creds.ca, checkServerIdentity: () => undefined });
      sock.once("secureConnect", () => (resolve(sock.getPeerX509Certificate()!.serialNumber), sock.destroy()));
      sock.once("error", reject);
    });
  try {
    assert.equal(await first.call(0, "test/Svc.run", ["before"]), "ran");
    const oldSerial = await presented(mine);
    const renewed = await issue(ca, { deploymentId: DEP, group: "server" });
    s.updateTls(renewed);
    mine = await issue(ca, { deploymentId: DEP, group: "caller" });
    assert.equal(await first.call(0, "test/Svc.run", ["during"]), "ran", "the open connection keeps working");
    const newSerial = await presented(mine);
    assert.notEqual(newSerial, oldSerial);
    assert.equal(newSerial, new X509Certificate(renewed.cert).serialNumber);
    const second = new Connection(address, { methodTableHash: HASH, deploymentId: DEP, tls: () => mine, backoffMinMs: 10_000 });
    assert.equal(await second.call(0, "test/Svc.run", ["after"]), "ran");
    await second.close();
    assert.deepEqual(ran, ["before", "during", "after"]);
    assert.throws(() => s.updateTls({ ...renewed, identity: { deploymentId: "dep-b", group: "server" } }), /for dep-b, not dep-a/);
  } finally {
    await first.close();
    await s.close();
  }
});

/** Certificate validity from now for `ms` (certificates count whole seconds). */
const lifetime = (ms: number) => ({ notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + ms) });

test("a connection is replaced before a certificate of it expires: calls in flight finish on it, new calls go to a new one, none fails", async () => {
  const slow = new Set<string>();
  const logger = new MemoryLogger();
  const s = new RpcServer({
    lookup: (id) =>
      id === 0
        ? { name: "test/Svc.run", fn: (args) => "ran " + String(args[0]) }
        : id === 1
          ? { name: "test/Svc.slow", fn: async (args) => (slow.add(String(args[0])), await sleep(1500), "slow " + String(args[0])) }
          : undefined,
    methodTableHash: HASH,
    deploymentId: DEP,
    logger,
    tls: await issue(ca, { deploymentId: DEP, group: "server" }, lifetime(3000)),
  });
  const address = await s.listen("127.0.0.1:0");
  // Both sides' certificates expire in 2 to 3 s (whole seconds); both are renewed (as agents do) after 0.5 s.
  let mine = await issue(ca, { deploymentId: DEP, group: "caller" }, lifetime(3000));
  const clientLog = new MemoryLogger();
  const c = new Connection(address, { methodTableHash: HASH, deploymentId: DEP, tls: () => mine, logger: clientLog, backoffMinMs: 10_000 });
  try {
    assert.equal(await c.call(0, "test/Svc.run", ["first"]), "ran first");
    const renewal = sleep(500).then(async () => {
      s.updateTls(await issue(ca, { deploymentId: DEP, group: "server" }, lifetime(60_000)));
      mine = await issue(ca, { deploymentId: DEP, group: "caller" }, lifetime(60_000));
    });
    // Calls every 20 ms for 4.5 s, and slow ones (1.5 s) started every 300 ms: some are in flight when
    // the connection is replaced, and when the first client certificate expires.
    const failed: string[] = [];
    const results: Promise<unknown>[] = [];
    const record = (p: Promise<unknown>) => results.push(p.catch((err: Error) => failed.push(err.message)));
    const until = Date.now() + 4500;
    for (let i = 0; Date.now() < until; i++) {
      record(c.call(0, "test/Svc.run", [i]));
      if (i % 15 === 0) record(c.call(1, "test/Svc.slow", [i]));
      await sleep(20);
    }
    await renewal;
    await Promise.all(results);
    assert.deepEqual(failed, [], "no call failed");
    assert.ok(slow.size >= 10);
    assert.ok(
      clientLog.lines.some((l) => l.msg.includes("a certificate of the connection expires")),
      "the client replaced the connection before the expiry",
    );
    assert.equal(s.stats.connectionsAccepted, 2, "one replacement connection");
    await waitFor("the old connection to close once its calls finished", () => s.stats.connectionsOpen === 1);
    // The new connection runs on the renewed certificates.
    assert.equal(await c.call(0, "test/Svc.run", ["last"]), "ran last");
    assert.equal(s.stats.connectionsAccepted, 2);
  } finally {
    await c.close();
    await s.close();
  }
});

test("the server sends GOAWAY on a connection whose client certificate expired, and still finishes its calls", async () => {
  const s = new RpcServer({
    lookup: (id) => (id === 0 ? { name: "test/Svc.slow", fn: async () => (await sleep(5000), "done") } : undefined),
    methodTableHash: HASH,
    deploymentId: DEP,
    logger: new MemoryLogger(),
    tls: serverTls,
  });
  const address = await s.listen("127.0.0.1:0");
  // A bare client (a Connection would move its calls away itself) whose certificate expires in 2 s.
  const creds = await issue(ca, { deploymentId: DEP, group: "caller" }, lifetime(2000));
  const { host, port } = parseHostPort(address);
  const socket = tlsConnect({ host, port, cert: creds.cert, key: creds.key, ca: ca.pem, checkServerIdentity: () => undefined });
  const frames: number[] = [];
  let closed = false;
  const channel = new Channel(
    socket,
    { onFrame: (type) => void frames.push(type), onClose: () => void (closed = true) },
    DEFAULT_MAX_FRAME_SIZE,
    { bytesIn: 0, bytesOut: 0 },
  );
  try {
    const hello = new Writer(128);
    writeHello(hello, HASH, DEP);
    socket.write(hello.toBuffer());
    await waitFor("HELLO_OK", () => frames.includes(FrameType.HELLO_OK));
    writeRequest(channel.writer, 1, 0, 0, undefined, undefined, [], DEFAULT_MAX_FRAME_SIZE);
    channel.flush();
    await waitFor("GOAWAY after the client's certificate expired", () => frames.includes(FrameType.GOAWAY), 10_000);
    assert.ok(!frames.includes(FrameType.RESPONSE), "GOAWAY came while the call was in flight");
    await waitFor("the call in flight answered after GOAWAY", () => frames.includes(FrameType.RESPONSE), 10_000);
    assert.deepEqual(frames, [FrameType.HELLO_OK, FrameType.GOAWAY, FrameType.RESPONSE]);
    assert.equal(closed, false, "a call that finished is answered before the connection closes");
  } finally {
    channel.destroy();
    await s.close();
  }
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
