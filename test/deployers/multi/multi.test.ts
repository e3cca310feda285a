import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type MultiDeployer } from "../../../runtime/deployers/multi/deployer.js";
import { DeploymentDir } from "../../../runtime/deployers/multi/state.js";
import { ECHO_APP, alive, get, getJson, tempDir, waitFor, writeConfig } from "../../support/index.js";
import { deployForTest } from "../../support/multi.js";

describe("multi deployer: 2 replicas per group, listener proxy, restarts, errors, deadlines", () => {
  const dir = tempDir();
  const events = path.join(dir, "events.log");
  const stateDir = path.join(dir, "state");
  const config = writeConfig(
    `[tsweaver]
name = "echoapp"
binary = ${JSON.stringify(ECHO_APP)}
env = { TSWEAVER_TEST_EVENTS = ${JSON.stringify(events)} }

[multi]
replicas = 2

[multi.listeners.api]
address = "127.0.0.1:0"

["test/Echo"]
greeting = "hello from weaver.toml"
`,
    dir,
  );
  let deployer: MultiDeployer;
  let base = "";

  before(async () => {
    ({ deployer, base } = await deployForTest(config, stateDir, "api"));
    // Both main replicas registered behind the proxy and both Echo replicas routable.
    await waitFor("2 main replicas behind the proxy", () => deployer.status().listeners[0]?.replicas === 2);
    await waitFor("2 echo replicas", () => deployer.pids().get("test-echo")?.length === 2);
  });

  after(async () => {
    const pids = [...deployer.pids().values()].flat();
    await deployer.stop();
    for (const pid of pids) assert.equal(alive(pid), false, `weavelet ${pid} is gone after stop`);
  });

  test("calls cross processes and spread over both replicas of each group", async () => {
    assert.equal(await getJson<string>(`${base}/echo?s=abc`), "abc");
    const seen = { main: new Set<number>(), echo: new Set<number>() };
    for (let i = 0; i < 24; i++) {
      const p = await getJson<{ main: number; echo: number }>(`${base}/pids`);
      seen.main.add(p.main);
      seen.echo.add(p.echo);
    }
    assert.equal(seen.main.size, 2, "the proxy spreads requests over both main replicas");
    assert.equal(seen.echo.size, 2, "calls spread over both Echo replicas");
    for (const pid of seen.echo) assert.ok(!seen.main.has(pid), "Echo runs in other processes than main");
    assert.deepEqual(new Set(deployer.pids().get("test-echo")), seen.echo);
  });

  test("per-component config comes from weaver.toml", async () => {
    assert.equal(await getJson<string>(`${base}/greeting`), "hello from weaver.toml");
  });

  test("a remote error reaches the caller with its name, message, details and the RemoteCallError marker", async () => {
    const r = await getJson<{ name: string; message: string; remote: boolean; code: string }>(
      `${base}/fail?name=OutOfStock&message=no+more+socks`,
    );
    assert.deepEqual(r, { name: "OutOfStock", message: "no more socks", remote: true, code: "E_TEST" });
  });

  test("a deadline expires at the caller and the callee's signal aborts", async () => {
    const r = await getJson<{ error: string }>(`${base}/slow?ms=10000&timeout=200&tag=deadline1`);
    assert.equal(r.error, "DeadlineExceededError");
    await waitFor("server-side abort", () => existsSync(events) && readFileSync(events, "utf8").includes("aborted deadline1"));
  });

  test("a caller's cancellation reaches the callee", async () => {
    const r = await getJson<{ error: string }>(`${base}/cancel?ms=10000&after=150&tag=cancel1`);
    assert.equal(r.error, "CallCancelledError");
    await waitFor("server-side cancel", () => readFileSync(events, "utf8").includes("aborted cancel1"));
  });

  test("kill -9 of an Echo weavelet: calls keep succeeding, the replica restarts and rejoins", async () => {
    const [victim, survivor] = deployer.pids().get("test-echo")!;
    process.kill(victim!, "SIGKILL");
    // Immediately after the kill, calls still succeed (retried on the surviving replica).
    const replies = await Promise.all(Array.from({ length: 30 }, (_, i) => get(`${base}/echo?s=k${i}`)));
    for (const [i, r] of replies.entries()) assert.deepEqual(r, { status: 200, body: JSON.stringify(`k${i}`) });
    const restarted = await waitFor("restart", () => {
      const g = deployer.status().groups.find((x) => x.name === "test-echo")!;
      const r = g.replicas.find((x) => x.restarts === 1 && x.state === "running");
      return r && r.pid !== victim ? r : undefined;
    });
    assert.ok(alive(restarted.pid));
    assert.ok(deployer.pids().get("test-echo")!.includes(survivor!));
    // The restarted replica takes calls again.
    await waitFor(
      "restarted replica serves",
      async () => (await getJson<{ echo: number }>(`${base}/pids`)).echo === restarted.pid,
      10_000,
      0,
    );
  });

  test("status and logs are kept in the deployment's state dir", async () => {
    const d = new DeploymentDir(stateDir, deployer.deploymentId);
    await waitFor("status file", () => d.readStatus()?.groups.length === 2);
    const s = d.readStatus()!;
    assert.equal(s.app, "echoapp");
    assert.deepEqual(s.groups.map((g) => g.name).sort(), ["test-echo", "tsweaver-main"]);
    const logs = await waitFor("logs", () => (existsSync(d.logFile) ? readFileSync(d.logFile, "utf8") : ""));
    assert.match(logs, /"msg":"api ready"/);
    assert.match(
      logs,
      /"component":"stdout","node":"[^"]+","timeMicros":"\d+","level":"info","file":"","line":0,"msg":"echo app main started"/,
    );
  });
});
