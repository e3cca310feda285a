/** Deploying an app on the multi deployer from a test. */
import { loadConfig } from "../../runtime/core/config.js";
import { MultiDeployer } from "../../runtime/deployers/multi/deployer.js";
import { waitFor } from "./index.js";

/**
 * Deploys the app of `configFile` on the multi deployer, quietly, with state under `stateDir`, and
 * waits for the proxy of `listener`; returns the deployer and the proxy's base URL.
 */
export async function deployForTest(
  configFile: string,
  stateDir: string,
  listener: string,
): Promise<{ deployer: MultiDeployer; base: string }> {
  const deployer = new MultiDeployer(loadConfig(configFile), { stateDir, printLogs: false, progress: () => {} });
  await deployer.deploy();
  const addr = await waitFor(`listener ${listener}'s proxy`, async () => (await deployer.listenerAddresses()).get(listener));
  return { deployer, base: `http://${addr}` };
}
