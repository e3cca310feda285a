import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * The agent → control plane API: JSON over HTTP/1.1 keep-alive. Every request carries the deployment
 * secret (`authorization: Bearer <secret>`) and the ARN of the task its agent runs in
 * ({@link TASK_HEADER}), comes from that task's own address, and holds a body of the method's fields
 * ({@link BODY_FIELDS}); the control plane checks every claim in it against what ECS says about the
 * task. Anything else is refused (401/403/400/413) and logged.
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
  /**
   * Signs the task's certificate request with the deployment CA: a short-lived certificate for TLS
   * component calls that names the deployment, version and group of the task the caller check verified
   * (the CSR contributes only its public key). Asked at start and again before each expiry.
   */
  certificate(req: CertificateRequest): Promise<CertificateReply>;
}

/** A task's certificate signing request, with the claims the caller check verifies like any other. */
export interface CertificateRequest {
  taskArn: string;
  group: string;
  version: string;
  /** PEM PKCS#10 request for an ECDSA P-256 key the agent generated and keeps. */
  csr: string;
}

/** A signed certificate and the CA that signed it. */
export interface CertificateReply {
  /** PEM certificate for the task's key. */
  certificate: string;
  /** PEM certificate of the deployment CA (the only issuer weavelets trust). */
  ca: string;
  /** When the certificate expires (ISO 8601): renew well before. */
  notAfter: string;
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
  /**
   * Whether the weavelet served component calls since the previous report: busy replicas are protected
   * from scale-in. Unset: unknown (the first report), nothing changes.
   */
  busy?: boolean;
}

export type Method = keyof ControlApi;

/** Header naming the task an agent speaks for (its ARN); the control plane binds every request to it. */
export const TASK_HEADER = "x-tsweaver-task";

/** Largest request body the control plane reads (bytes); larger ones get 413. */
export const MAX_BODY_BYTES = 64 * 1024;

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

// ---- request bodies ----

/** Checks one field's value; returns what is wrong with it, or undefined. */
type FieldCheck = (v: unknown) => string | undefined;

const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;
const GROUP = /^[a-z0-9][a-z0-9-]{0,62}$/;
const COMPONENT = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;
const TASK_ARN = /^arn:[a-z-]+:ecs:[a-z0-9-]+:\d{12}:task\/[A-Za-z0-9_-]{1,255}(\/[A-Za-z0-9_-]{1,64})?$/;
const TASK_ID = /^[A-Za-z0-9_-]{1,64}$/;
const VERSION = /^v[0-9a-f]{10}$/;
const CSR = /^-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE REQUEST-----\r?\n?$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

const str =
  (re: RegExp, max: number, what: string): FieldCheck =>
  (v) =>
    typeof v === "string" && v.length <= max && re.test(v) ? undefined : `must be ${what} (at most ${max} characters)`;
const int =
  (min: number, max: number): FieldCheck =>
  (v) =>
    typeof v === "number" && Number.isSafeInteger(v) && v >= min && v <= max ? undefined : `must be an integer from ${min} to ${max}`;
const bool: FieldCheck = (v) => (typeof v === "boolean" ? undefined : "must be true or false");
const port = int(1, 65535);
const count = int(0, 1_000_000_000);
const listenerPorts: FieldCheck = (v) => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "must be an object of listener name → port";
  const entries = Object.entries(v);
  if (entries.length > 64) return "must name at most 64 listeners";
  for (const [k, p] of entries) {
    if (!NAME.test(k)) return `has an invalid listener name ${JSON.stringify(k.slice(0, 64))}`;
    if (port(p) !== undefined) return `.${k} ${port(p)!}`;
  }
  return undefined;
};

/** A body field: its check, and whether it may be left out. */
interface Field {
  readonly check: FieldCheck;
  readonly optional?: boolean;
}
const f = (check: FieldCheck, optional = false): Field => ({ check, optional });

const taskArn = f(str(TASK_ARN, 512, "an ECS task ARN"));
const group = f(str(GROUP, 63, "a group name ([a-z0-9-])"));
const version = f(str(VERSION, 11, "a version id (v + 10 hex digits)"));
const listener = f(str(NAME, 63, "a listener name"));
const ip = f(str(IPV4, 15, "an IPv4 address"));
const replicaReport: Readonly<Record<keyof ReplicaReport, Field>> = {
  taskArn,
  taskId: f(str(TASK_ID, 64, "a task id")),
  group,
  ip,
  port: f(port),
  weaveletId: f(str(TASK_ID, 64, "a weavelet id")),
  version,
  listeners: f(listenerPorts),
  calls: f(count, true),
  errors: f(count, true),
  busy: f(bool, true),
};

/**
 * What each method's body may hold: exactly these fields (no others), each of its type and within its
 * bounds. A method of {@link ControlApi} without an entry here does not compile.
 */
export const BODY_FIELDS: { readonly [M in Method]: Readonly<Record<string, Field>> } = {
  activate: {
    taskArn,
    group,
    component: f(str(COMPONENT, 200, "a component name")),
    routed: f(bool),
    version,
    componentGroup: { ...group, optional: true },
  },
  ready: replicaReport,
  listenerPort: { listener },
  exportListener: { taskArn, listener, ip, port: f(port), version },
  stopping: replicaReport,
  spans: { count: f(count) },
  certificate: { taskArn, group, version, csr: f(str(CSR, 4096, "a PEM certificate request")) },
};

/** Methods a task may still call once ECS reports it STOPPED (its agent deregistering on the way out). */
const CALLABLE_WHEN_STOPPED: ReadonlySet<Method> = new Set<Method>(["stopping"]);

/** The body checked against {@link BODY_FIELDS}; throws a 400 ControlApiError naming the field. */
export function validateBody(method: Method, body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new ControlApiError(`${method}: the body must be a JSON object`, 400);
  const fields = BODY_FIELDS[method];
  for (const key of Object.keys(body)) {
    // Own properties only (JSON.parse makes "__proto__" one): never a name the runtime stores under.
    if (!Object.prototype.hasOwnProperty.call(fields, key))
      throw new ControlApiError(
        `${method}: unknown field ${JSON.stringify(key.slice(0, 64))} (allowed: ${Object.keys(fields).join(", ")})`,
        400,
      );
  }
  const record = body as Record<string, unknown>;
  for (const [key, field] of Object.entries(fields)) {
    const v = record[key];
    if (v === undefined) {
      if (field.optional) continue;
      throw new ControlApiError(`${method}: field ${key} is missing`, 400);
    }
    const why = field.check(v);
    if (why !== undefined) throw new ControlApiError(`${method}: field ${key} ${why}`, 400);
  }
  return record;
}

// ---- the server ----

/** A request that passed the secret and body checks, for the caller check to bind to a task. */
export interface CallerClaim {
  readonly method: Method;
  /** The validated body. */
  readonly body: Readonly<Record<string, unknown>>;
  /** The connection's source address (IPv4, as the task's ENI address would be). */
  readonly sourceIp: string;
  /** The task the agent says it speaks for ({@link TASK_HEADER}). */
  readonly taskArn: string;
  /** True for a method a stopped task may still call ({@link CALLABLE_WHEN_STOPPED}). */
  readonly stoppedTaskMayCall: boolean;
}

/** A refused request, for the control plane's (rate-limited) log. */
export interface Rejection {
  readonly status: number;
  readonly why: string;
  readonly peer: string;
  readonly method: string;
  readonly task: string;
}

export interface ControlApiServerOptions {
  readonly host: string;
  readonly port: number;
  /** The secrets accepted now: the current one, and the previous one while a rotation is under way. */
  readonly secrets: () => readonly string[];
  readonly api: ControlApi;
  /**
   * Binds a request to a task and checks its claims, for every method alike; throws a ControlApiError
   * (403, or 400 for names the deployment does not know) to refuse it.
   */
  readonly verifyCaller: (claim: CallerClaim) => Promise<void>;
  readonly onReject: (rejection: Rejection) => void;
  /** Default {@link MAX_BODY_BYTES}. */
  readonly maxBodyBytes?: number;
}

function sameSecret(header: string | undefined, secrets: readonly string[]): boolean {
  const got = Buffer.from(header ?? "");
  let ok = false;
  // Compared with every accepted secret, each in constant time: no early exit tells which one matched.
  for (const secret of secrets) {
    const want = Buffer.from(`Bearer ${secret}`);
    if (secret !== "" && got.length === want.length && timingSafeEqual(got, want)) ok = true;
  }
  return ok;
}

/** Bodies past the limit are read and dropped up to this many bytes (so the agent gets its 413), then cut off. */
const DISCARD_LIMIT = 8 * 1024 * 1024;

/**
 * Serves the API on host:port; returns the server once listening. Every request passes, in order: the
 * deployment secret (401), a known method (404), the task header (401), the body size (413), JSON (400),
 * the method's body fields (400), and `verifyCaller` (403/400); only then does the method run.
 */
export async function serveControlApi(opts: ControlApiServerOptions): Promise<{ server: http.Server; port: number }> {
  if (opts.secrets().every((s) => s === "")) throw new Error("the deployment secret is empty: refusing to serve unauthenticated agents");
  const maxBody = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  const server = http.createServer((req, res) => {
    const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    const method = (req.url ?? "").replace(/^\/v1\//, "");
    const task = String(req.headers[TASK_HEADER] ?? "").slice(0, 512);
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    };
    const refuse = (status: number, why: string): void => {
      opts.onReject({ status, why, peer, method: method.slice(0, 64), task });
      reply(status, { error: why });
    };
    if (!sameSecret(req.headers.authorization, opts.secrets())) {
      req.resume();
      return refuse(401, "unauthenticated: the deployment secret does not match");
    }
    if (req.method !== "POST" || !Object.prototype.hasOwnProperty.call(BODY_FIELDS, method)) {
      req.resume();
      return refuse(404, `unknown call ${req.method} ${(req.url ?? "").slice(0, 100)}`);
    }
    const m = method as Method;
    if (!TASK_ARN.test(task)) {
      req.resume();
      return refuse(401, `unauthenticated: the ${TASK_HEADER} header must name the caller's ECS task`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= maxBody) chunks.push(c);
      else if (size > DISCARD_LIMIT) req.destroy();
    });
    req.on("end", () => {
      if (size > maxBody) return refuse(413, `${m}: the body has ${size} bytes; at most ${maxBody} are accepted`);
      let body: Record<string, unknown>;
      try {
        body = validateBody(m, JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch (err) {
        return refuse(400, err instanceof ControlApiError ? err.message : `${m}: malformed JSON body`);
      }
      const sourceIp = (req.socket.remoteAddress ?? "").replace(/^::ffff:/, "");
      opts.verifyCaller({ method: m, body, sourceIp, taskArn: task, stoppedTaskMayCall: CALLABLE_WHEN_STOPPED.has(m) }).then(
        () =>
          (opts.api[m] as (b: unknown) => Promise<unknown>)(body).then(
            (out) => reply(200, out),
            (err: Error) => reply(err instanceof ControlApiError ? err.status : 500, { error: err.message }),
          ),
        (err: Error) => refuse(err instanceof ControlApiError ? err.status : 503, err.message),
      );
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
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
    /** The task this agent runs in: its ARN (sent with every call) and address (every connection's source). */
    private readonly task: { readonly taskArn: string; readonly ip: string },
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

  certificate(req: CertificateRequest) {
    return this.call<CertificateReply>("certificate", req);
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
          // The control plane checks that a request comes from the claimed task's ENI address.
          localAddress: this.task.ip,
          timeout: 30_000,
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(payload),
            authorization: `Bearer ${this.secret}`,
            [TASK_HEADER]: this.task.taskArn,
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
