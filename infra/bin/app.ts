/**
 * The CDK app `cdk.json` runs: one stack for the app whose weaver.toml is given as
 * `cdk synth|deploy -c config=path/to/weaver.toml` (default: the hello example).
 */
import { fileURLToPath } from "node:url";
import { App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { ConfigError } from "../../runtime/core/errors.js";
import { WeaverStack } from "../stack.js";

/** Where the config comes from when `-c config=...` is not given. */
export const DEFAULT_CONFIG = "examples/hello/weaver.toml";

// dist/infra/bin/app.js → the project root.
const projectRoot = fileURLToPath(new URL("../../../", import.meta.url));
const app = new App();
try {
  // The app lists its own components (its entry file run with TSWEAVER_LIST_COMPONENTS=1).
  WeaverStack.fromConfig(app, String(app.node.tryGetContext("config") ?? DEFAULT_CONFIG), { projectRoot });
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`tsweaver: ${err.message}\n`);
  process.exit(1);
}
// AWS Solutions checks run on every synth; a finding that is not acknowledged (with its reason, in
// infra/weaver-app.ts) fails it.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
