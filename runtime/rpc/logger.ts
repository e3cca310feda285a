/** The little the RPC layer needs from a logger; the weavelet adapts its own logger to this. */
export interface RpcLogger {
  /** Something failed that an operator should see (a peer sent garbage, a listener broke). */
  error(msg: string, attrs?: Record<string, unknown>): void;
  /** Something unexpected but handled (a handshake mismatch, a slow shutdown). */
  warn(msg: string, attrs?: Record<string, unknown>): void;
  /** Lifecycle events (listening, closed). */
  info(msg: string, attrs?: Record<string, unknown>): void;
  /** Per-connection detail (connects, reconnects). */
  debug(msg: string, attrs?: Record<string, unknown>): void;
}

/** A logger that drops everything: the default for client-side objects created without one. */
export const silentLogger: RpcLogger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
};
