import { createHash } from "node:crypto";
import type { Server } from "node:net";
import { ConfigError } from "./errors.js";
import type { Logger } from "./logger.js";
import type { RoutingKey } from "./routing.js";

/** Names of the methods of T that return promises (the ones a remote stub can call). */
export type MethodName<T> = {
  [K in keyof T]: T[K] extends (...args: never[]) => Promise<unknown> ? K : never;
}[keyof T] &
  string;

/**
 * Affinity routing for some methods: a function from the method's arguments to a key. Calls with equal
 * keys go to the same replica while the replica set is stable (e.g. route a cart's calls by user id).
 */
export type Router<T> = {
  [K in MethodName<T>]?: T[K] extends (...args: infer A) => Promise<unknown> ? (...args: A) => RoutingKey : never;
};

/** Options given when declaring a component. */
export interface ComponentOptions<T> {
  /**
   * The methods of the component's interface, the only ones other components can call: the method table
   * is built from this list, never from the implementation, so a helper method of the class (or `main`)
   * is never callable from another process. `register` checks that the implementation has each one.
   */
  methods: readonly MethodName<T>[];
  /** Routes the listed methods by key (see Router); the component then gets a slice assignment. */
  router?: Router<T>;
  /**
   * Methods that must not be retried when a call fails in transport (the call may have run once already).
   * Every other method is retried on another replica.
   */
  noRetry?: readonly MethodName<T>[];
}

/**
 * A declared component: the value you pass to `ctx.get()` and `register()`. Declare it with the same name
 * as its interface and list the interface's methods:
 * `export const Cart = component<Cart>("shop/Cart", { methods: ["addItem", "getCart"] })`.
 */
export interface ComponentRef<T extends object> {
  /** Stable name, unique in the app (`"app/Component"`); deployers, config and logs use it. */
  readonly name: string;
  /** The interface's methods as declared (sorted, no duplicates): the only ones callable on it. */
  readonly methods: readonly string[];
  /** Methods that are not retried on transport failure. */
  readonly noRetry: ReadonlySet<string>;
  /** Key functions of routed methods, by method name; undefined for a component without a router. */
  readonly router: Readonly<Record<string, (...args: never[]) => RoutingKey>> | undefined;
  /** Carries the interface type; never set at run time. */
  readonly __type?: T;
}

/** A listener the deployer placed, returned by `ctx.listener()`. */
export interface Listener<S extends Server = Server> {
  /** The name given to `ctx.listener()`. */
  readonly name: string;
  /** The server, already listening. */
  readonly server: S;
  /** "host:port" this process listens on. */
  readonly address: string;
  /** Where users reach the listener: the deployer's proxy or load balancer, else `address`. */
  readonly publicAddress: string;
}

/** What a component implementation receives in its constructor. */
export interface Context {
  /** The component's name. */
  readonly name: string;
  /** Structured logger labelled with this component. */
  readonly logger: Logger;
  /**
   * Another component: the local instance if it runs in this process, else a stub with the same type
   * whose calls go over the network.
   */
  get<T extends object>(ref: ComponentRef<T>): Promise<T>;
  /**
   * A network listener at the address the deployer chooses. Pass your (not yet listening) server, e.g.
   * `http.createServer(handler)`; it is listening when the promise resolves. Without one, a plain
   * `net.Server` is created.
   */
  listener<S extends Server = Server>(name: string, server?: S): Promise<Listener<S>>;
  /**
   * This component's section of weaver.toml merged over `defaults`. Keys not in `defaults`, or values of
   * another type, are errors naming the key.
   */
  config<C extends Record<string, unknown>>(defaults: C): C;
}

/** Optional hooks of an implementation. */
export interface Lifecycle {
  /** Called once after construction, before the component serves anything. */
  init?(): Promise<void> | void;
  /** Called once on graceful stop, in reverse order of construction. */
  shutdown?(): Promise<void> | void;
}

/** The class implementing a component. */
export type Implementation<T extends object> = new (ctx: Context) => T & Lifecycle;

/** The app's entry component: its `main()` runs once, in one process of the deployment. */
export interface Main {
  main(): Promise<void>;
}

/**
 * Declares a component and the methods of its interface (`options.methods`). `name` must be stable across
 * versions: it addresses the component.
 */
export function component<T extends object>(name: string, options: ComponentOptions<T>): ComponentRef<T> {
  if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)+$/.test(name)) {
    throw new ConfigError(`component name ${JSON.stringify(name)} must look like "app/Component"`);
  }
  // Called from JavaScript, options may be missing: the error says what to declare.
  const methods = declaredMethods(name, (options as Partial<ComponentOptions<T>> | undefined)?.methods);
  for (const [what, list] of [
    ["noRetry", options.noRetry ?? []],
    ["router", Object.keys(options.router ?? {})],
  ] as const) {
    const unknown = list.filter((m) => !methods.includes(m));
    if (unknown.length > 0) {
      throw new ConfigError(
        `component ${name}: ${what} names ${unknown.join(", ")}, not in its methods (declared: ${methods.join(", ") || "none"})`,
      );
    }
  }
  const router = options.router as Record<string, (...args: never[]) => RoutingKey> | undefined;
  return {
    name,
    methods,
    noRetry: new Set(options.noRetry ?? []),
    router: router && Object.keys(router).length > 0 ? router : undefined,
  };
}

/** Checks a component's declared method list; returns it sorted. */
function declaredMethods(component: string, list: unknown): string[] {
  if (!Array.isArray(list)) {
    throw new ConfigError(
      `component ${component}: declare the methods of its interface, e.g. component<I>("${component}", { methods: ["a", "b"] }) ` +
        `(found methods: ${list === undefined ? "none" : JSON.stringify(list)})`,
    );
  }
  const seen = new Set<string>();
  for (const m of list) {
    if (typeof m !== "string" || !/^[A-Za-z_$][\w$]*$/.test(m) || HOOKS.has(m)) {
      throw new ConfigError(
        `component ${component}: methods: ${JSON.stringify(m)} is not a method name (allowed: identifiers other than ${[...HOOKS].join(", ")})`,
      );
    }
    if (seen.has(m)) throw new ConfigError(`component ${component}: methods: ${m} is listed twice`);
    seen.add(m);
  }
  return [...seen].sort();
}

/** A registered component with its method table. */
export interface Registration {
  readonly ref: ComponentRef<object>;
  readonly impl: Implementation<object>;
  /** Method names callable remotely, sorted: the declared methods of the interface (`ref.methods`). */
  readonly methods: readonly string[];
}

/** Lifecycle hooks and the constructor: never component methods. */
const HOOKS = new Set(["constructor", "init", "shutdown"]);

/** Checks that `impl` implements every declared method of `ref` (as a method of the class, own or inherited). */
function checkImplements(ref: ComponentRef<object>, impl: Implementation<object>): void {
  const missing = ref.methods.filter((m) => {
    for (
      let proto = impl.prototype as object | null;
      proto && proto !== Object.prototype;
      proto = Object.getPrototypeOf(proto) as object | null
    ) {
      const desc = Object.getOwnPropertyDescriptor(proto, m);
      if (desc !== undefined) return typeof desc.value !== "function";
    }
    return true;
  });
  if (missing.length > 0) {
    throw new ConfigError(
      `component ${ref.name}: its implementation ${impl.name || "(anonymous class)"} has no method ${missing.join(", ")} ` +
        `(declared in component(..., { methods }))`,
    );
  }
}

const registrations = new Map<string, Registration>();
/** The method table (see `methodTable`). */
export interface MethodTable {
  /** Identifies the table; RPC peers compare it at connection time. */
  readonly hash: string;
  /** Method id → component and method. */
  readonly byId: readonly { component: string; method: string }[];
  /** Component → id of its first method (its methods' ids are consecutive, in sorted order). */
  readonly firstIds: ReadonlyMap<string, number>;
}

let table: MethodTable | undefined;

/** Registers the implementation of a component. Call it once per component, at module load. */
export function register<T extends object>(ref: ComponentRef<T>, impl: Implementation<T>): void {
  const existing = registrations.get(ref.name);
  if (existing && existing.impl !== impl) {
    throw new ConfigError(`component ${ref.name} is registered twice (${existing.impl.name} and ${impl.name})`);
  }
  checkImplements(ref as ComponentRef<object>, impl as Implementation<object>);
  registrations.set(ref.name, {
    ref: ref as ComponentRef<object>,
    impl: impl as Implementation<object>,
    methods: ref.methods,
  });
  table = undefined;
}

/** The registration of `name`, or undefined. */
export function registration(name: string): Registration | undefined {
  return registrations.get(name);
}

/** Names of all registered components, sorted. */
export function registeredComponents(): string[] {
  return [...registrations.keys()].sort();
}

/**
 * The method table: every registered component (sorted by name) and its methods (sorted) get
 * consecutive ids. Every process runs the same binary, so they agree; the hash lets RPC peers check it.
 */
export function methodTable(): MethodTable {
  if (table) return table;
  const byId: { component: string; method: string }[] = [];
  const firstIds = new Map<string, number>();
  for (const name of registeredComponents()) {
    firstIds.set(name, byId.length);
    for (const method of registrations.get(name)!.methods) byId.push({ component: name, method });
  }
  const hash = createHash("sha256")
    .update(byId.map((m) => `${m.component}.${m.method}`).join("\n"))
    .digest("hex")
    .slice(0, 16);
  table = { hash, byId, firstIds };
  return table;
}
