import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { loadConfig } from "../../runtime/core/config.js";
import { MultiDeployer } from "../../runtime/deployers/multi/deployer.js";
import { ECHO_APP, alive, getJson, tempDir, waitFor, writeConfig } from "../support/index.js";

describe("multi: unhealthy replicas get no traffic and are replaced; backoff resets on sustained health", () => {
  const dir = tempDir();
  const config = writeConfig(
    `[tsweaver]\nname = "health"\nbinary = ${JSON.stringify(ECHO_APP)}\n[multi]\nreplicas = 2\nunhealthy_replace_s = 3\n` +
      `[multi.listeners.api]\naddress = "127.0.0.1:0"\n`,
    dir,
  );
  const lines: string[] = [];
  let deployer: MultiDeployer;
  let base = "";
  const echoReplica = (id: string) =>
    deployer
      .status()
      .groups.find((g) => g.name === "test-echo")
      ?.replicas.find((r) => r.id === id);

  before(async () => {
    deployer = new MultiDeployer(loadConfig(config), {
      stateDir: path.join(dir, "state"),
      printLogs: false,
      progress: (l) => lines.push(l),
    });
    await deployer.deploy();
    const addr = await waitFor("the api proxy", async () => (await deployer.listenerAddresses()).get("api"));
    base = `http://${addr}`;
    await waitFor("2 echo replicas", () => deployer.pids().get("test-echo")?.length === 2);
  });

  after(async () => {
    await deployer.stop();
  });

  test("a replica that stops answering is UNHEALTHY: calls avoid it, and it is replaced", async () => {
    assert.equal(await getJson<string>(`${base}/echo?s=x`), "x");
    const victim = echoReplica("test-echo-0")!;
    const other = echoReplica("test-echo-1")!;
    process.kill(victim.pid, "SIGSTOP"); // alive but answering nothing: a hung process
    try {
      await waitFor("UNHEALTHY in status", () => echoReplica("test-echo-0")?.health === "UNHEALTHY", 30_000);
      // From now on no call goes to it (a call to the stopped process would hang).
      for (let i = 0; i < 20; i++) assert.equal((await getJson<{ echo: number }>(`${base}/pids`)).echo, other.pid);
      const fresh = await waitFor(
        "the replacement",
        () => {
          const r = echoReplica("test-echo-0");
          return r && r.pid !== victim.pid && r.pid > 0 && r.state === "running" ? r : undefined;
        },
        30_000,
      );
      assert.equal(fresh.restarts, victim.restarts + 1);
      assert.ok(
        lines.some((l) => l.startsWith(`tsweaver: replacing replica test-echo-0 (pid ${victim.pid}): UNHEALTHY for`)),
        lines.join("\n"),
      );
      await waitFor("the old process is gone", () => !alive(victim.pid), 10_000);
      // The replacement takes calls again.
      await waitFor("the replacement serves", async () => (await getJson<{ echo: number }>(`${base}/pids`)).echo === fresh.pid, 10_000, 0);
    } finally {
      if (alive(victim.pid)) process.kill(victim.pid, "SIGKILL");
    }
  });

  test("restart backoff resets once a restarted replica was healthy for a while, however short its run", async () => {
    const delays: number[] = [];
    for (let round = 0; round < 3; round++) {
      // Sustained health: two health checks in a row answered HEALTHY (they come every 2 s).
      const r = await waitFor(
        "sustained health",
        () => {
          const x = echoReplica("test-echo-1");
          return x?.healthySince && Date.now() - Date.parse(x.healthySince) > 3_500 ? x : undefined;
        },
        30_000,
      );
      const seen = lines.length;
      process.kill(r.pid, "SIGKILL");
      const line = await waitFor("restart line", () => lines.slice(seen).find((l) => l.startsWith("tsweaver: replica test-echo-1 exited")));
      delays.push(Number(/restart \d+ in (\d+) ms/.exec(line)![1]));
    }
    // Without the reset the delays would double: 100, 200, 400 ms.
    assert.deepEqual(delays, [100, 100, 100]);
  });
});
