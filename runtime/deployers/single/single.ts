import { randomUUID } from "node:crypto";
import { checkKeys, isTable, loadConfig, type AppConfig } from "../../core/config.js";
import { ConfigError } from "../../core/errors.js";
import { formatLogEntry } from "../../telemetry/logfmt.js";
import { Weavelet, checkValuesSetting } from "../../weavelet/weavelet.js";

/** Environment variable naming the weaver.toml a single-process run reads (optional). */
export const CONFIG_ENV = "TSWEAVER_CONFIG";

/** Listener addresses from `[single.listeners.NAME] address = "host:port"`. */
function listenerAddresses(config: AppConfig | undefined): Map<string, string> {
  const out = new Map<string, string>();
  const single = config?.deployers["single"];
  if (!config || !single) return out;
  checkKeys(single, ["listeners"], "single", config.file);
  const listeners = single["listeners"] ?? {};
  if (!isTable(listeners)) throw new ConfigError(`${config.file}: single.listeners: must be a table`);
  for (const [name, value] of Object.entries(listeners)) {
    if (!isTable(value)) throw new ConfigError(`${config.file}: single.listeners.${name}: must be a table with address = "host:port"`);
    checkKeys(value, ["address"], `single.listeners.${name}`, config.file);
    if (typeof value["address"] !== "string")
      throw new ConfigError(`${config.file}: single.listeners.${name}.address: must be a "host:port" string`);
    out.set(name, value["address"]);
  }
  return out;
}

/**
 * The single-process deployer: every component in this process, calls are direct method calls, no
 * deployer process. It is what `node app.js` does.
 */
export async function runSingle(): Promise<void> {
  const configFile = process.env[CONFIG_ENV];
  const config = configFile ? loadConfig(configFile) : undefined;
  const addresses = listenerAddresses(config);
  const color = process.stdout.isTTY === true;
  const weavelet = new Weavelet({
    app: config?.name ?? "app",
    deploymentId: randomUUID(),
    id: randomUUID(),
    group: "single",
    hostable: undefined,
    runMain: true,
    internalAddress: undefined,
    config: config?.components ?? {},
    callTimeoutMs: config?.callTimeoutMs ?? {},
    checkValues: checkValuesSetting(process.env["NODE_ENV"] !== "production"),
    host: {
      async activateComponent() {},
      async getListenerAddress(name) {
        return addresses.get(name) ?? "localhost:0";
      },
      async exportListener(listener, address) {
        process.stdout.write(`tsweaver: listener ${listener} available on http://${address}\n`);
        return address;
      },
      logBatch(entries) {
        process.stdout.write(entries.map((e) => formatLogEntry(e, color)).join("\n") + "\n");
      },
      traceSpans() {},
    },
  });
  const stop = () => {
    void weavelet.shutdown().finally(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  await weavelet.start();
  try {
    await weavelet.runMain();
  } catch (err) {
    weavelet.logger.error("main failed", err);
    weavelet.flushLogs();
    process.exitCode = 1;
    await weavelet.shutdown();
  }
}
