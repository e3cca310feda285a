import http from "node:http";
import type { AddressInfo } from "node:net";
import { parseHostPort } from "../../rpc/address.js";

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/**
 * An HTTP reverse proxy for one exported listener, spreading requests round-robin over the replicas
 * that listen behind it. A replica that refuses a connection is skipped for requests without a body.
 */
export class ListenerProxy {
  private backends: string[] = [];
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
      this.forward(req, res, 0);
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

  private forward(req: http.IncomingMessage, res: http.ServerResponse, attempt: number): void {
    if (this.backends.length === 0) {
      res.writeHead(503, { "content-type": "text/plain" }).end(`no replica of listener ${this.listener} is ready\n`);
      return;
    }
    const backend = this.backends[this.next++ % this.backends.length]!;
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
      const noBody = IDEMPOTENT.has(req.method ?? "") && !req.headers["content-length"] && !req.headers["transfer-encoding"];
      if (noBody && attempt + 1 < this.backends.length) {
        this.forward(req, res, attempt + 1);
        return;
      }
      res.writeHead(502, { "content-type": "text/plain" }).end(`listener ${this.listener}: replica ${backend} failed: ${err.message}\n`);
    });
    req.pipe(upstream);
  }
}
