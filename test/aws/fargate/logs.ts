/**
 * The awslogs driver of the Fargate simulator: copies each task process's output lines to CloudWatch
 * Logs (the container's log group, stream `<prefix>/<container>/<task id>`), every 250 ms, so
 * `tsweaver aws logs` has something to read.
 */
import { type CloudWatchLogsClient, CreateLogStreamCommand, PutLogEventsCommand } from "@aws-sdk/client-cloudwatch-logs";
import { chunks } from "./chunks.js";

/** Where one task's output goes, and the lines not shipped yet. */
export interface LogStream {
  readonly group: string;
  readonly stream: string;
  readonly events: { timestamp: number; message: string }[];
  /** Resolves false when the stream could not be created (the lines are then dropped). */
  readonly ready: Promise<boolean>;
}

/** What the shipper needs to know of a task's container. */
export interface LoggedContainer {
  readonly id: string;
  readonly container: string;
  readonly logDriver: string | undefined;
  readonly logOptions: Record<string, string> | undefined;
}

export class AwsLogsShipper {
  private readonly streams: LogStream[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logs: CloudWatchLogsClient,
    private readonly cluster: string,
    private readonly enabled: boolean,
    private readonly verbose: () => boolean,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), 250);
  }

  /** Stops the timer and ships what is left. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }

  /** The stream of a container with the awslogs driver (created now), else undefined. */
  open(c: LoggedContainer): LogStream | undefined {
    if (!this.enabled || c.logDriver !== "awslogs" || !c.logOptions?.["awslogs-group"]) return undefined;
    const group = c.logOptions["awslogs-group"];
    const prefix = c.logOptions["awslogs-stream-prefix"];
    const stream = prefix ? `${prefix}/${c.container}/${c.id}` : c.id;
    const ready = this.logs
      .send(new CreateLogStreamCommand({ logGroupName: group, logStreamName: stream }))
      .then(() => true)
      .catch((err: Error) => {
        if (err.name === "ResourceAlreadyExistsException") return true;
        if (this.verbose())
          process.stderr.write(`[fargate ${this.cluster}] no CloudWatch logs for task ${c.id}: ${err.name}: ${err.message}\n`);
        return false;
      });
    const log: LogStream = { group, stream, events: [], ready };
    this.streams.push(log);
    return log;
  }

  async flush(): Promise<void> {
    await Promise.all(
      this.streams.map(async (log) => {
        if (log.events.length === 0) return;
        if (!(await log.ready)) {
          log.events.length = 0;
          return;
        }
        const events = log.events.splice(0, log.events.length);
        for (const batch of chunks(events, 5000)) {
          await this.logs
            .send(new PutLogEventsCommand({ logGroupName: log.group, logStreamName: log.stream, logEvents: batch }))
            .catch(() => {});
        }
      }),
    );
  }
}
