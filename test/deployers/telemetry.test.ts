import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { loadConfig } from "../../runtime/core/config.js";
import { MultiDeployer } from "../../runtime/deployers/multi/deployer.js";
import { DeploymentDir } from "../../runtime/deployers/multi/state.js";
import type { StoredSeries } from "../../runtime/telemetry/metricstore.js";
import type { CallGraph } from "../../runtime/telemetry/graph.js";
import { CLI, ECHO_APP, get, getJson, tempDir, waitFor, writeConfig } from "../helpers.js";

const run = promisify(execFile);

describe("multi deployer telemetry: metrics, admin server, CLI", () => {
  const dir = tempDir();
  const stateDir = path.join(dir, "state");
  const config = writeConfig(
    `[tsweaver]
name = "telemetry"
binary = ${JSON.stringify(ECHO_APP)}

[multi]
replicas = 2

[multi.listeners.api]
address = "127.0.0.1:0"
`,
    dir,
  );
  let deployer: MultiDeployer;
  let base = "";
  let admin = "";
  const cli = async (...args: string[]) => (await run(process.execPath, [CLI, ...args], { env: { ...process.env, TSWEAVER_STATE_DIR: stateDir } })).stdout;

  before(async () => {
    deployer = new MultiDeployer(loadConfig(config), { stateDir, printLogs: false, progress: () => {} });
    await deployer.deploy();
    base = `http://${await waitFor("listener proxy", async () => (await deployer.listenerAddresses()).get("api"))}`;
    admin = `http://${deployer.adminAddress}`;
    await waitFor("2 echo replicas", () => deployer.pids().get("test-echo")?.length === 2);
    for (let i = 0; i < 20; i++) assert.equal(await getJson<string>(`${base}/echo?s=${"x".repeat(i % 3)}`), "x".repeat(i % 3));
    await getJson(`${base}/fail?name=Oops&message=bad`);
  });

  after(async () => {
    await deployer.stop();
  });

  test("the admin address is in status.json and the server answers only loopback host names", async () => {
    assert.match(deployer.adminAddress, /^127\.0\.0\.1:\d+$/);
    assert.equal(new DeploymentDir(stateDir, deployer.deploymentId).readStatus()?.admin, deployer.adminAddress);
    const status = await getJson<{ deploymentId: string; groups: unknown[] }>(`${admin}/api/status`);
    assert.equal(status.deploymentId, deployer.deploymentId);
    const port = deployer.adminAddress.split(":")[1];
    const evil = await new Promise<number>((resolve, reject) =>
      http.get({ host: "127.0.0.1", port, path: "/api/status", headers: { host: `evil.example:${port}` } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on("error", reject),
    );
    assert.equal(evil, 403, "DNS rebinding: a page of another origin cannot read the API");
    assert.equal((await get(`${admin}/nope`)).status, 404);
  });

  test("per-method metrics: caller side (remote) and serving side, with errors and latency", async () => {
    const { series } = await getJson<{ series: StoredSeries[] }>(`${admin}/api/metrics?component=test/Echo`);
    const find = (name: string, labels: Record<string, string>) => series.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    const edge = { caller: "tsweaver/Main", component: "test/Echo", remote: "true" };
    assert.equal(find("tsweaver_method_calls_total", { ...edge, method: "echo" })?.value, 20);
    assert.equal(find("tsweaver_method_calls_total", { ...edge, method: "fail" })?.value, 1);
    assert.equal(find("tsweaver_method_errors_total", { ...edge, method: "fail" })?.value, 1);
    assert.equal(find("tsweaver_method_errors_total", { ...edge, method: "echo" }), undefined, "no errors: no series");
    const lat = find("tsweaver_method_latency_ms", { ...edge, method: "echo" })!;
    assert.equal(lat.count, 20);
    assert.ok(lat.value > 0);
    assert.equal(find("tsweaver_method_served_total", { component: "test/Echo", method: "echo" })?.value, 20);
    assert.equal(find("tsweaver_method_served_errors_total", { component: "test/Echo", method: "fail" })?.value, 1);
    assert.equal(find("tsweaver_method_served_latency_ms", { component: "test/Echo", method: "echo" })?.count, 20);
    // Per replica: the served calls spread over both Echo replicas and add up to the total.
    const per = (await getJson<{ series: StoredSeries[] }>(`${admin}/api/metrics?replicas=1&name=served_total&component=test/Echo`)).series.filter((s) => s.labels["method"] === "echo");
    assert.deepEqual(per.map((s) => s.labels["tsweaver_replica"]).sort(), ["test-echo-0", "test-echo-1"]);
    assert.equal(per.reduce((a, s) => a + s.value, 0), 20);
  });

  test("user metrics from the app: counter with labels, gauge, histogram", async () => {
    const { series } = await getJson<{ series: StoredSeries[] }>(`${admin}/api/metrics?name=echo_`);
    const total = series.filter((s) => s.name === "echo_strings_total");
    assert.deepEqual(total.map((s) => [s.labels["empty"], s.value]).sort(), [["false", 13], ["true", 7]]);
    const last = series.find((s) => s.name === "echo_last_length")!;
    assert.ok(last.kind === "GAUGE" && last.value >= 0 && last.value <= 4, "the sum of both replicas' last lengths (0..2 each)");
    const h = series.find((s) => s.name === "echo_length_chars")!;
    assert.deepEqual([h.count, h.value, h.counts], [20, 19, [14, 6, 0, 0]]);
  });

  test("Prometheus text endpoint", async () => {
    const r = await get(`${admin}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.body, /^# TYPE tsweaver_method_calls_total counter$/m);
    assert.match(r.body, /^tsweaver_method_calls_total\{caller="tsweaver\/Main",component="test\/Echo",method="echo",remote="true",tsweaver_group="tsweaver-main",tsweaver_replica="tsweaver-main-[01]"\} \d+$/m);
    assert.match(r.body, /^tsweaver_method_served_latency_ms_bucket\{component="test\/Echo",le="\+Inf",method="echo",tsweaver_group="test-echo",tsweaver_replica="test-echo-[01]"\} \d+$/m);
    assert.match(r.body, /^echo_strings_total\{empty="true",tsweaver_group="test-echo",tsweaver_replica="test-echo-[01]"\} \d+$/m);
    assert.match(r.body, /^tsweaver_rpc_bytes_sent_total\{side="client",tsweaver_group="tsweaver-main",tsweaver_replica="tsweaver-main-[01]"\} \d+$/m);
  });

  test("the call graph: main → Echo, remote, with its call count and error rate", async () => {
    const g = await getJson<CallGraph>(`${admin}/api/graph`);
    assert.deepEqual(g.components, ["test/Echo", "tsweaver/Main"]);
    const e = g.edges.find((x) => x.caller === "tsweaver/Main" && x.callee === "test/Echo")!;
    assert.equal(e.remote, true);
    assert.equal(e.calls, 21);
    assert.equal(e.errors, 1);
    assert.ok(e.meanMs! > 0);
  });

  test("tsweaver multi metrics prints them, filtered by component or name", async () => {
    const out = await cli("multi", "metrics", "--component", "test/Echo");
    assert.match(out, /^ {2}NAME +LABELS +VALUE$/m);
    assert.match(out, /tsweaver_method_calls_total +caller=tsweaver\/Main component=test\/Echo method=echo remote=true +20$/m);
    assert.match(out, /tsweaver_method_latency_ms +caller=tsweaver\/Main component=test\/Echo method=echo remote=true +count=20 mean=[\d.]+ p50=[\d.]+ p99=[\d.]+$/m);
    assert.doesNotMatch(out, /echo_strings_total/);
    const user = await cli("multi", "metrics", deployer.deploymentId.slice(0, 4), "--name", "echo_strings");
    assert.match(user, /echo_strings_total +empty=true +7$/m);
    const json = JSON.parse(await cli("multi", "metrics", "--json", "--name", "served_total")) as StoredSeries[];
    assert.ok(json.every((s) => s.name === "tsweaver_method_served_total"));
    await assert.rejects(cli("multi", "metrics", "nosuchdeployment"), /no running deployment nosuchdeployment/);
  });
});
