import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import type { Duplex } from "node:stream";
import { after, test } from "node:test";
import { Envelope, type EnvelopeHandler, type LogEntry } from "../../runtime/deployer.js";
import { ControlChannel } from "../../runtime/control/channel.js";
import { encodeWeaveletArgs } from "../../runtime/protos/runtime.js";
import { ECHO_APP, ROOT, alive, get, waitFor } from "../support/index.js";

const baseArgs = { app: "t", deploymentId: "d1", id: "w1", internalAddress: "127.0.0.1:0", config: {} };

function recordingHandler() {
  const logs: LogEntry[] = [];
  const exported: { listener: string; address: string }[] = [];
  const activated: string[] = [];
  const handler: EnvelopeHandler = {
    async activateComponent({ component }) {
      activated.push(component);
    },
    async getListenerAddress() {
      return { address: "127.0.0.1:0" };
    },
    async exportListener(req) {
      exported.push(req);
      return { proxyAddress: "", error: "" };
    },
    handleLogEntries({ entries }) {
      logs.push(...entries);
    },
    handleTraceSpans() {},
  };
  return { handler, logs, exported, activated };
}

const started: Envelope[] = [];

/** Constructs an envelope and serves it `handler` (what Envelope's users do). */
async function startEnvelope(opts: ConstructorParameters<typeof Envelope>[0], handler: EnvelopeHandler): Promise<Envelope> {
  const envelope = new Envelope(opts);
  await envelope.serve(handler);
  return envelope;
}
after(async () => {
  await Promise.all(started.map((e) => e.stop(2000)));
});

test("an envelope starts the app, forwards its requests, turns stdout into log entries, and answers control calls", async () => {
  const rec = recordingHandler();
  const env = await startEnvelope(
    { binary: ECHO_APP, weaveletArgs: { ...baseArgs, runMain: true, group: "main", components: ["tsweaver/Main"] } },
    rec.handler,
  );
  started.push(env);
  assert.ok(env.pid > 0 && alive(env.pid));
  assert.match(env.dialAddress, /^127\.0\.0\.1:\d+$/);
  assert.deepEqual([...env.components], ["test/Echo", "tsweaver/Main"]);
  await waitFor("listener export", () => rec.exported.length === 1);
  assert.equal(rec.exported[0]!.listener, "api");
  assert.deepEqual(rec.activated, ["test/Echo"]);
  // The listener really listens (it answers 404 for an unknown path without needing Echo).
  assert.equal((await get(`http://${rec.exported[0]!.address}/nope`)).status, 404);
  await waitFor("stdout log entry", () => rec.logs.find((e) => e.component === "stdout" && e.msg === "echo app main started"));
  const structured = await waitFor("structured log entry", () => rec.logs.find((e) => e.msg === "api ready"));
  assert.equal(structured.component, "tsweaver/Main");
  assert.equal(structured.level, "info");
  assert.equal(structured.file, "echo.ts", "the source file, through the source map");
  assert.ok(structured.line > 0);
  assert.match(structured.attrs["address"] ?? "", /^127\.0\.0\.1:\d+$/);
  assert.equal(structured.node, "w1");

  assert.equal(await env.getHealth(), "HEALTHY");
  assert.ok(Array.isArray(await env.getLoad()));
  assert.ok(Array.isArray(await env.getMetrics()));
  const profile = JSON.parse(Buffer.from(await env.getProfile("CPU", 50)).toString()) as { nodes: unknown[] };
  assert.ok(profile.nodes.length > 0, "a CPU profile has nodes");

  const exit = await env.stop(3000);
  assert.equal(exit.requested, true);
  assert.equal(exit.code, 0, "graceful stop exits 0");
  assert.equal(alive(env.pid), false);
});

test("requests a weavelet sends during and right after its handshake reach the handler of its envelope", async () => {
  const binary = path.join(ROOT, "dist/test/fixtures/apps/eager-weavelet.js");
  const envelopes = [0, 1].map(
    (i) => new Envelope({ binary, weaveletArgs: { ...baseArgs, id: `w${i}`, runMain: false, group: "g", components: [] } }),
  );
  started.push(...envelopes);
  const asked: { by: Envelope; component: string; handshakeDone: boolean }[] = [];
  const printed: { by: Envelope; line: string }[] = [];
  const handshakeDone = new Set<Envelope>();
  // One handler per envelope, each closing over its own: both weavelets ask for the same components.
  const handlerFor = (envelope: Envelope): EnvelopeHandler => ({
    ...recordingHandler().handler,
    async activateComponent({ component }) {
      asked.push({ by: envelope, component, handshakeDone: handshakeDone.has(envelope) });
      await envelope.updateRoutingInfo({ component, local: false, replicas: [`${envelope === envelopes[0] ? "first" : "second"}:1`] });
    },
    handleLogEntries({ entries }) {
      for (const e of entries) if (e.component === "stdout") printed.push({ by: envelope, line: e.msg });
    },
  });
  await Promise.all(envelopes.map((e) => e.serve(handlerFor(e)).then(() => handshakeDone.add(e))));
  await waitFor("four routing updates printed", () => printed.length === 4);
  for (const [i, envelope] of envelopes.entries()) {
    const mine = asked.filter((a) => a.by === envelope);
    assert.deepEqual(mine.map((a) => a.component).sort(), ["test/After", "test/During"]);
    assert.equal(mine.find((a) => a.component === "test/During")!.handshakeDone, false, "test/During arrives before serve() resolves");
    const name = i === 0 ? "first" : "second";
    assert.deepEqual(
      printed
        .filter((p) => p.by === envelope)
        .map((p) => p.line)
        .sort(),
      [`routing test/After -> ${name}:1`, `routing test/During -> ${name}:1`],
      "each weavelet received the routing its own envelope's handler sent",
    );
  }
});

test("the envelope refuses a weavelet of another protocol version, naming both versions", async () => {
  const fake = path.join(ROOT, "dist/test/fixtures/apps/future-weavelet.js");
  await assert.rejects(
    startEnvelope({ binary: fake, weaveletArgs: { ...baseArgs, runMain: false, group: "g", components: [] } }, recordingHandler().handler),
    /protocol version mismatch: envelope speaks version 3, weavelet speaks version 99/,
  );
});

test("a weavelet refuses an envelope of another protocol version and exits", async () => {
  const child = spawn(process.execPath, [ECHO_APP], {
    stdio: ["ignore", "ignore", "ignore", "pipe"],
    env: {
      ...process.env,
      TSWEAVER_WEAVELET_ARGS: encodeWeaveletArgs({
        ...baseArgs,
        callTimeoutMs: {},
        runMain: false,
        group: "g",
        components: ["test/Echo"],
        protocolVersion: 99,
      }),
    },
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const channel = new ControlChannel(child.stdio[3] as Duplex, async () => ["empty", {}], "test weavelet");
  await assert.rejects(
    channel.request("initWeavelet", { protocolVersion: 99, sections: [], rpcKey: new Uint8Array(0), callers: {}, requireTls: false }),
    /envelope speaks version 99, weavelet speaks version 3/,
  );
  assert.notEqual(await exited, 0);
});

test("an app that dies before its handshake is reported with its stderr", async () => {
  await assert.rejects(
    startEnvelope(
      {
        binary: path.join(ROOT, "dist/test/fixtures/apps/crash.js"),
        weaveletArgs: { ...baseArgs, runMain: false, group: "g", components: [] },
      },
      recordingHandler().handler,
    ),
    /exited \(code 3, signal null\) before its handshake:\nboom: this app cannot start/,
  );
});

test("a missing entry file is reported", async () => {
  await assert.rejects(
    startEnvelope(
      { binary: "/nonexistent/app.js", weaveletArgs: { ...baseArgs, runMain: false, group: "g", components: [] } },
      recordingHandler().handler,
    ),
    /before its handshake:\n[\s\S]*Cannot find module '\/nonexistent\/app.js'/,
  );
});

test("a weavelet that does not answer is reported UNHEALTHY, and HEALTHY once it answers again", async () => {
  const rec = recordingHandler();
  const env = await startEnvelope(
    {
      binary: path.join(ROOT, "dist/test/fixtures/apps/stuck.js"),
      weaveletArgs: { ...baseArgs, runMain: true, group: "main", components: ["tsweaver/Main"] },
    },
    rec.handler,
  );
  started.push(env);
  await waitFor("the app blocks", () => rec.logs.some((e) => e.msg === "blocking"));
  assert.equal(await env.getHealth(300), "UNHEALTHY");
  assert.equal(await waitFor("healthy again", async () => (await env.getHealth(300)) === "HEALTHY"), true);
});

test("a weavelet required to use TLS without a certificate refuses the handshake rather than serve plaintext", async () => {
  const rec = recordingHandler();
  const env = new Envelope({
    binary: ECHO_APP,
    weaveletArgs: { ...baseArgs, runMain: true, group: "main", components: ["tsweaver/Main"] },
    rpcSecurity: { key: new Uint8Array(0), requireTls: true },
    startTimeoutMs: 10_000,
  });
  await assert.rejects(
    env.serve(rec.handler),
    /requires TLS for component calls but handed over no certificate: refusing to serve component calls in plaintext/,
  );
  await env.exited;
  assert.deepEqual(rec.activated, [], "main never ran");
});
