import { createServer, type Server, type Socket } from "node:net";
import { callStorage } from "../core/call.js";
import type { Listener } from "../core/component.js";
import { ConfigError } from "../core/errors.js";
import { formatAddress, parseHostPort } from "../rpc/address.js";
import type { WeaveletHost } from "./weavelet.js";

/**
 * Opens the named listener: asks the deployer where to listen, listens there with `server` (a plain
 * node:net server by default), and asks the deployer to export it. `listening` gets the server as soon
 * as it listens, so it is closed at shutdown even if exporting fails.
 */
export async function openListener<S extends Server>(
  name: string,
  server: S | undefined,
  host: Pick<WeaveletHost, "getListenerAddress" | "exportListener">,
  listening: (server: S) => void,
): Promise<Listener<S>> {
  if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new ConfigError(`listener name ${JSON.stringify(name)}: use letters, digits, '-' and '_'`);
  const srv = (server ?? createServer()) as S;
  const want = await host.getListenerAddress(name);
  const { host: hostname, port } = parseHostPort(want);
  // Outside any call: the server's connections (and so its request handlers) belong to the async
  // context its listen() ran in, and a listener opened during a component call must not serve every
  // later request under that call's deadline, signal and trace.
  await callStorage.outside(
    () =>
      new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(new Error(`listener ${name}: cannot listen on ${want}: ${err.message}`));
        srv.once("error", onError);
        srv.listen(port, hostname, () => {
          srv.off("error", onError);
          resolve();
        });
      }),
  );
  listening(srv);
  const bound = srv.address();
  const address = typeof bound === "object" && bound ? formatAddress({ kind: "tcp", host: bound.address, port: bound.port }) : want;
  const publicAddress = (await host.exportListener(name, address)) || address;
  return { name, server: srv, address, publicAddress };
}

/**
 * Tracks a listener's open connections so {@link drainListener} can end them; call right after it listens.
 */
export function trackConnections(server: Server): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  return sockets;
}

/**
 * Stops a listener gracefully: it refuses new connections at once, keeps serving requests already
 * received until `deadline` (ms since the epoch), and ends the connections still open then. An HTTP
 * server's idle keep-alive connections are closed as they become idle, so no new request slips in.
 */
export async function drainListener(server: Server, sockets: Set<Socket>, deadline: number): Promise<void> {
  const closed = new Promise<void>((resolve) => {
    if (!server.listening) resolve();
    server.close(() => resolve());
  });
  const http = server as Server & { closeIdleConnections?: () => void };
  const idle = setInterval(() => http.closeIdleConnections?.(), 50);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))));
  try {
    await Promise.race([closed, late]);
  } finally {
    clearInterval(idle);
    clearTimeout(timer);
  }
  for (const s of sockets) s.destroy();
  await closed;
}
