/** Who and where this ECS task is. */
export interface TaskIdentity {
  taskArn: string;
  /** The last part of the task ARN: used as the Cloud Map instance id and the weavelet id. */
  taskId: string;
  /** The task's private IPv4 address (awsvpc networking: the address of its own network interface). */
  ip: string;
}

/** Reads the task's ARN and address from the ECS task metadata endpoint (v4). */
export async function taskIdentity(): Promise<TaskIdentity> {
  const base = process.env["ECS_CONTAINER_METADATA_URI_V4"];
  if (!base) throw new Error("ECS_CONTAINER_METADATA_URI_V4 is not set: `tsweaver aws agent|controlplane` runs inside an ECS task");
  let lastError: unknown;
  // The endpoint can lag the container's start by a moment.
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const res = await fetch(`${base}/task`);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const task = (await res.json()) as { TaskARN?: string; Containers?: { Networks?: { IPv4Addresses?: string[] }[] }[] };
      const ip = task.Containers?.flatMap((c) => c.Networks ?? []).flatMap((n) => n.IPv4Addresses ?? [])[0];
      if (!task.TaskARN || !ip) throw new Error("the response has no TaskARN or IPv4 address");
      return { taskArn: task.TaskARN, taskId: task.TaskARN.split("/").pop()!, ip };
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`cannot read the task metadata at ${base}/task: ${(lastError as Error).message}`);
}
