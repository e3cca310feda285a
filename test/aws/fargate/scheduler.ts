/**
 * ECS's service scheduler, played for the simulator (moto's UpdateService only sets the counts): keeps
 * `desiredCount` tasks per service with RunTask (the service's task definition, `group:
 * "service:<name>"`, `startedBy: <the service's deployment id>`, as ECS does), and StopTask for extra
 * tasks and for tasks of an older task definition; restarts of a crashing service's tasks back off
 * (250 ms doubling to 5 s), as ECS throttles them.
 */
import {
  DescribeServicesCommand,
  ListServicesCommand,
  RunTaskCommand,
  StopTaskCommand,
  type ECSClient,
  type Service,
  type Task,
} from "@aws-sdk/client-ecs";
import { chunks } from "./chunks.js";
import type { TaskRecord } from "./task-runner.js";

interface ServiceState {
  failures: number;
  nextStartAt: number;
}

export interface SchedulerConfig {
  readonly ecs: ECSClient;
  readonly cluster: string;
  /** Which services to schedule (all by default). */
  readonly services?: (serviceName: string) => boolean;
  /** The simulator still runs. */
  readonly isRunning: () => boolean;
  /** The process record of a task, if one was started. */
  readonly record: (taskArn: string) => TaskRecord | undefined;
  /** Stops a task's process right away (after StopTask in the emulator). */
  readonly stopProcess: (r: TaskRecord, reason: string) => void;
}

export class ServiceScheduler {
  private readonly states = new Map<string, ServiceState>();

  constructor(private readonly cfg: SchedulerConfig) {}

  /** The cluster's services (none while the cluster does not exist). */
  async describeServices(): Promise<Service[]> {
    const arns: string[] = [];
    let next: string | undefined;
    try {
      do {
        const page = await this.cfg.ecs.send(new ListServicesCommand({ cluster: this.cfg.cluster, maxResults: 100, nextToken: next }));
        arns.push(...(page.serviceArns ?? []));
        next = page.nextToken;
      } while (next);
    } catch (err) {
      if ((err as Error).name === "ClusterNotFoundException") return [];
      throw err;
    }
    const out: Service[] = [];
    for (const batch of chunks(arns, 10)) {
      const d = await this.cfg.ecs.send(new DescribeServicesCommand({ cluster: this.cfg.cluster, services: batch }));
      out.push(...(d.services ?? []));
    }
    return out;
  }

  /** Starts and stops tasks so that each service has `desiredCount` of its current task definition. */
  async reconcile(services: Service[], tasks: Task[]): Promise<void> {
    const now = Date.now();
    for (const svc of services) {
      const name = svc.serviceName!;
      if (this.cfg.services && !this.cfg.services(name)) continue;
      const state = this.state(name);
      const mine = tasks.filter((t) => t.group === `service:${name}` && t.desiredStatus === "RUNNING");
      // Healthy for a while: forget earlier crashes.
      if (
        mine.some((t) => {
          const r = this.cfg.record(t.taskArn!);
          return r !== undefined && r.state === "running" && now - r.startedAt > 5000;
        })
      )
        state.failures = 0;
      const deployment = svc.deployments?.find((d) => d.status === "PRIMARY")?.id ?? "ecs-svc/fargate-simulator";
      const scaling = `Scaling activity initiated by (deployment ${deployment})`;
      if (svc.status !== "ACTIVE") {
        for (const t of mine) await this.stopTask(t.taskArn!, `Service ${name} is ${svc.status}`);
        continue;
      }
      const desired = svc.desiredCount ?? 0;
      const current = mine.filter((t) => t.taskDefinitionArn === svc.taskDefinition);
      const old = mine.filter((t) => t.taskDefinitionArn !== svc.taskDefinition);
      const missing = desired - current.length;
      if (!this.cfg.isRunning()) return;
      if (missing > 0 && now >= state.nextStartAt) {
        for (let left = missing; left > 0; left -= 10) {
          await this.cfg.ecs.send(
            new RunTaskCommand({
              cluster: this.cfg.cluster,
              taskDefinition: svc.taskDefinition,
              count: Math.min(left, 10),
              group: `service:${name}`,
              startedBy: deployment,
              launchType: "FARGATE",
              networkConfiguration: svc.networkConfiguration?.awsvpcConfiguration ? svc.networkConfiguration : undefined,
            }),
          );
        }
      }
      if (current.length >= desired) for (const t of old) await this.stopTask(t.taskArn!, scaling);
      if (current.length > desired) {
        const started = (t: Task): number => this.cfg.record(t.taskArn!)?.startedAt ?? t.createdAt?.getTime() ?? Date.now();
        const newestFirst = [...current].sort((a, b) => started(b) - started(a));
        for (const t of newestFirst.slice(0, current.length - desired)) await this.stopTask(t.taskArn!, scaling);
      }
    }
  }

  /** A task of the service crashed or could not start: its next start waits longer. */
  noteFailure(r: TaskRecord): void {
    if (r.service === undefined) return;
    const s = this.state(r.service);
    s.failures++;
    s.nextStartAt = Date.now() + Math.min(250 * 2 ** (s.failures - 1), 5000);
  }

  private state(name: string): ServiceState {
    let s = this.states.get(name);
    if (s === undefined) {
      s = { failures: 0, nextStartAt: 0 };
      this.states.set(name, s);
    }
    return s;
  }

  /** StopTask in the emulator, and stop the process right away (the next poll would too). */
  private async stopTask(taskArn: string, reason: string): Promise<void> {
    await this.cfg.ecs.send(new StopTaskCommand({ cluster: this.cfg.cluster, task: taskArn, reason }));
    const r = this.cfg.record(taskArn);
    if (r !== undefined) this.cfg.stopProcess(r, reason);
  }
}
