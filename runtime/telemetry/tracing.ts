import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  context as otelContext,
  trace,
  type Context as OtelContext,
  type Span as OtelSpan,
  type Tracer,
} from "@opentelemetry/api";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { type CallContext, UNSAMPLED_TRACEPARENT } from "../core/call.js";
import type { Span } from "../protos/runtime.js";

/**
 * Tracing of component calls with OpenTelemetry. A remote call gets a client span in the caller's stub
 * and a server span in the callee's handler; the W3C `traceparent` of the current span travels in the
 * CallContext (and so in the RPC request header). Finished spans go to the deployer in batches
 * (HandleTraceSpans) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, also to
 * an OTLP/HTTP collector straight from the process — whatever the deployer.
 *
 * Sampling is decided once per trace, at its root (a call made outside any traced call): with
 * probability `TSWEAVER_TRACE_SAMPLE` (default {@link DEFAULT_TRACE_SAMPLE}: every root call), and at
 * most `TSWEAVER_TRACE_RATE` new traces per second per process (default {@link DEFAULT_TRACE_RATE};
 * 0: no limit). So a quiet app is traced completely and a busy one pays for a bounded number of traces
 * whatever its call rate. A call inside a sampled trace is always traced; inside an unsampled one, never
 * (its traceparent still travels on). `TSWEAVER_TRACING=0` turns tracing off: no per-call work at all.
 */

/** Fraction of root calls that start a trace, unless `TSWEAVER_TRACE_SAMPLE` says otherwise. */
export const DEFAULT_TRACE_SAMPLE = 1;
/** Most new traces a process starts per second, unless `TSWEAVER_TRACE_RATE` says otherwise. */
export const DEFAULT_TRACE_RATE = 50;
/** Spans queued before a batch goes to the deployer regardless of the timer. */
const BATCH_SPANS = 256;
/** Longest a finished span waits in the queue (ms). */
const BATCH_DELAY_MS = 100;

/** Who runs this process, for span attributes and the OTLP resource. */
export interface TracingOptions {
  app: string;
  deploymentId: string;
  weaveletId: string;
  group: string;
  /** Receives finished spans in batches (the weavelet sends them to its host). */
  sink: (spans: Span[]) => void;
  /** Environment to read settings from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** Tracing settings from the environment: enabled, the root sampling ratio, the limit of new traces per second (0: none). */
export function tracingSettings(env: NodeJS.ProcessEnv = process.env): { enabled: boolean; ratio: number; rate: number } {
  const off = env["TSWEAVER_TRACING"];
  if (off === "0" || off === "false" || off === "off") return { enabled: false, ratio: 0, rate: 0 };
  const rawRate = env["TSWEAVER_TRACE_RATE"];
  let rate = DEFAULT_TRACE_RATE;
  if (rawRate !== undefined && rawRate !== "") {
    const n = Number(rawRate);
    if (!(n >= 0) || !Number.isFinite(n))
      throw new Error(`TSWEAVER_TRACE_RATE=${rawRate}: use the most new traces per second per process (0: no limit)`);
    rate = n;
  }
  const raw = env["TSWEAVER_TRACE_SAMPLE"];
  let ratio = DEFAULT_TRACE_SAMPLE;
  if (raw !== undefined && raw !== "") {
    const n = Number(raw);
    if (!(n >= 0 && n <= 1)) throw new Error(`TSWEAVER_TRACE_SAMPLE=${raw}: use a number from 0 (no traces) to 1 (every call)`);
    ratio = n;
  }
  return { enabled: ratio > 0, ratio, rate };
}

/** True if a W3C traceparent carries the sampled flag. */
export function isSampled(traceparent: string): boolean {
  if (traceparent.length !== 55) return false;
  const c = traceparent.charCodeAt(54); // the low hex digit of the flags holds the sampled bit
  return ((c <= 57 ? c - 48 : (c | 32) - 87) & 1) === 1;
}

/** The traceparent of a root call that was not sampled (defined in core: the RPC frames send it as a flag). */
export { UNSAMPLED_TRACEPARENT };

const UNSAMPLED_ROOT: CallContext = Object.freeze({
  deadline: undefined,
  signal: undefined,
  metadata: undefined,
  traceparent: UNSAMPLED_TRACEPARENT,
});

/**
 * Span times: the machine's monotonic clock (shared by every process on it, so spans of one trace in
 * different processes line up) anchored to the wall clock at an instant Date.now() ticks over, which
 * makes the anchor precise to microseconds rather than to Date.now()'s millisecond. Of a few ticks, the
 * one observed with the smallest gap between clock reads wins (a preempted read would skew it).
 */
let anchor: { wall: number; perf: number } | undefined;

function clockAnchor(): { wall: number; perf: number } {
  performance.now(); // the first call initializes the clock binding: keep that out of the measurement
  let best = { wall: 0, perf: 0, error: Infinity };
  for (let k = 0; k < 5 && best.error > 0.002; k++) {
    // Date.now() ticks from t to t+1 between the previous read (after prevBefore) and this one (before
    // after): the tick instant lies in [prevBefore, after].
    const t = Date.now();
    let wall = t;
    let prevBefore = performance.now();
    let before = prevBefore;
    let after = prevBefore;
    while (wall === t) {
      prevBefore = before;
      before = performance.now();
      wall = Date.now();
      after = performance.now();
    }
    const error = (after - prevBefore) / 2;
    if (error < best.error) best = { wall, perf: (prevBefore + after) / 2, error };
  }
  return best;
}

/** Now, as an OpenTelemetry HrTime ([seconds, nanoseconds] since the epoch). */
function hrNow(): [number, number] {
  anchor ??= clockAnchor();
  const ms = anchor.wall + (performance.now() - anchor.perf);
  const secs = Math.floor(ms / 1000);
  return [secs, Math.round((ms - secs * 1000) * 1e6)];
}

function parentContext(traceparent: string | undefined): OtelContext | undefined {
  if (traceparent === undefined) {
    // No traced component call around us; the user may have an OpenTelemetry span active (e.g. an HTTP
    // server instrumentation with a context manager): join its trace.
    const sc = trace.getSpanContext(otelContext.active());
    return sc !== undefined && (sc.traceFlags & TraceFlags.SAMPLED) !== 0 ? trace.setSpanContext(ROOT_CONTEXT, sc) : undefined;
  }
  if (!isSampled(traceparent)) return undefined;
  const [, traceId, spanId] = traceparent.split("-");
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: traceId!, spanId: spanId!, traceFlags: TraceFlags.SAMPLED, isRemote: true });
}

/**
 * The CallContext inside a traced call: the outer call's deadline, signal and metadata (read lazily, as
 * the RPC server creates signals on demand) with this span's traceparent.
 */
class TracedCall implements CallContext {
  constructor(
    private readonly outer: CallContext | undefined,
    readonly traceparent: string,
  ) {}
  get deadline(): number | undefined {
    return this.outer?.deadline;
  }
  get signal(): AbortSignal | undefined {
    return this.outer?.signal;
  }
  get metadata(): Readonly<Record<string, string>> | undefined {
    return this.outer?.metadata;
  }
}

/** A span in progress; `ctx` is the CallContext to run the traced work in. */
export class ActiveSpan {
  readonly ctx: CallContext;
  constructor(
    private readonly span: OtelSpan,
    outer: CallContext | undefined,
  ) {
    const sc = span.spanContext();
    this.ctx = new TracedCall(outer, `00-${sc.traceId}-${sc.spanId}-01`);
  }
  /** Ends the span; an error marks it failed with the error's name and message. */
  end(err?: unknown): void {
    if (err !== undefined) {
      const e = err as { name?: unknown; message?: unknown };
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: `${String(e?.name ?? "Error")}: ${String(e?.message ?? err)}` });
    }
    this.span.end(hrNow());
  }
}

function refillBudget(t: Tracing): void {
  t.budgetTimerFired();
}

/** Converts a finished OpenTelemetry span to the control protocol's Span. */
export function toProtoSpan(s: ReadableSpan, extra: Record<string, string>): Span {
  const sc = s.spanContext();
  const attributes: Record<string, string> = { ...extra };
  for (const [k, v] of Object.entries(s.attributes)) if (v !== undefined) attributes[k] = Array.isArray(v) ? v.join(",") : String(v);
  const micros = (t: readonly [number, number]) => String(t[0] * 1_000_000 + Math.floor(t[1] / 1000));
  return {
    name: s.name,
    traceId: Buffer.from(sc.traceId, "hex"),
    spanId: Buffer.from(sc.spanId, "hex"),
    parentSpanId: s.parentSpanContext ? Buffer.from(s.parentSpanContext.spanId, "hex") : Buffer.alloc(0),
    kind: s.kind,
    startMicros: micros(s.startTime),
    endMicros: micros(s.endTime),
    attributes,
    statusCode: s.status.code,
    statusMessage: s.status.message ?? "",
  };
}

/** Span processors added after the provider was built (the OTLP exporter loads asynchronously). */
class Processors implements SpanProcessor {
  readonly list: SpanProcessor[] = [];
  onStart(): void {}
  onEnd(span: ReadableSpan): void {
    for (const p of this.list) p.onEnd(span);
  }
  async forceFlush(): Promise<void> {
    await Promise.all(this.list.map((p) => p.forceFlush()));
  }
  async shutdown(): Promise<void> {
    await Promise.all(this.list.map((p) => p.shutdown()));
  }
}

/** One process's tracing: makes client and server spans and ships them. */
export class Tracing {
  /** False when tracing is off: callers skip every tracing step. */
  readonly enabled: boolean;
  private readonly ratio: number;
  private readonly rate: number;
  /** New traces this process may still start before the next refill; refilled once per second, when used up. */
  private budget: number;
  private budgetSecond = 0;
  private refillTimer: NodeJS.Timeout | undefined;
  private readonly tracer: Tracer;
  private readonly provider: BasicTracerProvider;
  private readonly processors = new Processors();
  private readonly extra: Record<string, string>;
  private queue: Span[] = [];
  private timer: NodeJS.Timeout | undefined;
  private otlp: Promise<void> | undefined;

  constructor(private readonly opts: TracingOptions) {
    const env = opts.env ?? process.env;
    const { enabled, ratio, rate } = tracingSettings(env);
    this.enabled = enabled;
    this.ratio = ratio;
    this.rate = rate;
    this.budget = rate > 0 ? rate : Infinity;
    this.budgetSecond = Math.floor(Date.now() / 1000);
    if (enabled) anchor ??= clockAnchor();
    this.extra = { "tsweaver.weavelet": opts.weaveletId, "tsweaver.group": opts.group, "process.pid": String(process.pid) };
    this.processors.list.push({
      onStart: () => {},
      onEnd: (span) => this.enqueue(toProtoSpan(span, this.extra)),
      forceFlush: async () => this.flush(),
      shutdown: async () => this.flush(),
    });
    this.provider = new BasicTracerProvider({
      sampler: new AlwaysOnSampler(), // sampled or not is decided before a span is started
      resource: resourceFromAttributes({
        "service.name": opts.app,
        "service.instance.id": opts.weaveletId,
        "service.namespace": opts.deploymentId,
        "tsweaver.group": opts.group,
        "process.pid": process.pid,
      }),
      spanProcessors: [this.processors],
    });
    this.tracer = this.provider.getTracer("tsweaver");
    const endpoint = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] || env["OTEL_EXPORTER_OTLP_ENDPOINT"];
    if (enabled && endpoint && env["OTEL_TRACES_EXPORTER"] !== "none") this.otlp = this.addOtlpExporter();
  }

  /** Resolves once optional exporters are loaded (spans ended before miss them). */
  async ready(): Promise<void> {
    await this.otlp;
  }

  private async addOtlpExporter(): Promise<void> {
    // Loaded only when configured: the exporter pulls in the OTLP transformer.
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
    this.processors.list.push(new BatchSpanProcessor(new OTLPTraceExporter(), { scheduledDelayMillis: 1000 }));
  }

  /**
   * Starts a call of `component.method` by `caller` from the context `outer`. Returns an ActiveSpan (a
   * client span, parented to the current call's span, with the context to make the call in); a
   * CallContext for a root call that is not sampled (make the call in it: it marks the trace unsampled
   * downstream); or undefined when the current context already decides (a call inside a trace).
   */
  startClient(outer: CallContext | undefined, component: string, method: string, caller: string): ActiveSpan | CallContext | undefined {
    const tp = outer?.traceparent;
    let parent: OtelContext | undefined;
    if (tp === undefined) {
      if (!(Math.random() < this.ratio) || !this.takeBudget())
        return outer === undefined ? UNSAMPLED_ROOT : new TracedCall(outer, UNSAMPLED_TRACEPARENT);
      parent = parentContext(undefined) ?? ROOT_CONTEXT;
    } else {
      parent = parentContext(tp);
      if (parent === undefined) return undefined;
    }
    const span = this.tracer.startSpan(
      `${component}.${method}`,
      {
        kind: SpanKind.CLIENT,
        startTime: hrNow(),
        attributes: { "rpc.system": "tsweaver", "rpc.service": component, "rpc.method": method, "tsweaver.caller": caller },
      },
      parent,
    );
    return new ActiveSpan(span, outer);
  }

  // At most `rate` new traces between refills, and at most one refill per wall-clock second. Once the
  // budget is used up, a timer refills it at the next second: a busy process's unsampled calls read no clock.
  private takeBudget(): boolean {
    if (this.budget <= 0) {
      if (this.refillTimer !== undefined) return false;
      const now = Date.now();
      const second = Math.floor(now / 1000);
      if (second === this.budgetSecond) {
        this.refillTimer = setTimeout(refillBudget, (second + 1) * 1000 - now, this);
        this.refillTimer.unref();
        return false;
      }
      this.budgetSecond = second;
      this.budget = this.rate;
    }
    this.budget--;
    return true;
  }

  /** @internal The refill timer fired: the next root call may refill the budget. */
  budgetTimerFired(): void {
    this.refillTimer = undefined;
  }

  /** A server span for serving `component.method` in the call `call` (undefined when its caller's trace is not sampled). */
  startServer(call: CallContext | undefined, component: string, method: string): ActiveSpan | undefined {
    const tp = call?.traceparent;
    if (tp === undefined) return undefined;
    const parent = parentContext(tp);
    if (parent === undefined) return undefined;
    const span = this.tracer.startSpan(
      `${component}.${method}`,
      {
        kind: SpanKind.SERVER,
        startTime: hrNow(),
        attributes: { "rpc.system": "tsweaver", "rpc.service": component, "rpc.method": method },
      },
      parent,
    );
    return new ActiveSpan(span, call);
  }

  private enqueue(span: Span): void {
    this.queue.push(span);
    if (this.queue.length >= BATCH_SPANS) this.flush();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), BATCH_DELAY_MS);
      this.timer.unref();
    }
  }

  /** Sends queued spans to the sink now. */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.opts.sink(batch);
  }

  /** Flushes every exporter (bounded by `timeoutMs`). */
  async shutdown(timeoutMs = 2_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.provider.forceFlush().catch(() => {}), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.flush();
  }
}
