/**
 * tsweaver: write an app as components that call each other through typed interfaces; run it in one
 * process (`node app.js`), as many processes (`tsweaver multi deploy`), or on AWS.
 *
 * This module is the whole user API. Deployer authors use `tsweaver/deployer`.
 */
import { LIST_COMPONENTS_ENV } from "./core/components.js";
import { MAIN_COMPONENT } from "./core/config.js";
import { component, register, registeredComponents, type Implementation, type Main } from "./core/component.js";
import { runSingle } from "./deployers/single/single.js";
import { runWeaveletProcess, WEAVELET_ARGS_ENV } from "./weavelet/process.js";

export { component, register } from "./core/component.js";
export type { ComponentOptions, ComponentRef, Context, Implementation, Lifecycle, Listener, Main, MethodName } from "./core/component.js";
export type { Logger, LogAttrs, LogLevel } from "./core/logger.js";
export { currentCall, withCallOptions } from "./core/call.js";
export type { CallContext, CallOptions } from "./core/call.js";
export {
  RemoteCallError,
  TransportError,
  DeadlineExceededError,
  CallCancelledError,
  ConfigError,
  isRetryable,
  registerError,
} from "./core/errors.js";
export type { ErrorClass } from "./core/errors.js";
export { CodecError } from "./codec/codec.js";
export { counter, gauge, histogram, LATENCY_MS_BOUNDS } from "./telemetry/metrics.js";
export type { BoundCounter, BoundGauge, BoundHistogram, Counter, Gauge, Histogram, HistogramOptions, Labels } from "./telemetry/metrics.js";

/** The reference to the app's main component (registered by `run`). */
export const MainComponent = component<Main>(MAIN_COMPONENT, { methods: [] });

/**
 * Runs the app: registers `app` as the main component and starts whatever this process is for, as
 * decided by the deployer (never by the code): all components in one process when started directly,
 * or one group of components when started by a deployer.
 */
export async function run(app: Implementation<Main>): Promise<void> {
  register(MainComponent, app);
  if (process.env[LIST_COMPONENTS_ENV]) {
    process.stdout.write(JSON.stringify({ components: registeredComponents() }) + "\n");
    return;
  }
  if (process.env[WEAVELET_ARGS_ENV] !== undefined) return runWeaveletProcess();
  return runSingle();
}
