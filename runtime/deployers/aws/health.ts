/**
 * The agent's health endpoint: `GET /health` on a loopback-only port answers 200 while the weavelet
 * reports HEALTHY and 503 otherwise (starting, unhealthy, not answering, stopped). The group container's
 * ECS health check (`healthCheckCommand` in contract.ts) asks it, so ECS replaces a task whose weavelet
 * is unhealthy or hung instead of leaving it running, deregistered, forever.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { HealthStatus } from "../../protos/runtime.js";

/** How long the weavelet may take to answer one health request before it counts as unhealthy. */
const WEAVELET_HEALTH_TIMEOUT_MS = 2_000;

/** What the endpoint asks: the weavelet's health, or undefined while there is no weavelet (yet). */
export type HealthProbe = (timeoutMs: number) => Promise<HealthStatus | undefined>;

/** Serves the health endpoint on `host`:`port` (a loopback address; port 0: any free port); resolves once listening. */
export async function serveHealth(port: number, host: string, probe: HealthProbe): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" || req.url !== "/health") {
      res.writeHead(404).end();
      return;
    }
    void probe(WEAVELET_HEALTH_TIMEOUT_MS)
      .catch(() => "UNHEALTHY" as const)
      .then((status) => {
        const body = status ?? "STARTING";
        res.writeHead(status === "HEALTHY" ? 200 : 503, { "content-type": "text/plain" }).end(`${body}\n`);
      });
  });
  // Health checks are one short request each; a slow client must not hold a socket open.
  server.requestTimeout = 5_000;
  server.unref();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

/** The port a health server listens on. */
export function healthPort(server: http.Server): number {
  return (server.address() as AddressInfo).port;
}
