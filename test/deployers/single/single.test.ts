import assert from "node:assert/strict";
import { test } from "node:test";
import { ECHO_APP, Proc, getJson, writeConfig } from "../../support/index.js";

test("single process: `node app.js` runs every component in one process with direct calls", async () => {
  const config = writeConfig(
    `[tsweaver]\nbinary = "unused.js"\n[single.listeners.api]\naddress = "127.0.0.1:0"\n["test/Echo"]\ngreeting = "single config"\n`,
  );
  const app = new Proc(process.execPath, [ECHO_APP], { TSWEAVER_CONFIG: config });
  try {
    const [, address] = await app.waitForOutput(/listener api available on http:\/\/(\S+)/);
    const pids = await getJson<{ main: number; echo: number }>(`http://${address}/pids`);
    assert.equal(pids.main, app.child.pid);
    assert.equal(pids.echo, app.child.pid);
    assert.equal(await getJson<string>(`http://${address}/greeting`), "single config");
    // A local error keeps its name and message but is not a RemoteCallError.
    assert.deepEqual(await getJson(`http://${address}/fail?name=Nope&message=m`), {
      name: "Nope",
      message: "m",
      remote: false,
      code: "E_TEST",
    });
    assert.match(app.out, /tsweaver\/Main .*\] api ready address=127\.0\.0\.1:\d+/);
  } finally {
    app.kill("SIGTERM");
    assert.equal((await app.exited).code, 0);
  }
});
