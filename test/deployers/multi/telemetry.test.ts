import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { type MultiDeployer } from "../../../runtime/deployers/multi/deployer.js";
import { DeploymentDir } from "../../../runtime/deployers/multi/state.js";
import type { StoredSeries } from "../../../runtime/telemetry/metricstore.js";
import type { CallGraph } from "../../../runtime/telemetry/graph.js";
import type { StoredSpan, TraceSummary } from "../../../runtime/telemetry/tracestore.js";
import { CLI, ECHO_APP, get, getJson, tempDir, waitFor, writeConfig } from "../../support/index.js";
import { deployForTest } from "../../support/multi.js";

const run = promisify(execFile);

/** A stand-in OTLP/HTTP collector: keeps the JSON bodies POSTed to /v1/traces. */
function otlpCollector(): Promise<{ server: http.Server; url: string; bodies: OtlpBody[] }> {
  const bodies: OtlpBody[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8").on("data", (c: string) => (body += c));
    req.on("end", () => {
      if (req.url === "/v1/traces" && req.method === "POST" && /json/.test(req.headers["content-type"] ?? ""))
        bodies.push(JSON.parse(body) as OtlpBody);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, bodies }),
    ),
  );
}

interface OtlpBody {
  resourceSpans: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] };
    scopeSpans: { spans: { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number }[] }[];
  }[];
}

describe("multi deployer telemetry: metrics, traces, admin server, CLI", () => {
  const dir = tempDir();
  const stateDir = path.join(dir, "state");
  let collector: Awaited<ReturnType<typeof otlpCollector>>;
  let deployer: MultiDeployer;
  let base = "";
  let admin = "";
  /** The deployment's admin token, as the CLI sends it. */
  let auth: Record<string, string> = {};
  const cli = async (...args: string[]) =>
    (await run(process.execPath, [CLI, ...args], { env: { ...process.env, TSWEAVER_STATE_DIR: stateDir } })).stdout;

  before(async () => {
    collector = await otlpCollector();
    // Every call traced; spans also exported over OTLP/HTTP to the collector above.
    const config = writeConfig(
      `[tsweaver]
name = "telemetry"
binary = ${JSON.stringify(ECHO_APP)}
env = { TSWEAVER_TRACE_SAMPLE = "1", TSWEAVER_TRACE_RATE = "0", OTEL_EXPORTER_OTLP_ENDPOINT = ${JSON.stringify(collector.url)} }

[multi]
replicas = 2

[multi.listeners.api]
address = "127.0.0.1:0"
`,
      dir,
    );
    ({ deployer, base } = await deployForTest(config, stateDir, "api"));
    admin = `http://${deployer.adminAddress}`;
    auth = { authorization: `Bearer ${deployer.adminToken}` };
    await waitFor("2 echo replicas", () => deployer.pids().get("test-echo")?.length === 2);
    for (let i = 0; i < 20; i++) assert.equal(await getJson<string>(`${base}/echo?s=${"x".repeat(i % 3)}`), "x".repeat(i % 3));
    await getJson(`${base}/fail?name=Oops&message=bad`);
  });

  after(async () => {
    await deployer.stop();
    collector.server.close();
  });

  test("the admin address is in status.json and the server answers only loopback host names", async () => {
    assert.match(deployer.adminAddress, /^127\.0\.0\.1:\d+$/);
    assert.equal(new DeploymentDir(stateDir, deployer.deploymentId).readStatus()?.admin, deployer.adminAddress);
    const status = await getJson<{ deploymentId: string; groups: unknown[] }>(`${admin}/api/status`, auth);
    assert.equal(status.deploymentId, deployer.deploymentId);
    const port = deployer.adminAddress.split(":")[1];
    const evil = await new Promise<number>((resolve, reject) =>
      http
        .get({ host: "127.0.0.1", port, path: "/api/status", headers: { host: `evil.example:${port}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on("error", reject),
    );
    assert.equal(evil, 403, "DNS rebinding: a page of another origin cannot read the API");
    assert.equal((await get(`${admin}/nope`, 10_000, auth)).status, 404);
  });

  test("the admin server wants the deployment's token, refuses other origins, and profiles only on POST", async () => {
    const tokenFile = new DeploymentDir(stateDir, deployer.deploymentId).adminTokenFile;
    assert.equal(statSync(tokenFile).mode & 0o777, 0o600, "the token file is readable by its owner only");
    assert.equal(readFileSync(tokenFile, "utf8").trim(), deployer.adminToken);
    const request = (method: string, p: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
        const req = http.request(`${admin}${p}`, { method, headers }, (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (body += c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        });
        req.on("error", reject);
        req.end();
      });
    for (const p of ["/", "/api/status", "/api/logs", "/metrics", "/app.js"]) {
      assert.equal((await request("GET", p)).status, 401, `${p} without a token`);
      assert.equal((await request("GET", p, { authorization: `Bearer ${"x".repeat(43)}` })).status, 401, `${p} with a wrong token`);
      assert.equal((await request("GET", p, { cookie: `tsweaver_admin_${admin.split(":").pop()}=wrong` })).status, 401);
    }
    // A foreign web page, even with the token (a browser would add the cookie) and even on another local port.
    for (const origin of ["http://evil.example", `http://127.0.0.1:1`]) {
      const r = await request("GET", "/api/status", { ...auth, origin });
      assert.equal(r.status, 403, `Origin ${origin}`);
      assert.equal(r.headers["access-control-allow-origin"], undefined, "no CORS");
    }
    assert.equal((await request("GET", "/api/status", { ...auth, "sec-fetch-site": "same-site" })).status, 403);
    assert.equal((await request("OPTIONS", "/api/status", { ...auth, origin: "http://evil.example" })).status, 403);
    // Profiles and heap snapshots: POST only.
    const getProfile = await request("GET", "/api/profile?kind=heap", auth);
    assert.equal(getProfile.status, 405);
    assert.equal(getProfile.headers["allow"], "POST");
    assert.equal((await request("POST", "/api/profile?kind=heap")).status, 401, "POST without the token");
    // The browser's way in: a one-time link, exchanged for an HttpOnly, SameSite=Strict cookie.
    const ticket = JSON.parse((await request("POST", "/api/login-ticket", auth)).body) as { ticket: string };
    const login = await request("GET", `/login?ticket=${ticket.ticket}`);
    assert.equal(login.status, 303);
    const cookie = login.headers["set-cookie"]![0]!;
    assert.match(cookie, /^tsweaver_admin_\d+=\S+; HttpOnly; SameSite=Strict; Path=\/$/);
    const pair = cookie.split(";")[0]!;
    assert.equal((await request("GET", "/api/status", { cookie: pair })).status, 200);
    assert.equal((await request("GET", `/login?ticket=${ticket.ticket}`)).status, 401, "a login link works once");
  });

  test("per-method metrics: caller side (remote) and serving side, with errors and latency", async () => {
    const { series } = await getJson<{ series: StoredSeries[] }>(`${admin}/api/metrics?component=test/Echo`, auth);
    const find = (name: string, labels: Record<string, string>) =>
      series.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
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
    const per = (
      await getJson<{ series: StoredSeries[] }>(`${admin}/api/metrics?replicas=1&name=served_total&component=test/Echo`, auth)
    ).series.filter((s) => s.labels["method"] === "echo");
    assert.deepEqual(per.map((s) => s.labels["tsweaver_replica"]).sort(), ["test-echo-0", "test-echo-1"]);
    assert.equal(
      per.reduce((a, s) => a + s.value, 0),
      20,
    );
  });

  test("user metrics from the app: counter with labels, gauge, histogram", async () => {
    const { series } = await getJson<{ series: StoredSeries[] }>(`${admin}/api/metrics?name=echo_`, auth);
    const total = series.filter((s) => s.name === "echo_strings_total");
    assert.deepEqual(total.map((s) => [s.labels["empty"], s.value]).sort(), [
      ["false", 13],
      ["true", 7],
    ]);
    const last = series.find((s) => s.name === "echo_last_length")!;
    assert.ok(last.kind === "GAUGE" && last.value >= 0 && last.value <= 4, "the sum of both replicas' last lengths (0..2 each)");
    const h = series.find((s) => s.name === "echo_length_chars")!;
    assert.deepEqual([h.count, h.value, h.counts], [20, 19, [14, 6, 0, 0]]);
  });

  test("Prometheus text endpoint", async () => {
    const r = await get(`${admin}/metrics`, 10_000, auth);
    assert.equal(r.status, 200);
    assert.match(r.body, /^# TYPE tsweaver_method_calls_total counter$/m);
    assert.match(
      r.body,
      /^tsweaver_method_calls_total\{caller="tsweaver\/Main",component="test\/Echo",method="echo",remote="true",tsweaver_group="tsweaver-main",tsweaver_replica="tsweaver-main-[01]"\} \d+$/m,
    );
    assert.match(
      r.body,
      /^tsweaver_method_served_latency_ms_bucket\{component="test\/Echo",le="\+Inf",method="echo",tsweaver_group="test-echo",tsweaver_replica="test-echo-[01]"\} \d+$/m,
    );
    assert.match(r.body, /^echo_strings_total\{empty="true",tsweaver_group="test-echo",tsweaver_replica="test-echo-[01]"\} \d+$/m);
    assert.match(
      r.body,
      /^tsweaver_rpc_bytes_sent_total\{side="client",tsweaver_group="tsweaver-main",tsweaver_replica="tsweaver-main-[01]"\} \d+$/m,
    );
  });

  test("the call graph: main → Echo, remote, with its call count and error rate", async () => {
    const g = await getJson<CallGraph>(`${admin}/api/graph`, auth);
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
    assert.match(
      out,
      /tsweaver_method_latency_ms +caller=tsweaver\/Main component=test\/Echo method=echo remote=true +count=20 mean=[\d.]+ p50=[\d.]+ p99=[\d.]+$/m,
    );
    assert.doesNotMatch(out, /echo_strings_total/);
    const user = await cli("multi", "metrics", deployer.deploymentId.slice(0, 4), "--name", "echo_strings");
    assert.match(user, /echo_strings_total +empty=true +7$/m);
    const json = JSON.parse(await cli("multi", "metrics", "--json", "--name", "served_total")) as StoredSeries[];
    assert.ok(json.every((s) => s.name === "tsweaver_method_served_total"));
    await assert.rejects(cli("multi", "metrics", "nosuchdeployment"), /no running deployment nosuchdeployment/);
  });
  test("a traced remote call: client span in main, server span in Echo, one trace, context propagated", async () => {
    const tp = await getJson<string>(`${base}/traceparent`);
    const [, traceId, spanId, flags] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(\d\d)$/.exec(tp) ?? [];
    assert.ok(traceId, `the callee sees a W3C traceparent (got ${JSON.stringify(tp)})`);
    assert.equal(flags, "01");
    const { spans } = await waitFor("both spans of the trace", async () => {
      const r = await get(`${admin}/api/trace?id=${traceId}`, 10_000, auth);
      const t = r.status === 200 ? (JSON.parse(r.body) as { spans: StoredSpan[] }) : undefined;
      return t && t.spans.length === 2 ? t : undefined;
    });
    const [client, server] = spans as [StoredSpan, StoredSpan];
    assert.deepEqual([client.name, client.kind, client.parentSpanId], ["test/Echo.traceparent", 2, ""]);
    assert.deepEqual([server.name, server.kind, server.parentSpanId], ["test/Echo.traceparent", 1, client.spanId]);
    assert.equal(server.spanId, spanId, "the implementation runs in the server span's context");
    assert.equal(client.attributes["tsweaver.caller"], "tsweaver/Main");
    assert.match(client.attributes["tsweaver.weavelet"]!, /^tsweaver-main-[01]-/);
    assert.match(server.attributes["tsweaver.weavelet"]!, /^test-echo-[01]-/);
    assert.ok(
      client.startMicros <= server.startMicros && server.endMicros <= client.endMicros,
      `the server span nests in the client span: ${JSON.stringify([client.startMicros, server.startMicros, server.endMicros, client.endMicros])}`,
    );
  });

  test("a failed call marks both spans as errors; recent traces list it", async () => {
    await getJson(`${base}/fail?name=Traced&message=failing`);
    const { failed, spans } = await waitFor("the failed trace", async () => {
      const { traces } = await getJson<{ traces: TraceSummary[] }>(`${admin}/api/traces?limit=100&component=test/Echo`, auth);
      for (const t of traces.filter((x) => x.root === "test/Echo.fail" && x.spans === 2 && x.errors === 2)) {
        const { spans } = await getJson<{ spans: StoredSpan[] }>(`${admin}/api/trace?id=${t.traceId.slice(0, 12)}`, auth);
        if (spans.every((x) => x.statusCode === 2 && x.statusMessage === "Traced: failing")) return { failed: t, spans };
      }
      return undefined;
    });
    assert.deepEqual(failed.components, ["test/Echo"]);
    assert.deepEqual(
      spans.map((x) => x.kind),
      [2, 1],
    );
    assert.equal((await get(`${admin}/api/trace?id=ffffffffffffffffffffffffffffffff`, 10_000, auth)).status, 404);
  });

  test("spans are kept on disk in traces.jsonl and printed by tsweaver multi traces", async () => {
    const file = new DeploymentDir(stateDir, deployer.deploymentId).traceFile;
    await waitFor("traces.jsonl", () => existsSync(file) && readFileSync(file, "utf8").includes('"name":"test/Echo.echo"'));
    const list = await cli("multi", "traces", "--component", "test/Echo", "--limit", "5");
    assert.match(list, /^ {2}TRACE +ROOT +START +DURATION +SPANS +ERRORS +COMPONENTS$/m);
    const id = /^ {2}([0-9a-f]{32}) +test\/Echo\.\w+ /m.exec(list)?.[1];
    assert.ok(id, list);
    const one = await cli("multi", "traces", "--trace", id!.slice(0, 10));
    assert.match(one, new RegExp(`^trace ${id}: 2 spans, [\\d.]+ ms$`, "m"));
    assert.match(one, /^ {2}\|#+ *\| \+ +0\.000 ms +[\d.]+ ms {2}client test\/Echo\.\w+ @tsweaver-main-/m);
    assert.match(one, /^ {2}\| *#+ *\| \+ +[\d.]+ ms +[\d.]+ ms {4}server test\/Echo\.\w+ @test-echo-/m);
  });

  test("spans are exported over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT", async () => {
    const tp = await getJson<string>(`${base}/traceparent`);
    const traceId = tp.split("-")[1]!;
    const found = await waitFor("both spans at the collector", () => {
      const spans = collector.bodies.flatMap((b) =>
        b.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((sp) => ({ ...sp, resource: rs.resource })))),
      );
      const mine = spans.filter((sp) => sp.traceId === traceId);
      return mine.length === 2 ? mine : undefined;
    });
    const attr = (r: OtlpBody["resourceSpans"][number]["resource"], key: string) =>
      r.attributes.find((a) => a.key === key)?.value.stringValue;
    const client = found.find((sp) => sp.kind === 3)!; // OTLP SpanKind: 2 server, 3 client
    const server = found.find((sp) => sp.kind === 2)!;
    assert.equal(server.parentSpanId, client.spanId);
    assert.equal(attr(client.resource, "service.name"), "telemetry");
    assert.equal(attr(server.resource, "tsweaver.group"), "test-echo");
    assert.equal(attr(client.resource, "tsweaver.group"), "tsweaver-main");
  });
  test("tsweaver multi profile: a CPU profile of every replica of a group, as .cpuprofile files", async () => {
    const out = path.join(dir, "profiles");
    const profiling = cli("multi", "profile", "--cpu", "300ms", "--group", "test/Echo", "--out", out);
    // Some load while profiling.
    for (let i = 0; i < 20; i++) await getJson(`${base}/echo?s=p${i}`);
    assert.equal((await profiling).trim(), out, "prints the directory");
    const files = readdirSync(out).sort();
    const pids = deployer.pids().get("test-echo")!;
    assert.equal(files.length, 2);
    for (const pid of pids)
      assert.ok(
        files.some((f) => f.endsWith(`-${pid}.cpuprofile`)),
        `a profile of replica pid ${pid} in ${files.join(", ")}`,
      );
    for (const f of files) {
      assert.match(f, /^test-echo-[01]-\d+\.cpuprofile$/);
      const p = JSON.parse(readFileSync(path.join(out, f), "utf8")) as {
        nodes: { callFrame: { functionName: string } }[];
        startTime: number;
        endTime: number;
        samples: number[];
      };
      assert.ok(p.nodes.length > 0 && p.samples.length > 0 && p.endTime > p.startTime, "a DevTools .cpuprofile document");
    }
    await assert.rejects(
      cli("multi", "profile", "--cpu", "100ms", "--group", "nosuch"),
      /no group or component nosuch \(groups: .*test-echo/,
    );
    await assert.rejects(cli("multi", "profile", "--cpu", "forever"), /duration forever: use e\.g\. 10s/);
  });
});
