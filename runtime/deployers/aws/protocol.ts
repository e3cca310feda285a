import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * The agent → control plane API: JSON over HTTP/1.1 keep-alive, every request authenticated with the
 * deployment secret (`authorization: Bearer <secret>`); anything else gets 401 and is logged.
 */
export interface ControlApi {
  /**
   * The weavelet in `taskArn` (of `version`) needs `component`, hosted by `componentGroup`: raise that
   * group's service of the same version.
   */
  activate(req: {
    taskArn: string;
    group: string;
    component: string;
    routed: boolean;
    version: string;
    componentGroup?: string;
  }): Promise<Record<string, never>>;
  /** A task's weavelet is ready (handshake done, healthy): register it as a replica. Re-sent as a heartbeat. */
  ready(req: ReplicaReport): Promise<Record<string, never>>;
  /** Where a listener must listen inside the task (its container port). */
  listenerPort(req: { listener: string }): Promise<{ port: number }>;
  /** The task listens for `listener` at ip:port: put it behind the load balancer. */
  exportListener(req: { taskArn: string; listener: string; ip: string; port: number; version: string }): Promise<{ url: string }>;
  /**
   * The task is stopping: deregister it everywhere now rather than at the next reconcile. Answers the
   * longest deregistration delay of the target groups it was in: the load balancer may still send it
   * requests until then.
   */
  stopping(req: ReplicaReport): Promise<StoppingReply>;
  /** Finished spans (dropped with a counter unless an exporter is configured). */
  spans(req: { count: number }): Promise<Record<string, never>>;
}

/** What a stopping task must wait for before it stops serving. */
export interface StoppingReply {
  /** Seconds the load balancer keeps finishing (and may still start) requests on the deregistered targets. */
  deregistrationDelaySeconds?: number;
}

/** A replica as its agent describes it. */
export interface ReplicaReport {
  taskArn: string;
  taskId: string;
  group: string;
  ip: string;
  port: number;
  weaveletId: string;
  /** The version the task runs: its registrations carry it, and its listener targets go to its target group. */
  version: string;
  /** Listener name → port it listens on in the task (re-exported after a control plane restart). */
  listeners: Record<string, number>;
  /** Component method calls the weavelet made since the previous report, and how many failed (rollout error rates). */
  calls?: number;
  errors?: number;
}

type Method = keyof ControlApi;
const METHODS: readonly Method[] = ["activate", "ready", "listenerPort", "exportListener", "stopping", "spans"];

/** An error the control plane reports to an agent (and the agent to its weavelet). */
export class ControlApiError extends Error {
  override readonly name = "ControlApiError";
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

function sameSecret(header: string | undefined, secret: string): boolean {
  const want = Buffer.from(`Bearer ${secret}`);
  const got = Buffer.from(header ?? "");
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Serves the API on host:port; returns the server once listening. */
export async function serveControlApi(
  host: string,
  port: number,
  secret: string,
  api: ControlApi,
  onReject: (why: string, peer: string) => void,
): Promise<{ server: http.Server; port: number }> {
  if (!secret) throw new Error("the deployment secret is empty: refusing to serve unauthenticated agents");
  const server = http.createServer((req, res) => {
    const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    if (!sameSecret(req.headers.authorization, secret)) {
      onReject("bad or missing deployment secret", peer);
      res
        .writeHead(401, { "content-type": "application/json" })
        .end(JSON.stringify({ error: "unauthenticated: the deployment secret does not match" }));
      return;
    }
    const method = (req.url ?? "").replace(/^\/v1\//, "") as Method;
    if (req.method !== "POST" || !METHODS.includes(method)) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: `unknown call ${req.method} ${req.url}` }));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > 1 << 20) req.destroy();
      else chunks.push(c);
    });
    req.on("end", () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: "malformed JSON body" }));
        return;
      }
      (api[method] as (b: unknown) => Promise<unknown>)(body).then(
        (out) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(out)),
        (err: Error) => res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: err.message })),
      );
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}

/**
 * The agent's side. `locate` finds the control plane's address (Cloud Map); it is asked again whenever a
 * call cannot connect, so a restarted control plane (new task, new address) is found.
 */
export class ControlApiClient implements ControlApi {
  private base: string | undefined;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

  constructor(
    private readonly secret: string,
    private readonly locate: () => Promise<string>,
    /**
     * How long a call keeps retrying while the control plane is unreachable. Default: forever (with
     * backoff): a control plane being replaced is a pause, never a reason for a task to give up.
     */
    private readonly retryForMs = Number.POSITIVE_INFINITY,
  ) {}

  activate(req: Parameters<ControlApi["activate"]>[0]) {
    return this.call<Record<string, never>>("activate", req);
  }
  ready(req: ReplicaReport) {
    return this.call<Record<string, never>>("ready", req);
  }
  listenerPort(req: { listener: string }) {
    return this.call<{ port: number }>("listenerPort", req);
  }
  exportListener(req: Parameters<ControlApi["exportListener"]>[0]) {
    return this.call<{ url: string }>("exportListener", req);
  }
  stopping(req: ReplicaReport) {
    return this.call<StoppingReply>("stopping", req, 2_000);
  }
  spans(req: { count: number }) {
    return this.call<Record<string, never>>("spans", req, 5_000);
  }

  close(): void {
    this.agent.destroy();
  }

  private async call<T>(method: Method, body: unknown, retryForMs = this.retryForMs): Promise<T> {
    const deadline = Date.now() + retryForMs;
    let delay = 100;
    for (;;) {
      try {
        this.base ??= await this.locate();
        return await this.post<T>(this.base, method, body);
      } catch (err) {
        // The control plane answered with an error: that is the answer. Otherwise it is unreachable:
        // find it again (it may have moved) and retry until the deadline.
        if (err instanceof ControlApiError) throw err;
        this.base = undefined;
        if (Date.now() + delay > deadline)
          throw new Error(`control plane unreachable for ${retryForMs} ms (${method}): ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5_000);
      }
    }
  }

  private post<T>(base: string, method: Method, body: unknown): Promise<T> {
    const payload = JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = http.request(
        `${base}/v1/${method}`,
        {
          method: "POST",
          agent: this.agent,
          timeout: 30_000,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(payload),
            authorization: `Bearer ${this.secret}`,
          },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (text += c));
          res.on("end", () => {
            let parsed: { error?: string } = {};
            try {
              parsed = JSON.parse(text) as { error?: string };
            } catch {
              // fall through with the raw text
            }
            if (res.statusCode === 200) resolve(parsed as T);
            else reject(new ControlApiError(`control plane: ${parsed.error ?? text}`, res.statusCode ?? 0));
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out")));
      req.on("error", reject);
      req.end(payload);
    });
  }
}
