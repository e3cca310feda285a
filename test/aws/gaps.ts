/**
 * What AWS does and moto 5.2.1 does not, played on the throttling proxy (throttle.ts) in front of it,
 * so the real SDK calls of the control plane and of the tests meet AWS's behaviour:
 *   - ECS task scale-in protection (UpdateTaskProtection, GetTaskProtection): moto has neither. Kept
 *     here per task, with AWS's answers: protection of a task of a service, for `expiresInMinutes`
 *     (default 120); `MISSING` for an unknown task, `TASK_NOT_VALID` for one no service started.
 *   - A stack being deleted: moto's CloudFormation deletes synchronously and never reports
 *     `DELETE_IN_PROGRESS`; {@link AwsGaps.stackDeleting} makes DescribeStacks of a stack report it.
 *   - Cloud Map refusing to delete a service that still has instances (`ResourceInUse`): moto deletes it.
 *   - A task ECS is stopping: moto marks a stopped task STOPPED at once; with `running` (the Fargate
 *     simulator's view of its process), DescribeTasks reports a task whose process still drains as
 *     DEACTIVATING, as ECS does until the container has exited.
 *   - X-Ray filter expressions: moto answers any GetTraceSummaries with a FilterExpression with an
 *     InternalFailure ("Not implemented yet"). The request goes on without it (its expression is kept
 *     for {@link AwsGaps.xrayFilters}), so the answer holds every trace of the window: what the filter
 *     would have left out, a reader must leave out itself (`tsweaver aws dashboard` checks each
 *     segment's app and version), and a test shows that it does.
 * Everything else is forwarded to the emulator untouched.
 */
import { randomUUID } from "node:crypto";
import type { InterceptedResponse, Interceptor } from "./throttle.js";

/** A task's protection as the played ECS holds it. */
export interface ProtectionRecord {
  readonly enabled: boolean;
  /** When it lapses (ms since the epoch). */
  readonly until: number;
}

export interface AwsGaps {
  /** The proxy hook (pass it as `intercept` to startThrottleProxy). */
  readonly intercept: Interceptor;
  /** From now on DescribeStacks reports `stack` as DELETE_IN_PROGRESS. */
  stackDeleting(stack: string): void;
  /** The protection of a task (by ARN) now, as GetTaskProtection would answer it. */
  protection(taskArn: string): boolean;
  /** Every UpdateTaskProtection that changed something: task ARN, enabled, when. */
  protectionLog(): readonly { taskArn: string; enabled: boolean; at: number }[];
  /** Every GetTraceSummaries FilterExpression seen (and taken out), in order. */
  xrayFilters(): readonly string[];
}

const json = (status: number, body: unknown, errorType?: string): InterceptedResponse => ({
  status,
  headers: {
    "content-type": "application/x-amz-json-1.1",
    "x-amzn-requestid": randomUUID(),
    ...(errorType ? { "x-amzn-errortype": errorType } : {}),
  },
  body: Buffer.from(JSON.stringify(body)),
});

export function awsGaps(opts: { running?: (taskArn: string) => boolean } = {}): AwsGaps {
  const protections = new Map<string, ProtectionRecord>();
  const log: { taskArn: string; enabled: boolean; at: number }[] = [];
  const deleting = new Set<string>();
  const filters: string[] = [];
  const enabled = (arn: string): boolean => {
    const p = protections.get(arn);
    return p !== undefined && p.enabled && p.until > Date.now();
  };

  const intercept: Interceptor = async (req) => {
    if (req.service === "xray" && req.action === "POST /TraceSummaries") {
      const input = JSON.parse(req.body.toString("utf8")) as { FilterExpression?: string };
      if (input.FilterExpression === undefined) return undefined;
      filters.push(input.FilterExpression);
      delete input.FilterExpression;
      return req.forward({ body: Buffer.from(JSON.stringify(input)) });
    }
    if (req.service === "ecs" && (req.action === "UpdateTaskProtection" || req.action === "GetTaskProtection")) {
      const input = JSON.parse(req.body.toString("utf8")) as {
        cluster: string;
        tasks?: string[];
        protectionEnabled?: boolean;
        expiresInMinutes?: number;
      };
      const tasks = input.tasks ?? [];
      if (tasks.length === 0 || tasks.length > 10)
        return json(400, { __type: "InvalidParameterException", message: "tasks: between 1 and 10 tasks" }, "InvalidParameterException");
      // What the emulator knows of them: a task must exist and belong to a service.
      const described = await req.forward({
        action: "DescribeTasks",
        body: Buffer.from(JSON.stringify({ cluster: input.cluster, tasks })),
      });
      const known = JSON.parse(described.body.toString("utf8")) as { tasks?: { taskArn: string; group?: string }[] };
      const protectedTasks: { taskArn: string; protectionEnabled: boolean; expirationDate?: number }[] = [];
      const failures: { arn: string; reason: string }[] = [];
      for (const arn of tasks) {
        const t = (known.tasks ?? []).find((x) => x.taskArn === arn || x.taskArn.endsWith(`/${arn}`));
        if (t === undefined) failures.push({ arn, reason: "MISSING" });
        else if (!t.group?.startsWith("service:")) failures.push({ arn: t.taskArn, reason: "TASK_NOT_VALID" });
        else {
          if (req.action === "UpdateTaskProtection") {
            const on = input.protectionEnabled === true;
            if (on !== enabled(t.taskArn)) log.push({ taskArn: t.taskArn, enabled: on, at: Date.now() });
            protections.set(t.taskArn, { enabled: on, until: on ? Date.now() + (input.expiresInMinutes ?? 120) * 60_000 : 0 });
          }
          const p = protections.get(t.taskArn);
          const on = enabled(t.taskArn);
          protectedTasks.push({ taskArn: t.taskArn, protectionEnabled: on, ...(on ? { expirationDate: p!.until / 1000 } : {}) });
        }
      }
      return json(200, { protectedTasks, failures });
    }
    if (req.service === "ecs" && req.action === "DescribeTasks" && opts.running !== undefined) {
      const up = await req.forward();
      if (up.status !== 200) return up;
      const out = JSON.parse(up.body.toString("utf8")) as { tasks?: { taskArn: string; lastStatus?: string }[] };
      for (const t of out.tasks ?? []) if (t.lastStatus === "STOPPED" && opts.running(t.taskArn)) t.lastStatus = "DEACTIVATING";
      return { ...up, body: Buffer.from(JSON.stringify(out)) };
    }
    if (req.service === "cloudformation" && req.action === "DescribeStacks") {
      const stack = new URLSearchParams(req.body.toString("utf8")).get("StackName") ?? "";
      if (!deleting.has(stack)) return undefined;
      const up = await req.forward();
      const body = up.body
        .toString("utf8")
        .replace(/<StackStatus>[A-Z_]+<\/StackStatus>/g, "<StackStatus>DELETE_IN_PROGRESS</StackStatus>");
      return { ...up, body: Buffer.from(body) };
    }
    if (req.service === "servicediscovery" && req.action === "DeleteService") {
      const { Id } = JSON.parse(req.body.toString("utf8")) as { Id: string };
      const listed = await req.forward({ action: "ListInstances", body: Buffer.from(JSON.stringify({ ServiceId: Id })) });
      const instances = (JSON.parse(listed.body.toString("utf8")) as { Instances?: { Id: string }[] }).Instances ?? [];
      if (instances.length > 0)
        return json(
          400,
          {
            __type: "ResourceInUse",
            Message: `Service ${Id} contains registered instances (${instances.map((i) => i.Id).join(", ")}); delete the instances before deleting the service.`,
          },
          "ResourceInUse",
        );
      return undefined;
    }
    return undefined;
  };

  return {
    intercept,
    stackDeleting: (stack) => void deleting.add(stack),
    protection: enabled,
    protectionLog: () => [...log],
    xrayFilters: () => [...filters],
  };
}
