import type { Server } from "node:net";
import type { ComponentRef, Context, Listener } from "../core/component.js";
import { isTable } from "../core/config.js";
import { ConfigError } from "../core/errors.js";
import type { Logger } from "../core/logger.js";

/** What a component's context needs from the weavelet hosting it. */
export interface ContextHost {
  get<T extends object>(ref: ComponentRef<T>, caller: string): Promise<T>;
  listener<S extends Server>(name: string, server?: S): Promise<Listener<S>>;
  loggerFor(component: string): Logger;
}

/**
 * The context a component's constructor receives: other components (as seen by this component),
 * listeners, its logger, and its config section merged over the defaults it declares.
 */
export class ComponentContext implements Context {
  readonly logger: Logger;
  constructor(
    private readonly weavelet: ContextHost,
    readonly name: string,
    private readonly section: Record<string, unknown>,
  ) {
    this.logger = weavelet.loggerFor(name);
  }
  get<T extends object>(ref: ComponentRef<T>): Promise<T> {
    return this.weavelet.get(ref, this.name);
  }
  listener<S extends Server = Server>(name: string, server?: S): Promise<Listener<S>> {
    return this.weavelet.listener(name, server);
  }
  config<C extends Record<string, unknown>>(defaults: C): C {
    const out: Record<string, unknown> = { ...defaults };
    for (const [key, value] of Object.entries(this.section)) {
      if (!(key in defaults)) {
        throw new ConfigError(`config ["${this.name}"].${key}: unknown key (known keys: ${Object.keys(defaults).join(", ") || "none"})`);
      }
      const want = defaults[key];
      const same = Array.isArray(want) ? Array.isArray(value) : isTable(want) ? isTable(value) : typeof want === typeof value;
      if (!same) {
        throw new ConfigError(
          `config ["${this.name}"].${key}: expected ${Array.isArray(want) ? "an array" : typeof want}, got ${JSON.stringify(value)}`,
        );
      }
      out[key] = value;
    }
    return out as C;
  }
}
