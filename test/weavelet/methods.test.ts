// Only declared component methods are callable over RPC: never main, a hook or a helper of the class.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Writer } from "../../runtime/codec/codec.js";
import { component, methodTable, register, type Context, type Main } from "../../runtime/core/component.js";
import { MAIN_COMPONENT } from "../../runtime/core/config.js";
import { Connection } from "../../runtime/rpc/client.js";
import { writeRequest } from "../../runtime/rpc/frames.js";
import { Weavelet, type WeaveletHost, type WeaveletSecurity } from "../../runtime/weavelet/weavelet.js";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";

/** What ran: the proof that a refused call ran nothing. */
const ran: string[] = [];

interface Vault {
  read(): Promise<string>;
}
const Vault = component<Vault>("sec/Vault", { methods: ["read"] });
class VaultImpl implements Vault {
  async read(): Promise<string> {
    ran.push("read");
    return "ok";
  }
  /** Public on the class, but not a method of the interface. */
  async wipe(): Promise<void> {
    ran.push("wipe");
  }
}
register(Vault, VaultImpl);

const MainRef = component<Main>(MAIN_COMPONENT, { methods: [] });
class App implements Main {
  constructor(readonly ctx: Context) {}
  async main(): Promise<void> {
    ran.push("main");
  }
}
register(MainRef, App);

const host: WeaveletHost = {
  activateComponent: async () => {},
  getListenerAddress: async () => "127.0.0.1:0",
  exportListener: async () => "",
  logBatch: () => {},
  traceSpans: () => {},
};

async function startWeavelet(security?: WeaveletSecurity): Promise<{ weavelet: Weavelet; address: string }> {
  const weavelet = new Weavelet({
    app: "sec",
    deploymentId: "dep-1",
    id: "w1",
    group: "g",
    hostable: undefined,
    runMain: false,
    internalAddress: "127.0.0.1:0",
    config: {},
    checkValues: false,
    host,
  });
  return { weavelet, address: await weavelet.start(security) };
}

test("the method table holds the declared methods only: no main, no hook, no helper", () => {
  const names = methodTable().byId.map((m) => `${m.component}.${m.method}`);
  assert.deepEqual(names, ["sec/Vault.read"]);
});

test("a crafted REQUEST for any id outside the table is refused and runs nothing", async () => {
  const { weavelet, address } = await startWeavelet();
  const conn = new Connection(address, { methodTableHash: methodTable().hash, deploymentId: "dep-1" });
  try {
    assert.equal(await conn.call(0, "sec/Vault.read", []), "ok");
    ran.length = 0;
    // Every id a client could guess for main, wipe, init, shutdown or constructor: none is in the table.
    for (const id of [1, 2, 3, 4, 5, 100, 0xffffffff]) {
      await assert.rejects(conn.call(id, "guessed", []), /unknown method id/);
    }
    assert.deepEqual(ran, []);
  } finally {
    await conn.close();
    await weavelet.shutdown();
  }
});

test("a raw frame on a socket that skipped HELLO is refused before it runs", async () => {
  const { weavelet, address } = await startWeavelet();
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  try {
    ran.length = 0;
    const w = new Writer(256);
    writeRequest(w, 1, 0, 0, undefined, undefined, [], 1 << 20);
    const socket = connect({ host, port });
    const reply: Buffer[] = [];
    socket.on("data", (d: Buffer) => reply.push(d));
    socket.write(w.toBuffer());
    await new Promise<void>((resolve) => socket.on("close", () => resolve()));
    assert.equal(Buffer.concat(reply).length, 0);
    assert.deepEqual(ran, []);
  } finally {
    await weavelet.shutdown();
  }
});

test("with a deployment key: only allowed groups of the deployment call a component that restricts its callers", async () => {
  const key = randomBytes(32);
  const { weavelet, address } = await startWeavelet({ key, callers: { "sec/Vault": ["ops"] } });
  const hash = methodTable().hash;
  const dial = (group: string | undefined, k: Uint8Array = key) =>
    new Connection(address, {
      methodTableHash: hash,
      deploymentId: "dep-1",
      auth: group === undefined ? undefined : { key: k, identity: { deploymentId: "dep-1", group } },
      backoffMinMs: 10_000,
    });
  const ops = dial("ops");
  const web = dial("web");
  const anonymous = dial(undefined);
  const foreign = dial("ops", randomBytes(32));
  try {
    ran.length = 0;
    assert.equal(await ops.call(0, "sec/Vault.read", []), "ok");
    await assert.rejects(
      web.call(0, "sec/Vault.read", []),
      /sec\/Vault\.read: group "web" may not call sec\/Vault \(weaver\.toml \[tsweaver\.callers\] allows only the groups ops\)/,
    );
    await assert.rejects(anonymous.call(0, "sec/Vault.read", []), /refused the connection: authentication failed$/);
    await assert.rejects(foreign.call(0, "sec/Vault.read", []), /failed to authenticate/);
    assert.deepEqual(ran, ["read"]);
  } finally {
    await Promise.all([ops.close(), web.close(), anonymous.close(), foreign.close()]);
    await weavelet.shutdown();
  }
});
