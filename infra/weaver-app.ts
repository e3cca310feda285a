/**
 * `WeaverApp`: everything one tsweaver app needs on ECS Fargate, as one L3 construct.
 *
 * The stack holds what every version shares and this version's task definitions: one Fargate task
 * definition per deployment group (of this version), a control-plane service, an HTTP Cloud Map
 * namespace with one service per group (plus one the control plane registers itself in), an ALB with
 * one listener per exported tsweaver listener, security groups, least-privilege IAM roles, a log group
 * and the per-deployment secret that authenticates agents to the control plane. Each version's ECS
 * services and target groups are created, rolled out and retired by the control plane (docs/aws.md,
 * "Versions and rollouts"), so a `cdk deploy` never updates a running version in place. Names,
 * environment variables and outputs follow runtime/deployers/aws/contract.ts.
 */
import { Annotations, Aws, CfnOutput, Duration, Stack, Token, Validations } from "aws-cdk-lib";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as elbv2 from "aws-cdk-lib/aws-elasticloadbalancingv2";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import * as s3 from "aws-cdk-lib/aws-s3";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import * as servicediscovery from "aws-cdk-lib/aws-servicediscovery";
import * as ssm from "aws-cdk-lib/aws-ssm";
import { Construct } from "constructs";
import {
  AGENT_COMMAND,
  AGENT_CONTAINER,
  COLLECTOR_CONTAINER,
  CONTROLPLANE_COMMAND,
  CONTROLPLANE_CONTAINER,
  CONTROLPLANE_NAME,
  ENV,
  healthCheckCommand,
  listenerUrlOutputKey,
  MAIN_COMPONENT,
  OTLP_ENDPOINT_ENV,
  OUTPUTS,
  pascalCase,
  targetGroupName,
  type GroupsEnv,
  type GroupsOutput,
  type ListenersEnv,
  type ListenersOutput,
  type RolloutEnv,
} from "../runtime/deployers/aws/contract.js";

export { AGENT_CONTAINER, COLLECTOR_CONTAINER, CONTROLPLANE_CONTAINER };

/** One deployment group: components that run together in one task. */
export interface WeaverGroupProps {
  /** AWS-safe group name (`hello-reverser`, from `groupsOf`): prefix of its ECS services, its Cloud Map service name. */
  readonly name: string;
  /** The components the group hosts (at least one). */
  readonly components: readonly string[];
  /**
   * Replica floor applied on activation (desired count, then autoscaling minimum), and what a new
   * version's group is raised to when it replaces a running one.
   * @default 1
   */
  readonly minReplicas?: number;
  /** Autoscaling maximum. @default max(minReplicas, 4) */
  readonly maxReplicas?: number;
  /** Fargate CPU units. @default 256 */
  readonly cpu?: number;
  /** Fargate memory (MiB). @default 512 */
  readonly memoryMiB?: number;
  /** Average CPU utilization (percent) target tracking keeps the group at. @default 70 */
  readonly cpuTargetPercent?: number;
  /**
   * ALB requests per target per minute target tracking keeps the group at, on each listener it serves
   * (ALBRequestCountPerTarget of the version's target group). @default none: no request-count policy
   */
  readonly requestsPerTarget?: number;
  /**
   * Served component calls per second per replica target tracking keeps the group at (the agents'
   * `ServedCallsPerSecond` metric). @default none: no load policy
   */
  readonly loadTarget?: number;
  /** Protect replicas that are serving calls from being chosen by a scale-in. @default true */
  readonly scaleInProtection?: boolean;
  /** IAM rights of this group's task role only, on top of the app-wide ones. @default none */
  readonly permissions?: WeaverPermissions;
  /** Secret environment variables of this group's tasks only, on top of the app-wide ones. @default none */
  readonly secrets?: Readonly<Record<string, WeaverSecret>>;
}

/** IAM rights given to the app's own code (a group's task role). */
export interface WeaverPermissions {
  /** ARNs of IAM managed policies attached to the task role. @default none */
  readonly managedPolicyArns?: readonly string[];
  /** Policy statements added to the task role. @default none */
  readonly statements?: readonly iam.PolicyStatement[];
}

/**
 * A secret environment variable: ECS reads it with the execution role when a task starts and sets it in
 * the container (never as plain task environment), and the agent passes it on to the weavelet.
 */
export interface WeaverSecret {
  /**
   * A complete Secrets Manager secret ARN (with the 6-character suffix) or an SSM parameter ARN
   * (String or SecureString; SecureString with the account's default `aws/ssm` key).
   */
  readonly arn: string;
  /** A Secrets Manager secret's JSON key whose value to inject. @default the whole secret value */
  readonly field?: string;
}

/** One tsweaver listener exported through the load balancer. */
export interface WeaverListenerProps {
  /** The name the app passes to `ctx.listener(name)`. */
  readonly name: string;
  /** Port the weavelet listens on inside its task; each version's target group forwards there. */
  readonly containerPort: number;
  /** ALB listener port. @default 443 with a certificate, else 80 */
  readonly port?: number;
  /**
   * Open to the internet (0.0.0.0/0) when the ALB is internet-facing; otherwise only to the VPC's CIDR.
   * @default true
   */
  readonly public?: boolean;
  /** Path of the target groups' health check. @default "/" */
  readonly healthCheckPath?: string;
  /** Seconds a deregistered target keeps finishing its in-flight requests. @default 30 */
  readonly deregistrationDelaySeconds?: number;
  /** ACM certificate ARN: the listener speaks HTTPS with it. @default none (plain HTTP) */
  readonly certificateArn?: string;
  /** With a certificate: port of an extra HTTP listener that redirects to HTTPS. @default 80; 0 for none */
  readonly redirectPort?: number;
}

/** Properties of {@link WeaverApp}. */
export interface WeaverAppProps {
  /** The app name (`[tsweaver] name`), passed to every task as TSWEAVER_APP. */
  readonly appName: string;
  /**
   * Deployment id: ECS cluster name, Cloud Map namespace name, task family prefix, TSWEAVER_DEPLOYMENT.
   * @default the stack name
   */
  readonly deploymentId?: string;
  /** The version these task definitions run (`versionId` of runtime/deployers/aws/contract.ts). */
  readonly version: string;
  /** How traffic moves to this version from the one running. */
  readonly rollout: RolloutEnv;
  /** Every deployment group of the app; exactly one must host `tsweaver/Main`. */
  readonly groups: readonly WeaverGroupProps[];
  /** Listeners to export through an Application Load Balancer. @default none: no load balancer is created */
  readonly listeners?: readonly WeaverListenerProps[];
  /**
   * The app image. Its entrypoint must be the tsweaver CLI; the stack passes `aws agent` or
   * `aws controlplane` as the command.
   */
  readonly image: ecs.ContainerImage;
  /** Path of weaver.toml inside the image (relative to its working directory), passed as TSWEAVER_CONFIG. */
  readonly configPathInImage: string;
  /** The VPC to run in. @default a new VPC: 2 AZs, public subnets, private subnets when natGateways > 0 */
  readonly vpc?: ec2.IVpc;
  /** Address range of the created VPC. @default "10.0.0.0/16" */
  readonly vpcCidr?: string;
  /** NAT gateways of the created VPC (one per AZ keeps an AZ's loss from cutting the other off); 0 runs tasks in public subnets with public IPs. @default 2 */
  readonly natGateways?: number;
  /**
   * VPC endpoints of the created VPC: "gateway" adds the S3 gateway endpoint (free; image layers come from
   * S3), "all" also interface endpoints for every AWS API the tasks call (ECR, Logs, Secrets Manager, Cloud
   * Map, ECS, ELB, Application Auto Scaling, CloudFormation), so they work without a NAT path. @default "gateway"
   */
  readonly vpcEndpoints?: "none" | "gateway" | "all";
  /** VPC flow logs (to CloudWatch Logs) for the created VPC. @default true */
  readonly flowLogs?: boolean;
  /** ECS Container Insights. @default true */
  readonly containerInsights?: boolean;
  /** CPU architecture of the tasks (must match the image). @default ecs.CpuArchitecture.X86_64 */
  readonly cpuArchitecture?: ecs.CpuArchitecture;
  /** Internal instead of internet-facing load balancer. @default false */
  readonly internalLoadBalancer?: boolean;
  /**
   * ALB access logs to an S3 bucket the construct creates. Needs a stack with a concrete region (the
   * bucket policy names the region's ELB log-delivery principal).
   * @default true when the stack's region is known, else false
   */
  readonly accessLogs?: boolean;
  /** Weavelet component-RPC port (fixed in every group task). @default 9000 */
  readonly rpcPort?: number;
  /** Control plane port agents connect to. @default 9100 */
  readonly controlPort?: number;
  /**
   * Loopback port each group task's agent answers its weavelet's health on; the container health check
   * asks it, so ECS replaces a task whose weavelet is unhealthy or hung. @default 9101
   */
  readonly healthPort?: number;
  /** Retention of the log groups. @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /**
   * OTLP/HTTP endpoint every weavelet exports its trace spans to (set as OTEL_EXPORTER_OTLP_ENDPOINT in
   * the group tasks), e.g. an ADOT collector reachable from the tasks.
   * @default none: spans are counted and dropped by the control plane
   */
  readonly otlpEndpoint?: string;
  /**
   * Where the weavelets' trace spans go: "xray" adds an AWS Distro for OpenTelemetry collector sidecar to
   * every group task (the weavelet exports OTLP to it on localhost; it sends to X-Ray with the task role),
   * "otlp" exports to `otlpEndpoint`, "off" leaves spans to be counted and dropped.
   * @default "otlp" when `otlpEndpoint` is set, else "off"
   */
  readonly tracing?: "xray" | "otlp" | "off";
  /** Image of the collector sidecar (`tracing: "xray"`). @default {@link ADOT_COLLECTOR_IMAGE} from ECR Public */
  readonly collectorImage?: ecs.ContainerImage;
  /** Control plane Fargate CPU units. @default 256 */
  readonly controlPlaneCpu?: number;
  /** Control plane Fargate memory (MiB). @default 512 */
  readonly controlPlaneMemoryMiB?: number;
  /** IAM rights of every group's task role (app code on AWS), on top of each group's own. @default none */
  readonly permissions?: WeaverPermissions;
  /** Secret environment variables of every group task, on top of each group's own. @default none */
  readonly secrets?: Readonly<Record<string, WeaverSecret>>;
}

/** The resources of one group in this version. */
export interface WeaverGroup {
  readonly name: string;
  readonly components: readonly string[];
  readonly minReplicas: number;
  readonly maxReplicas: number;
  readonly cpuTargetPercent: number;
  /** ALB requests per target per minute to track, if any. */
  readonly requestsPerTarget: number | undefined;
  /** Served calls per second per replica to track, if any. */
  readonly loadTarget: number | undefined;
  readonly scaleInProtection: boolean;
  /** This version's task definition (family `<deployment>-<group>`; every version is a revision of it). */
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly container: ecs.ContainerDefinition;
  /** The Cloud Map service the control plane registers the group's ready replicas (of every version) in. */
  readonly discoveryService: servicediscovery.Service;
  /**
   * The group's own task role: what the app's code in this group may do on AWS. It may discover this
   * namespace's replicas, plus the permissions configured; grant more with CDK
   * (`bucket.grantRead(app.taskRole("shop-cart"))`).
   */
  readonly taskRole: iam.Role;
}

/** The resources of one exported listener. */
export interface WeaverListener {
  readonly name: string;
  readonly port: number;
  readonly containerPort: number;
  readonly healthCheckPath: string;
  readonly deregistrationDelaySeconds: number;
  /** Answers 503 until the control plane's weighted-forward rule sends traffic to a version. */
  readonly listener: elbv2.ApplicationListener;
  /** The HTTP→HTTPS redirect listener, if any. */
  readonly redirectListener: elbv2.ApplicationListener | undefined;
  /** `http(s)://<alb dns name>[:port]`. */
  readonly url: string;
}

/**
 * A tsweaver app on ECS Fargate. One per stack: it names the stack outputs the `tsweaver aws` CLI reads
 * (`OUTPUTS` in runtime/deployers/aws/contract.ts).
 */
export class WeaverApp extends Construct {
  readonly deploymentId: string;
  readonly version: string;
  readonly vpc: ec2.IVpc;
  /** The VPC flow log, when the construct created the VPC with flow logs. */
  readonly flowLog: ec2.FlowLog | undefined;
  readonly cluster: ecs.Cluster;
  readonly namespace: servicediscovery.HttpNamespace;
  /** Log group of every task (stream prefix: group name, or `controlplane`). */
  readonly logGroup: logs.LogGroup;
  /** Shared secret agents present to the control plane; injected into tasks as TSWEAVER_DEPLOYMENT_SECRET. */
  readonly secret: secretsmanager.Secret;
  /**
   * The deployment CA (certificate and private key, JSON), created empty: the control plane stores the
   * CA on its first start and signs each task's certificate for TLS component calls with it. Only the
   * control plane's role may read or write it; it is never injected into a task.
   */
  readonly caSecret: secretsmanager.Secret;
  /** Execution role shared by every task definition (image pull, logs, the secret). */
  readonly executionRole: iam.Role;
  /** Where the weavelets' traces go (see {@link WeaverAppProps.tracing}). */
  readonly tracing: "xray" | "otlp" | "off";
  /** Task role of the control plane. */
  readonly controlPlaneRole: iam.Role;
  readonly weaveletSecurityGroup: ec2.SecurityGroup;
  readonly controlPlaneSecurityGroup: ec2.SecurityGroup;
  /** Subnets tasks run in. */
  readonly taskSubnets: ec2.SubnetSelection;
  readonly assignPublicIp: boolean;
  /** Groups by name, in the order given. */
  readonly groups: ReadonlyMap<string, WeaverGroup>;
  /** The group that hosts `tsweaver/Main`. */
  readonly mainGroup: WeaverGroup;
  readonly controlPlaneTaskDefinition: ecs.FargateTaskDefinition;
  readonly controlPlaneService: ecs.FargateService;
  readonly controlPlaneDiscoveryService: servicediscovery.Service;
  /** Only when listeners are configured. */
  readonly loadBalancer: elbv2.ApplicationLoadBalancer | undefined;
  readonly loadBalancerSecurityGroup: ec2.SecurityGroup | undefined;
  /** The ALB access log bucket, when access logs are on. */
  readonly accessLogBucket: s3.Bucket | undefined;
  /** Listeners by name. */
  readonly listeners: ReadonlyMap<string, WeaverListener>;

  private readonly rpcPort: number;
  private readonly controlPort: number;
  private readonly healthPort: number;
  private readonly retention: logs.RetentionDays;
  /** The VPC's CIDR as a literal where we know it (rules stay readable and checkable), else the import's. */
  private readonly vpcCidr: string;

  constructor(scope: Construct, id: string, props: WeaverAppProps) {
    super(scope, id);
    this.deploymentId = props.deploymentId ?? Stack.of(this).stackName;
    this.version = props.version;
    this.rpcPort = props.rpcPort ?? 9000;
    this.controlPort = props.controlPort ?? 9100;
    this.healthPort = props.healthPort ?? 9101;
    this.retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    validateProps(this, props, this.rpcPort, this.controlPort, this.healthPort);

    const network = this.createNetwork(props);
    this.vpc = network.vpc;
    this.flowLog = network.flowLog;
    this.vpcCidr = network.cidr;
    const hasPrivate = this.vpc.privateSubnets.length > 0;
    this.taskSubnets = { subnetType: hasPrivate ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PUBLIC };
    // Without private subnets (no NAT) tasks need a public IP to reach ECR, CloudWatch and Cloud Map.
    this.assignPublicIp = !hasPrivate;

    this.cluster = this.createCluster(props);
    // Cloud Map: an HTTP (API-only) namespace. Agents discover replicas with DiscoverInstances and
    // DiscoverInstancesRevision, never by DNS, so a private DNS namespace would only add a Route 53
    // hosted zone, DNS TTL staleness and route53 permissions for the control plane.
    this.namespace = new servicediscovery.HttpNamespace(this, "Namespace", {
      name: this.deploymentId,
      description: `tsweaver deployment ${this.deploymentId}: one service per component group`,
    });
    this.logGroup = new logs.LogGroup(this, "Logs", { retention: this.retention });
    this.secret = this.createSecret();
    this.caSecret = this.createCaSecret();

    const roles = this.createRoles();
    this.executionRole = roles.execution;
    this.controlPlaneRole = roles.controlPlane;

    // Egress stays open: apps call their own dependencies, and tasks reach AWS APIs through NAT.
    this.weaveletSecurityGroup = new ec2.SecurityGroup(this, "WeaveletSecurityGroup", {
      vpc: this.vpc,
      description: `tsweaver ${this.deploymentId} weavelets: RPC from weavelets and control plane, listener ports from the ALB`,
      allowAllOutbound: true,
    });
    this.controlPlaneSecurityGroup = new ec2.SecurityGroup(this, "ControlPlaneSecurityGroup", {
      vpc: this.vpc,
      description: `tsweaver ${this.deploymentId} control plane: agent connections from weavelets only`,
      allowAllOutbound: true,
    });
    const wsg = this.weaveletSecurityGroup;
    const csg = this.controlPlaneSecurityGroup;
    wsg.addIngressRule(wsg, ec2.Port.tcp(this.rpcPort), "component RPC between weavelets");
    wsg.addIngressRule(csg, ec2.Port.tcp(this.rpcPort), "control plane to weavelet RPC port");
    csg.addIngressRule(wsg, ec2.Port.tcp(this.controlPort), "task agents to the control plane");

    // The load balancer comes before the tasks: their port mappings include listener ports.
    const lb = this.createLoadBalancer(props);
    this.loadBalancer = lb?.loadBalancer;
    this.loadBalancerSecurityGroup = lb?.securityGroup;
    this.accessLogBucket = lb?.accessLogBucket;
    this.listeners = lb?.listeners ?? new Map();

    this.tracing = props.tracing ?? (props.otlpEndpoint !== undefined ? "otlp" : "off");
    if (this.tracing === "otlp" && props.otlpEndpoint === undefined)
      throw new Error(`WeaverApp ${this.node.path}: tracing "otlp" needs otlpEndpoint (the collector's OTLP/HTTP URL)`);
    if (this.tracing !== "otlp" && props.otlpEndpoint !== undefined)
      throw new Error(`WeaverApp ${this.node.path}: otlpEndpoint is used only with tracing "otlp" (tracing is "${this.tracing}")`);
    this.groups = this.createGroups(props);
    this.mainGroup = [...this.groups.values()].find((g) => g.components.includes(MAIN_COMPONENT))!;

    const cp = this.createControlPlane(props);
    this.controlPlaneDiscoveryService = cp.discoveryService;
    this.controlPlaneTaskDefinition = cp.taskDefinition;
    this.controlPlaneService = cp.service;

    this.grantControlPlane();
    this.addOutputs(props.appName);
  }

  /**
   * The task role of a group (what its code may do on AWS), to grant more with CDK:
   * `table.grantReadWriteData(app.taskRole("shop-cart"))`.
   */
  taskRole(group: string): iam.Role {
    const g = this.groups.get(group);
    if (!g)
      throw new Error(`WeaverApp ${this.node.path}: no group ${JSON.stringify(group)}; groups: ${[...this.groups.keys()].join(", ")}`);
    return g.taskRole;
  }

  /** A new VPC (2 AZs, public subnets, private ones with NAT, reject flow logs), or the one given. */
  private createNetwork(props: WeaverAppProps): { vpc: ec2.IVpc; flowLog: ec2.FlowLog | undefined; cidr: string } {
    if (props.vpc) return { vpc: props.vpc, flowLog: undefined, cidr: props.vpc.vpcCidrBlock };
    const natGateways = props.natGateways ?? 2;
    const cidr = props.vpcCidr ?? "10.0.0.0/16";
    const subnets: ec2.SubnetConfiguration[] = [{ name: "public", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 22 }];
    if (natGateways > 0) subnets.push({ name: "private", subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 });
    const vpc = new ec2.Vpc(this, "Vpc", {
      ipAddresses: ec2.IpAddresses.cidr(cidr),
      maxAzs: 2,
      natGateways,
      subnetConfiguration: subnets,
      // No resource of this stack uses the default security group; restricting it would add a
      // Lambda-backed custom resource to every deployment.
      restrictDefaultSecurityGroup: false,
    });
    this.addEndpoints(vpc, cidr, props.vpcEndpoints ?? "gateway", natGateways > 0);
    if (!(props.flowLogs ?? true)) {
      Validations.of(vpc).acknowledge({
        id: "AwsSolutions-VPC7",
        reason: "Flow logs were turned off in weaver.toml ([aws] flow_logs = false).",
      });
      return { vpc, flowLog: undefined, cidr };
    }
    const flowLogGroup = new logs.LogGroup(this, "FlowLogs", { retention: this.retention });
    const flowLog = vpc.addFlowLog("FlowLog", {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup),
      trafficType: ec2.FlowLogTrafficType.REJECT,
    });
    return { vpc, flowLog, cidr };
  }

  /**
   * Endpoints keep AWS API traffic off the NAT gateways: cheaper for image pulls (S3 gateway, free) and,
   * with "all", independent of them (each interface endpoint costs per AZ and hour; docs/aws.md).
   */
  private addEndpoints(vpc: ec2.Vpc, cidr: string, which: "none" | "gateway" | "all", privateSubnets: boolean): void {
    if (which === "none") return;
    vpc.addGatewayEndpoint("S3Endpoint", { service: ec2.GatewayVpcEndpointAwsService.S3 });
    if (which !== "all") return;
    const subnets = { subnetType: privateSubnets ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PUBLIC };
    const services: [string, ec2.InterfaceVpcEndpointAwsService][] = [
      ["EcrApi", ec2.InterfaceVpcEndpointAwsService.ECR],
      ["EcrDocker", ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER],
      ["Logs", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS],
      ["SecretsManager", ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER],
      ["CloudMap", ec2.InterfaceVpcEndpointAwsService.CLOUD_MAP_SERVICE_DISCOVERY],
      ["CloudMapData", ec2.InterfaceVpcEndpointAwsService.CLOUD_MAP_DATA_SERVICE_DISCOVERY],
      ["Ecs", ec2.InterfaceVpcEndpointAwsService.ECS],
      ["Elb", ec2.InterfaceVpcEndpointAwsService.ELASTIC_LOAD_BALANCING],
      ["AutoScaling", ec2.InterfaceVpcEndpointAwsService.APPLICATION_AUTOSCALING],
      ["CloudFormation", ec2.InterfaceVpcEndpointAwsService.CLOUDFORMATION],
    ];
    // One security group for all of them: HTTPS from the VPC's own range (a literal, so it can be checked).
    const sg = new ec2.SecurityGroup(this, "EndpointsSecurityGroup", {
      vpc,
      description: "AWS API interface endpoints: HTTPS from inside the VPC",
      allowAllOutbound: false,
    });
    sg.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "AWS API calls from the VPC");
    // Private DNS makes the SDKs' and the ECS agent's default host names resolve to the endpoints.
    for (const [id, service] of services) {
      vpc.addInterfaceEndpoint(`${id}Endpoint`, { service, subnets, privateDnsEnabled: true, open: false, securityGroups: [sg] });
    }
  }

  private createCluster(props: WeaverAppProps): ecs.Cluster {
    const insights = props.containerInsights ?? true;
    const cluster = new ecs.Cluster(this, "Cluster", {
      vpc: this.vpc,
      clusterName: this.deploymentId,
      containerInsightsV2: insights ? ecs.ContainerInsights.ENABLED : ecs.ContainerInsights.DISABLED,
    });
    if (!insights) {
      Validations.of(cluster).acknowledge({
        id: "AwsSolutions-ECS4",
        reason: "Container Insights were turned off in weaver.toml ([aws] container_insights = false).",
      });
    }
    return cluster;
  }

  private createSecret(): secretsmanager.Secret {
    const secret = new secretsmanager.Secret(this, "DeploymentSecret", {
      description: `tsweaver ${this.deploymentId}: authenticates task agents to the control plane`,
      generateSecretString: { passwordLength: 48, excludePunctuation: true },
    });
    Validations.of(secret).acknowledge({
      id: "AwsSolutions-SMG4",
      reason:
        "Rotated by putting a new value (docs/aws.md, Security model): the control plane re-reads the secret and " +
        "accepts the current and the previous value, and ECS injects the new one into tasks as they are replaced. " +
        "A rotation schedule shorter than the tasks' lifetime would lock out agents still holding the value before the previous one.",
    });
    return secret;
  }

  private createCaSecret(): secretsmanager.Secret {
    const secret = new secretsmanager.Secret(this, "DeploymentCaSecret", {
      description: `tsweaver ${this.deploymentId}: the deployment CA that signs task certificates (written by the control plane)`,
    });
    // Empty on creation (no generated value): the control plane writes the CA once, under a fixed version
    // token, so concurrent first starts cannot make two CAs (runtime/deployers/aws/ca.ts).
    (secret.node.defaultChild as secretsmanager.CfnSecret).addPropertyDeletionOverride("GenerateSecretString");
    Validations.of(secret).acknowledge({
      id: "AwsSolutions-SMG4",
      reason:
        "The CA signs short-lived task certificates (24 h, renewed by every agent); rotating the CA itself means putting a new " +
        "CA and replacing the tasks (docs/aws.md, Security model), which a schedule cannot do.",
    });
    return secret;
  }

  /** The shared execution role and the control plane's task role (groups get theirs in createGroups). */
  private createRoles(): { execution: iam.Role; controlPlane: iam.Role } {
    const execution = new iam.Role(this, "ExecutionRole", {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      description: `tsweaver ${this.deploymentId}: ECS task execution (image pull, logs, deployment secret)`,
    });
    Validations.of(execution).acknowledge({
      id: "AwsSolutions-IAM5[Resource::*]",
      reason:
        "ecr:GetAuthorizationToken (needed to pull any ECR image) has no resource-level permissions; the pull itself is scoped to the image's repository.",
    });
    const controlPlane = new iam.Role(this, "ControlPlaneRole", {
      assumedBy: taskPrincipal(),
      description: `tsweaver ${this.deploymentId}: control plane (versions' services, target groups, replicas, traffic)`,
    });
    return { execution, controlPlane };
  }

  /**
   * A group's task role: it may discover this namespace's replicas (what the agent calls), plus the
   * app-wide and the group's own permissions from the props (what the app's code calls). Each group
   * has its own, so one group's rights never reach another's code.
   */
  private createTaskRole(scope: Construct, group: string, permissions: readonly (WeaverPermissions | undefined)[]): iam.Role {
    const role = new iam.Role(scope, "TaskRole", {
      assumedBy: taskPrincipal(),
      description: `tsweaver ${this.deploymentId} group ${group}: discover replicas in the namespace, plus the app's configured permissions`,
    });
    for (const s of this.discoverStatements()) role.addToPrincipalPolicy(s);
    // With X-Ray tracing, the task's collector sidecar sends the group's trace segments with this role.
    if (this.tracing === "xray")
      role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: "XRaySendTraces", actions: [...XRAY_ACTIONS], resources: ["*"] }));
    Validations.of(role).acknowledge({
      id: "AwsSolutions-IAM5[Resource::*]",
      reason: this.tracing === "xray" ? `${DISCOVER_STAR_REASON} ${XRAY_STAR_REASON}` : DISCOVER_STAR_REASON,
    });
    const stack = Stack.of(this);
    for (const p of permissions) {
      for (const arn of p?.managedPolicyArns ?? []) {
        role.addManagedPolicy(
          iam.ManagedPolicy.fromManagedPolicyArn(scope, `Policy${nagResource(stack, arn).replace(/[^A-Za-z0-9]/g, "")}`, arn),
        );
        Validations.of(role).acknowledge({
          id: `AwsSolutions-IAM4[Policy::${nagResource(stack, arn)}]`,
          reason: "A managed policy the app's configuration attaches to its own code's task role ([aws.permissions] in weaver.toml).",
        });
      }
      for (const st of p?.statements ?? []) {
        role.addToPrincipalPolicy(st);
        // Wildcards the app asked for are the app's decision; the stack's own grants stay checked.
        const json = st.toStatementJson() as { Action?: string | string[]; Resource?: string | string[] };
        const wild = [
          ...[json.Action ?? []].flat().map((a) => `Action::${a}`),
          ...[json.Resource ?? []].flat().map((r) => `Resource::${nagResource(stack, r)}`),
        ].filter((x) => x.includes("*"));
        for (const w of wild) {
          Validations.of(role).acknowledge({
            id: `AwsSolutions-IAM5[${w}]`,
            reason: "A statement the app's configuration grants its own code ([aws.permissions] in weaver.toml).",
          });
        }
      }
    }
    return role;
  }

  /**
   * The ECS `secrets` of a group's container: each configured variable from Secrets Manager or SSM
   * Parameter Store. `ecs.Secret` grants the execution role read access to exactly that secret or
   * parameter; the task role (the app's code) gets none.
   */
  private appSecrets(group: string, ...sources: (Readonly<Record<string, WeaverSecret>> | undefined)[]): Record<string, ecs.Secret> {
    const out: Record<string, ecs.Secret> = {};
    for (const source of sources) {
      for (const [name, s] of Object.entries(source ?? {})) {
        if (name in out)
          throw new Error(`WeaverApp ${this.node.path}: group ${group}: secret ${name} is set twice (app-wide and for the group)`);
        out[name] = this.importSecret(name, s);
      }
    }
    return out;
  }

  private readonly importedSecrets = new Map<string, ecs.Secret>();

  private importSecret(name: string, s: WeaverSecret): ecs.Secret {
    const key = `${s.arn}#${s.field ?? ""}`;
    const known = this.importedSecrets.get(key);
    if (known) return known;
    const id = `AppSecret${this.importedSecrets.size}`;
    let secret: ecs.Secret;
    if (/^arn:[^:]+:secretsmanager:/.test(s.arn)) {
      secret = ecs.Secret.fromSecretsManager(secretsmanager.Secret.fromSecretCompleteArn(this, id, s.arn), s.field);
    } else if (/^arn:[^:]+:ssm:/.test(s.arn)) {
      if (s.field !== undefined)
        throw new Error(`WeaverApp ${this.node.path}: secret ${name}: field applies only to Secrets Manager secrets`);
      secret = ecs.Secret.fromSsmParameter(ssm.StringParameter.fromStringParameterArn(this, id, s.arn));
      // CDK warns that it cannot tell the ARN's account and region from the stack's; ECS resolves a
      // parameter by its full ARN in any region, and the ARN is used as given.
      Annotations.of(this).acknowledgeWarning(
        "aws-cdk-lib/aws-ssm:crossAccountReferenceSameRegion",
        "SSM parameters are named by their full ARN, which ECS resolves in the parameter's own account and region.",
      );
    } else {
      throw new Error(
        `WeaverApp ${this.node.path}: secret ${name}: ${JSON.stringify(s.arn)} is neither a Secrets Manager secret ARN nor an SSM parameter ARN`,
      );
    }
    this.importedSecrets.set(key, secret);
    return secret;
  }

  /**
   * The ALB and one listener per tsweaver listener. A listener answers 503 by itself; the control plane
   * owns a rule on it that forwards to the versions' target groups with weights, so a later `cdk deploy`
   * (which only knows the listener) never resets where traffic goes.
   */
  private createLoadBalancer(props: WeaverAppProps):
    | {
        loadBalancer: elbv2.ApplicationLoadBalancer;
        securityGroup: ec2.SecurityGroup;
        accessLogBucket: s3.Bucket | undefined;
        listeners: Map<string, WeaverListener>;
      }
    | undefined {
    const listenerProps = props.listeners ?? [];
    if (listenerProps.length === 0) return undefined;
    const stack = Stack.of(this);
    const internal = props.internalLoadBalancer ?? false;
    const hasPrivate = this.vpc.privateSubnets.length > 0;
    const albSg = new ec2.SecurityGroup(this, "LoadBalancerSecurityGroup", {
      vpc: this.vpc,
      description: `tsweaver ${this.deploymentId} load balancer: listener ports in, container listener ports out`,
      allowAllOutbound: false,
    });
    const lb = new elbv2.ApplicationLoadBalancer(this, "LoadBalancer", {
      vpc: this.vpc,
      internetFacing: !internal,
      securityGroup: albSg,
      vpcSubnets: { subnetType: internal && hasPrivate ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PUBLIC },
      dropInvalidHeaderFields: true,
    });

    const regionKnown = !Token.isUnresolved(stack.region);
    if (props.accessLogs === true && !regionKnown) {
      throw new Error("WeaverApp: accessLogs needs a stack with a concrete region (set [aws] region in weaver.toml)");
    }
    let accessLogBucket: s3.Bucket | undefined;
    if (props.accessLogs ?? regionKnown) {
      accessLogBucket = new s3.Bucket(this, "AccessLogs", {
        encryption: s3.BucketEncryption.S3_MANAGED, // the only encryption ALB log delivery supports
        enforceSSL: true,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycleRules: [{ expiration: Duration.days(this.retention) }],
      });
      Validations.of(accessLogBucket).acknowledge({
        id: "AwsSolutions-S1",
        reason: "This bucket only receives ALB access logs; logging access to the log bucket would need yet another bucket.",
      });
      lb.logAccessLogs(accessLogBucket, "alb");
    } else {
      Validations.of(lb).acknowledge({
        id: "AwsSolutions-ELB2",
        reason: regionKnown
          ? "Access logs were turned off in weaver.toml ([aws] access_logs = false)."
          : "The stack is region-agnostic, and the access-log bucket policy must name the region's ELB " +
            "log-delivery account; set [aws] region in weaver.toml to turn access logs on.",
      });
    }

    const listeners = new Map<string, WeaverListener>();
    let anyOpen = false;
    for (const l of listenerProps) {
      const p = pascalCase(l.name);
      const https = l.certificateArn !== undefined;
      const port = l.port ?? (https ? 443 : 80);
      const open = (l.public ?? true) && !internal;
      anyOpen ||= open;
      const peer = open ? ec2.Peer.anyIpv4() : ec2.Peer.ipv4(this.vpcCidr);
      const listener = lb.addListener(`Listener${p}`, {
        port,
        protocol: https ? elbv2.ApplicationProtocol.HTTPS : elbv2.ApplicationProtocol.HTTP,
        certificates: https ? [elbv2.ListenerCertificate.fromArn(l.certificateArn!)] : undefined,
        sslPolicy: https ? elbv2.SslPolicy.RECOMMENDED_TLS : undefined,
        open: false,
        defaultAction: elbv2.ListenerAction.fixedResponse(503, {
          contentType: "text/plain",
          messageBody: "no version of this app is serving yet (tsweaver aws activate)",
        }),
      });
      albSg.addIngressRule(peer, ec2.Port.tcp(port), `listener ${l.name}`);
      // ALB → tasks on the container port only (adds the ALB's egress rule too).
      this.weaveletSecurityGroup.connections.allowFrom(albSg, ec2.Port.tcp(l.containerPort), `ALB to listener ${l.name}`);

      let redirectListener: elbv2.ApplicationListener | undefined;
      const redirectPort = https ? (l.redirectPort ?? 80) : 0;
      if (redirectPort > 0) {
        redirectListener = lb.addListener(`Redirect${p}`, {
          port: redirectPort,
          protocol: elbv2.ApplicationProtocol.HTTP,
          open: false,
          defaultAction: elbv2.ListenerAction.redirect({ protocol: "HTTPS", port: String(port), permanent: true }),
        });
        albSg.addIngressRule(peer, ec2.Port.tcp(redirectPort), `listener ${l.name}: HTTP to HTTPS redirect`);
      }
      const scheme = https ? "https" : "http";
      const standard = (https && port === 443) || (!https && port === 80);
      const url = `${scheme}://${lb.loadBalancerDnsName}${standard ? "" : `:${port}`}`;
      listeners.set(l.name, {
        name: l.name,
        port,
        containerPort: l.containerPort,
        healthCheckPath: l.healthCheckPath ?? "/",
        deregistrationDelaySeconds: l.deregistrationDelaySeconds ?? 30,
        listener,
        redirectListener,
        url,
      });
    }
    if (anyOpen) {
      Validations.of(albSg).acknowledge({
        id: "AwsSolutions-EC23",
        reason: "Public listeners of an internet-facing ALB ([aws.listeners.NAME] public = true) accept traffic from anywhere by design.",
      });
    }
    return { loadBalancer: lb, securityGroup: albSg, accessLogBucket, listeners };
  }

  /** The environment every task gets (each side adds what only it reads: test/infra/iam.test.ts checks). */
  private taskEnv(props: WeaverAppProps): Record<string, string> {
    return {
      [ENV.APP]: props.appName,
      [ENV.DEPLOYMENT]: this.deploymentId,
      [ENV.VERSION]: this.version,
      [ENV.RPC_PORT]: String(this.rpcPort),
    };
  }

  private runtimePlatform(props: WeaverAppProps): ecs.RuntimePlatform {
    return { cpuArchitecture: props.cpuArchitecture ?? ecs.CpuArchitecture.X86_64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX };
  }

  /**
   * Per group: this version's task definition and the group's Cloud Map service. No ECS service: the
   * control plane creates one per version (`<group>-<version>`) when it rolls the version out.
   */
  private createGroups(props: WeaverAppProps): Map<string, WeaverGroup> {
    const groups = new Map<string, WeaverGroup>();
    const containerPorts = [this.rpcPort, ...[...this.listeners.values()].map((l) => l.containerPort)];
    const drainSeconds = Math.max(0, ...[...this.listeners.values()].map((l) => l.deregistrationDelaySeconds));
    for (const g of props.groups) {
      const scope = new Construct(this, `Group${pascalCase(g.name)}`);
      const minReplicas = g.minReplicas ?? 1;
      const maxReplicas = g.maxReplicas ?? Math.max(minReplicas, 4);
      const taskRole = this.createTaskRole(scope, g.name, [props.permissions, g.permissions]);
      const secrets = this.appSecrets(g.name, props.secrets, g.secrets);
      const taskDefinition = new ecs.FargateTaskDefinition(scope, "TaskDefinition", {
        family: `${this.deploymentId}-${g.name}`,
        cpu: g.cpu ?? 256,
        memoryLimitMiB: g.memoryMiB ?? 512,
        executionRole: this.executionRole,
        taskRole,
        runtimePlatform: this.runtimePlatform(props),
      });
      const container = taskDefinition.addContainer(AGENT_CONTAINER, {
        image: props.image,
        command: [...AGENT_COMMAND],
        // The agent runs as root (the image's default user is not) so that it can start the app as another,
        // unprivileged user (the image's TSWEAVER_APP_USER): the app cannot read the agent's environment or
        // memory, which hold the deployment secret. Fargate's default capabilities (SETUID, SETGID) suffice.
        user: "0",
        environment: {
          ...this.taskEnv(props),
          [ENV.CONFIG]: props.configPathInImage,
          [ENV.NAMESPACE]: this.deploymentId,
          [ENV.CONTROLPLANE_SERVICE]: CONTROLPLANE_NAME,
          [ENV.GROUP]: g.name,
          [ENV.HEALTH_PORT]: String(this.healthPort),
          [ENV.COMPONENTS]: g.components.join(","),
          ...(props.otlpEndpoint ? { [OTLP_ENDPOINT_ENV]: props.otlpEndpoint } : {}),
          // Names only: the agent passes these variables (and no other secret) on to the weavelet.
          ...(Object.keys(secrets).length > 0 ? { [ENV.APP_SECRETS]: Object.keys(secrets).sort().join(",") } : {}),
        },
        secrets: { ...secrets, [ENV.SECRET]: ecs.Secret.fromSecretsManager(this.secret) },
        logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: g.name }),
        // The health port is loopback-only: no port mapping, no security group rule.
        portMappings: containerPorts.map((containerPort) => ({ containerPort })),
        // ECS's view of the weavelet: three failed checks (30 s) after the start period and ECS replaces the
        // task; the deployment circuit breaker then also covers a version whose weavelets hang.
        healthCheck: {
          command: healthCheckCommand(this.healthPort),
          interval: Duration.seconds(10),
          timeout: Duration.seconds(5),
          retries: 3,
          startPeriod: Duration.seconds(60),
        },
        // On SIGTERM the agent drains: the longest deregistration delay, a discovery period, then up to
        // 10 s for in-flight work. ECS's default 30 s would cut that short; 120 s is Fargate's maximum.
        stopTimeout: Duration.seconds(Math.min(120, Math.max(30, drainSeconds + 15))),
        essential: true,
      });
      ackEnvironment(taskDefinition);
      if (this.tracing === "xray") this.addCollector(taskDefinition, container, props);
      const discoveryService = this.namespace.createService(`Discovery${pascalCase(g.name)}`, {
        name: g.name,
        description: `ready replicas of ${g.components.join(", ")} (every version; attribute TSWEAVER_VERSION tells them apart)`,
      });
      groups.set(g.name, {
        name: g.name,
        components: [...g.components],
        minReplicas,
        maxReplicas,
        cpuTargetPercent: g.cpuTargetPercent ?? 70,
        requestsPerTarget: g.requestsPerTarget,
        loadTarget: g.loadTarget,
        scaleInProtection: g.scaleInProtection ?? true,
        taskDefinition,
        container,
        discoveryService,
        taskRole,
      });
    }
    return groups;
  }

  /**
   * The control plane: one task normally, two briefly while a deploy replaces it (minimum healthy 100%:
   * the old one serves agents until the new one runs; only the newest running one acts, see
   * docs/aws.md). A long stop timeout lets it remove the versions' services and target groups when
   * the stack is deleted.
   */
  private createControlPlane(props: WeaverAppProps): {
    discoveryService: servicediscovery.Service;
    taskDefinition: ecs.FargateTaskDefinition;
    service: ecs.FargateService;
  } {
    const stack = Stack.of(this);
    const discoveryService = this.namespace.createService("DiscoveryControlPlane", {
      name: CONTROLPLANE_NAME,
      description: "the control plane task (it registers itself)",
    });
    const groupsEnv: GroupsEnv = {};
    for (const g of this.groups.values()) {
      groupsEnv[g.name] = {
        taskDefinition: g.taskDefinition.taskDefinitionArn,
        discoveryServiceId: g.discoveryService.serviceId,
        components: g.components,
        min: g.minReplicas,
        max: g.maxReplicas,
        cpuTarget: g.cpuTargetPercent,
        ...(g.requestsPerTarget !== undefined ? { requestsPerTarget: g.requestsPerTarget } : {}),
        ...(g.loadTarget !== undefined ? { loadTarget: g.loadTarget } : {}),
        scaleInProtection: g.scaleInProtection,
      };
    }
    const listenersEnv: ListenersEnv = {};
    for (const l of this.listeners.values()) {
      listenersEnv[l.name] = {
        url: l.url,
        port: l.port,
        containerPort: l.containerPort,
        listenerArn: l.listener.listenerArn,
        healthCheckPath: l.healthCheckPath,
        deregistrationDelaySeconds: l.deregistrationDelaySeconds,
      };
    }
    const taskDefinition = new ecs.FargateTaskDefinition(this, "ControlPlaneTaskDefinition", {
      family: `${this.deploymentId}-controlplane`,
      cpu: props.controlPlaneCpu ?? 256,
      memoryLimitMiB: props.controlPlaneMemoryMiB ?? 512,
      executionRole: this.executionRole,
      taskRole: this.controlPlaneRole,
      runtimePlatform: this.runtimePlatform(props),
    });
    taskDefinition.addContainer(CONTROLPLANE_CONTAINER, {
      image: props.image,
      command: [...CONTROLPLANE_COMMAND],
      environment: {
        ...this.taskEnv(props),
        [ENV.CONTROL_PORT]: String(this.controlPort),
        [ENV.CLUSTER]: this.cluster.clusterArn,
        [ENV.NAMESPACE_ID]: this.namespace.namespaceId,
        [ENV.CONTROLPLANE_SERVICE_ID]: discoveryService.serviceId,
        [ENV.GROUPS]: stack.toJsonString(groupsEnv),
        [ENV.LISTENERS]: stack.toJsonString(listenersEnv),
        [ENV.ROLLOUT]: JSON.stringify(props.rollout),
        [ENV.VPC_ID]: this.vpc.vpcId,
        [ENV.SUBNETS]: this.vpc.selectSubnets(this.taskSubnets).subnetIds.join(","),
        [ENV.SECURITY_GROUP]: this.weaveletSecurityGroup.securityGroupId,
        [ENV.ASSIGN_PUBLIC_IP]: this.assignPublicIp ? "ENABLED" : "DISABLED",
        [ENV.SECRET_ARN]: this.secret.secretArn,
        [ENV.CA_SECRET_ARN]: this.caSecret.secretArn,
      },
      secrets: { [ENV.SECRET]: ecs.Secret.fromSecretsManager(this.secret) },
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: "controlplane" }),
      portMappings: [{ containerPort: this.controlPort }],
      stopTimeout: Duration.seconds(120),
      essential: true,
    });
    ackEnvironment(taskDefinition);
    const service = new ecs.FargateService(this, "ControlPlaneService", {
      cluster: this.cluster,
      taskDefinition,
      serviceName: CONTROLPLANE_NAME,
      desiredCount: 1,
      // Never zero control planes: the new task starts before the old one stops.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      securityGroups: [this.controlPlaneSecurityGroup],
      vpcSubnets: this.taskSubnets,
      assignPublicIp: this.assignPublicIp,
      enableECSManagedTags: true,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });
    // Stack deletion removes the control plane before what it manages: stopped by it (SIGTERM, stack in
    // DELETE_IN_PROGRESS), it deletes the versions' services and target groups and deregisters every
    // replica, so the Cloud Map services (which AWS refuses to delete while they hold instances), the
    // listeners and the cluster are empty when CloudFormation gets to them. The task's environment
    // already references most of them; these dependencies make the order explicit.
    service.node.addDependency(this.namespace, ...[...this.groups.values()].map((g) => g.discoveryService));
    for (const l of this.listeners.values()) service.node.addDependency(l.listener);
    return { discoveryService, taskDefinition, service };
  }

  /**
   * The X-Ray tracing sidecar: an ADOT collector receiving OTLP/HTTP on localhost:4318 (the task's
   * containers share its network namespace) and exporting to X-Ray. The agent starts once the collector
   * has started, so no early span goes nowhere; the collector is not essential: if it fails, the app
   * keeps serving and only traces are lost.
   */
  private addCollector(taskDefinition: ecs.FargateTaskDefinition, agent: ecs.ContainerDefinition, props: WeaverAppProps): void {
    const collector = taskDefinition.addContainer(COLLECTOR_CONTAINER, {
      image: props.collectorImage ?? ecs.ContainerImage.fromRegistry(ADOT_COLLECTOR_IMAGE),
      essential: false,
      memoryReservationMiB: 64,
      environment: { AOT_CONFIG_CONTENT: XRAY_COLLECTOR_CONFIG },
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: `${taskDefinition.family}-collector` }),
    });
    agent.addEnvironment(OTLP_ENDPOINT_ENV, `http://localhost:${COLLECTOR_OTLP_PORT}`);
    agent.addContainerDependencies({ container: collector, condition: ecs.ContainerDependencyCondition.START });
  }

  /**
   * DiscoverInstances(Revision) is authorized on the namespace (resource-level) and, in the older model,
   * only by the `servicediscovery:NamespaceName` condition key on "*". Both statements are scoped to
   * this namespace.
   */
  private discoverStatements(): iam.PolicyStatement[] {
    const actions = ["servicediscovery:DiscoverInstances", "servicediscovery:DiscoverInstancesRevision"];
    return [
      new iam.PolicyStatement({ sid: "DiscoverInNamespace", actions, resources: [this.namespace.namespaceArn] }),
      new iam.PolicyStatement({
        sid: "DiscoverByNamespaceName",
        actions,
        resources: ["*"],
        conditions: { StringEquals: { "servicediscovery:NamespaceName": this.deploymentId } },
      }),
    ];
  }

  private grantControlPlane(): void {
    const role = this.controlPlaneRole;
    const stack = Stack.of(this);
    const groups = [...this.groups.values()];
    const clusterArn = this.cluster.clusterArn;
    const inCluster = { ArnEquals: { "ecs:cluster": clusterArn } };
    const inRegion = { StringEquals: { "aws:RequestedRegion": Aws.REGION } };
    const add = (s: iam.PolicyStatementProps): void => {
      role.addToPrincipalPolicy(new iam.PolicyStatement(s));
    };

    // ECS: the versions' services of this cluster (their names are generated per version).
    const services = stack.formatArn({ service: "ecs", resource: "service", resourceName: `${this.cluster.clusterName}/*` });
    add({
      sid: "VersionServices",
      actions: [
        "ecs:CreateService",
        "ecs:UpdateService",
        "ecs:DeleteService",
        "ecs:DescribeServices",
        "ecs:TagResource",
        "ecs:UntagResource",
      ],
      resources: [services],
      conditions: inCluster,
    });
    const taskArns = stack.formatArn({ service: "ecs", resource: "task", resourceName: `${this.cluster.clusterName}/*` });
    add({ sid: "ClusterTasks", actions: ["ecs:DescribeTasks"], resources: [taskArns], conditions: inCluster });
    // Scale-in protection of busy replicas (docs/aws.md, "Autoscaling"): set here, for the task whose
    // agent reported, so no group task role (which the app's code holds) needs it. The task ARN pattern
    // names this cluster; IAM documents no ecs:cluster condition key for this action.
    add({ sid: "ProtectBusyTasks", actions: ["ecs:UpdateTaskProtection"], resources: [taskArns] });
    // ListTasks/ListServices are authorized on "*" (their resource is the container instance or none);
    // the ecs:cluster condition limits them to this cluster.
    add({ sid: "ListInCluster", actions: ["ecs:ListTasks", "ecs:ListServices"], resources: ["*"], conditions: inCluster });
    add({
      sid: "PassTaskRoles",
      actions: ["iam:PassRole"],
      resources: [...groups.map((g) => g.taskRole.roleArn), this.executionRole.roleArn],
      conditions: { StringEquals: { "iam:PassedToService": "ecs-tasks.amazonaws.com" } },
    });
    // Application Auto Scaling: each version service's floor, bounds and CPU policy. Scalable-target
    // ARNs carry a generated id that the template cannot know, so the resource is every scalable
    // target of this account and region; AWS additionally requires ecs:UpdateService on the target
    // service itself, granted for this cluster's services only (VersionServices).
    const scalableTargets = stack.formatArn({ service: "application-autoscaling", resource: "scalable-target", resourceName: "*" });
    add({
      sid: "VersionScaling",
      actions: [
        "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:DeregisterScalableTarget",
        "application-autoscaling:PutScalingPolicy",
        "application-autoscaling:DeleteScalingPolicy",
      ],
      resources: [scalableTargets],
    });
    // The first RegisterScalableTarget of an account creates ECS's autoscaling service-linked role.
    add({
      sid: "ScalingServiceLinkedRole",
      actions: ["iam:CreateServiceLinkedRole"],
      resources: [
        stack.formatArn({
          service: "iam",
          region: "",
          resource: "role",
          resourceName: "aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
        }),
      ],
      conditions: { StringLike: { "iam:AWSServiceName": "ecs.application-autoscaling.amazonaws.com" } },
    });

    // Cloud Map: instances of this namespace's services only.
    add({
      sid: "RegisterReplicas",
      actions: ["servicediscovery:RegisterInstance", "servicediscovery:DeregisterInstance", "servicediscovery:ListInstances"],
      resources: [...groups.map((g) => g.discoveryService.serviceArn), this.controlPlaneDiscoveryService.serviceArn],
    });

    // Secrets Manager: the deployment secret, re-read to follow rotations (current and previous value).
    add({ sid: "DeploymentSecret", actions: ["secretsmanager:GetSecretValue"], resources: [this.secret.secretArn] });
    // The deployment CA: read, and written once when the control plane first finds it empty.
    add({
      sid: "DeploymentCa",
      actions: ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
      resources: [this.caSecret.secretArn],
    });

    // CloudFormation: its own stack's status (a control plane stopped by a stack deletion removes the
    // versions' resources, which the template does not hold).
    add({ sid: "OwnStack", actions: ["cloudformation:DescribeStacks"], resources: [stack.stackId] });

    // ELBv2: the versions' target groups (named tw-<hash of deployment and listener>-<version>), this
    // ALB's listeners and rules.
    const lb = this.loadBalancer;
    const acknowledge = (resource: string, reason: string): void => {
      Validations.of(role).acknowledge({ id: `AwsSolutions-IAM5[Resource::${nagResource(stack, resource)}]`, reason });
    };
    if (lb) {
      const ls = [...this.listeners.values()];
      const targetGroups = ls.map((l) =>
        stack.formatArn({
          service: "elasticloadbalancing",
          resource: "targetgroup",
          resourceName: `${targetGroupName(this.deploymentId, l.name, "")}*`,
        }),
      );
      add({
        sid: "VersionTargetGroups",
        actions: [
          "elasticloadbalancing:CreateTargetGroup",
          "elasticloadbalancing:DeleteTargetGroup",
          "elasticloadbalancing:ModifyTargetGroupAttributes",
          "elasticloadbalancing:RegisterTargets",
          "elasticloadbalancing:DeregisterTargets",
          "elasticloadbalancing:AddTags",
        ],
        resources: targetGroups,
      });
      add({
        sid: "CreateListenerRules",
        actions: ["elasticloadbalancing:CreateRule", "elasticloadbalancing:AddTags"],
        resources: ls.map((l) => l.listener.listenerArn),
      });
      const listenerRules = stack.formatArn({
        service: "elasticloadbalancing",
        resource: "listener-rule",
        resourceName: `${lb.loadBalancerFullName}/*`,
      });
      add({
        sid: "ChangeListenerRules",
        actions: ["elasticloadbalancing:ModifyRule", "elasticloadbalancing:DeleteRule", "elasticloadbalancing:AddTags"],
        resources: [listenerRules],
      });
      // ELBv2 Describe* actions support no resource-level permissions: "*" in this region, read-only.
      add({
        sid: "DescribeLoadBalancing",
        actions: [
          "elasticloadbalancing:DescribeTargetHealth",
          "elasticloadbalancing:DescribeTargetGroups",
          "elasticloadbalancing:DescribeRules",
          "elasticloadbalancing:DescribeTags",
        ],
        resources: ["*"],
        conditions: inRegion,
      });
      for (const tg of targetGroups)
        acknowledge(
          tg,
          "Each version's target group is created by the control plane; the name prefix limits these rights to this deployment's listener.",
        );
      acknowledge(
        listenerRules,
        "Listener-rule ids are generated when rules are created; the pattern limits rule changes to this load balancer's listeners.",
      );
    }

    acknowledge(
      "*",
      'Only for actions AWS authorizes on "*" (ListTasks/ListServices, ELBv2 Describe*); every such statement ' +
        "is condition-scoped to this cluster or this region.",
    );
    acknowledge(
      services,
      "Each version's services are created by the control plane with generated names; the ARN pattern and the ecs:cluster condition limit these rights to this cluster.",
    );
    acknowledge(
      taskArns,
      "Task ids are generated at run time; the ARN pattern (and for DescribeTasks the ecs:cluster condition) limits DescribeTasks " +
        "and UpdateTaskProtection to this cluster's tasks.",
    );
    acknowledge(
      scalableTargets,
      "Scalable-target ids are generated by Application Auto Scaling; AWS also requires ecs:UpdateService on the target service, granted for this cluster's services only.",
    );
  }

  private addOutputs(appName: string): void {
    const stack = Stack.of(this);
    const out = (key: string, value: string, description: string): void => {
      new CfnOutput(stack, key, { value, description });
    };
    out(OUTPUTS.APP, appName, "tsweaver app name");
    out(OUTPUTS.DEPLOYMENT, this.deploymentId, "Deployment id (stack name)");
    out(OUTPUTS.VERSION, this.version, "Version this deploy rolls out (hash of image, app config and binary)");
    out(OUTPUTS.CLUSTER_NAME, this.cluster.clusterName, "ECS cluster");
    out(OUTPUTS.CLUSTER_ARN, this.cluster.clusterArn, "ECS cluster ARN");
    out(OUTPUTS.CONTROLPLANE_SERVICE, this.controlPlaneService.serviceName, "ECS service of the control plane");
    out(OUTPUTS.NAMESPACE_NAME, this.deploymentId, "Cloud Map HTTP namespace");
    out(OUTPUTS.NAMESPACE_ID, this.namespace.namespaceId, "Cloud Map namespace id");
    out(OUTPUTS.MAIN_GROUP, this.mainGroup.name, "Group hosting tsweaver/Main (raised by tsweaver aws activate)");
    const groupsOut: GroupsOutput = {};
    for (const g of this.groups.values())
      groupsOut[g.name] = { discoveryServiceId: g.discoveryService.serviceId, min: g.minReplicas, max: g.maxReplicas };
    out(OUTPUTS.GROUPS, stack.toJsonString(groupsOut), "Groups: Cloud Map service id, replica floor and maximum (JSON)");
    const listenersOut: ListenersOutput = {};
    for (const l of this.listeners.values()) {
      listenersOut[l.name] = { url: l.url, listenerArn: l.listener.listenerArn };
      out(listenerUrlOutputKey(l.name), l.url, `URL of listener ${l.name}`);
    }
    out(OUTPUTS.LISTENERS, stack.toJsonString(listenersOut), "Listeners: URL and ALB listener (JSON)");
    out(OUTPUTS.LOG_GROUP, this.logGroup.logGroupName, "CloudWatch log group of every task (stream prefix: group name or controlplane)");
    out(OUTPUTS.SECRET_ARN, this.secret.secretArn, "Secrets Manager secret that authenticates agents to the control plane");
    if (this.loadBalancer) {
      out(OUTPUTS.LOAD_BALANCER_DNS, this.loadBalancer.loadBalancerDnsName, "ALB DNS name");
      out(OUTPUTS.LOAD_BALANCER_ARN, this.loadBalancer.loadBalancerArn, "ALB ARN");
    }
  }
}

/** Principal of the task roles: ECS tasks of this account only (confused-deputy protection). */
function taskPrincipal(): iam.IPrincipal {
  return new iam.ServicePrincipal("ecs-tasks.amazonaws.com").withConditions({
    StringEquals: { "aws:SourceAccount": Aws.ACCOUNT_ID },
    ArnLike: { "aws:SourceArn": `arn:${Aws.PARTITION}:ecs:${Aws.REGION}:${Aws.ACCOUNT_ID}:*` },
  });
}

const DISCOVER_STAR_REASON =
  'DiscoverInstances/DiscoverInstancesRevision on "*" carry the servicediscovery:NamespaceName condition ' +
  "(this namespace only); the same actions are also granted on the namespace ARN for resource-level authorization.";

/**
 * A resource as cdk-nag names it in an IAM5 finding id: the resolved value with `Ref`s as `<Id>` and
 * `Fn::GetAtt`s as `<Id.Attr>` (its flattenCfnReference).
 */
export function nagResource(stack: Stack, value: string): string {
  const visit = (node: unknown): string => {
    if (typeof node === "string") return node.replace(/\$\{/g, "<").replace(/\}/g, ">");
    if (Array.isArray(node)) return JSON.stringify(node);
    const o = (node ?? {}) as Record<string, unknown>;
    if (o["Fn::Join"]) {
      const [delimiter, items] = o["Fn::Join"] as [string, unknown[]];
      return items.map(visit).join(delimiter);
    }
    if (o["Fn::Sub"]) return visit(o["Fn::Sub"]);
    if (o["Fn::GetAtt"]) {
      const [resource, attribute] = o["Fn::GetAtt"] as [unknown, unknown];
      return `<${visit(resource)}.${visit(attribute)}>`;
    }
    if (o["Ref"]) return `<${visit(o["Ref"])}>`;
    return JSON.stringify(node);
  };
  return visit(stack.resolve(value));
}

/** cdk-nag ECS2: the task environment holds names and ports only; the secret comes through `secrets`. */
/** The AWS Distro for OpenTelemetry collector image the X-Ray sidecar runs by default. */
export const ADOT_COLLECTOR_IMAGE = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3";
/** The collector's OTLP/HTTP port on the task's localhost. */
const COLLECTOR_OTLP_PORT = 4318;
/** What the X-Ray sidecar's task role may do: send segments and its own telemetry. */
export const XRAY_ACTIONS = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"] as const;
const XRAY_STAR_REASON = "xray:PutTraceSegments and xray:PutTelemetryRecords have no resource-level permissions or condition keys.";
/** The collector's configuration (AOT_CONFIG_CONTENT): OTLP/HTTP on localhost in, batched, X-Ray out. */
const XRAY_COLLECTOR_CONFIG = [
  "receivers:",
  "  otlp:",
  "    protocols:",
  "      http:",
  `        endpoint: 127.0.0.1:${COLLECTOR_OTLP_PORT}`,
  "processors:",
  "  batch: {}",
  "exporters:",
  "  awsxray: {}",
  "service:",
  "  pipelines:",
  "    traces:",
  "      receivers: [otlp]",
  "      processors: [batch]",
  "      exporters: [awsxray]",
  "",
].join("\n");

function ackEnvironment(taskDefinition: ecs.TaskDefinition): void {
  Validations.of(taskDefinition).acknowledge({
    id: "AwsSolutions-ECS2",
    reason:
      "The environment carries only non-secret identifiers (app, deployment, group, namespace, ports, resource " +
      "names/ARNs); the deployment secret is injected from Secrets Manager through the container's secrets.",
  });
}

function validateProps(scope: Construct, props: WeaverAppProps, rpcPort: number, controlPort: number, healthPort: number): void {
  const fail = (what: string): never => {
    throw new Error(`WeaverApp ${scope.node.path}: ${what}`);
  };
  if (props.groups.length === 0) fail("no groups");
  const names = new Set<string>();
  for (const g of props.groups) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(g.name)) fail(`group name ${JSON.stringify(g.name)} must be lowercase letters, digits and '-'`);
    if (names.has(g.name)) fail(`group ${g.name} appears twice`);
    names.add(g.name);
    if (g.components.length === 0) fail(`group ${g.name} has no components`);
    const min = g.minReplicas ?? 1;
    const max = g.maxReplicas ?? Math.max(min, 4);
    if (min < 1 || max < min) fail(`group ${g.name}: need 1 <= minReplicas <= maxReplicas (got ${min}, ${max})`);
    if (g.requestsPerTarget !== undefined && (props.listeners ?? []).length === 0)
      fail(`group ${g.name}: requestsPerTarget tracks load balancer requests, and the app has no listeners`);
    if (g.loadTarget !== undefined && !(g.loadTarget > 0)) fail(`group ${g.name}: loadTarget must be above 0 (got ${g.loadTarget})`);
  }
  if (props.groups.filter((g) => g.components.includes(MAIN_COMPONENT)).length !== 1) fail(`exactly one group must host ${MAIN_COMPONENT}`);
  if (rpcPort === controlPort) fail("rpcPort and controlPort must differ");
  if (healthPort === rpcPort || healthPort === controlPort) fail("healthPort must differ from rpcPort and controlPort");
  const ports = new Set([rpcPort, controlPort, healthPort]);
  const lnames = new Set<string>();
  for (const l of props.listeners ?? []) {
    if (lnames.has(l.name)) fail(`listener ${l.name} appears twice`);
    lnames.add(l.name);
    if (ports.has(l.containerPort)) fail(`listener ${l.name}: container port ${l.containerPort} is already in use`);
    ports.add(l.containerPort);
  }
}
