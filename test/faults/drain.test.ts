import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { CLI, ECHO_APP, Proc, get, tempDir, waitFor, writeConfig, type HttpReply } from "../support/index.js";

/** Resolves with the error code of a connection attempt ("" if it connected). */
function connectOutcome(address: string): Promise<string> {
  const [host, port] = [address.slice(0, address.lastIndexOf(":")), Number(address.slice(address.lastIndexOf(":") + 1))];
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once("connect", () => {
      s.destroy();
      resolve("");
    });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

test("SIGTERM drains: 20 in-flight 2 s calls through the listener finish, new connections are refused, the deployer exits within drain_seconds", async (t) => {
  const drainSeconds = 10;
  const dir = tempDir();
  const events = path.join(dir, "events.log");
  writeFileSync(events, "");
  const config = writeConfig(
    `[tsweaver]\nname = "drain"\nbinary = ${JSON.stringify(ECHO_APP)}\nenv = { TSWEAVER_TEST_EVENTS = ${JSON.stringify(events)} }\n[multi]\nreplicas = 2\ndrain_seconds = ${drainSeconds}\n` +
      `[multi.listeners.api]\naddress = "127.0.0.1:0"\n`,
    dir,
  );
  const deploy = new Proc(process.execPath, [CLI, "multi", "deploy", config], { TSWEAVER_STATE_DIR: path.join(dir, "state") });
  try {
    const [, address] = await deploy.waitForOutput(/listener api available on http:\/\/(\S+)/);
    const base = `http://${address!}`;
    // Both main replicas serve and both Echo replicas are reachable before the load starts.
    await deploy.waitForOutput(/starting group test-echo/);
    for (let i = 0; i < 4; i++) assert.equal((await get(`${base}/echo?s=warm${i}`)).status, 200);

    // Each call crosses processes: proxy → main → Echo.slow (2 s), with a deadline far away.
    const calls: Promise<HttpReply | Error>[] = Array.from({ length: 20 }, (_, i) =>
      get(`${base}/slow?ms=2000&timeout=30000&tag=drain${i}`, 30_000).catch((err: Error) => err),
    );
    // In flight: every call has reached Echo.slow in another process.
    await waitFor("20 calls in flight", () => (readFileSync(events, "utf8").match(/^started drain\d+ /gm) ?? []).length === 20);
    const signalled = Date.now();
    deploy.kill("SIGTERM");
    await deploy.waitForOutput(/stopping deployment/);
    assert.notEqual(await connectOutcome(address!), "", "a new connection after SIGTERM is refused");

    const replies = await Promise.all(calls);
    const exit = await deploy.exited;
    const exitedAfterMs = Date.now() - signalled;
    const failed = replies.filter((r) => r instanceof Error || r.status !== 200 || r.body !== JSON.stringify("slept 2000"));
    assert.deepEqual(failed, [], "every in-flight call completes");
    assert.equal(exit.code, 0, deploy.err);
    assert.ok(exitedAfterMs < drainSeconds * 1000 + 2_000, `the deployer exited ${exitedAfterMs} ms after SIGTERM`);
    t.diagnostic(`20/20 in-flight 2 s calls succeeded; the deployer exited ${exitedAfterMs} ms after SIGTERM`);
  } finally {
    deploy.kill("SIGKILL");
  }
});
