// The tsweaver multi deployment of the boutique, in its own process so its CPU (the deployer's) is
// measured apart from the load generator's: `node dist/bench/boutique/multi-host.js <weaver.toml> <stateDir>`.
// Prints `READY {"proxy":..., "direct":..., "deploymentId":...}`: the listener proxy's address and main's
// own listener address (what the proxy forwards to). Stops the deployment on SIGTERM or stdin close.
import { existsSync, readFileSync } from "node:fs";
import { loadConfig } from "../../runtime/core/config.js";
import { MultiDeployer } from "../../runtime/deployers/multi/deployer.js";
import { DeploymentDir } from "../../runtime/deployers/multi/state.js";

const [config = "", stateDir = ""] = process.argv.slice(2);
const deployer = new MultiDeployer(loadConfig(config), { stateDir, printLogs: false, progress: () => {} });
const deadline = Date.now() + 30_000;
async function poll<T>(what: string, fn: () => Promise<T | undefined> | T | undefined): Promise<T> {
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`multi-host: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

await deployer.deploy();
const proxy = await poll("the listener proxy", async () => (await deployer.listenerAddresses()).get("boutique"));
const logFile = new DeploymentDir(stateDir, deployer.deploymentId).logFile;
const direct = await poll("main's listener address", () => {
  if (!existsSync(logFile)) return undefined;
  for (const line of readFileSync(logFile, "utf8").split("\n")) {
    if (!line.includes("boutique frontend ready")) continue;
    return (JSON.parse(line) as { attrs: Record<string, string> }).attrs["address"];
  }
  return undefined;
});
process.stdout.write(`READY ${JSON.stringify({ proxy, direct, deploymentId: deployer.deploymentId })}\n`);
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void deployer.stop().finally(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
