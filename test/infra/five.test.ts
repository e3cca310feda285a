/**
 * The stack of examples/five (six components in five groups, region pinned, image built from the
 * project root with infra/Dockerfile). The component list comes from a stand-in entry file so the
 * stack test does not depend on the runtime; the last test lists the real example.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Match } from "aws-cdk-lib/assertions";
import { listAppComponents } from "../../runtime/core/components.js";
import { loadConfig } from "../../runtime/core/config.js";
import { CONTROLPLANE_NAME, ENV, OUTPUTS } from "../../runtime/deployers/aws/contract.js";
import { ROOT } from "../support/index.js";
import { cdkAnnotations, containerEnv, FAKE_APP, joinedJson, nagFindings, synth, type Synth } from "./helpers.js";

const FIVE = path.join(ROOT, "examples/five/weaver.toml");
const GROUPS = ["five-currency", "five-catalog", "five-checkout", "five-inventory", "tsweaver-main"];

describe("five stack", () => {
  let s: Synth;
  before(() => {
    s = synth(FIVE, { binary: FAKE_APP, args: ["five"] });
  });
  after(() => s.dispose());

  test("cdk-nag AwsSolutions: no unacknowledged finding; CDK: no errors or warnings", () => {
    assert.deepEqual(nagFindings(s.app), []);
    assert.deepEqual(cdkAnnotations(s.stack), []);
  });

  test("five groups: five task definitions plus the control plane's, five Cloud Map services plus the control plane's", () => {
    assert.deepEqual([...s.stack.weaver.groups.keys()], GROUPS);
    const services = Object.values(s.template.findResources("AWS::ECS::Service")).map((r) => [
      r["Properties"].ServiceName,
      r["Properties"].DesiredCount,
    ]);
    assert.deepEqual(services, [[CONTROLPLANE_NAME, 1]], "group services are the control plane's, per version");
    s.template.resourceCountIs("AWS::ECS::TaskDefinition", 6);
    s.template.resourceCountIs("AWS::ServiceDiscovery::Service", 6);
    s.template.resourceCountIs("AWS::ApplicationAutoScaling::ScalableTarget", 0);
  });

  test("the colocated group hosts both components; sizes and bounds come from weaver.toml", () => {
    const currency = s.stack.weaver.groups.get("five-currency")!;
    assert.deepEqual(currency.components, ["five/Currency", "five/Pricing"]);
    const env = containerEnv(s.json, s.id(currency.taskDefinition));
    assert.equal(env[ENV.COMPONENTS], "five/Currency,five/Pricing");
    assert.equal(env[ENV.CONFIG], "examples/five/weaver.toml");
    s.template.hasResourceProperties("AWS::ECS::TaskDefinition", { Family: "tsweaver-five-five-currency", Cpu: "512", Memory: "1024" });
    s.template.hasResourceProperties("AWS::ECS::TaskDefinition", { Family: "tsweaver-five-tsweaver-main", Cpu: "256", Memory: "512" });
    const groups = joinedJson(s.json.Outputs[OUTPUTS.GROUPS]!.Value) as Record<string, { min: number; max: number }>;
    assert.deepEqual(
      Object.entries(groups).map(([g, v]) => [g, v.min, v.max]),
      [
        ["five-currency", 1, 8],
        ["five-catalog", 1, 3],
        ["five-checkout", 1, 4],
        ["five-inventory", 1, 4],
        ["tsweaver-main", 2, 6],
      ],
    );
    assert.equal(s.json.Outputs[OUTPUTS.MAIN_GROUP]!.Value, "tsweaver-main");
  });

  test("a pinned region turns on ALB access logs to an SSL-only bucket that expires them", () => {
    assert.equal(s.stack.region, "us-east-1");
    s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::LoadBalancer", {
      LoadBalancerAttributes: Match.arrayWith([
        { Key: "access_logs.s3.enabled", Value: "true" },
        { Key: "access_logs.s3.prefix", Value: "alb" },
      ]),
    });
    s.template.hasResourceProperties("AWS::S3::Bucket", {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }] },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LifecycleConfiguration: { Rules: [Match.objectLike({ ExpirationInDays: 14, Status: "Enabled" })] },
    });
    s.template.hasResourceProperties("AWS::S3::BucketPolicy", {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
          // us-east-1's ELB log-delivery account.
          Match.objectLike({ Action: "s3:PutObject", Principal: { AWS: "arn:aws:iam::127311923021:root" } }),
        ]),
      },
    });
  });

  test("the shop listener: port 80, health check /healthz, container port 8080 on every group task", () => {
    s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::Listener", { Port: 80, Protocol: "HTTP" });
    const listeners = joinedJson(containerEnv(s.json, s.id(s.stack.weaver.controlPlaneTaskDefinition))[ENV.LISTENERS]) as Record<
      string,
      { containerPort: number; healthCheckPath: string }
    >;
    assert.deepEqual([listeners["shop"]!.containerPort, listeners["shop"]!.healthCheckPath], [8080, "/healthz"]);
    assert.match(JSON.stringify(s.json.Outputs["UrlShop"]!.Value), /"http:\/\/",\{"Fn::GetAtt":\["\w+","DNSName"\]\}/);
  });

  test("the default image stages the project root without node_modules, tests, CDK output or git data", () => {
    const asset = s.stack.imageAsset!;
    const staged = path.join(s.outdir, `asset.${asset.assetHash}`);
    const has = (p: string) => existsSync(path.join(staged, p));
    for (const p of ["infra/Dockerfile", "package.json", "package-lock.json", "examples/five/weaver.toml", "dist/runtime"])
      assert.ok(has(p), `image has ${p}`);
    for (const p of ["node_modules", "test", "dist/test", "dist/infra", ".git", "cdk.out", "bench"])
      assert.ok(!has(p), `image leaves out ${p}`);
    assert.ok(!readdirSync(staged).some((f) => f.startsWith("cdk.out")));
  });
});

test("examples/five lists its own six components (the built example, through the runtime)", () => {
  const config = loadConfig(FIVE);
  assert.deepEqual(listAppComponents(config), [
    "five/Catalog",
    "five/Checkout",
    "five/Currency",
    "five/Inventory",
    "five/Pricing",
    "tsweaver/Main",
  ]);
});
