import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import type { Task } from "@aws-sdk/client-ecs";
import { RejectionLog, TaskDirectory } from "../../../runtime/deployers/aws/callers.js";
import {
  ControlApiClient,
  ControlApiError,
  serveControlApi,
  TASK_HEADER,
  type CallerClaim,
  type ControlApi,
  type Rejection,
} from "../../../runtime/deployers/aws/protocol.js";

const TASK = "arn:aws:ecs:us-east-1:123456789012:task/c/0123456789abcdef0123456789abcdef";
const OTHER_TASK = "arn:aws:ecs:us-east-1:123456789012:task/c/fedcba9876543210fedcba9876543210";

const calls: string[] = [];
const api: ControlApi = {
  async activate(req) {
    calls.push(`activate ${req.component}`);
    return {};
  },
  async ready() {
    calls.push("ready");
    return {};
  },
  async listenerPort(req) {
    if (req.listener !== "hello") throw new ControlApiError(`listener ${req.listener} is not configured`, 400);
    return { port: 8080 };
  },
  async exportListener() {
    return { url: "http://lb" };
  },
  async stopping() {
    return {};
  },
  async spans(req) {
    calls.push(`spans ${req.count}`);
    return {};
  },
  async certificate(req) {
    calls.push(`certificate ${req.group}`);
    return { certificate: "", ca: "", notAfter: "" };
  },
};

/** A caller check that only knows TASK, at 127.0.0.1. */
async function verifyCaller(c: CallerClaim): Promise<void> {
  if (c.taskArn !== TASK || c.sourceIp !== "127.0.0.1") throw new ControlApiError(`forbidden: not task ${c.taskArn} at ${c.sourceIp}`, 403);
  if (c.body["taskArn"] !== undefined && c.body["taskArn"] !== TASK) throw new ControlApiError("forbidden: another task's ARN", 403);
}

function post(
  port: number,
  path: string,
  headers: Record<string, string>,
  body: string | Buffer,
): Promise<{ status: number; body: string }> {
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

async function serve(secrets: string[], rejected: Rejection[]) {
  return serveControlApi({ host: "127.0.0.1", port: 0, secrets: () => secrets, api, verifyCaller, onReject: (r) => rejected.push(r) });
}

const activateBody = { taskArn: TASK, group: "g", component: "app/C", routed: false, version: "v0123456789" };

test("the control API serves authenticated agents bound to their task and rejects everyone else", async () => {
  calls.length = 0;
  const rejected: Rejection[] = [];
  const { server, port } = await serve(["s3cret"], rejected);
  const locate = async () => `http://127.0.0.1:${port}`;
  try {
    const client = new ControlApiClient("s3cret", { taskArn: TASK, ip: "127.0.0.1" }, locate, 2_000);
    await client.activate(activateBody);
    assert.deepEqual(calls, ["activate app/C"]);
    assert.deepEqual(await client.listenerPort({ listener: "hello" }), { port: 8080 });
    await assert.rejects(client.listenerPort({ listener: "nope" }), /control plane: listener nope is not configured/);
    client.close();

    const wrong = new ControlApiClient("guess", { taskArn: TASK, ip: "127.0.0.1" }, locate, 2_000);
    await assert.rejects(wrong.activate(activateBody), /unauthenticated/);
    wrong.close();
    // The right secret, but another task's identity: refused by the caller check.
    const other = new ControlApiClient("s3cret", { taskArn: OTHER_TASK, ip: "127.0.0.1" }, locate, 2_000);
    await assert.rejects(other.spans({ count: 1 }), (err: ControlApiError) => err.status === 403 && /forbidden/.test(err.message));
    other.close();
    assert.equal((await post(port, "/v1/activate", {}, "{}")).status, 401);
    const noTask = await post(port, "/v1/activate", { authorization: "Bearer s3cret" }, JSON.stringify(activateBody));
    assert.equal(noTask.status, 401);
    assert.match(noTask.body, new RegExp(TASK_HEADER));
    assert.deepEqual(
      rejected.map((r) => r.status),
      [401, 403, 401, 401],
    );
    assert.deepEqual(calls, ["activate app/C"], "rejected requests never reach the handler");
    const auth = { authorization: "Bearer s3cret", [TASK_HEADER]: TASK };
    assert.equal((await post(port, "/v1/activate", auth, "{not json")).status, 400);
    assert.equal((await post(port, "/v1/nothing", auth, "{}")).status, 404);
    assert.equal((await post(port, "/v1/constructor", auth, "{}")).status, 404);
  } finally {
    server.close();
  }
});

test("bodies are checked field by field before any handler runs, and bounded", async () => {
  calls.length = 0;
  const rejected: Rejection[] = [];
  const { server, port } = await serve(["s3cret"], rejected);
  const auth = { authorization: "Bearer s3cret", [TASK_HEADER]: TASK, "content-type": "application/json" };
  const expect400 = async (method: string, body: string, why: RegExp) => {
    const r = await post(port, `/v1/${method}`, auth, body);
    assert.equal(r.status, 400, `${method} ${body}: ${r.body}`);
    assert.match((JSON.parse(r.body) as { error: string }).error, why);
  };
  try {
    await expect400("spans", '{"count":"abc"}', /spans: field count must be an integer/);
    await expect400("spans", '{"count":-1}', /field count must be an integer from 0/);
    await expect400("spans", '{"count":1,"__proto__":{"x":1}}', /unknown field "__proto__"/);
    await expect400("activate", JSON.stringify({ ...activateBody, group: "__proto__" }), /field group must be a group name/);
    await expect400("activate", JSON.stringify({ ...activateBody, componentGroup: "A B" }), /field componentGroup/);
    await expect400("activate", JSON.stringify({ ...activateBody, routed: "yes" }), /field routed must be true or false/);
    await expect400(
      "exportListener",
      JSON.stringify({ taskArn: TASK, listener: "x", ip: "1.2.3.4", version: "v0123456789" }),
      /port is missing/,
    );
    await expect400(
      "ready",
      JSON.stringify({
        taskArn: TASK,
        taskId: "t",
        group: "g",
        ip: "999.1.1.1",
        port: 1,
        weaveletId: "t",
        version: "v0123456789",
        listeners: {},
      }),
      /field ip must be an IPv4 address/,
    );
    await expect400("listenerPort", "[]", /the body must be a JSON object/);
    // Oversized: a 413 the agent can read, not a reset connection.
    const big = await post(port, "/v1/spans", auth, Buffer.alloc(200 * 1024, 0x20));
    assert.equal(big.status, 413);
    assert.match(big.body, /at most 65536 are accepted/);
    assert.deepEqual(calls, [], "no handler ran");
    assert.equal(rejected.filter((r) => r.status === 400).length, 9);
    assert.equal(rejected.filter((r) => r.status === 413).length, 1);
  } finally {
    server.close();
  }
});

test("during a rotation the current and the previous secret are both accepted", async () => {
  const secrets = ["old"];
  const rejected: Rejection[] = [];
  const { server, port } = await serveControlApi({
    host: "127.0.0.1",
    port: 0,
    secrets: () => secrets,
    api,
    verifyCaller,
    onReject: (r) => rejected.push(r),
  });
  const client = (secret: string) =>
    new ControlApiClient(secret, { taskArn: TASK, ip: "127.0.0.1" }, async () => `http://127.0.0.1:${port}`, 2_000);
  try {
    const old = client("old");
    const fresh = client("new");
    await old.spans({ count: 1 });
    await assert.rejects(fresh.spans({ count: 1 }), /unauthenticated/);
    secrets.splice(0, 1, "new", "old"); // rotated: AWSCURRENT new, AWSPREVIOUS old
    await old.spans({ count: 1 });
    await fresh.spans({ count: 1 });
    secrets.splice(0, 2, "newer", "new"); // rotated again: the oldest value is refused
    await assert.rejects(old.spans({ count: 1 }), /unauthenticated/);
    await fresh.spans({ count: 1 });
    old.close();
    fresh.close();
  } finally {
    server.close();
  }
});

test("an unreachable control plane is retried, re-located, then reported", async () => {
  let locates = 0;
  const client = new ControlApiClient(
    "x",
    { taskArn: TASK, ip: "127.0.0.1" },
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
  await assert.rejects(serve([""], []), /secret is empty/);
});

// ---- the task directory (DescribeTasks, cached) ----

const TD = "arn:aws:ecs:us-east-1:123456789012:task-definition/app-g:3";
function ecsTask(arn: string, ip: string, over: Partial<Task> = {}): Task {
  return {
    taskArn: arn,
    group: "service:g-v0123456789",
    taskDefinitionArn: TD,
    lastStatus: "RUNNING",
    attachments: [{ type: "ElasticNetworkInterface", details: [{ name: "privateIPv4Address", value: ip }] }],
    ...over,
  };
}

function directory(tasks: Map<string, Task>, opts: { ttlMs?: number; minRefreshMs?: number; maxEntries?: number } = {}) {
  const described: string[] = [];
  const dir = new TaskDirectory({
    describe: async (arns) => {
      described.push(...arns);
      return arns.flatMap((a) => (tasks.has(a) ? [tasks.get(a)!] : []));
    },
    taskDefinitionOf: async (group, version) => (group === "g" && version === "v0123456789" ? TD : undefined),
    ...opts,
  });
  return { dir, described };
}

test("a caller is the task whose ENI address the request comes from, of a group's service, running its task definition", async () => {
  const tasks = new Map<string, Task>([
    [TASK, ecsTask(TASK, "10.0.0.5")],
    [OTHER_TASK, ecsTask(OTHER_TASK, "10.0.0.6", { group: "service:tsweaver_controlplane" })],
  ]);
  const { dir, described } = directory(tasks, { minRefreshMs: 0 });
  const t = await dir.verify(TASK, "10.0.0.5", false);
  assert.deepEqual([t.group, t.version, t.ip, t.taskId], ["g", "v0123456789", "10.0.0.5", "0123456789abcdef0123456789abcdef"]);
  await assert.rejects(dir.verify(TASK, "10.0.0.9", false), /forbidden: the request comes from 10.0.0.9, not from the ENI address/);
  await assert.rejects(dir.verify(OTHER_TASK, "10.0.0.6", false), /not started by a group's service/);
  const foreign = "arn:aws:ecs:us-east-1:123456789012:task/other/00000000000000000000000000000000";
  await assert.rejects(dir.verify(foreign, "10.0.0.5", false), /is not a task of this deployment's cluster/);
  tasks.set(TASK, ecsTask(TASK, "10.0.0.5", { taskDefinitionArn: `${TD}x` }));
  dir.forget(TASK);
  await assert.rejects(dir.verify(TASK, "10.0.0.5", false), /not the task definition of group g in version v0123456789/);
  tasks.set(TASK, ecsTask(TASK, "10.0.0.5", { lastStatus: "STOPPED" }));
  dir.forget(TASK);
  await assert.rejects(dir.verify(TASK, "10.0.0.5", false), /is stopped/);
  await dir.verify(TASK, "10.0.0.5", true); // deregistering on the way out
  assert.ok(described.length >= 5);
});

test("described tasks are cached, refreshed on a mismatch at most every minRefreshMs, and bounded", async () => {
  const tasks = new Map<string, Task>([[TASK, ecsTask(TASK, "10.0.0.5")]]);
  const { dir, described } = directory(tasks, { minRefreshMs: 60_000, maxEntries: 2 });
  for (let i = 0; i < 5; i++) await dir.verify(TASK, "10.0.0.5", false);
  assert.equal(described.length, 1, "one DescribeTasks for five requests");
  // Forged requests from elsewhere do not turn into DescribeTasks calls.
  for (let i = 0; i < 5; i++) await assert.rejects(dir.verify(TASK, "10.9.9.9", false), /forbidden/);
  assert.equal(described.length, 1);
  const { dir: d2, described: s2 } = directory(tasks, { minRefreshMs: 0, maxEntries: 2 });
  for (let i = 0; i < 3; i++) await assert.rejects(d2.verify(TASK, "10.9.9.9", false), /forbidden/);
  assert.equal(s2.length, 3, "with minRefreshMs 0 every mismatching request describes the task again");
  // Bounded: the oldest entries are forgotten.
  for (let i = 0; i < 5; i++) {
    const arn = `arn:aws:ecs:us-east-1:123456789012:task/c/${String(i).padStart(32, "0")}`;
    await assert.rejects(d2.verify(arn, "10.0.0.5", false), /not a task of this deployment's cluster/);
  }
  const before = s2.length;
  await d2.verify(TASK, "10.0.0.5", false);
  assert.equal(s2.length, before + 1, "TASK was evicted and is described again");
});

test("rejections are logged at most perMinute times a minute; the rest are counted", () => {
  const lines: string[] = [];
  const log = new RejectionLog((msg) => lines.push(msg), 3);
  for (let i = 0; i < 10; i++) log.record({ status: 403, why: "forbidden", peer: "p", method: "ready", task: "t" });
  assert.deepEqual(lines, ["rejected an agent request", "rejected an agent request", "rejected an agent request"]);
});
