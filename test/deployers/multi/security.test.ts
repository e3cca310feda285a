// Component calls on the multi deployer are authenticated with the deployment's key: a process that
// does not hold it is refused by every weavelet, and [tsweaver.callers] limits who calls a component.
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Connection } from "../../../runtime/rpc/client.js";
import type { MultiDeployer } from "../../../runtime/deployers/multi/deployer.js";
import { ECHO_APP, get, getJson, tempDir, waitFor, writeConfig } from "../../support/index.js";
import { deployForTest } from "../../support/multi.js";

async function deploy(callers: string): Promise<{ deployer: MultiDeployer; base: string }> {
  const dir = tempDir();
  const config = writeConfig(
    `[tsweaver]\nbinary = ${JSON.stringify(ECHO_APP)}\n${callers}\n[multi]\nreplicas = 1\n[multi.listeners.api]\naddress = "127.0.0.1:0"\n`,
    dir,
  );
  return deployForTest(config, path.join(dir, "state"), "api");
}

describe("multi: authenticated component calls", () => {
  let open: { deployer: MultiDeployer; base: string };
  let closed: { deployer: MultiDeployer; base: string };

  before(async () => {
    open = await deploy(`[tsweaver.callers]\n"test/Echo" = ["tsweaver/Main"]\n`);
    closed = await deploy(`[tsweaver.callers]\n"test/Echo" = ["test/Echo"]\n`);
  });
  after(async () => {
    await open?.deployer.stop();
    await closed?.deployer.stop();
  });

  test("weavelets of the deployment call each other; a caller on the allow-list is served", async () => {
    assert.equal(await getJson(`${open.base}/echo?s=hi`), "hi");
  });

  test("a caller not on the allow-list is refused, naming the rule", async () => {
    const r = await get(`${closed.base}/echo?s=hi`);
    assert.equal(r.status, 500);
    assert.match(
      JSON.parse(r.body).message as string,
      /test\/Echo\.echo: group "tsweaver-main" may not call test\/Echo \(weaver\.toml \[tsweaver\.callers\] allows only the groups test-echo\)/,
    );
  });

  test("a process without the deployment key is refused by a weavelet and learns nothing", async () => {
    const replica = await waitFor(
      "echo's replica address",
      () => open.deployer.status().groups.find((g) => g.name === "test-echo")?.replicas[0]?.address,
    );
    const intruder = new Connection(replica, { methodTableHash: "guess", deploymentId: open.deployer.deploymentId, backoffMinMs: 10_000 });
    try {
      const err = await intruder.call(0, "test/Echo.echo", ["x"]).then(
        () => assert.fail("the intruder's call ran"),
        (e: Error) => e,
      );
      assert.match(err.message, /refused the connection: authentication failed$/);
    } finally {
      await intruder.close();
    }
  });
});
