/** A parsed RPC address: `"host:port"` (TCP) or `"unix:/path/to.sock"` (Unix domain socket). */
export type RpcAddress =
  { readonly kind: "tcp"; readonly host: string; readonly port: number } | { readonly kind: "unix"; readonly path: string };

/** Parses `"host:port"`, `"[v6]:port"` or `"unix:/path"`; throws a clear Error for anything else. */
export function parseAddress(address: string): RpcAddress {
  if (address.startsWith("unix:")) {
    const path = address.slice(5);
    if (path === "") throw new Error(`bad RPC address "${address}": empty unix socket path`);
    return { kind: "unix", path };
  }
  const colon = address.lastIndexOf(":");
  if (colon <= 0) throw new Error(`bad RPC address "${address}": expected "host:port" or "unix:/path"`);
  let host = address.slice(0, colon);
  const portText = address.slice(colon + 1);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new Error(`bad RPC address "${address}": port must be 0..65535`);
  return { kind: "tcp", host, port };
}

/** Formats an address back to its string form (IPv6 hosts get brackets). */
export function formatAddress(a: RpcAddress): string {
  if (a.kind === "unix") return `unix:${a.path}`;
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * Parses a TCP address to listen on or dial, "host:port" or "[v6]:port"; an empty host (":8080") means
 * every interface. Throws naming the address for anything else (including unix sockets).
 */
export function parseHostPort(address: string): { host: string; port: number } {
  const a = parseAddress(address.startsWith(":") ? `0.0.0.0${address}` : address);
  if (a.kind !== "tcp") throw new Error(`bad address "${address}": expected "host:port", not a unix socket`);
  return { host: a.host, port: a.port };
}
