/**
 * The ECS task metadata endpoint of the simulated tasks, `http://127.0.0.1:<port>/v4/<task id>`:
 * `GET <uri>` gives the container's metadata, `GET <uri>/task` the task's, in the shape of ECS's task
 * metadata v4 (a subset); the task's loopback address is its awsvpc IPv4 address.
 */
import http from "node:http";
import type { TaskRecord } from "./task-runner.js";

export class MetadataEndpoint {
  private server: http.Server | undefined;
  private port = 0;

  constructor(
    /** The task of an id (or ARN). */
    private readonly find: (taskArnOrId: string) => TaskRecord | undefined,
    /** The cluster's ARN (known once a task exists). */
    private readonly clusterArn: () => string,
    private readonly cluster: string,
    private readonly region: string,
  ) {}

  async start(): Promise<void> {
    const server = http.createServer((req, res) => this.serve(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  /** `ECS_CONTAINER_METADATA_URI_V4` of a task. */
  uriOf(taskId: string): string {
    return `http://127.0.0.1:${this.port}/v4/${taskId}`;
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    const m = /^\/v[34]\/([^/?]+)(\/task)?(\/stats)?\/?(?:\?.*)?$/.exec(req.url ?? "");
    const r = m ? this.find(m[1]!) : undefined;
    if (req.method !== "GET" || m === null || r === undefined) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    let body: unknown;
    if (m[3]) body = {};
    else body = m[2] ? this.taskMetadata(r) : this.containerMetadata(r);
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  }

  private containerMetadata(r: TaskRecord): Record<string, unknown> {
    const status = r.state === "running" || r.state === "starting" ? "RUNNING" : "STOPPED";
    const accountAndRegion = /^arn:[^:]+:ecs:([^:]*):(\d+):/.exec(r.arn);
    const clusterName = this.cluster.split("/").pop()!;
    return {
      DockerId: `${r.id}-${r.container}`,
      Name: r.container,
      DockerName: `ecs-${r.family}-${r.revision}-${r.container}`,
      Image: r.image,
      ImageID: "sha256:0000000000000000000000000000000000000000000000000000000000000000",
      Labels: {
        "com.amazonaws.ecs.cluster": this.clusterArn(),
        "com.amazonaws.ecs.container-name": r.container,
        "com.amazonaws.ecs.task-arn": r.arn,
        "com.amazonaws.ecs.task-definition-family": r.family,
        "com.amazonaws.ecs.task-definition-version": String(r.revision),
      },
      DesiredStatus: status,
      KnownStatus: status,
      Limits: { CPU: r.cpu, Memory: r.memory },
      CreatedAt: new Date(r.startedAt).toISOString(),
      StartedAt: new Date(r.startedAt).toISOString(),
      Type: "NORMAL",
      ContainerARN: `arn:aws:ecs:${accountAndRegion?.[1] ?? this.region}:${accountAndRegion?.[2] ?? "123456789012"}:container/${clusterName}/${r.id}/${r.containerUuid}`,
      LogDriver: r.logDriver,
      LogOptions: r.log ? { "awslogs-group": r.log.group, "awslogs-region": this.region, "awslogs-stream": r.log.stream } : r.logOptions,
      Networks: [
        {
          NetworkMode: "awsvpc",
          IPv4Addresses: [r.ip],
          AttachmentIndex: 0,
          MACAddress: "0a:00:00:00:00:00",
          IPv4SubnetCIDRBlock: "127.0.0.0/8",
          PrivateDNSName: `ip-${r.ip.replace(/\./g, "-")}.ec2.internal`,
          SubnetGatewayIpv4Address: "127.0.0.1/8",
        },
      ],
    };
  }

  private taskMetadata(r: TaskRecord): Record<string, unknown> {
    const status = r.state === "running" || r.state === "starting" ? "RUNNING" : "STOPPED";
    return {
      Cluster: this.clusterArn(),
      TaskARN: r.arn,
      Family: r.family,
      Revision: String(r.revision),
      DesiredStatus: status,
      KnownStatus: status,
      Limits: { CPU: r.cpu / 1024, Memory: r.memory },
      PullStartedAt: new Date(r.startedAt).toISOString(),
      PullStoppedAt: new Date(r.startedAt).toISOString(),
      AvailabilityZone: `${this.region}a`,
      LaunchType: "FARGATE",
      Containers: [this.containerMetadata(r)],
    };
  }
}
