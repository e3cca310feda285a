/**
 * The stack `cdk deploy` provisions for one app: weaver.toml (`[tsweaver]` and `[aws]`) plus the app's
 * own component list → a `WeaverApp`.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Stack, Tags, type StackProps } from "aws-cdk-lib";
import * as ecr from "aws-cdk-lib/aws-ecr";
import { DockerImageAsset, Platform } from "aws-cdk-lib/aws-ecr-assets";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as logs from "aws-cdk-lib/aws-logs";
import type { Construct } from "constructs";
import { listAppComponents } from "../runtime/core/components.js";
import { checkComponentNames, groupsOf, loadConfig, type AppConfig } from "../runtime/core/config.js";
import { ConfigError } from "../runtime/core/errors.js";
import { parseAwsConfig, type AwsConfig, type AwsPermissions } from "../runtime/deployers/aws/config.js";
import { versionId } from "../runtime/deployers/aws/contract.js";
import { WeaverDashboard } from "./dashboard.js";
import { WeaverApp, type WeaverPermissions } from "./weaver-app.js";

/** Dockerfile used when weaver.toml sets neither `image` nor `dockerfile_dir` (relative to the project root). */
export const DEFAULT_DOCKERFILE = "infra/Dockerfile";

/**
 * What the default image leaves out of the project root: dependencies are installed in the image from
 * package-lock.json, and tests, benchmarks, CDK output and VCS data have no business in it.
 */
export const PROJECT_IMAGE_EXCLUDES: readonly string[] = [
  "**/node_modules",
  ".git",
  "cdk.out",
  "cdk.out.*",
  "cdk.context.json",
  ".tsweaver",
  "**/*.cpuprofile",
  "**/*.tsbuildinfo",
  ".ci",
  "test",
  "bench",
  "dist/test",
  "dist/infra",
  "dist/bench",
];

/** Properties of {@link WeaverStack}. */
export interface WeaverStackProps extends Omit<StackProps, "stackName" | "env"> {
  /** The loaded weaver.toml. */
  readonly config: AppConfig;
  /** The app's registered components, as listed by the app itself (`listAppComponents`). */
  readonly components: readonly string[];
  /** The project root (where cdk.json is): default build context, with {@link DEFAULT_DOCKERFILE}. */
  readonly projectRoot: string;
}

/** Options of {@link WeaverStack.fromConfig}. */
export interface WeaverStackFromConfigOptions extends Omit<WeaverStackProps, "config" | "components" | "projectRoot"> {
  /**
   * The project root: the default image build context, with {@link DEFAULT_DOCKERFILE} in it.
   * @default the current directory (where `cdk` runs the app: the directory of cdk.json)
   */
  readonly projectRoot?: string;
}

/**
 * The stack of one app, named by `[aws] stack` (default `tsweaver-<app>`), pinned to `[aws] account` and
 * `region` when given, environment-agnostic otherwise.
 */
export class WeaverStack extends Stack {
  /**
   * The stack of the app a weaver.toml describes: loads it, lists the app's components by running its
   * built entry file (`tsweaver.binary`, with TSWEAVER_LIST_COMPONENTS=1), and builds the image from the
   * project root. Errors (an invalid weaver.toml, an entry file that is not built) are `ConfigError`s
   * naming the file and the key.
   */
  static fromConfig(scope: Construct, configFile: string, options: WeaverStackFromConfigOptions = {}): WeaverStack {
    const { projectRoot = process.cwd(), ...props } = options;
    const config = loadConfig(path.resolve(projectRoot, configFile));
    return new WeaverStack(scope, { ...props, config, components: listAppComponents(config), projectRoot });
  }

  readonly config: AppConfig;
  readonly aws: AwsConfig;
  readonly weaver: WeaverApp;
  /** The CloudWatch dashboard and the alarms weaver.toml opts into. */
  readonly observability: WeaverDashboard;
  /** The image built from a Dockerfile at deploy time, unless weaver.toml names an image. */
  readonly imageAsset: DockerImageAsset | undefined;
  /** The version this stack deploys: a hash of the image, the effective config and the app binary. */
  readonly version: string;

  constructor(scope: Construct, props: WeaverStackProps) {
    const { config, components, projectRoot, ...stackProps } = props;
    checkComponentNames(config, components);
    const groups = groupsOf(config, components);
    const aws = parseAwsConfig(config, groups);
    super(scope, aws.stack, {
      description: `tsweaver app ${config.name}: ${groups.length} component groups on ECS Fargate`,
      ...stackProps,
      stackName: aws.stack,
      env: { account: aws.account, region: aws.region },
    });
    this.config = config;
    this.aws = aws;
    Tags.of(this).add("tsweaver:app", config.name);
    Tags.of(this).add("tsweaver:deployment", aws.stack);

    const image = appImage(this, config, aws, projectRoot);
    this.imageAsset = image.asset;
    const vpc = aws.vpcId === undefined ? undefined : ec2.Vpc.fromLookup(this, "ImportedVpc", { vpcId: aws.vpcId });
    this.version = appVersion(config, aws, image);

    this.weaver = new WeaverApp(this, "App", {
      appName: config.name,
      deploymentId: aws.stack,
      version: this.version,
      rollout: aws.rollout,
      groups: aws.groups.map((g) => ({
        name: g.name,
        components: g.components,
        minReplicas: g.min,
        maxReplicas: g.max,
        cpu: g.cpu,
        memoryMiB: g.memory,
        cpuTargetPercent: g.cpuTarget,
        requestsPerTarget: g.requestsPerTarget,
        loadTarget: g.loadTarget,
        scaleInProtection: g.scaleInProtection,
        permissions: permissionsProps(g.permissions),
        secrets: g.secrets,
      })),
      listeners: aws.listeners.map((l) => ({
        name: l.name,
        port: l.port,
        containerPort: l.containerPort,
        public: l.public,
        healthCheckPath: l.healthCheckPath,
        deregistrationDelaySeconds: l.deregistrationDelaySeconds,
        certificateArn: l.certificateArn,
        redirectPort: l.redirectPort ?? 0,
      })),
      image: image.image,
      configPathInImage: image.configInImage,
      vpc,
      natGateways: aws.natGateways,
      vpcEndpoints: aws.vpcEndpoints,
      flowLogs: aws.flowLogs,
      containerInsights: aws.containerInsights,
      cpuArchitecture: aws.architecture === "arm64" ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
      internalLoadBalancer: aws.internalAlb,
      // Access logs need a concrete region; without one the construct acknowledges the nag finding.
      accessLogs: aws.accessLogs && aws.region !== undefined,
      rpcPort: aws.rpcPort,
      controlPort: aws.controlPort,
      healthPort: aws.healthPort,
      logRetention: aws.logRetentionDays as logs.RetentionDays,
      otlpEndpoint: aws.otlpEndpoint,
      tracing: aws.tracing,
      controlPlaneCpu: aws.controlPlane.cpu,
      controlPlaneMemoryMiB: aws.controlPlane.memory,
      permissions: permissionsProps(aws.permissions),
      secrets: aws.secrets,
    });
    this.observability = new WeaverDashboard(this, "Observability", {
      app: this.weaver,
      appName: config.name,
      dashboard: aws.dashboard,
      alarms: aws.alarms,
    });
  }
}

/** weaver.toml's permissions as the construct takes them. */
function permissionsProps(p: AwsPermissions): WeaverPermissions {
  return {
    managedPolicyArns: p.managedPolicies,
    statements: p.statements.map(
      (st) =>
        new iam.PolicyStatement({
          effect: st.effect === "Deny" ? iam.Effect.DENY : iam.Effect.ALLOW,
          actions: [...st.actions],
          resources: [...st.resources],
        }),
    ),
  };
}

/**
 * The version id of what the tasks run: the image (the asset's content hash, which covers the build
 * context, or the URI of a prebuilt image), the effective config (weaver.toml as parsed, with `[aws]`,
 * so a changed replica floor or listener is a new version too) and the app binary's bytes (a prebuilt
 * image under a moving tag still changes version when the app does).
 */
function appVersion(config: AppConfig, aws: AwsConfig, image: AppImage): string {
  let binary = "";
  try {
    binary = readFileSync(config.binary, "utf8");
  } catch {
    // The binary is inside the image only (a prebuilt image): the image URI stands for it.
  }
  return versionId({
    image: image.asset?.assetHash ?? aws.image ?? "",
    config: JSON.stringify({ config, aws, configInImage: image.configInImage }),
    binary,
  });
}

interface AppImage {
  readonly image: ecs.ContainerImage;
  readonly configInImage: string;
  readonly asset: DockerImageAsset | undefined;
}

/** ECR image URI: account, region, repository, tag or digest. */
const ECR_URI =
  /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\/([a-z0-9][a-z0-9._/-]*)(?::([\w][\w.-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?$/;

function appImage(stack: Stack, config: AppConfig, aws: AwsConfig, projectRoot: string): AppImage {
  const relativeConfig = (root: string, what: string): string => {
    const rel = path.relative(root, config.file);
    if (rel.startsWith("..") || path.isAbsolute(rel)) {
      throw new ConfigError(
        `${config.file}: aws.config_in_image: this weaver.toml is outside ${what} ${root}; set config_in_image to its path inside the image`,
      );
    }
    return rel.split(path.sep).join("/");
  };

  if (aws.image !== undefined) {
    const m = ECR_URI.exec(aws.image);
    let image: ecs.ContainerImage;
    if (m) {
      // An ECR image: the execution role gets pull rights on exactly that repository.
      const [, account, region, name, tag, digest] = m;
      const repository = ecr.Repository.fromRepositoryAttributes(stack, "ImageRepository", {
        repositoryArn: `arn:${stack.partition}:ecr:${region}:${account}:repository/${name}`,
        repositoryName: name!,
      });
      image = ecs.ContainerImage.fromEcrRepository(repository, digest ?? tag ?? "latest");
    } else {
      image = ecs.ContainerImage.fromRegistry(aws.image);
    }
    return {
      image,
      configInImage: aws.configInImage ?? relativeConfig(projectRoot, "the project root (the default image layout)"),
      asset: undefined,
    };
  }

  const directory = aws.dockerfileDir ?? projectRoot;
  const file = aws.dockerfile ?? (aws.dockerfileDir === undefined ? DEFAULT_DOCKERFILE : "Dockerfile");
  let asset: DockerImageAsset;
  try {
    asset = new DockerImageAsset(stack, "Image", {
      directory,
      file,
      platform: aws.architecture === "arm64" ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      // Only the default context (the project root) gets the default exclusions; a custom context
      // is taken as is (plus its own .dockerignore, which CDK honours).
      exclude: aws.dockerfileDir === undefined ? [...PROJECT_IMAGE_EXCLUDES] : undefined,
      // The base image (NODE_IMAGE in infra/Dockerfile), pinned by digest if weaver.toml says so.
      buildArgs: aws.baseImage !== undefined ? { NODE_IMAGE: aws.baseImage } : undefined,
      displayName: `${config.name} app image`,
    });
  } catch (err) {
    const key = aws.dockerfile !== undefined ? "aws.dockerfile" : "aws.dockerfile_dir";
    throw new ConfigError(`${config.file}: ${key}: ${(err as Error).message}`);
  }
  return {
    image: ecs.ContainerImage.fromDockerImageAsset(asset),
    configInImage: aws.configInImage ?? relativeConfig(directory, "the image's build context"),
    asset,
  };
}
