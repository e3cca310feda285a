/**
 * Recent traces from X-Ray for `tsweaver aws dashboard`, without the emulator: the conversion of what
 * AWS answers (BatchGetTraces with subsegments embedded in their segment, inferred segments, segments of
 * another app and version) into the page's spans, and the real SDK client's requests and a denied call
 * against a loopback endpoint that answers as X-Ray does (moto answers neither filter expressions nor
 * AccessDenied: see dashboard-traces.test.ts).
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import * as sdk from "@aws-sdk/client-xray";
import { TraceStore } from "../../../runtime/telemetry/tracestore.js";
import { XRayTraceReader, otelTraceId, spansOfTrace, traceFilter, xrayErrorMessage } from "../../../runtime/deployers/aws/xray.js";

const APP = "hello";
const VERSION = "v0123456789";
const XRAY_ID = "1-6751f0a2-9c3e1d2b4a5f60718293a4b5";
const T0 = 1_733_423_266.125;

/** The resource metadata the awsxray exporter writes on a segment (`otel.resource.` + the weavelet's resource). */
function resource(group: string, version = VERSION, app = APP): Record<string, unknown> {
  return {
    "otel.resource.service.name": app,
    "otel.resource.service.namespace": version,
    "otel.resource.service.instance.id": `${group}-weavelet-1`,
    "otel.resource.tsweaver.group": group,
    "otel.resource.process.pid": 7,
    "otel.resource.telemetry.sdk.language": "nodejs",
  };
}

/**
 * A BatchGetTraces answer as AWS gives it for main → Reverser.Reverse → Store.Get (three groups): the
 * root client span is a segment named after its callee; each server span a segment named after the app
 * (parent: the client span); Reverser's client span to Store is embedded in its server segment; X-Ray adds
 * an inferred segment for the remote call; another app's segment shares the trace.
 */
function awsDocuments(): string[] {
  const root = {
    id: "a1a1a1a1a1a1a1a1",
    name: "hello/Reverser",
    start_time: T0,
    end_time: T0 + 0.012,
    trace_id: XRAY_ID,
    namespace: "remote",
    origin: "AWS::ECS::Fargate",
    aws: { xray: { sdk: "opentelemetry for nodejs", sdk_version: "2.12.1" } },
    metadata: {
      default: {
        ...resource("main"),
        "rpc.system": "tsweaver",
        "rpc.service": "hello/Reverser",
        "rpc.method": "Reverse",
        "tsweaver.caller": "tsweaver/Main",
        "tsweaver.weavelet": "main-weavelet-1",
        "tsweaver.group": "main",
        "process.pid": "7",
      },
    },
  };
  const server = {
    id: "b2b2b2b2b2b2b2b2",
    name: APP,
    start_time: T0 + 0.001,
    end_time: T0 + 0.011,
    trace_id: XRAY_ID,
    parent_id: root.id,
    origin: "AWS::ECS::Fargate",
    metadata: {
      default: {
        ...resource("reverser"),
        "rpc.system": "tsweaver",
        "rpc.service": "hello/Reverser",
        "rpc.method": "Reverse",
        "tsweaver.weavelet": "reverser-weavelet-1",
      },
    },
    subsegments: [
      {
        id: "c3c3c3c3c3c3c3c3",
        name: "hello/Store",
        start_time: T0 + 0.002,
        end_time: T0 + 0.009,
        namespace: "remote",
        fault: true,
        cause: { exceptions: [{ id: "e1", message: "StoreError: no such key" }] },
        metadata: {
          default: {
            "rpc.system": "tsweaver",
            "rpc.service": "hello/Store",
            "rpc.method": "Get",
            "tsweaver.caller": "hello/Reverser",
            "tsweaver.weavelet": "reverser-weavelet-1",
          },
        },
      },
    ],
  };
  const inferred = {
    id: "d4d4d4d4d4d4d4d4",
    name: "hello/Store",
    start_time: T0 + 0.002,
    end_time: T0 + 0.009,
    parent_id: "c3c3c3c3c3c3c3c3",
    inferred: true,
    trace_id: XRAY_ID,
  };
  const store = {
    id: "e5e5e5e5e5e5e5e5",
    name: APP,
    start_time: T0 + 0.003,
    end_time: T0 + 0.008,
    trace_id: XRAY_ID,
    parent_id: "c3c3c3c3c3c3c3c3",
    fault: true,
    cause: { exceptions: [{ id: "e2", message: "StoreError: no such key" }] },
    metadata: { default: { ...resource("store"), "rpc.service": "hello/Store", "rpc.method": "Get" } },
  };
  const otherVersion = {
    ...store,
    id: "f6f6f6f6f6f6f6f6",
    metadata: { default: { ...resource("store", "v9999999999"), "rpc.service": "hello/Store", "rpc.method": "Get" } },
  };
  const otherApp = {
    ...store,
    id: "0707070707070707",
    name: "shop",
    metadata: { default: { ...resource("cart", VERSION, "shop"), "rpc.service": "shop/Cart", "rpc.method": "Add" } },
  };
  return [root, server, inferred, store, otherVersion, otherApp].map((d) => JSON.stringify(d));
}

test("X-Ray trace ids and the filter", () => {
  assert.equal(otelTraceId(XRAY_ID), "6751f0a29c3e1d2b4a5f60718293a4b5");
  assert.equal(traceFilter("hello"), 'service("hello")');
  assert.equal(traceFilter('a"b'), 'service("a\\"b")', "a name is quoted as a string");
});

test("an AWS-shaped BatchGetTraces answer: this app version's segments and embedded subsegments, parent-linked, named component.method", () => {
  const spans = spansOfTrace(XRAY_ID, [...awsDocuments(), "not json"], { app: APP, version: VERSION });
  const traceId = "6751f0a29c3e1d2b4a5f60718293a4b5";
  assert.deepEqual(
    spans.map((s) => [s.spanId, s.parentSpanId, s.name, s.kind, s.statusCode]),
    [
      ["a1a1a1a1a1a1a1a1", "", "hello/Reverser.Reverse", 2, 0],
      ["b2b2b2b2b2b2b2b2", "a1a1a1a1a1a1a1a1", "hello/Reverser.Reverse", 1, 0],
      ["c3c3c3c3c3c3c3c3", "b2b2b2b2b2b2b2b2", "hello/Store.Get", 2, 2],
      ["e5e5e5e5e5e5e5e5", "c3c3c3c3c3c3c3c3", "hello/Store.Get", 1, 2],
    ],
    "no inferred segment, nothing of another version or app",
  );
  assert.ok(spans.every((s) => s.traceId === traceId));
  const client = spans[2]!;
  assert.equal(client.statusMessage, "StoreError: no such key");
  assert.equal(client.startMicros, Math.round((T0 + 0.002) * 1e6));
  assert.equal(client.endMicros - client.startMicros, 7000);
  assert.equal(client.attributes["tsweaver.caller"], "hello/Reverser");
  assert.equal(spans[0]!.attributes["otel.resource.service.name"], undefined, "resource metadata is not a span attribute");
  assert.equal(spans[0]!.attributes["process.pid"], "7");

  // As the page shows it: one complete trace through both components.
  const store = new TraceStore();
  store.add(spans);
  const [summary] = store.recent();
  assert.deepEqual(
    [summary?.root, summary?.complete, summary?.spans, summary?.errors, summary?.components],
    ["hello/Reverser.Reverse", true, 4, 2, ["hello/Reverser", "hello/Store"]],
  );
  assert.equal(summary?.durationMicros, 12_000);
});

/** A loopback endpoint answering the X-Ray API (restJson1) as `answer` says; it records the requests. */
async function xrayEndpoint(
  answer: (path: string, body: Record<string, unknown>) => { status: number; body: unknown; type?: string },
): Promise<{ url: string; requests: { path: string; body: Record<string, unknown> }[]; close: () => Promise<void> }> {
  const requests: { path: string; body: Record<string, unknown> }[] = [];
  const server = http.createServer((req, res) => {
    let data = "";
    req.on("data", (c: Buffer) => (data += c.toString()));
    req.on("end", () => {
      const body = JSON.parse(data || "{}") as Record<string, unknown>;
      const path = req.url ?? "";
      requests.push({ path, body });
      const a = answer(path, body);
      res.writeHead(a.status, { "content-type": "application/json", ...(a.type ? { "x-amzn-errortype": a.type } : {}) });
      res.end(JSON.stringify(a.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => server.close(() => r())) };
}

const clientFor = (url: string) =>
  new sdk.XRayClient({ endpoint: url, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" }, maxAttempts: 1 });

test("a read: the filtered summaries of the window (pages capped), BatchGetTraces 5 ids a call, each trace once", async () => {
  const ids = Array.from({ length: 7 }, (_, i) => `1-6751f0a2-${String(i).padStart(24, "0")}`);
  const ep = await xrayEndpoint((path, body) => {
    if (path === "/TraceSummaries") {
      // Endless pages: the reader stops at its cap.
      const page = Number(body["NextToken"] ?? 0);
      const mine = page === 0 ? ids.slice(0, 4) : ids.slice(4);
      return {
        status: 200,
        body: {
          TraceSummaries: mine.map((Id, i) => ({ Id, StartTime: T0 + page * 10 + i, IsPartial: Id === ids[6] })),
          NextToken: String(page + 1),
        },
      };
    }
    const wanted = body["TraceIds"] as string[];
    return {
      status: 200,
      body: {
        Traces: wanted.map((Id) => ({
          Id,
          Segments: awsDocuments().map((Document, k) => ({ Id: `s${k}`, Document: Document.replaceAll(XRAY_ID, Id) })),
        })),
        UnprocessedTraceIds: [],
      },
    };
  });
  const client = clientFor(ep.url);
  try {
    const reader = new XRayTraceReader(() => Promise.resolve({ sdk, client }), { maxSummaryPages: 2, windowMinutes: 5 });
    const store = new TraceStore();
    const now = Date.UTC(2026, 0, 1);
    const first = await reader.read({ app: APP, version: VERSION }, store, now);
    assert.deepEqual(first, { summaryPages: 2, batchCalls: 2, traces: 6 }, "the partial trace waits");
    const summaries = ep.requests.filter((r) => r.path === "/TraceSummaries");
    assert.deepEqual(summaries[0]!.body["FilterExpression"], 'service("hello")');
    assert.equal(summaries[0]!.body["Sampling"], false);
    assert.equal((summaries[0]!.body["EndTime"] as number) - (summaries[0]!.body["StartTime"] as number), 300);
    const batches = ep.requests.filter((r) => r.path === "/Traces").map((r) => (r.body["TraceIds"] as string[]).length);
    assert.deepEqual(batches, [5, 1]);
    // The newest first: the second page's traces lead the first batch.
    assert.deepEqual((ep.requests.find((r) => r.path === "/Traces")!.body["TraceIds"] as string[]).slice(0, 2), [ids[5], ids[4]]);
    assert.equal(store.recent().length, 6);
    assert.equal(store.size, 24);

    const again = await reader.read({ app: APP, version: VERSION }, store, now + 10_000);
    assert.deepEqual(again, { summaryPages: 2, batchCalls: 0, traces: 0 }, "traces read before are not read again");
  } finally {
    client.destroy();
    await ep.close();
  }
});

test("a denied read names the permissions the dashboard's credentials need", async () => {
  const ep = await xrayEndpoint(() => ({
    status: 403,
    type: "AccessDeniedException",
    body: { message: "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: xray:GetTraceSummaries" },
  }));
  const client = clientFor(ep.url);
  try {
    const reader = new XRayTraceReader(() => Promise.resolve({ sdk, client }));
    const err = await reader.read({ app: APP, version: VERSION }, new TraceStore()).then(
      () => assert.fail("the read succeeded"),
      (e: unknown) => e,
    );
    assert.equal(
      xrayErrorMessage(err),
      "xray:GetTraceSummaries was denied: the traces panel reads X-Ray with your AWS credentials, which need xray:GetTraceSummaries and xray:BatchGetTraces (AccessDeniedException)",
    );
  } finally {
    client.destroy();
    await ep.close();
  }
});
