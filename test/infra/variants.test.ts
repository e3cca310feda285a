/**
 * The `[aws]` options that change the stack's shape: no NAT and no listeners, an internal HTTPS load
 * balancer with an ECR image on ARM, an imported VPC. One synth per variant, shared by its assertions.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Match } from "aws-cdk-lib/assertions";
import { ENV, OUTPUTS } from "../../runtime/deployers/aws/contract.js";
import { actionsOf, cdkAnnotations, containerEnv, nagFindings, securityGroupRules, statements, synthText, type Synth } from "./helpers.js";

describe("no NAT, no listeners, Container Insights and flow logs off, an image from a public registry", () => {
  let s: Synth;
  before(() => {
    s = synthText(`
[aws]
nat_gateways = 0
container_insights = false
flow_logs = false
image = "ghcr.io/acme/hello:1.0"
config_in_image = "weaver.toml"
`);
  });
  after(() => s.dispose());

  test("cdk-nag: clean, the turned-off features acknowledged with the weaver.toml key as reason", () => {
    assert.deepEqual(nagFindings(s.app), []);
    assert.deepEqual(cdkAnnotations(s.stack), []);
  });

  test("public subnets only; tasks get public IPs (to reach ECR, logs and Cloud Map without NAT)", () => {
    s.template.resourceCountIs("AWS::EC2::NatGateway", 0);
    s.template.resourceCountIs("AWS::EC2::Subnet", 2);
    s.template.resourceCountIs("AWS::EC2::FlowLog", 0);
    for (const r of Object.values(s.template.findResources("AWS::ECS::Service"))) {
      assert.equal(r["Properties"].NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp, "ENABLED");
    }
    assert.equal(containerEnv(s.json, s.id(s.stack.weaver.controlPlaneTaskDefinition))[ENV.ASSIGN_PUBLIC_IP], "ENABLED");
    s.template.hasResourceProperties("AWS::ECS::Cluster", { ClusterSettings: [{ Name: "containerInsights", Value: "disabled" }] });
  });

  test("no listeners: no load balancer, no ELB permissions, an empty Listeners output; the tasks' only ingress is RPC", () => {
    s.template.resourceCountIs("AWS::ElasticLoadBalancingV2::LoadBalancer", 0);
    s.template.resourceCountIs("AWS::ElasticLoadBalancingV2::TargetGroup", 0);
    assert.ok(!statements(s.json).some((st) => actionsOf(st).some((a) => a.startsWith("elasticloadbalancing:"))));
    assert.equal(s.json.Outputs[OUTPUTS.LISTENERS]!.Value, "{}");
    assert.equal(s.json.Outputs[OUTPUTS.LOAD_BALANCER_DNS], undefined);
    assert.deepEqual(
      securityGroupRules(s.json)
        .filter((r) => r.direction === "in")
        .map((r) => r.port)
        .sort(),
      ["9000", "9000", "9100"],
    );
  });

  test("the image is used as given; no ECR permissions are granted", () => {
    s.template.hasResourceProperties("AWS::ECS::TaskDefinition", {
      ContainerDefinitions: [Match.objectLike({ Image: "ghcr.io/acme/hello:1.0" })],
    });
    assert.ok(!statements(s.json).some((st) => actionsOf(st).some((a) => a.startsWith("ecr:"))));
    assert.equal(s.stack.imageAsset, undefined);
  });
});

describe("internal HTTPS load balancer, ECR image on ARM, custom ports and sizes, one NAT, every VPC endpoint", () => {
  let s: Synth;
  before(() => {
    s = synthText(`
[aws]
region = "eu-west-1"
nat_gateways = 1
vpc_endpoints = "all"
internal_alb = true
architecture = "arm64"
image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/hello:2.1"
config_in_image = "weaver.toml"
rpc_port = 7000
control_port = 7100
log_retention_days = 7
otlp_endpoint = "http://collector.internal:4318"
[aws.controlplane]
cpu = 512
memory = 1024
[aws.listeners.api]
certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
container_port = 8443
`);
  });
  after(() => s.dispose());

  test("otlp_endpoint reaches every group task as OTEL_EXPORTER_OTLP_ENDPOINT (the weavelets export traces there)", () => {
    for (const g of s.stack.weaver.groups.values()) {
      assert.equal(containerEnv(s.json, s.id(g.taskDefinition))["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://collector.internal:4318");
    }
    assert.equal(containerEnv(s.json, s.id(s.stack.weaver.controlPlaneTaskDefinition))["OTEL_EXPORTER_OTLP_ENDPOINT"], undefined);
  });

  test("cdk-nag: clean", () => {
    assert.deepEqual(nagFindings(s.app), []);
    assert.deepEqual(cdkAnnotations(s.stack), []);
  });

  test('vpc_endpoints = "all": the S3 gateway and an interface endpoint (private DNS, private subnets) per AWS API the tasks call', () => {
    s.template.resourceCountIs("AWS::EC2::NatGateway", 1);
    const endpoints = Object.values(s.template.findResources("AWS::EC2::VPCEndpoint")).map((r) => r["Properties"]);
    const name = (e: { ServiceName: unknown }) => JSON.stringify(e.ServiceName).replace(/.*(com\.amazonaws\.|\.amazonaws\.com)/, "");
    const byType = (t: string) => endpoints.filter((e) => e.VpcEndpointType === t);
    assert.equal(byType("Gateway").length, 1);
    assert.match(JSON.stringify(byType("Gateway")[0].ServiceName), /s3/);
    const interfaces = byType("Interface");
    assert.deepEqual(
      interfaces
        .map(
          (e) =>
            JSON.stringify(e.ServiceName).match(
              /\.(ecr\.api|ecr\.dkr|logs|secretsmanager|servicediscovery|data-servicediscovery|ecs|elasticloadbalancing|application-autoscaling|cloudformation)"/,
            )?.[1] ?? name(e),
        )
        .sort(),
      [
        "application-autoscaling",
        "cloudformation",
        "data-servicediscovery",
        "ecr.api",
        "ecr.dkr",
        "ecs",
        "elasticloadbalancing",
        "logs",
        "secretsmanager",
        "servicediscovery",
      ],
    );
    for (const e of interfaces) {
      assert.equal(e.PrivateDnsEnabled, true);
      assert.equal(e.SubnetIds.length, 2, "one subnet per AZ");
      for (const id of e.SubnetIds) assert.match(JSON.stringify(id), /private/i);
    }
  });

  test("the ALB is internal, in private subnets, reachable from the VPC only", () => {
    s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::LoadBalancer", {
      Scheme: "internal",
      Subnets: [{ Ref: Match.stringLikeRegexp("privateSubnet1") }, { Ref: Match.stringLikeRegexp("privateSubnet2") }],
    });
    const albSg = s.id(s.stack.weaver.loadBalancerSecurityGroup!);
    assert.deepEqual(
      securityGroupRules(s.json).filter((r) => r.group === albSg && r.direction === "in"),
      [
        { group: albSg, direction: "in", port: "443", peer: "cidr:10.0.0.0/16" },
        { group: albSg, direction: "in", port: "80", peer: "cidr:10.0.0.0/16" },
      ],
    );
  });

  test("HTTPS with the certificate and a modern TLS policy; HTTP on 80 redirects to it", () => {
    s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::Listener", {
      Port: 443,
      Protocol: "HTTPS",
      Certificates: [{ CertificateArn: "arn:aws:acm:eu-west-1:123456789012:certificate/abc" }],
      SslPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06",
    });
    s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::Listener", {
      Port: 80,
      Protocol: "HTTP",
      DefaultActions: [{ Type: "redirect", RedirectConfig: { Protocol: "HTTPS", Port: "443", StatusCode: "HTTP_301" } }],
    });
    assert.match(JSON.stringify(s.json.Outputs["UrlApi"]!.Value), /"https:\/\/",\{"Fn::GetAtt"/);
  });

  test("custom RPC and control ports are the only task ingress besides the listener port", () => {
    const w = s.id(s.stack.weaver.weaveletSecurityGroup);
    const c = s.id(s.stack.weaver.controlPlaneSecurityGroup);
    const rules = securityGroupRules(s.json).filter((r) => r.direction === "in" && (r.group === w || r.group === c));
    assert.deepEqual(rules.map((r) => `${r.group === w ? "weavelet" : "controlplane"}:${r.port}`).sort(), [
      "controlplane:7100",
      "weavelet:7000",
      "weavelet:7000",
      "weavelet:8443",
    ]);
    assert.equal(containerEnv(s.json, s.id(s.stack.weaver.mainGroup.taskDefinition))[ENV.RPC_PORT], "7000");
    assert.equal(containerEnv(s.json, s.id(s.stack.weaver.controlPlaneTaskDefinition))[ENV.CONTROL_PORT], "7100");
  });

  test("ARM tasks; the control plane's size; log retention", () => {
    s.template.allResourcesProperties("AWS::ECS::TaskDefinition", {
      RuntimePlatform: { CpuArchitecture: "ARM64", OperatingSystemFamily: "LINUX" },
    });
    s.template.hasResourceProperties("AWS::ECS::TaskDefinition", { Family: "tsweaver-t-controlplane", Cpu: "512", Memory: "1024" });
    s.template.allResourcesProperties("AWS::Logs::LogGroup", { RetentionInDays: 7 });
  });

  test("the ECR image: pull rights on exactly that repository", () => {
    s.template.hasResourceProperties("AWS::ECS::TaskDefinition", {
      ContainerDefinitions: [
        Match.objectLike({
          Image: Match.objectLike({ "Fn::Join": Match.arrayWith([Match.arrayWith([Match.stringLikeRegexp("team/hello:2.1")])]) }),
        }),
      ],
    });
    const pull = statements(s.json).find((st) => actionsOf(st).includes("ecr:BatchGetImage"))!;
    assert.equal(pull.Resource, "arn:aws:ecr:eu-west-1:123456789012:repository/team/hello");
  });
});

describe("an imported VPC", () => {
  const vpcId = "vpc-0123456789abcdef0";
  const subnet = (id: string, az: string, cidr: string) => ({ subnetId: id, availabilityZone: az, cidr, routeTableId: `rtb-${id}` });
  let s: Synth;
  before(() => {
    // What `cdk synth` would have cached in cdk.context.json after looking the VPC up once.
    const lookup = {
      [`vpc-provider:account=123456789012:filter.vpc-id=${vpcId}:region=eu-west-1:returnAsymmetricSubnets=true`]: {
        vpcId,
        vpcCidrBlock: "10.9.0.0/16",
        ownerAccountId: "123456789012",
        availabilityZones: [],
        subnetGroups: [
          {
            name: "Public",
            type: "Public",
            subnets: [
              subnet("subnet-0aaa0000000000001", "eu-west-1a", "10.9.0.0/20"),
              subnet("subnet-0aaa0000000000002", "eu-west-1b", "10.9.16.0/20"),
            ],
          },
          {
            name: "Private",
            type: "Private",
            subnets: [
              subnet("subnet-0bbb0000000000001", "eu-west-1a", "10.9.32.0/20"),
              subnet("subnet-0bbb0000000000002", "eu-west-1b", "10.9.48.0/20"),
            ],
          },
        ],
      },
    };
    s = synthText(
      `
[aws]
account = "123456789012"
region = "eu-west-1"
vpc_id = "${vpcId}"
image = "ghcr.io/acme/hello:1.0"
config_in_image = "weaver.toml"
[aws.listeners.web]
public = false
`,
      "hello",
      lookup,
    );
  });
  after(() => s.dispose());

  test("cdk-nag and CloudFormation validation: clean", () => {
    assert.deepEqual(nagFindings(s.app), []);
    assert.deepEqual(cdkAnnotations(s.stack), []);
  });

  test("no VPC is created; tasks run in its private subnets, the ALB in its public ones", () => {
    s.template.resourceCountIs("AWS::EC2::VPC", 0);
    s.template.resourceCountIs("AWS::EC2::Subnet", 0);
    s.template.allResourcesProperties("AWS::ECS::Service", {
      NetworkConfiguration: {
        AwsvpcConfiguration: Match.objectLike({
          AssignPublicIp: "DISABLED",
          Subnets: ["subnet-0bbb0000000000001", "subnet-0bbb0000000000002"],
        }),
      },
    });
    s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::LoadBalancer", {
      Subnets: ["subnet-0aaa0000000000001", "subnet-0aaa0000000000002"],
    });
    s.template.allResourcesProperties("AWS::EC2::SecurityGroup", { VpcId: vpcId });
    assert.equal(
      containerEnv(s.json, s.id(s.stack.weaver.controlPlaneTaskDefinition))[ENV.SUBNETS],
      "subnet-0bbb0000000000001,subnet-0bbb0000000000002",
    );
  });

  test("a non-public listener is open to the imported VPC's CIDR only", () => {
    const albSg = s.id(s.stack.weaver.loadBalancerSecurityGroup!);
    assert.deepEqual(
      securityGroupRules(s.json).filter((r) => r.group === albSg && r.direction === "in"),
      [{ group: albSg, direction: "in", port: "80", peer: "cidr:10.9.0.0/16" }],
    );
  });

  test("the stack is pinned to the account and region", () => {
    assert.equal(s.stack.account, "123456789012");
    assert.equal(s.stack.region, "eu-west-1");
  });
});
