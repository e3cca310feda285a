import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { loadConfig } from "../../../runtime/core/config.js";
import { MultiDeployer } from "../../../runtime/deployers/multi/deployer.js";
import { CONFORMANCE_APP, HELLO_APP, runCli, tempDir, writeConfig } from "../../support/index.js";

test("multi fails fast: a group that crash-loops fails the deployment with its cause", async () => {
  const dir = tempDir();
  const config = writeConfig(
    `[tsweaver]
binary = ${JSON.stringify(CONFORMANCE_APP)}
env = { CONFORMANCE_MAIN_FAILS = "1" }

[multi]
replicas = 1
crash_loop_restarts = 3
crash_loop_window_s = 120
`,
    dir,
  );
  const lines: string[] = [];
  const deployer = new MultiDeployer(loadConfig(config), {
    stateDir: path.join(dir, "state"),
    printLogs: false,
    progress: (l) => lines.push(l),
  });
  try {
    await deployer.deploy();
    const err = await deployer.failed;
    assert.match(err.message, /^group \S+ crash-loops: its replicas exited 3 times within 120 s \(the last, \S+: code 1, signal null\)/);
    assert.match(err.message, /crash_loop_restarts = 3 within crash_loop_window_s = 120/);
    assert.equal(lines.filter((l) => /exited \(code 1/.test(l)).length, 2, "restarted twice, not a third time");
  } finally {
    await deployer.stop();
  }
});

test("multi config: crash-loop limits are checked", () => {
  const dir = tempDir();
  const config = writeConfig(`[tsweaver]\nbinary = "x.js"\n\n[multi]\ncrash_loop_restarts = 0\n`, dir);
  assert.throws(
    () => new MultiDeployer(loadConfig(config), { stateDir: path.join(dir, "state") }),
    /multi\.crash_loop_restarts: must be a positive integer, found 0/,
  );
});

test("multi fails fast: a listener address already in use ends `tsweaver multi deploy` with rc 1 and the cause", async () => {
  const squatter = net.createServer();
  await new Promise<void>((resolve) => squatter.listen(0, "127.0.0.1", resolve));
  const { port } = squatter.address() as net.AddressInfo;
  try {
    const config = writeConfig(
      `[tsweaver]\nname = "hello"\nbinary = ${JSON.stringify(HELLO_APP)}\n\n[multi]\nreplicas = 1\ncrash_loop_restarts = 2\n\n` +
        `[multi.listeners.hello]\naddress = "127.0.0.1:${port}"\n`,
    );
    const { code, out, err } = await runCli(["multi", "deploy", config], { TSWEAVER_STATE_DIR: tempDir() });
    assert.equal(code, 1, out + err);
    assert.match(out + err, new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${port}.*change \\[multi\\.listeners\\.hello\\] address`));
    assert.match(out + err, /group tsweaver-main crash-loops: its replicas exited 2 times/);
  } finally {
    squatter.close();
  }
});
