/**
 * `tsweaver aws dashboard`'s traces panel against the emulator, with the real SDK clients: a version whose
 * task definitions have the collector sidecar (`[aws] tracing = "xray"`) shows its recent traces from
 * X-Ray; the harness plays the sidecar (test/aws/xray.ts: the weavelets' OTLP spans as the awsxray exporter
 * writes them, PutTraceSegments), and the page (the admin server's APIs, then the page in headless
 * Chromium) shows a main → Reverser → Store call with its spans parent-linked and named component.method,
 * and nothing of another app or version. With tracing "otlp" or "off" the panel says where the traces are.
 *
 * What moto cannot answer as X-Ray does (moto/xray/models.py): a FilterExpression fails with an internal
 * error (the harness's proxy takes it out, test/aws/gaps.ts, so every trace of the window comes back and the
 * dashboard's own app/version check is what keeps the other app out); summaries are placeholders (no
 * StartTime, ServiceIds or Annotations, HasError true whenever a segment has an `error` field, which the
 * exporter always writes); BatchGetTraces returns each document as it was put (subsegments are not
 * embedded in their segment, no inferred segments). xray.test.ts converts an answer shaped as AWS gives it.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { CloudWatchLogsClient, CreateLogGroupCommand } from "@aws-sdk/client-cloudwatch-logs";
import { CreateClusterCommand, CreateServiceCommand, ECSClient, RegisterTaskDefinitionCommand } from "@aws-sdk/client-ecs";
import {
  CreateHttpNamespaceCommand,
  CreateServiceCommand as CreateDiscoveryServiceCommand,
  ListNamespacesCommand,
  ServiceDiscoveryClient,
} from "@aws-sdk/client-servicediscovery";
import { XRayClient } from "@aws-sdk/client-xray";
import type { BrowserContext } from "playwright-core";
import { AwsClients } from "../../../runtime/deployers/aws/clients.js";
import {
  AGENT_CONTAINER,
  COLLECTOR_CONTAINER,
  ENV,
  OTLP_ENDPOINT_ENV,
  versionedServiceName,
} from "../../../runtime/deployers/aws/contract.js";
import { AwsDashboardSource, type DashboardStack } from "../../../runtime/deployers/aws/dashboard.js";
import { AdminServer, newAdminToken } from "../../../runtime/deployers/multi/admin.js";
import type { StoredSpan, TraceSummary } from "../../../runtime/telemetry/tracestore.js";
import { awsGaps, type AwsGaps } from "../../aws/gaps.js";
import { clientConfig, useEmulator, type Emulator } from "../../aws/moto.js";
import { startThrottleProxy, type ThrottleProxy } from "../../aws/throttle.js";
import { putSegments, segmentDocuments, type OtlpSpan, type OtlpTraceRequest } from "../../aws/xray.js";
import { launchChromium } from "../../support/chromium.js";
import { get, tempDir, waitFor } from "../../support/index.js";

const VERSION = "v0123456789";
/**
 * The emulator is shared by the suite's AWS tests, and moto's X-Ray answers every trace of the window
 * (no filter): this file's resources and traces live in a region of their own, so another test's traces
 * (the Boutique's) neither show here nor crowd the read's limits.
 */
const REGION = "ap-southeast-2";
const OTHER_VERSION = "v9876543210";

let emu: Emulator;
let proxy: ThrottleProxy;
let gaps: AwsGaps;
let xray: XRayClient;
const clients: { destroy(): void }[] = [];

before(async () => {
  emu = await useEmulator();
  gaps = awsGaps();
  proxy = await startThrottleProxy({ target: emu.endpoint, intercept: gaps.intercept });
  xray = new XRayClient(clientConfig(emu.endpoint, REGION));
});

after(async () => {
  xray?.destroy();
  for (const c of clients) c.destroy();
  await proxy?.stop();
  await emu?.stop();
});

/**
 * A deployed version as the dashboard reads it, made in the emulator: the cluster, main's group task
 * definition (with the collector sidecar for "xray", the agent's OTLP endpoint for "otlp") and service,
 * its Cloud Map service and the log group.
 */
async function deployed(tracing: "xray" | "otlp" | "off"): Promise<DashboardStack> {
  const stack = `tsw-traces-${tracing}-${Date.now().toString(36)}`;
  const ecs = new ECSClient(clientConfig(emu.endpoint, REGION));
  const sd = new ServiceDiscoveryClient(clientConfig(emu.endpoint, REGION));
  const logs = new CloudWatchLogsClient(clientConfig(emu.endpoint, REGION));
  clients.push(ecs, sd, logs);
  await ecs.send(new CreateClusterCommand({ clusterName: stack }));
  const agentEnv = [
    { name: ENV.APP, value: "hello" },
    { name: ENV.COMPONENTS, value: "tsweaver/Main" },
    ...(tracing === "otlp" ? [{ name: OTLP_ENDPOINT_ENV, value: "http://collector.internal:4318" }] : []),
    ...(tracing === "xray" ? [{ name: OTLP_ENDPOINT_ENV, value: "http://localhost:4318" }] : []),
  ];
  const td = await ecs.send(
    new RegisterTaskDefinitionCommand({
      family: `${stack}-main`,
      requiresCompatibilities: ["FARGATE"],
      networkMode: "awsvpc",
      cpu: "256",
      memory: "512",
      containerDefinitions: [
        { name: AGENT_CONTAINER, image: "tsweaver-app", essential: true, environment: agentEnv },
        ...(tracing === "xray" ? [{ name: COLLECTOR_CONTAINER, image: "aws-otel-collector", essential: false }] : []),
      ],
    }),
  );
  await ecs.send(
    new CreateServiceCommand({
      cluster: stack,
      serviceName: versionedServiceName("main", VERSION),
      taskDefinition: td.taskDefinition!.taskDefinitionArn!,
      desiredCount: 0,
    }),
  );
  await sd.send(new CreateHttpNamespaceCommand({ Name: stack }));
  const ns = await waitFor(
    `namespace ${stack}`,
    async () => (await sd.send(new ListNamespacesCommand({}))).Namespaces?.find((n) => n.Name === stack),
    30_000,
  );
  const service = await sd.send(new CreateDiscoveryServiceCommand({ Name: "main", NamespaceId: ns.Id! }));
  const logGroup = `/tsweaver/${stack}`;
  await logs.send(new CreateLogGroupCommand({ logGroupName: logGroup }));
  return {
    stack,
    cluster: stack,
    version: VERSION,
    groups: { main: { discoveryServiceId: service.Service!.Id! } },
    listeners: {},
    logGroup,
  };
}

const hex = (n: number, digits: number) => n.toString(16).padStart(digits, "0").slice(-digits);
const attr = (key: string, value: string | number) => ({
  key,
  value: typeof value === "number" ? { intValue: value } : { stringValue: value },
});

/** The OTLP export request a weavelet of `group` sends (its resource, as runtime/telemetry/tracing.ts makes it). */
function exportRequest(app: string, version: string, group: string, spans: OtlpSpan[]): OtlpTraceRequest {
  return {
    resourceSpans: [
      {
        resource: {
          attributes: [
            attr("service.name", app),
            attr("service.instance.id", `${group}-1`),
            attr("service.namespace", version),
            attr("tsweaver.group", group),
            attr("process.pid", 4242),
            attr("telemetry.sdk.language", "nodejs"),
          ],
        },
        scopeSpans: [{ spans }],
      },
    ],
  };
}

/** A span of a component call, as the weavelet's OTLP exporter sends it (OTLP kinds: 2 server, 3 client). */
function callSpan(o: {
  traceId: string;
  spanId: string;
  parent?: string;
  kind: "client" | "server";
  component: string;
  method: string;
  caller?: string;
  startMs: number;
  durationMs: number;
  group: string;
  error?: string;
}): OtlpSpan {
  const ns = (ms: number) => (BigInt(Math.round(ms * 1000)) * 1000n).toString();
  return {
    traceId: o.traceId,
    spanId: o.spanId,
    ...(o.parent ? { parentSpanId: o.parent } : {}),
    name: `${o.component}.${o.method}`,
    kind: o.kind === "client" ? 3 : 2,
    startTimeUnixNano: ns(o.startMs),
    endTimeUnixNano: ns(o.startMs + o.durationMs),
    attributes: [
      attr("rpc.system", "tsweaver"),
      attr("rpc.service", o.component),
      attr("rpc.method", o.method),
      ...(o.caller ? [attr("tsweaver.caller", o.caller)] : []),
      attr("tsweaver.weavelet", `${o.group}-1`),
      attr("tsweaver.group", o.group),
    ],
    status: o.error ? { code: 2, message: o.error } : { code: 0 },
  };
}

test('tracing = "xray": the version\'s recent traces from X-Ray on the page, parent-linked, nothing of another app or version', async () => {
  const d = await deployed("xray");
  const t0 = Date.now() - 5000;
  const id = (k: number) => hex(t0, 8) + hex(k, 24);
  const traceId = id(1);
  const span = { traceId, group: "main" };
  // main → hello/Reverser.Reverse → hello/Store.Get (Store fails), in three groups' exports.
  const documents = [
    ...segmentDocuments(
      exportRequest("hello", VERSION, "main", [
        callSpan({
          ...span,
          spanId: "1000000000000001",
          kind: "client",
          component: "hello/Reverser",
          method: "Reverse",
          caller: "tsweaver/Main",
          startMs: t0,
          durationMs: 30,
        }),
      ]),
    ),
    ...segmentDocuments(
      exportRequest("hello", VERSION, "reverser", [
        callSpan({
          ...span,
          group: "reverser",
          spanId: "2000000000000002",
          parent: "1000000000000001",
          kind: "server",
          component: "hello/Reverser",
          method: "Reverse",
          startMs: t0 + 2,
          durationMs: 26,
        }),
        callSpan({
          ...span,
          group: "reverser",
          spanId: "3000000000000003",
          parent: "2000000000000002",
          kind: "client",
          component: "hello/Store",
          method: "Get",
          caller: "hello/Reverser",
          startMs: t0 + 4,
          durationMs: 20,
          error: "StoreError: no such key",
        }),
      ]),
    ),
    ...segmentDocuments(
      exportRequest("hello", VERSION, "store", [
        callSpan({
          ...span,
          group: "store",
          spanId: "4000000000000004",
          parent: "3000000000000003",
          kind: "server",
          component: "hello/Store",
          method: "Get",
          startMs: t0 + 6,
          durationMs: 15,
          error: "StoreError: no such key",
        }),
      ]),
    ),
    // Another app's call and the same app's other version: the same window, not this deployment's.
    ...segmentDocuments(
      exportRequest("shop", VERSION, "cart", [
        callSpan({
          traceId: id(2),
          group: "cart",
          spanId: "5000000000000005",
          kind: "server",
          component: "shop/Cart",
          method: "Add",
          startMs: t0 + 1,
          durationMs: 5,
        }),
      ]),
    ),
    ...segmentDocuments(
      exportRequest("hello", OTHER_VERSION, "reverser", [
        callSpan({
          traceId: id(3),
          group: "reverser",
          spanId: "6000000000000006",
          kind: "server",
          component: "hello/Reverser",
          method: "Reverse",
          startMs: t0 + 1,
          durationMs: 5,
        }),
      ]),
    ),
  ];
  const docs = documents.map((x) => JSON.parse(x) as Record<string, unknown>);
  assert.deepEqual(
    docs.slice(0, 4).map((x) => [x["name"], x["type"] ?? "segment", x["namespace"] ?? ""]),
    [
      ["hello/Reverser", "segment", "remote"],
      ["hello", "segment", ""],
      ["hello/Store", "subsegment", "remote"],
      ["hello", "segment", ""],
    ],
    "the exporter's shapes: the root client span a segment named after its callee, server spans segments named after the app, a nested client span a subsegment",
  );
  assert.deepEqual(await putSegments(xray, documents), [], "X-Ray takes every document");
  await new Promise((r) => setTimeout(r, 1100)); // moto compares whole seconds: the traces end before the read's EndTime

  const calls: string[] = [];
  const before = process.env["AWS_ENDPOINT_URL"];
  process.env["AWS_ENDPOINT_URL"] = proxy.endpoint; // the dashboard's clients go through the played gaps
  const aws = new AwsClients(REGION, (api) => calls.push(api));
  await aws.xray(); // created now, with the proxy's endpoint
  process.env["AWS_ENDPOINT_URL"] = before;
  const source = new AwsDashboardSource(aws, d, { refreshMs: 60_000 });
  const token = newAdminToken();
  const admin = new AdminServer(source, token, { loginCommand: "tsweaver aws dashboard", tokenSource: "the test" });
  const base = `http://${await admin.listen()}`;
  const api = async <T>(p: string): Promise<T> => {
    const r = await get(`${base}${p}`, 30_000, { authorization: `Bearer ${token}` });
    assert.equal(r.status, 200, `${p}: ${r.body}`);
    return JSON.parse(r.body) as T;
  };
  let browser: BrowserContext | undefined;
  try {
    const { traces, note } = await api<{ traces: TraceSummary[]; note?: { source: string; error?: string } }>("/api/traces");
    assert.equal(note?.error, undefined, note?.error);
    assert.match(
      note?.source ?? "",
      /^X-Ray: traces of hello version v0123456789 from the last 10 minutes \(filter service\("hello"\)\), read every 60 s$/,
    );
    assert.deepEqual(gaps.xrayFilters(), ['service("hello")'], "the filter the dashboard sends (moto cannot apply it)");
    assert.deepEqual(
      traces.map((t) => [t.traceId, t.root, t.complete, t.spans, t.errors, t.components]),
      [[traceId, "hello/Reverser.Reverse", true, 4, 2, ["hello/Reverser", "hello/Store"]]],
      "this app version's trace only",
    );
    const { spans } = await api<{ spans: StoredSpan[] }>(`/api/trace?id=${traceId}`);
    assert.deepEqual(
      spans.map((s) => [s.spanId, s.parentSpanId, s.name, s.kind, s.attributes["tsweaver.weavelet"]]),
      [
        ["1000000000000001", "", "hello/Reverser.Reverse", 2, "main-1"],
        ["2000000000000002", "1000000000000001", "hello/Reverser.Reverse", 1, "reverser-1"],
        ["3000000000000003", "2000000000000002", "hello/Store.Get", 2, "reverser-1"],
        ["4000000000000004", "3000000000000003", "hello/Store.Get", 1, "store-1"],
      ],
    );
    assert.equal(spans[2]!.statusMessage, "StoreError: no such key");
    assert.equal(spans[0]!.endMicros - spans[0]!.startMicros, 30_000);

    // Bounded: one summaries page and one BatchGetTraces (3 ids) for this read; within the refresh, none.
    const xrayCalls = () => calls.filter((c) => c.startsWith("xray:"));
    assert.deepEqual(xrayCalls(), ["xray:GetTraceSummaries", "xray:BatchGetTraces"]);
    await api("/api/traces");
    assert.equal(xrayCalls().length, 2, "no X-Ray call within the refresh interval");

    // The page, in headless Chromium: the trace in the panel, its spans in the timeline.
    const dir = tempDir("tsweaver-aws-traces-");
    browser = await launchChromium(path.join(dir, "chromium-profile"), { width: 1400, height: 900 });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(admin.loginUrl());
    await page.waitForSelector("body[data-ready=true]", { timeout: 120_000 });
    assert.deepEqual(errors, [], "no script errors");
    assert.match((await page.textContent("[data-testid=traces-source]")) ?? "", /^X-Ray: traces of hello version v0123456789/);
    assert.equal(await page.locator("[data-testid=traces-error]").count(), 0);
    assert.deepEqual(await page.locator("[data-testid=trace-row]").evaluateAll((els) => els.map((e) => e.getAttribute("data-trace"))), [
      traceId,
    ]);
    await page.locator(`[data-testid=trace-row][data-trace="${traceId}"]`).click();
    await waitFor("the timeline", async () => (await page.textContent("[data-testid=timeline-trace]")) === traceId, 30_000);
    const rows = await page.locator("[data-testid=span-row]").allTextContents();
    assert.deepEqual(
      rows.map((r) => r.replace(/[\d.]+\s*(µs|ms|s)$/, "").trim()),
      ["clienthello/Reverser.Reverse", "serverhello/Reverser.Reverse", "clienthello/Store.Get", "serverhello/Store.Get"],
      "both components' spans, each under its parent",
    );
    const indents = await page
      .locator("[data-testid=span-row] .label")
      .evaluateAll((els) => els.map((e) => (e as HTMLElement).style.paddingLeft));
    assert.deepEqual(indents, ["0px", "14px", "28px", "42px"], "parent before child, one level deeper each");
  } finally {
    await browser?.close();
    admin.close();
  }
});

test("tracing denied: the panel names the missing permissions and keeps serving", async () => {
  const d = await deployed("xray");
  const before = process.env["AWS_ENDPOINT_URL"];
  process.env["AWS_ENDPOINT_URL"] = proxy.endpoint;
  const aws = new AwsClients(REGION);
  await aws.xray(); // created now, with the proxy's endpoint
  process.env["AWS_ENDPOINT_URL"] = before;
  // What IAM answers a caller without xray:GetTraceSummaries (the emulator does not check permissions).
  proxy.throttle("POST /TraceSummaries", 1, { service: "xray", code: "AccessDeniedException" });
  const source = new AwsDashboardSource(aws, d, { refreshMs: 60_000 });
  const note = await source.collectTraces();
  assert.equal(
    note.error,
    "xray:GetTraceSummaries was denied: the traces panel reads X-Ray with your AWS credentials, which need xray:GetTraceSummaries and xray:BatchGetTraces (AccessDeniedException)",
  );
  assert.match(note.source, /^X-Ray: traces of hello/);
  assert.equal((await source.status()).groups[0]?.name, "main", "the rest of the page still reads");
});

test('tracing = "otlp" or "off": the panel says where the traces are, and X-Ray is not read', async () => {
  for (const [tracing, want] of [
    [
      "otlp",
      /^\[aws\] tracing = "otlp": the weavelets export their traces to http:\/\/collector\.internal:4318; see them in that collector's backend$/,
    ],
    ["off", /^\[aws\] tracing = "off": spans are counted and dropped/],
  ] as const) {
    const d = await deployed(tracing);
    const calls: string[] = [];
    const aws = new AwsClients(REGION, (api) => calls.push(api));
    const source = new AwsDashboardSource(aws, d);
    const note = await source.collectTraces();
    assert.match(note.source, want, tracing);
    assert.equal(note.error, undefined);
    assert.deepEqual(
      calls.filter((c) => c.startsWith("xray:")),
      [],
      tracing,
    );
  }
});
