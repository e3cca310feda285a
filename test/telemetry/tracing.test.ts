import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { timeline } from "../../runtime/deployers/multi/commands.js";
import type { Span } from "../../runtime/protos/runtime.js";
import { TraceStore, storedSpan, type StoredSpan } from "../../runtime/telemetry/tracestore.js";
import {
  ActiveSpan,
  DEFAULT_TRACE_RATE,
  DEFAULT_TRACE_SAMPLE,
  Tracing,
  UNSAMPLED_TRACEPARENT,
  isSampled,
  tracingSettings,
} from "../../runtime/telemetry/tracing.js";
import type { CallContext } from "../../runtime/core/call.js";

const TP = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

/** The span startClient started (fails if it did not start one). */
function started(x: ActiveSpan | CallContext | undefined): ActiveSpan {
  assert.ok(x instanceof ActiveSpan, `a span was started (got ${JSON.stringify(x)})`);
  return x;
}

function tracing(env: Record<string, string>): { t: Tracing; spans: Span[] } {
  const spans: Span[] = [];
  const t = new Tracing({ app: "app", deploymentId: "d", weaveletId: "w-1", group: "g", sink: (b) => spans.push(...b), env });
  return { t, spans };
}

describe("tracing: sampling, spans, propagation", () => {
  test("settings: default ratio, TSWEAVER_TRACE_SAMPLE, TSWEAVER_TRACING=0, bad values", () => {
    assert.deepEqual(tracingSettings({}), { enabled: true, ratio: DEFAULT_TRACE_SAMPLE, rate: DEFAULT_TRACE_RATE });
    assert.deepEqual(tracingSettings({ TSWEAVER_TRACE_SAMPLE: "0.5", TSWEAVER_TRACE_RATE: "0" }), { enabled: true, ratio: 0.5, rate: 0 });
    assert.deepEqual(tracingSettings({ TSWEAVER_TRACE_SAMPLE: "0" }), { enabled: false, ratio: 0, rate: DEFAULT_TRACE_RATE });
    assert.deepEqual(tracingSettings({ TSWEAVER_TRACING: "0", TSWEAVER_TRACE_SAMPLE: "1" }), { enabled: false, ratio: 0, rate: 0 });
    assert.throws(() => tracingSettings({ TSWEAVER_TRACE_SAMPLE: "2" }), /TSWEAVER_TRACE_SAMPLE=2: use a number from 0/);
    assert.throws(() => tracingSettings({ TSWEAVER_TRACE_RATE: "-1" }), /TSWEAVER_TRACE_RATE=-1/);
    assert.equal(isSampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), true);
    assert.equal(isSampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"), false);
    assert.equal(isSampled("garbage"), false);
    assert.equal(isSampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0B"), true);
    assert.equal(isSampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0e"), false);
  });

  test("a root call starts a trace; calls inside it are children; the spans reach the sink", async () => {
    const { t, spans } = tracing({ TSWEAVER_TRACE_SAMPLE: "1" });
    const client = started(t.startClient(undefined, "app/B", "m", "app/A"));
    const [, traceId, clientId] = TP.exec(client.ctx.traceparent!)!;
    const server = t.startServer(client.ctx, "app/B", "m")!;
    const [, serverTrace, serverId] = TP.exec(server.ctx.traceparent!)!;
    assert.equal(serverTrace, traceId);
    const nested = started(t.startClient(server.ctx, "app/C", "n", "app/B"));
    nested.end(Object.assign(new Error("no stock"), { name: "OutOfStock" }));
    server.end();
    client.end();
    await t.shutdown();
    assert.equal(spans.length, 3);
    const byName = (kind: number, name: string) => spans.find((s) => s.kind === kind && s.name === name)!;
    const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
    const c = byName(2, "app/B.m");
    const s = byName(1, "app/B.m");
    const n = byName(2, "app/C.n");
    assert.deepEqual([hex(c.spanId), hex(c.parentSpanId)], [clientId, ""]);
    assert.deepEqual([hex(s.spanId), hex(s.parentSpanId)], [serverId, clientId]);
    assert.equal(hex(n.parentSpanId), serverId);
    assert.ok([c, s, n].every((x) => hex(x.traceId) === traceId));
    assert.deepEqual([n.statusCode, n.statusMessage], [2, "OutOfStock: no stock"]);
    assert.equal(c.statusCode, 0);
    assert.deepEqual(
      [c.attributes["rpc.service"], c.attributes["rpc.method"], c.attributes["tsweaver.caller"], c.attributes["tsweaver.weavelet"]],
      ["app/B", "m", "app/A", "w-1"],
    );
    assert.ok(Number(c.startMicros) <= Number(s.startMicros) && Number(s.endMicros) <= Number(c.endMicros), "child spans nest in time");
  });

  test("unsampled traces stay unsampled; deadline, signal and metadata pass through a traced call", () => {
    const { t } = tracing({ TSWEAVER_TRACE_SAMPLE: "1" });
    const unsampled = {
      deadline: undefined,
      signal: undefined,
      metadata: undefined,
      traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    };
    assert.equal(t.startClient(unsampled, "a/B", "m", "a/A"), undefined);
    assert.equal(t.startServer(unsampled, "a/B", "m"), undefined);
    assert.equal(t.startServer(undefined, "a/B", "m"), undefined, "a call without a traceparent gets no server span");
    const signal = new AbortController().signal;
    const outer = { deadline: 123, signal, metadata: { k: "v" }, traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
    const span = started(t.startClient(outer, "a/B", "m", "a/A"));
    assert.deepEqual([span.ctx.deadline, span.ctx.signal, span.ctx.metadata], [123, signal, { k: "v" }]);
    assert.match(span.ctx.traceparent!, /^00-0af7651916cd43dd8448eb211c80319c-/);
    const { t: never } = tracing({ TSWEAVER_TRACE_SAMPLE: "0.0000001" });
    // A root call outside the sample: made in a context that marks its trace unsampled downstream.
    const root = never.startClient(undefined, "a/B", "m", "a/A") as CallContext;
    assert.equal(root.traceparent, UNSAMPLED_TRACEPARENT);
    assert.equal(isSampled(UNSAMPLED_TRACEPARENT), false);
    assert.equal(never.startServer(root, "a/B", "m"), undefined, "its callee records nothing");
    assert.equal(never.startClient(root, "a/C", "n", "a/B"), undefined, "and calls on in the same context");
    const withOptions = never.startClient({ ...outer, traceparent: undefined }, "a/B", "m", "a/A") as CallContext;
    assert.deepEqual(
      [withOptions.traceparent, withOptions.deadline, withOptions.metadata],
      [UNSAMPLED_TRACEPARENT, 123, { k: "v" }],
      "the caller's deadline and metadata kept",
    );

    assert.equal(tracing({ TSWEAVER_TRACING: "0" }).t.enabled, false);
  });

  test("TSWEAVER_TRACE_RATE bounds the new traces per second; calls inside a trace are not counted", () => {
    const { t } = tracing({ TSWEAVER_TRACE_RATE: "3" });
    const roots = Array.from({ length: 10 }, () => t.startClient(undefined, "a/B", "m", "a/A"));
    const spans = roots.filter((r): r is ActiveSpan => r instanceof ActiveSpan);
    // All 10 fit in one or two wall-clock seconds: 3 per refill, at most one refill per second.
    assert.ok(spans.length === 3 || spans.length === 6, `started ${spans.length}`);
    assert.ok(
      roots.every((r) => r instanceof ActiveSpan || r?.traceparent === UNSAMPLED_TRACEPARENT),
      "the others are marked unsampled",
    );
    for (let i = 0; i < 10; i++)
      assert.ok(t.startClient(spans[0]!.ctx, "a/C", "n", "a/B") instanceof ActiveSpan, "children of a sampled trace are always traced");
  });
});

describe("trace store", () => {
  const span = (trace: string, id: string, parent: string, start: number, end: number, extra: Partial<StoredSpan> = {}): StoredSpan => ({
    traceId: trace.padEnd(32, "0"),
    spanId: id.padEnd(16, "0"),
    parentSpanId: parent ? parent.padEnd(16, "0") : "",
    name: `n${id}`,
    kind: 2,
    startMicros: start,
    endMicros: end,
    attributes: { "rpc.service": `c/${id}`, "tsweaver.weavelet": "w" },
    statusCode: 0,
    statusMessage: "",
    ...extra,
  });

  test("converts protocol spans, groups by trace, summarizes newest first, drops the oldest traces", () => {
    const s = storedSpan({
      name: "x",
      traceId: Buffer.from("0af7651916cd43dd8448eb211c80319c", "hex"),
      spanId: Buffer.from("b7ad6b7169203331", "hex"),
      parentSpanId: Buffer.alloc(0),
      kind: 1,
      startMicros: "10",
      endMicros: "20",
      attributes: { a: "b" },
      statusCode: 2,
      statusMessage: "bad",
    });
    assert.deepEqual(
      [s.traceId, s.spanId, s.parentSpanId, s.startMicros, s.endMicros],
      ["0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "", 10, 20],
    );
    const store = new TraceStore(4);
    store.add([span("a", "1", "", 100, 200), span("a", "2", "1", 120, 180, { kind: 1, statusCode: 2 })]);
    store.add([span("b", "3", "", 300, 310)]);
    assert.deepEqual(
      store.recent().map((t) => [t.traceId[0], t.root, t.spans, t.errors, t.durationMicros]),
      [
        ["b", "n3", 1, 0, 10],
        ["a", "n1", 2, 1, 100],
      ],
    );
    assert.deepEqual(
      store.recent(10, "c/2").map((t) => t.traceId[0]),
      ["a"],
    );
    assert.deepEqual(
      store.trace("a".padEnd(32, "0"))!.map((x) => x.name),
      ["n1", "n2"],
    );
    assert.equal(store.trace("a000")?.length, 2, "a unique prefix finds the trace");
    store.add([span("c", "4", "", 400, 410), span("c", "5", "4", 401, 402)]);
    assert.equal(store.size, 3, "trace a (2 spans) went to make room");
    assert.equal(store.trace("a".padEnd(32, "0")), undefined);
  });

  test("timeline: one line per span, children indented, bars placed by time", () => {
    const text = timeline([span("a", "1", "", 0, 1000), span("a", "2", "1", 500, 1000, { kind: 1 })]);
    const lines = text.trimEnd().split("\n");
    assert.equal(lines[0], `trace ${"a".padEnd(32, "0")}: 2 spans, 1.000 ms`);
    assert.match(lines[1]!, /^ {2}\|#{40}\| \+ +0\.000 ms +1\.000 ms {2}client n1 @w$/);
    assert.match(lines[2]!, /^ {2}\| {20}#{20}\| \+ +0\.500 ms +0\.500 ms {4}server n2 @w$/);
  });
});
