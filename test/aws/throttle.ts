/**
 * An HTTP proxy on loopback in front of the AWS emulator that answers chosen API calls with AWS's real
 * throttling errors, and counts every call (per service and action) on the way through.
 *
 * Give a process the proxy's `endpoint` as `AWS_ENDPOINT_URL` (e.g. the Fargate simulator's
 * `processEndpoint` for the control plane) and arm it with `throttle("UpdateService", 2)`: the next two
 * UpdateService requests get
 *   - JSON protocols (ECS, Cloud Map, Secrets Manager, CloudWatch Logs, Application Auto Scaling):
 *     HTTP 400, `x-amzn-ErrorType: ThrottlingException`, `{"__type":"ThrottlingException","message":"Rate exceeded"}`;
 *   - query protocol (ELBv2, CloudFormation): HTTP 400 `<ErrorResponse><Error><Type>Sender</Type>
 *     <Code>Throttling</Code><Message>Rate exceeded</Message></Error>...`;
 *   - EC2: HTTP 503 `<Response><Errors><Error><Code>RequestLimitExceeded</Code>...`;
 * which the SDK classifies as throttling (retryable with backoff). Everything else is forwarded.
 * The action is read from `X-Amz-Target` (JSON), `Action=` in the body or query string (query
 * protocols) or the Smithy RPCv2 path; the service from the SigV4 credential scope of `Authorization`.
 * An `intercept` hook may answer a request itself (test/aws/gaps.ts plays what the emulator lacks there).
 */
import { randomUUID } from "node:crypto";
import http from "node:http";

export interface ThrottleRule {
  /** API action, e.g. "UpdateService", "RegisterInstance", "RegisterTargets". */
  readonly action: string;
  /** How many matching requests to throttle (then the rule is spent). */
  readonly count: number;
  /** Only requests to this service (SigV4 signing name: "ecs", "servicediscovery", "elasticloadbalancing", ...). */
  readonly service?: string;
  /** Error code to answer with instead of the protocol's usual throttling code. */
  readonly code?: string;
}

export interface ApiCall {
  readonly service: string;
  readonly action: string;
  readonly injected: boolean;
  readonly at: number;
}

/** A request the proxy received, for an {@link Interceptor}. */
export interface InterceptedRequest {
  readonly service: string;
  readonly action: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  /**
   * Sends a request to the emulator with these headers (the SigV4 signature is the original's: the
   * emulator does not check it), with `action` replaced (JSON protocol) and `body` if given.
   */
  forward(change?: { action?: string; body?: Buffer }): Promise<InterceptedResponse>;
}

export interface InterceptedResponse {
  readonly status: number;
  readonly headers: http.OutgoingHttpHeaders;
  readonly body: Buffer;
}

/** Answers a request itself, or returns undefined to let the proxy forward it. */
export type Interceptor = (req: InterceptedRequest) => Promise<InterceptedResponse | undefined>;

export interface ThrottleProxy {
  /** `http://127.0.0.1:<port>`: use it as AWS_ENDPOINT_URL. */
  readonly endpoint: string;
  /** Arms a rule: the next `count` (default 1) requests for `action` are throttled. */
  throttle(action: string, count?: number, opts?: { service?: string; code?: string }): void;
  /** Throttling errors answered so far (for `action`, or in total). */
  injected(action?: string): number;
  /** Requests seen so far, throttled or forwarded (for `action` or `service:action`, or in total). */
  calls(action?: string): number;
  /** Requests seen, by `service:action`. */
  counts(): Record<string, { calls: number; injected: number }>;
  /** Every request seen, in order. */
  log(): readonly ApiCall[];
  /** Forgets counts and log (rules stay). */
  reset(): void;
  stop(): Promise<void>;
}

/** Starts the proxy on a free port of 127.0.0.1, forwarding to `target` (the emulator). */
export async function startThrottleProxy(opts: {
  target: string;
  rules?: readonly ThrottleRule[];
  host?: string;
  intercept?: Interceptor;
}): Promise<ThrottleProxy> {
  const target = new URL(opts.target);
  const rules: { action: string; service?: string; code?: string; left: number }[] = (opts.rules ?? []).map((r) => ({
    ...r,
    left: r.count,
  }));
  let calls: ApiCall[] = [];

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const { service, action, protocol } = identify(req, body);
      const rule = rules.find((r) => r.left > 0 && r.action === action && (r.service === undefined || r.service === service));
      calls.push({ service, action, injected: rule !== undefined, at: Date.now() });
      if (rule !== undefined) {
        rule.left--;
        reply(res, protocol, service, rule.code);
        return;
      }
      if (opts.intercept !== undefined) {
        const forward = (change: { action?: string; body?: Buffer } = {}): Promise<InterceptedResponse> => {
          const headers = { ...req.headers };
          if (change.action !== undefined && typeof headers["x-amz-target"] === "string")
            headers["x-amz-target"] = headers["x-amz-target"].replace(/\.[^.]+$/, `.${change.action}`);
          const payload = change.body ?? body;
          headers["content-length"] = String(payload.length);
          return new Promise((resolve, reject) => {
            const up = http.request(
              { protocol: target.protocol, hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers },
              (r) => {
                const got: Buffer[] = [];
                r.on("data", (c: Buffer) => got.push(c));
                r.on("end", () => resolve({ status: r.statusCode ?? 502, headers: r.headers, body: Buffer.concat(got) }));
                r.on("error", reject);
              },
            );
            up.on("error", reject);
            up.end(payload);
          });
        };
        opts.intercept({ service, action, headers: req.headers, body, forward }).then(
          (answer) => {
            if (answer === undefined) return pass(body);
            const headers: http.OutgoingHttpHeaders = { ...answer.headers, "content-length": String(answer.body.length) };
            delete headers["transfer-encoding"];
            res.writeHead(answer.status, headers);
            res.end(answer.body);
          },
          (err: Error) => {
            res.writeHead(502, { "content-type": "text/plain" });
            res.end(`throttle proxy: intercepting ${service}:${action}: ${err.message}\n`);
          },
        );
        return;
      }
      pass(body);
    });
    const pass = (body: Buffer): void => {
      const upstream = http.request(
        {
          protocol: target.protocol,
          hostname: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on("error", (err) => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end(`throttle proxy: ${opts.target}: ${err.message}\n`);
      });
      upstream.end(body);
    };
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, opts.host ?? "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const matches = (c: ApiCall, action?: string): boolean =>
    action === undefined || c.action === action || `${c.service}:${c.action}` === action;

  return {
    endpoint: `http://${opts.host ?? "127.0.0.1"}:${port}`,
    throttle(action, count = 1, o = {}) {
      rules.push({ action, service: o.service, code: o.code, left: count });
    },
    injected: (action) => calls.filter((c) => c.injected && matches(c, action)).length,
    calls: (action) => calls.filter((c) => matches(c, action)).length,
    counts() {
      const out: Record<string, { calls: number; injected: number }> = {};
      for (const c of calls) {
        const k = `${c.service}:${c.action}`;
        const e = (out[k] ??= { calls: 0, injected: 0 });
        e.calls++;
        if (c.injected) e.injected++;
      }
      return out;
    },
    log: () => [...calls],
    reset() {
      calls = [];
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type Protocol = "json" | "query" | "ec2" | "cbor" | "unknown";

function identify(req: http.IncomingMessage, body: Buffer): { service: string; action: string; protocol: Protocol } {
  const auth = String(req.headers["authorization"] ?? "");
  const service = /Credential=[^/]+\/\d{8}\/[^/]+\/([^/]+)\/aws4_request/.exec(auth)?.[1] ?? "unknown";
  const amzTarget = req.headers["x-amz-target"];
  if (typeof amzTarget === "string" && amzTarget !== "") {
    return { service, action: amzTarget.slice(amzTarget.lastIndexOf(".") + 1), protocol: "json" };
  }
  const url = new URL(req.url ?? "/", "http://proxy");
  const rpc = /\/service\/[^/]+\/operation\/([^/?]+)/.exec(url.pathname);
  if (rpc) return { service, action: rpc[1]!, protocol: "cbor" };
  let action = url.searchParams.get("Action");
  if (action === null && String(req.headers["content-type"] ?? "").includes("application/x-www-form-urlencoded")) {
    action = new URLSearchParams(body.toString("utf8")).get("Action");
  }
  if (action !== null) return { service, action, protocol: service === "ec2" ? "ec2" : "query" };
  return { service, action: `${req.method} ${url.pathname}`, protocol: "unknown" };
}

function reply(res: http.ServerResponse, protocol: Protocol, service: string, code?: string): void {
  const requestId = randomUUID();
  if (protocol === "json" || protocol === "unknown" || protocol === "cbor") {
    const type = code ?? "ThrottlingException";
    res.writeHead(400, {
      "content-type": "application/x-amz-json-1.1",
      "x-amzn-requestid": requestId,
      "x-amzn-errortype": type,
    });
    res.end(JSON.stringify({ __type: type, message: "Rate exceeded" }));
    return;
  }
  if (protocol === "ec2") {
    const c = code ?? "RequestLimitExceeded";
    res.writeHead(503, { "content-type": "text/xml;charset=UTF-8" });
    res.end(
      `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${c}</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`,
    );
    return;
  }
  const c = code ?? "Throttling";
  const ns =
    service === "elasticloadbalancing"
      ? "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
      : service === "cloudformation"
        ? "http://cloudformation.amazonaws.com/doc/2010-05-15/"
        : "";
  res.writeHead(400, { "content-type": "text/xml", "x-amzn-requestid": requestId });
  res.end(
    `<ErrorResponse${ns ? ` xmlns="${ns}"` : ""}>\n  <Error>\n    <Type>Sender</Type>\n    <Code>${c}</Code>\n    <Message>Rate exceeded</Message>\n  </Error>\n  <RequestId>${requestId}</RequestId>\n</ErrorResponse>\n`,
  );
}
