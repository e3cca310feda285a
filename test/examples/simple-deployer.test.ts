import assert from "node:assert/strict";
import { test } from "node:test";
import { SimpleDeployer } from "../../examples/deployers/simple/deployer.js";
import { HELLO_APP, get, waitFor } from "../support/index.js";

test("the example deployer (written on tsweaver/deployer) runs hello with one weavelet per component", async () => {
  const lines: string[] = [];
  const deployer = new SimpleDeployer(HELLO_APP, (l) => lines.push(l));
  try {
    await deployer.start();
    const address = await waitFor("hello listener", () => deployer.listeners.get("hello"));
    // The answer needs hello/Reverser, which lives in another process.
    assert.deepEqual(await get(`http://${address}/hello?name=World`), { status: 200, body: "Hello, dlroW!\n" });
    assert.ok(
      lines.some((l) => l.startsWith("listener hello available on http://")),
      "the exported address is printed",
    );
    assert.ok(
      lines.some((l) => / tsweaver\/Main .*\] hello listener ready address=/.test(l)),
      "log entries are pretty-printed",
    );
  } finally {
    await deployer.stop();
  }
});
