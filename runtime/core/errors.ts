/**
 * Error types every layer shares. A caller of a component sees exactly these, whether the callee ran
 * in the same process or across the network.
 */

/**
 * An error thrown by a component's implementation in another process. Its `name` and `message` are the
 * remote error's, so `err.name === "NotFound"` works the same for local and remote calls; `instanceof
 * RemoteCallError` tells that it crossed a process boundary.
 */
export class RemoteCallError extends Error {
  /** The `name` of the error the remote implementation threw. */
  readonly remoteName: string;
  /** The remote stack trace, when the remote side sent one. */
  readonly remoteStack: string | undefined;
  /** Component and method that failed, as `"app/Component.method"`. */
  readonly method: string;
  /** Own enumerable properties the remote error carried (e.g. `code`). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(remoteName: string, message: string, method: string, remoteStack?: string, details: Record<string, unknown> = {}) {
    super(message);
    this.remoteName = remoteName;
    this.remoteStack = remoteStack;
    this.method = method;
    this.details = details;
    // The remote name, not "RemoteCallError": callers branch on the name their callee threw.
    this.name = remoteName;
  }
}

/**
 * A call failed in transport: no replica reachable, connection lost before the reply, or the peer refused
 * the frame. The call may or may not have run. Retrying is safe for idempotent methods, and the runtime
 * does it for every method not declared `noRetry`.
 */
export class TransportError extends Error {
  override readonly name = "TransportError";
  readonly retryable = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The call's deadline passed before a reply arrived. The callee was told to stop (its signal aborted). */
export class DeadlineExceededError extends Error {
  override readonly name = "DeadlineExceededError";
  readonly retryable = false;
}

/** The caller aborted the call through its AbortSignal. The callee was told to stop. */
export class CallCancelledError extends Error {
  override readonly name = "CallCancelledError";
  readonly retryable = false;
}

/** A configuration problem: names the file and key to fix. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** True for errors the runtime retries on another replica (for methods that allow retries). */
export function isRetryable(err: unknown): boolean {
  return err instanceof TransportError;
}
