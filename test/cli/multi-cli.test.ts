import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { CLI, HELLO_APP, Proc, ROOT, alive, get, tempDir, waitFor, writeConfig } from "../support/index.js";

function cli(args: string[], env: Record<string, string>): string {
  return execFileSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: "utf8" });
}

test("tsweaver multi deploy|status|logs on the hello example, and SIGINT leaves no process behind", async () => {
  const state = tempDir();
  const env = { TSWEAVER_STATE_DIR: state };
  const config = writeConfig(
    `[tsweaver]\nname = "hello"\nbinary = ${JSON.stringify(HELLO_APP)}\n[multi.listeners.hello]\naddress = "127.0.0.1:0"\n`,
  );
  const deploy = new Proc(process.execPath, [CLI, "multi", "deploy", config], env);
  try {
    const [, address] = await deploy.waitForOutput(/listener hello available on http:\/\/(\S+)/);
    assert.ok(address !== undefined);
    assert.deepEqual(await get(`http://${address}/hello?name=World`), { status: 200, body: "Hello, dlroW!\n" });

    const status = await waitFor("status with both groups running", () => {
      const out = cli(["multi", "status"], env);
      return (out.match(/ running +HEALTHY /g) ?? []).length === 4 ? out : undefined;
    });
    assert.match(status, /DEPLOYMENT \w+ +app hello +running/);
    assert.match(status, /hello-reverser +hello\/Reverser +hello-reverser-0 +\d+ +unix:\/\S+\.sock +running +HEALTHY +0/);
    assert.match(status, new RegExp(`hello +http://${address.replace(/\./g, "\\.")} +2`));

    const logs = cli(["multi", "logs", "--component", "tsweaver/Main"], env);
    assert.match(logs, /tsweaver\/Main .*\] hello listener ready address=127\.0\.0\.1:\d+/);
    assert.doesNotMatch(cli(["multi", "logs", "--component", "hello/Reverser"], env), /hello listener ready/);
    assert.equal(cli(["multi", "logs", "--grep", "no such text anywhere"], env), "");

    const json = JSON.parse(cli(["multi", "status", "--json"], env)) as { groups: { replicas: { pid: number }[] }[] }[];
    const pids = json[0]!.groups.flatMap((g) => g.replicas.map((r) => r.pid));
    assert.equal(pids.length, 4);

    deploy.kill("SIGINT");
    const exit = await deploy.exited;
    assert.equal(exit.code, 0, deploy.err);
    for (const pid of pids) assert.equal(alive(pid), false, `weavelet ${pid} stopped`);
    assert.match(cli(["multi", "status"], env), /no running deployments/);
    assert.match(cli(["multi", "status", "--all"], env), /app hello +stopped/);
  } finally {
    deploy.kill("SIGKILL");
  }
});

test("a killed deployer leaves no orphan weavelets (they exit when their control pipe closes)", async () => {
  const state = tempDir();
  const config = writeConfig(`[tsweaver]\nbinary = ${JSON.stringify(HELLO_APP)}\n[multi.listeners.hello]\naddress = "127.0.0.1:0"\n`);
  const deploy = new Proc(process.execPath, [CLI, "multi", "deploy", config], { TSWEAVER_STATE_DIR: state });
  const [, address] = await deploy.waitForOutput(/listener hello available on http:\/\/(\S+)/);
  await get(`http://${address}/hello`);
  const json = JSON.parse(cli(["multi", "status", "--json"], { TSWEAVER_STATE_DIR: state })) as {
    groups: { replicas: { pid: number }[] }[];
  }[];
  const pids = json[0]!.groups.flatMap((g) => g.replicas.map((r) => r.pid)).filter((p) => p > 0);
  assert.ok(pids.length >= 2);
  deploy.kill("SIGKILL");
  await deploy.exited;
  await waitFor("weavelets exit", () => pids.every((p) => !alive(p)), 10_000);
  assert.match(cli(["multi", "status", "--all"], { TSWEAVER_STATE_DIR: state }), /dead \(deployer gone\)/);
});

test("bad config and unknown commands fail with a clear message", () => {
  const dir = tempDir();
  const bad = writeConfig(`[tsweaver]\nbinary = ${JSON.stringify(HELLO_APP)}\n["hello/Revrser"]\nx = 1\n`, dir);
  assert.throws(
    () => cli(["multi", "deploy", bad], { TSWEAVER_STATE_DIR: dir }),
    (err: { stderr: string }) =>
      /\["hello\/Revrser"\]: unknown component \(registered components: hello\/Reverser, tsweaver\/Main\)/.test(err.stderr),
  );
  const nobin = writeConfig(`[tsweaver]\nbinary = "nope.js"\n`, tempDir());
  assert.throws(
    () => cli(["multi", "deploy", nobin], {}),
    (err: { stderr: string }) => /tsweaver\.binary: .*nope\.js does not exist; build the app first/.test(err.stderr),
  );
  assert.throws(
    () => cli(["multi", "deploy", path.join(ROOT, "missing.toml")], {}),
    (err: { stderr: string }) => /cannot read config file .*missing\.toml/.test(err.stderr),
  );
  assert.match(cli(["multi", "--help"], {}), /deploy <config> +deploy the app/);
  assert.match(cli(["multi", "logs", "--help"], {}), /--follow/);
});
