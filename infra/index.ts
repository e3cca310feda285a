/**
 * `tsweaver/aws`: the CDK side of the AWS deployer. A project's CDK app (`tsweaver init` scaffolds one in
 * infra/app.ts) is `WeaverStack.fromConfig(new App(), "weaver.toml")`; `WeaverApp` is the construct inside
 * it, for composing the app into a stack of your own. aws-cdk-lib and constructs are peer dependencies of
 * this entry only.
 */
export { DEFAULT_DOCKERFILE, PROJECT_IMAGE_EXCLUDES, WeaverStack } from "./stack.js";
export type { WeaverStackFromConfigOptions, WeaverStackProps } from "./stack.js";
export { WeaverDashboard } from "./dashboard.js";
export type { WeaverAlarmProps, WeaverDashboardProps } from "./dashboard.js";
export { AGENT_CONTAINER, CONTROLPLANE_CONTAINER, WeaverApp } from "./weaver-app.js";
export type {
  WeaverAppProps,
  WeaverGroup,
  WeaverGroupProps,
  WeaverListener,
  WeaverListenerProps,
  WeaverPermissions,
  WeaverSecret,
} from "./weaver-app.js";
export { versionId } from "../runtime/deployers/aws/contract.js";
export type { RolloutEnv } from "../runtime/deployers/aws/contract.js";
