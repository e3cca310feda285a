/**
 * Error types every layer shares. A caller of a component sees exactly these, whether the callee ran
 * in the same process or across the network.
 */

/**
 * An error thrown by a component's implementation in another process, of a class not registered with
 * {@link registerError}. Its `name` and `message` are the remote error's and the remote error's own
 * enumerable properties (e.g. `code`) are its own too, so `err.name === "NotFound"` and `err.code` read
 * the same for local and remote calls; `instanceof RemoteCallError` tells that it crossed a process
 * boundary. A registered error is rebuilt as its own class instead, with a RemoteCallError as `cause`.
 */
export class RemoteCallError extends Error {
  /** The `name` of the error the remote implementation threw. */
  declare readonly remoteName: string;
  /** The remote stack trace, when the remote side sent one. */
  declare readonly remoteStack: string | undefined;
  /** Component and method that failed, as `"app/Component.method"`. */
  declare readonly method: string;
  /** Own enumerable properties the remote error carried (e.g. `code`), also copied onto this error. */
  declare readonly details: Readonly<Record<string, unknown>>;

  constructor(remoteName: string, message: string, method: string, remoteStack?: string, details: Record<string, unknown> = {}) {
    super(message);
    // Not enumerable: the error's own enumerable properties are the remote error's, as they are locally.
    hide(this, "remoteName", remoteName);
    hide(this, "remoteStack", remoteStack);
    hide(this, "method", method);
    hide(this, "details", details);
    // The remote name, not "RemoteCallError": callers branch on the name their callee threw. Own and
    // enumerable, as it is on an error that sets its name in its constructor or as a class field.
    this.name = remoteName;
    for (const [k, v] of Object.entries(details)) if (!(k in this)) (this as Record<string, unknown>)[k] = v;
  }
}

function hide(o: object, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, writable: true, configurable: true, enumerable: false });
}

/** An error class users may register: any subclass of Error. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- constructors of any signature are accepted; they are never called
export type ErrorClass = abstract new (...args: any[]) => Error;

const errorClasses = new Map<string, ErrorClass>();
const errorNames = new Map<object, string>();

/**
 * Registers an error class so that a component method throwing it reaches a caller in another process as
 * an instance of that class (`instanceof` works, the same `name`, `message` and own enumerable
 * properties), as it does in the same process. The remote instance is made without calling the
 * constructor; its `cause` is a RemoteCallError holding the callee's stack and the method. `name`
 * identifies the class on the wire (default: the class name); register at module level, so that every
 * process of the app has the same registrations.
 */
export function registerError(cls: ErrorClass, name: string = cls.name): void {
  const known = errorClasses.get(name);
  if (known !== undefined && known !== cls)
    throw new ConfigError(`registerError: two error classes are registered as "${name}"; pass a distinct name to one of them`);
  errorClasses.set(name, cls);
  errorNames.set(cls.prototype as object, name);
}

/** The registered name of `err`'s most derived registered class, if any. */
export function registeredErrorName(err: object): string | undefined {
  for (
    let p = Object.getPrototypeOf(err) as object | null;
    p !== null && p !== Error.prototype;
    p = Object.getPrototypeOf(p) as object | null
  ) {
    const name = errorNames.get(p);
    if (name !== undefined) return name;
  }
  return undefined;
}

/** What a caller learns of an error thrown by a remote implementation. */
export interface RemoteErrorInfo {
  /** The registered name of its class, if its class was registered. */
  type?: string | undefined;
  name: string;
  message: string;
  stack?: string | undefined;
  details: Record<string, unknown>;
}

/**
 * The error a caller sees for one a remote implementation of `method` threw: an instance of its
 * registered class when there is one here, else a RemoteCallError.
 */
export function remoteError(e: RemoteErrorInfo, method: string): Error {
  const remote = new RemoteCallError(e.name, e.message, method, e.stack, e.details);
  const cls = e.type === undefined ? undefined : errorClasses.get(e.type);
  if (cls === undefined) return remote;
  const err = Object.create(cls.prototype as object) as Error;
  hide(err, "message", e.message);
  Error.captureStackTrace(err, remoteError);
  if (err.name !== e.name) (err as { name: string }).name = e.name;
  Object.assign(err, e.details);
  hide(err, "cause", remote);
  return err;
}

/**
 * A call failed in transport: no replica reachable, connection lost before the reply, or the peer refused
 * the frame. The call may or may not have run. Retrying is safe for idempotent methods, and the runtime
 * does it for every method not declared `noRetry`.
 */
export class TransportError extends Error {
  override readonly name = "TransportError";
  readonly retryable = true;
  /**
   * True when the call was never sent (its connection was closing or down): it did not run, so the
   * runtime retries it even for a method declared `noRetry`.
   */
  readonly notSent: boolean;
  constructor(message: string, options?: { cause?: unknown; notSent?: boolean }) {
    super(message, options);
    this.notSent = options?.notSent ?? false;
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

// The runtime's own errors mean the same wherever they were thrown (a callee rethrowing its own call's
// DeadlineExceededError, a component's ConfigError). TransportError is not among them: it would make the
// caller's balancer retry a call that did run.
registerError(DeadlineExceededError);
registerError(CallCancelledError);
registerError(ConfigError);
