/**
 * What CloudWatch does with Embedded Metric Format log lines, played for the emulator (which stores the
 * lines but extracts nothing): every metric of every directive, once per dimension set, becomes a
 * datapoint of (namespace, metric, those dimensions' values). Lines CloudWatch would reject are reported.
 */
import { type CloudWatchClient, type MetricDatum, PutMetricDataCommand, type StandardUnit } from "@aws-sdk/client-cloudwatch";
import { type CloudWatchLogsClient, FilterLogEventsCommand } from "@aws-sdk/client-cloudwatch-logs";

export interface Datapoint {
  namespace: string;
  metric: string;
  dimensions: Record<string, string>;
  /** A number, or a histogram's sample count (Count) for value/count pairs. */
  value: number;
  /** The line's `_aws.Timestamp` (ms since the epoch). */
  timestamp: number;
  unit: string | undefined;
  /** A histogram's value/count pairs, as the line gives them. */
  histogram?: { values: number[]; counts: number[] } | undefined;
}

/** The datapoints CloudWatch would extract from these log messages; non-EMF messages are skipped. */
export function extractEmf(messages: readonly string[]): { datapoints: Datapoint[]; rejected: string[] } {
  const datapoints: Datapoint[] = [];
  const rejected: string[] = [];
  for (const message of messages) {
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(message) as Record<string, unknown>;
    } catch {
      continue;
    }
    const aws = doc["_aws"] as
      | {
          Timestamp?: unknown;
          CloudWatchMetrics?: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit?: string }[] }[];
        }
      | undefined;
    if (!aws) continue;
    if (typeof aws.Timestamp !== "number" || !Array.isArray(aws.CloudWatchMetrics)) {
      rejected.push(message);
      continue;
    }
    for (const d of aws.CloudWatchMetrics) {
      for (const set of d.Dimensions) {
        const dimensions: Record<string, string> = {};
        if (!set.every((k) => typeof doc[k] === "string" && (dimensions[k] = doc[k] as string) !== undefined)) {
          rejected.push(message);
          continue;
        }
        for (const m of d.Metrics) {
          const v = doc[m.Name];
          const h = typeof v === "number" ? undefined : (v as { Values?: number[]; Counts?: number[] } | undefined);
          const value = typeof v === "number" ? v : h?.Counts?.reduce((a, b) => a + b, 0);
          if (value === undefined) rejected.push(message);
          else
            datapoints.push({
              namespace: d.Namespace,
              metric: m.Name,
              dimensions,
              value,
              timestamp: aws.Timestamp,
              unit: m.Unit,
              histogram: h?.Values && h.Counts ? { values: h.Values, counts: h.Counts } : undefined,
            });
        }
      }
    }
  }
  return { datapoints, rejected };
}

/** Every message of a log group (all streams), paging through FilterLogEvents. */
export async function logMessages(logs: CloudWatchLogsClient, logGroupName: string): Promise<string[]> {
  const out: string[] = [];
  let nextToken: string | undefined;
  do {
    const page = await logs.send(new FilterLogEventsCommand({ logGroupName, nextToken }));
    for (const e of page.events ?? []) out.push(e.message ?? "");
    nextToken = page.nextToken;
  } while (nextToken);
  return out;
}

/** Sum of the datapoints of `metric` whose dimensions include `where` (each dimension set counts once). */
export function total(points: readonly Datapoint[], metric: string, where: Record<string, string>): number {
  return points
    .filter((p) => p.metric === metric && Object.entries(where).every(([k, v]) => p.dimensions[k] === v))
    .reduce((a, p) => a + p.value, 0);
}

/** The EMF extraction running against a log group: what it put into CloudWatch so far. */
/** Puts datapoints into the emulator's CloudWatch as CloudWatch would store them (at their timestamps, histograms as value/count pairs); returns how many. */
export async function publishDatapoints(cloudWatch: CloudWatchClient, datapoints: readonly Datapoint[]): Promise<number> {
  let published = 0;
  const byNamespace = new Map<string, MetricDatum[]>();
  for (const p of datapoints) {
    const datum: MetricDatum = {
      MetricName: p.metric,
      Dimensions: Object.entries(p.dimensions).map(([Name, Value]) => ({ Name, Value })),
      Timestamp: new Date(p.timestamp),
      Unit: p.unit as StandardUnit | undefined,
      ...(p.histogram ? { Values: p.histogram.values, Counts: p.histogram.counts } : { Value: p.value }),
    };
    byNamespace.set(p.namespace, [...(byNamespace.get(p.namespace) ?? []), datum]);
  }
  for (const [Namespace, data] of byNamespace)
    for (let i = 0; i < data.length; i += 500) {
      await cloudWatch.send(new PutMetricDataCommand({ Namespace, MetricData: data.slice(i, i + 500) }));
      published += Math.min(500, data.length - i);
    }
  return published;
}

export interface EmfExtraction {
  /** Datapoints put (PutMetricData) so far. */
  readonly published: number;
  /** Lines CloudWatch would reject. */
  readonly rejected: readonly string[];
  /** Why the last pass failed, if it did (the next one retries). */
  readonly lastError: string | undefined;
  /** Reads the log group once more, publishes what is new, and stops. */
  stop(): Promise<void>;
}

/**
 * Plays CloudWatch's EMF extraction for a log group: every `intervalMs`, the new log events' EMF lines
 * become metrics in the emulator's CloudWatch (PutMetricData, at the lines' timestamps, histograms as
 * value/count pairs), where GetMetricData reads them as it would on AWS.
 */
export function startEmfExtraction(
  logs: CloudWatchLogsClient,
  cloudWatch: CloudWatchClient,
  logGroupName: string,
  intervalMs = 1000,
): EmfExtraction {
  const seen = new Set<string>();
  const rejected: string[] = [];
  let published = 0;
  let startTime = 0;
  let stopped = false;
  let lastError: string | undefined;
  const pass = async () => {
    const messages: string[] = [];
    let nextToken: string | undefined;
    let newest = startTime;
    do {
      const page = await logs.send(new FilterLogEventsCommand({ logGroupName, startTime, nextToken }));
      for (const e of page.events ?? []) {
        if (seen.has(e.eventId ?? "")) continue;
        seen.add(e.eventId ?? "");
        newest = Math.max(newest, e.timestamp ?? 0);
        messages.push(e.message ?? "");
      }
      nextToken = page.nextToken;
    } while (nextToken);
    startTime = newest;
    const extracted = extractEmf(messages);
    rejected.push(...extracted.rejected);
    published += await publishDatapoints(cloudWatch, extracted.datapoints);
  };
  const loop = (async () => {
    while (!stopped) {
      // The emulator busy or the log group not yet there: the next pass retries.
      await pass().then(
        () => (lastError = undefined),
        (err: Error) => (lastError = `${err.name}: ${err.message}`),
      );
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    get published() {
      return published;
    },
    rejected,
    get lastError() {
      return lastError;
    },
    async stop() {
      stopped = true;
      await loop;
      await pass();
    },
  };
}
