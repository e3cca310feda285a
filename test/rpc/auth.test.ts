// Mutual authentication of RPC connections with a deployment key: whoever cannot prove it holds the key
// is refused before any method runs, learns nothing from the refusal, and a captured handshake cannot be
// replayed; a client refuses a server that cannot prove it either.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, createServer } from "node:net";
import { test } from "node:test";
import { parseHostPort } from "../../runtime/rpc/address.js";
import { Reader, Writer } from "../../runtime/codec/codec.js";
import { AUTH_REFUSED, handshakeProof, type RpcAuth } from "../../runtime/rpc/auth.js";
import { Connection } from "../../runtime/rpc/client.js";
import { FrameReader, FrameType, RPC_PROTOCOL_VERSION, writeHello, writeProof, writeRequest } from "../../runtime/rpc/frames.js";
import { RpcServer } from "../../runtime/rpc/server.js";
import { HASH, MemoryLogger } from "../support/rpc.js";

const KEY = randomBytes(32);
const DEPLOYMENT = "dep-a";
const as = (group: string, key: Uint8Array = KEY, deploymentId = DEPLOYMENT): RpcAuth => ({ key, identity: { deploymentId, group } });

/** An authenticating server whose one method (id 0) records that it ran. */
async function server(
  opts: { auth?: RpcAuth; authorize?: (id: number, caller: { group: string } | undefined) => string | undefined } = {},
) {
  const ran: string[] = [];
  const logger = new MemoryLogger();
  const s = new RpcServer({
    lookup: (id) => (id === 0 ? { name: "test/Svc.run", fn: (args) => (ran.push(String(args[0])), "ran") } : undefined),
    methodTableHash: HASH,
    deploymentId: DEPLOYMENT,
    logger,
    auth: "auth" in opts ? opts.auth : as("server"),
    authorize: opts.authorize,
  });
  const address = await s.listen("127.0.0.1:0");
  return { s, address, ran, logger };
}

function client(address: string, auth: RpcAuth | undefined, deploymentId = DEPLOYMENT): Connection {
  return new Connection(address, { methodTableHash: HASH, deploymentId, auth, backoffMinMs: 10_000 });
}

/** What a refused client was told: the HELLO_ERR text, from the rejection. */
async function refusal(c: Connection): Promise<string> {
  const err = await c.call(0, "test/Svc.run", ["x"]).then(
    () => assert.fail("the call ran"),
    (e: Error) => e,
  );
  return err.message;
}

test("an authenticated client's calls run; the server knows its group", async () => {
  const groups: (string | undefined)[] = [];
  const { s, address, ran } = await server({ authorize: (_id, caller) => (groups.push(caller?.group), undefined) });
  const c = client(address, as("caller"));
  try {
    assert.equal(await c.call(0, "test/Svc.run", ["a"]), "ran");
    assert.equal(await c.call(0, "test/Svc.run", ["b"]), "ran");
    assert.deepEqual(ran, ["a", "b"]);
    assert.deepEqual(groups, ["caller", "caller"]);
  } finally {
    await c.close();
    await s.close();
  }
});

test("a client without the key is refused before anything runs, and told nothing", async () => {
  const { s, address, ran, logger } = await server();
  const c = client(address, undefined);
  try {
    const msg = await refusal(c);
    assert.match(msg, new RegExp(`refused the connection: ${AUTH_REFUSED}$`));
    assert.doesNotMatch(msg, new RegExp(`${HASH}|${DEPLOYMENT}|server`));
    assert.deepEqual(ran, []);
    assert.equal(s.stats.refusedHellos, 1);
    // The server's log says why.
    assert.ok(logger.lines.some((l) => l.msg === "rpc: refusing client" && l.attrs?.["reason"] === "client did not authenticate"));
  } finally {
    await c.close();
    await s.close();
  }
});

test("a client of another deployment (another key) is refused, whatever deployment it claims", async () => {
  const { s, address, ran } = await server();
  const other = client(address, as("caller", randomBytes(32)));
  const otherDeployment = client(address, as("caller", randomBytes(32), "dep-b"), "dep-b");
  try {
    // The server's proof does not verify under the other key: the client refuses the server first.
    assert.match(await refusal(other), /failed to authenticate/);
    const msg = await refusal(otherDeployment);
    assert.match(msg, new RegExp(`${AUTH_REFUSED}$`));
    assert.doesNotMatch(msg, /dep-a|dep-b/);
    assert.deepEqual(ran, []);
  } finally {
    await other.close();
    await otherDeployment.close();
    await s.close();
  }
});

test("a client with the wrong key that ignores the server's proof fails on its own proof", async () => {
  const { s, address, ran } = await server();
  const { host, port } = parseHostPort(address);
  const socket = connect(port, host);
  const frames: { type: number; body: Buffer }[] = [];
  const closed = new Promise<void>((r) => socket.on("close", () => r()));
  const clientNonce = randomBytes(32);
  const wrong = as("caller", randomBytes(32));
  const reader = new FrameReader(1 << 20, {
    onFrame(type, buf, start, end) {
      const body = Buffer.from(buf.subarray(start, end));
      frames.push({ type, body });
      if (type !== FrameType.CHALLENGE) return;
      // Answer the challenge with a proof under the wrong key, then a request, without waiting.
      const r = new Reader(body);
      const server = { deploymentId: r.value() as string, group: r.value() as string };
      const serverNonce = r.value() as Uint8Array;
      const t = { protocolVersion: RPC_PROTOCOL_VERSION, methodTableHash: HASH, client: wrong.identity, server, clientNonce, serverNonce };
      const w = new Writer(256);
      writeProof(w, handshakeProof(wrong.key, "client", t));
      writeRequest(w, 1, 0, 0, undefined, undefined, ["forged"], 1 << 20);
      socket.write(w.toBuffer());
    },
  });
  socket.on("data", (d: Buffer) => reader.push(d));
  const hello = new Writer(256);
  writeHello(hello, HASH, DEPLOYMENT, { group: "caller", nonce: clientNonce });
  socket.write(hello.toBuffer());
  try {
    await closed;
    assert.deepEqual(
      frames.map((f) => f.type),
      [FrameType.CHALLENGE, FrameType.HELLO_ERR],
    );
    assert.equal(new Reader(frames[1]!.body).value(), AUTH_REFUSED);
    assert.deepEqual(ran, []);
    assert.equal(s.stats.calls, 0);
  } finally {
    socket.destroy();
    await s.close();
  }
});

test("a replayed handshake is refused: the server's nonce is new on every connection", async () => {
  const { s, address, ran } = await server();
  // A recording proxy in front of the server captures what a good client sends.
  const captured: Buffer[] = [];
  const target = parseHostPort(address);
  const proxy = createServer((inbound) => {
    const outbound = connect(target.port, target.host);
    inbound.on("data", (d: Buffer) => {
      captured.push(Buffer.from(d));
      outbound.write(d);
    });
    outbound.on("data", (d: Buffer) => inbound.write(d));
    inbound.on("close", () => outbound.destroy());
    outbound.on("close", () => inbound.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const port = (proxy.address() as { port: number }).port;
  const good = client(`127.0.0.1:${port}`, as("caller"));
  try {
    assert.equal(await good.call(0, "test/Svc.run", ["genuine"]), "ran");
    await good.close();
    assert.deepEqual(ran, ["genuine"]);
    // Replay HELLO, PROOF and the REQUEST, byte for byte, on a fresh connection.
    const replay = connect(target.port, target.host);
    const reply: Buffer[] = [];
    replay.on("data", (d: Buffer) => reply.push(d));
    replay.on("connect", () => {
      for (const chunk of captured) replay.write(chunk);
    });
    await new Promise<void>((r) => replay.on("close", () => r()));
    assert.ok(Buffer.concat(reply).includes(Buffer.from(AUTH_REFUSED)), "the replay gets the generic refusal");
    assert.deepEqual(ran, ["genuine"]);
  } finally {
    await good.close();
    await new Promise<void>((r) => proxy.close(() => r()));
    await s.close();
  }
});

test("a client refuses a server that cannot prove it holds the key, and sends it nothing", async () => {
  const impostor = await server({ auth: as("server", randomBytes(32)) });
  const plain = await server({ auth: undefined });
  const c1 = client(impostor.address, as("caller"));
  const c2 = client(plain.address, as("caller"));
  try {
    assert.match(await refusal(c1), /failed to authenticate/);
    assert.deepEqual(impostor.ran, []);
    assert.equal(impostor.s.stats.calls, 0);
    // A server without a key does not pretend: it refuses an authenticating client.
    assert.match(await refusal(c2), /this server has no deployment key/);
    assert.equal(plain.s.stats.calls, 0);
  } finally {
    await c1.close();
    await c2.close();
    await impostor.s.close();
    await plain.s.close();
  }
});

test("authorize refuses a caller before the method runs, with the reason", async () => {
  const { s, address, ran } = await server({
    authorize: (_id, caller) => (caller?.group === "trusted" ? undefined : `group ${caller?.group} may not call test/Svc`),
  });
  const trusted = client(address, as("trusted"));
  const other = client(address, as("other"));
  try {
    assert.equal(await trusted.call(0, "test/Svc.run", ["t"]), "ran");
    await assert.rejects(other.call(0, "test/Svc.run", ["o"]), /group other may not call test\/Svc/);
    assert.deepEqual(ran, ["t"]);
    assert.equal(s.stats.unauthorized, 1);
  } finally {
    await trusted.close();
    await other.close();
    await s.close();
  }
});
