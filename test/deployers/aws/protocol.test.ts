import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import { ControlApiClient, serveControlApi, type ControlApi } from "../../../runtime/deployers/aws/protocol.js";

const calls: string[] = [];
const api: ControlApi = {
  async activate(req) {
    calls.push(`activate ${req.component}`);
    return {};
  },
  async ready() {
    return {};
  },
  async listenerPort(req) {
    if (req.listener !== "hello") throw new Error(`listener ${req.listener} is not configured`);
    return { port: 8080 };
  },
  async exportListener() {
    return { url: "http://lb" };
  },
  async stopping() {
    return {};
  },
  async spans() {
    return {};
  },
};

function post(port: number, path: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method: "POST", headers }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

test("the control API serves authenticated agents and rejects everyone else", async () => {
  const rejected: string[] = [];
  const { server, port } = await serveControlApi("127.0.0.1", 0, "s3cret", api, (why) => rejected.push(why));
  try {
    const client = new ControlApiClient("s3cret", async () => `http://127.0.0.1:${port}`, 2_000);
    await client.activate({ taskArn: "t", group: "g", component: "app/C", routed: false, version: "v0123456789" });
    assert.deepEqual(calls, ["activate app/C"]);
    assert.deepEqual(await client.listenerPort({ listener: "hello" }), { port: 8080 });
    await assert.rejects(client.listenerPort({ listener: "nope" }), /control plane: listener nope is not configured/);
    client.close();

    const wrong = new ControlApiClient("guess", async () => `http://127.0.0.1:${port}`, 2_000);
    await assert.rejects(
      wrong.activate({ taskArn: "t", group: "g", component: "app/C", routed: false, version: "v0123456789" }),
      /unauthenticated/,
    );
    wrong.close();
    assert.equal((await post(port, "/v1/activate", {}, "{}")).status, 401);
    assert.equal(rejected.length, 2);
    assert.deepEqual(calls, ["activate app/C"], "rejected requests never reach the handler");
    const bad = await post(port, "/v1/activate", { authorization: "Bearer s3cret" }, "{not json");
    assert.equal(bad.status, 400);
    assert.equal((await post(port, "/v1/nothing", { authorization: "Bearer s3cret" }, "{}")).status, 404);
  } finally {
    server.close();
  }
});

test("an unreachable control plane is retried, re-located, then reported", async () => {
  let locates = 0;
  const client = new ControlApiClient(
    "x",
    async () => {
      locates++;
      return "http://127.0.0.1:1";
    },
    600,
  );
  await assert.rejects(
    client.ready({ taskArn: "", taskId: "", group: "", ip: "", port: 0, weaveletId: "", version: "v0123456789", listeners: {} }),
    /control plane unreachable for 600 ms \(ready\)/,
  );
  assert.ok(locates >= 2, "the address is looked up again after a failure");
  client.close();
});

test("an empty secret is refused", async () => {
  await assert.rejects(
    serveControlApi("127.0.0.1", 0, "", api, () => {}),
    /secret is empty/,
  );
});
