import http from "node:http";
import type { AddressInfo } from "node:net";
import { parseHostPort } from "../../rpc/address.js";

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/**
 * An HTTP reverse proxy for one exported listener, spreading requests round-robin over the healthy
 * replicas that listen behind it (over all of them when none is healthy). A request without a body is
 * retried on another replica when its replica refuses the connection, or fails and the method is idempotent.
 */
export class ListenerProxy {
  private backends: string[] = [];
  /** Backends the deployer found UNHEALTHY: they get no requests while another one is healthy. */
  private readonly unhealthy = new Set<string>();
  private next = 0;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  private readonly server: http.Server;
  /** Requests received and not yet answered in full. */
  private inflight = 0;
  private drained: (() => void) | undefined;
  address = "";

  constructor(readonly listener: string) {
    this.server = http.createServer((req, res) => {
      this.inflight++;
      res.once("close", () => {
        if (--this.inflight === 0) this.drained?.();
      });
      this.forward(req, res, []);
    });
  }

  async listen(address: string): Promise<string> {
    const { host, port } = parseHostPort(address);
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", (err) =>
        reject(
          new Error(
            `cannot start the proxy for listener ${this.listener} on ${address}: ${err.message}${(err as NodeJS.ErrnoException).code === "EADDRINUSE" ? " (address in use: stop the other deployment or change [multi.listeners." + this.listener + "] address)" : ""}`,
          ),
        ),
      );
      this.server.listen(port, host, () => resolve());
    });
    const bound = this.server.address() as AddressInfo;
    this.address = `${host === "0.0.0.0" ? "localhost" : host}:${bound.port}`;
    return this.address;
  }

  add(backend: string): void {
    if (!this.backends.includes(backend)) this.backends.push(backend);
  }

  remove(backend: string): void {
    this.backends = this.backends.filter((b) => b !== backend);
    this.unhealthy.delete(backend);
  }

  /** Marks a backend healthy (it gets requests) or unhealthy (it gets none while others are healthy). */
  setHealthy(backend: string, healthy: boolean): void {
    if (healthy) this.unhealthy.delete(backend);
    else if (this.backends.includes(backend)) this.unhealthy.add(backend);
  }

  private usable(): string[] {
    if (this.unhealthy.size === 0) return this.backends;
    const healthy = this.backends.filter((b) => !this.unhealthy.has(b));
    return healthy.length > 0 ? healthy : this.backends;
  }

  get backendCount(): number {
    return this.backends.length;
  }

  /**
   * Stops taking work: new connections are refused at once, idle keep-alive connections are closed as
   * they become idle, and requests already received are forwarded and answered until `deadline` (ms since
   * the epoch). Resolves when none is left or the deadline passed (then the rest are cut off).
   */
  async drain(deadline: number): Promise<void> {
    this.server.close();
    const idle = setInterval(() => this.server.closeIdleConnections(), 50);
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      if (this.inflight === 0) resolve();
      this.drained = resolve;
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
    });
    clearInterval(idle);
    clearTimeout(timer);
    this.close();
  }

  /** Requests being forwarded now. */
  get inflightRequests(): number {
    return this.inflight;
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
    this.agent.destroy();
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse, tried: string[]): void {
    // A retry goes to a replica not tried yet (a concurrent request may have moved the round-robin on).
    const all = this.usable();
    const backends = tried.length === 0 ? all : all.filter((b) => !tried.includes(b));
    if (backends.length === 0) {
      res.writeHead(503, { "content-type": "text/plain" }).end(`no replica of listener ${this.listener} is ready\n`);
      return;
    }
    const backend = backends[this.next++ % backends.length]!;
    const { host, port } = parseHostPort(backend);
    const upstream = http.request(
      {
        host,
        port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, "x-forwarded-for": req.socket.remoteAddress ?? "" },
        agent: this.agent,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on("error", (err) => {
      if (res.headersSent) {
        res.destroy(err);
        return;
      }
      const noBody = !req.headers["content-length"] && !req.headers["transfer-encoding"];
      // A refused connection never carried the request: retrying it is safe whatever the method.
      const neverSent = (err as NodeJS.ErrnoException).code === "ECONNREFUSED";
      if (noBody && (IDEMPOTENT.has(req.method ?? "") || neverSent) && backends.length > 1) {
        this.forward(req, res, [...tried, backend]);
        return;
      }
      res.writeHead(502, { "content-type": "text/plain" }).end(`listener ${this.listener}: replica ${backend} failed: ${err.message}\n`);
    });
    req.pipe(upstream);
  }
}
