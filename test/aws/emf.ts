/**
 * What CloudWatch does with Embedded Metric Format log lines, played for the emulator (which stores the
 * lines but extracts nothing): every metric of every directive, once per dimension set, becomes a
 * datapoint of (namespace, metric, those dimensions' values). Lines CloudWatch would reject are reported.
 */
import { type CloudWatchLogsClient, FilterLogEventsCommand } from "@aws-sdk/client-cloudwatch-logs";

export interface Datapoint {
  namespace: string;
  metric: string;
  dimensions: Record<string, string>;
  /** A number, or a histogram's sample count (Count) for value/count pairs. */
  value: number;
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
      { Timestamp?: unknown; CloudWatchMetrics?: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] } | undefined;
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
          const value = typeof v === "number" ? v : (v as { Counts?: number[] } | undefined)?.Counts?.reduce((a, b) => a + b, 0);
          if (value === undefined) rejected.push(message);
          else datapoints.push({ namespace: d.Namespace, metric: m.Name, dimensions, value });
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
