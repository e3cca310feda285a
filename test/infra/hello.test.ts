/**
 * The stack of the hello app (test/infra/fixtures/hello: two groups, one listener, an image built from a
 * Dockerfile, region-agnostic), synthesized once and inspected resource by resource.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Match } from "aws-cdk-lib/assertions";
import { AGENT_CONTAINER, CONTROLPLANE_CONTAINER } from "../../infra/weaver-app.js";
import {
  healthCheckCommand,
  CONTROLPLANE_NAME,
  ENV,
  OUTPUTS,
  targetGroupName,
  type GroupsEnv,
  type ListenersEnv,
} from "../../runtime/deployers/aws/contract.js";
import {
  actionsOf,
  cdkAnnotations,
  containerEnv,
  FIXTURES,
  joinedJson,
  nagFindings,
  resourcesOf,
  securityGroupRules,
  statements,
  synth,
  type Synth,
} from "./helpers.js";

/**
 * Actions AWS authorizes only on "*" (no resource-level permissions), each with the condition that scopes
 * it here. ecr:GetAuthorizationToken takes no condition at all.
 */
const STAR_ACTIONS: Record<string, string | null> = {
  "ecr:GetAuthorizationToken": null,
  "ecs:ListTasks": "ArnEquals:ecs:cluster",
  "ecs:ListServices": "ArnEquals:ecs:cluster",
  "servicediscovery:DiscoverInstances": "StringEquals:servicediscovery:NamespaceName",
  "servicediscovery:DiscoverInstancesRevision": "StringEquals:servicediscovery:NamespaceName",
  "elasticloadbalancing:DescribeTargetHealth": "StringEquals:aws:RequestedRegion",
  "elasticloadbalancing:DescribeTargetGroups": "StringEquals:aws:RequestedRegion",
  "elasticloadbalancing:DescribeRules": "StringEquals:aws:RequestedRegion",
  "elasticloadbalancing:DescribeTags": "StringEquals:aws:RequestedRegion",
};

describe("hello stack", () => {
  let s: Synth;
  let ids: {
    cluster: string;
    namespace: string;
    weaveletSg: string;
    controlPlaneSg: string;
    albSg: string;
    reverserRole: string;
    mainRole: string;
    controlPlaneRole: string;
    executionRole: string;
    reverserTask: string;
    mainTask: string;
    controlPlaneTask: string;
    listener: string;
    lb: string;
  };

  before(() => {
    s = synth(path.join(FIXTURES, "hello/weaver.toml"));
    const w = s.stack.weaver;
    const reverser = w.groups.get("hello-reverser")!;
    const main = w.groups.get("tsweaver-main")!;
    const hello = w.listeners.get("hello")!;
    ids = {
      cluster: s.id(w.cluster),
      namespace: s.id(w.namespace),
      weaveletSg: s.id(w.weaveletSecurityGroup),
      controlPlaneSg: s.id(w.controlPlaneSecurityGroup),
      albSg: s.id(w.loadBalancerSecurityGroup!),
      reverserRole: s.id(reverser.taskRole),
      mainRole: s.id(main.taskRole),
      controlPlaneRole: s.id(w.controlPlaneRole),
      executionRole: s.id(w.executionRole),
      reverserTask: s.id(reverser.taskDefinition),
      mainTask: s.id(main.taskDefinition),
      controlPlaneTask: s.id(w.controlPlaneTaskDefinition),
      listener: s.id(hello.listener),
      lb: s.id(w.loadBalancer!),
    };
  });
  after(() => s.dispose());

  test("cdk-nag AwsSolutions: no unacknowledged finding; CDK: no errors or warnings", () => {
    assert.deepEqual(nagFindings(s.app), []);
    assert.deepEqual(cdkAnnotations(s.stack), []);
  });

  test("the stack is region-agnostic and named after the app", () => {
    assert.equal(s.stack.stackName, "tsweaver-hello");
    assert.equal(s.stack.node.tryGetContext("config"), "examples/hello/weaver.toml", "cdk.json context is in effect");
    assert.match(s.stack.resolve(s.stack.region).Ref ?? "", /AWS::Region/);
  });

  test("network: a new 2-AZ VPC with a NAT gateway per AZ, private subnets for tasks, the S3 gateway endpoint, reject flow logs", () => {
    s.template.resourceCountIs("AWS::EC2::VPC", 1);
    s.template.resourceCountIs("AWS::EC2::NatGateway", 2);
    s.template.resourceCountIs("AWS::EC2::VPCEndpoint", 1);
    s.template.hasResourceProperties("AWS::EC2::VPCEndpoint", { VpcEndpointType: "Gateway" });
    s.template.resourceCountIs("AWS::EC2::Subnet", 4);
    s.template.hasResourceProperties("AWS::EC2::FlowLog", {
      ResourceType: "VPC",
      TrafficType: "REJECT",
      LogDestinationType: "cloud-watch-logs",
    });
    s.template.hasResourceProperties("AWS::ECS::Cluster", {
      ClusterName: "tsweaver-hello",
      ClusterSettings: [{ Name: "containerInsights", Value: "enabled" }],
    });
  });

  test("Cloud Map: one HTTP namespace named after the deployment, one service per group plus the control plane's", () => {
    s.template.resourceCountIs("AWS::ServiceDiscovery::HttpNamespace", 1);
    s.template.hasResourceProperties("AWS::ServiceDiscovery::HttpNamespace", { Name: "tsweaver-hello" });
    s.template.resourceCountIs("AWS::ServiceDiscovery::PrivateDnsNamespace", 0);
    const services = s.template.findResources("AWS::ServiceDiscovery::Service");
    assert.deepEqual(
      Object.values(services)
        .map((r) => r["Properties"].Name)
        .sort(),
      ["hello-reverser", "tsweaver-main", CONTROLPLANE_NAME].sort(),
    );
    for (const r of Object.values(services)) {
      assert.deepEqual(r["Properties"].NamespaceId, { "Fn::GetAtt": [ids.namespace, "Id"] });
      assert.equal(r["Properties"].DnsConfig, undefined, "API-only (HTTP) services have no DNS records");
    }
  });

  test("no group service and no scalable target in the template: the control plane creates them per version", () => {
    // Only the control plane's service: a cdk deploy never updates (or resets) a running version's services.
    s.template.resourceCountIs("AWS::ECS::Service", 1);
    s.template.resourceCountIs("AWS::ApplicationAutoScaling::ScalableTarget", 0);
    s.template.resourceCountIs("AWS::ElasticLoadBalancingV2::TargetGroup", 0);
    assert.match(s.stack.version, /^v[0-9a-f]{10}$/);
  });

  test("the control plane: one task, replaced with minimum healthy 100% (never zero), its own role and security group", () => {
    const svc = s.template.findResources("AWS::ECS::Service", { Properties: { ServiceName: CONTROLPLANE_NAME } });
    const p = Object.values(svc)[0]!["Properties"];
    assert.equal(p.DesiredCount, 1);
    assert.deepEqual(p.DeploymentConfiguration, {
      DeploymentCircuitBreaker: { Enable: true, Rollback: true },
      MaximumPercent: 200,
      MinimumHealthyPercent: 100,
    });
    assert.deepEqual(p.NetworkConfiguration.AwsvpcConfiguration.SecurityGroups, [{ "Fn::GetAtt": [ids.controlPlaneSg, "GroupId"] }]);
    s.template.hasResourceProperties("AWS::ECS::TaskDefinition", {
      Family: "tsweaver-hello-controlplane",
      TaskRoleArn: { "Fn::GetAtt": [ids.controlPlaneRole, "Arn"] },
      ContainerDefinitions: [
        Match.objectLike({
          Name: CONTROLPLANE_CONTAINER,
          Command: ["aws", "controlplane"],
          PortMappings: [{ ContainerPort: 9100, Protocol: "tcp" }],
          StopTimeout: 120,
        }),
      ],
    });
  });

  test("group task definitions: sizes from weaver.toml, the agent command, fixed ports, logs, the secret", () => {
    for (const [id, group, components, role] of [
      [ids.reverserTask, "hello-reverser", "hello/Reverser", ids.reverserRole],
      [ids.mainTask, "tsweaver-main", "tsweaver/Main", ids.mainRole],
    ] as const) {
      const p = s.json.Resources[id]!.Properties!;
      assert.equal(p["Family"], `tsweaver-hello-${group}`);
      assert.deepEqual([p["Cpu"], p["Memory"], p["NetworkMode"], p["RequiresCompatibilities"]], ["256", "512", "awsvpc", ["FARGATE"]]);
      assert.deepEqual(p["RuntimePlatform"], { CpuArchitecture: "X86_64", OperatingSystemFamily: "LINUX" });
      assert.deepEqual(p["TaskRoleArn"], { "Fn::GetAtt": [role, "Arn"] }, "each group has its own task role");
      assert.deepEqual(p["ExecutionRoleArn"], { "Fn::GetAtt": [ids.executionRole, "Arn"] });
      const c = p["ContainerDefinitions"][0];
      assert.equal(c.Name, AGENT_CONTAINER);
      assert.deepEqual(c.Command, ["aws", "agent"]);
      assert.equal(c.User, "0", "the agent runs as root so that it can start the app as the image's non-root TSWEAVER_APP_USER");
      assert.equal(c.Essential, true);
      assert.equal(c.StopTimeout, 45, "the agent's drain fits: a 30 s deregistration delay, a discovery period, 10 s for in-flight work");
      assert.deepEqual(
        c.PortMappings.map((m: { ContainerPort: number }) => m.ContainerPort),
        [9000, 8080],
      );
      assert.equal(c.LogConfiguration.LogDriver, "awslogs");
      assert.equal(c.LogConfiguration.Options["awslogs-stream-prefix"], group);
      assert.deepEqual(c.Secrets, [{ Name: ENV.SECRET, ValueFrom: { Ref: s.id(s.stack.weaver.secret) } }]);
      assert.deepEqual(containerEnv(s.json, id), {
        [ENV.APP]: "hello",
        [ENV.DEPLOYMENT]: "tsweaver-hello",
        [ENV.VERSION]: s.stack.version,
        [ENV.CONFIG]: "examples/hello/weaver.toml",
        [ENV.NAMESPACE]: "tsweaver-hello",
        [ENV.CONTROLPLANE_SERVICE]: CONTROLPLANE_NAME,
        [ENV.RPC_PORT]: "9000",
        [ENV.GROUP]: group,
        [ENV.HEALTH_PORT]: "9101",
        [ENV.COMPONENTS]: components,
      });
      // ECS checks the weavelet's health through the agent's loopback endpoint (not a port mapping).
      assert.deepEqual(c.HealthCheck, { Command: healthCheckCommand(9101), Interval: 10, Timeout: 5, Retries: 3, StartPeriod: 60 });
      assert.match(c.HealthCheck.Command[3], /127\.0\.0\.1",port:9101,path:"\/health"/);
    }
  });

  test("the control plane's environment names every group and listener handle", () => {
    assert.equal(
      s.json.Resources[ids.controlPlaneTask]!.Properties!["ContainerDefinitions"][0].User,
      undefined,
      "the control plane runs as the image's non-root user",
    );
    const env = containerEnv(s.json, ids.controlPlaneTask);
    assert.deepEqual(env[ENV.CLUSTER], { "Fn::GetAtt": [ids.cluster, "Arn"] });
    assert.deepEqual(env[ENV.NAMESPACE_ID], { "Fn::GetAtt": [ids.namespace, "Id"] });
    assert.equal(env[ENV.ASSIGN_PUBLIC_IP], "DISABLED");
    assert.deepEqual(env[ENV.SECURITY_GROUP], { "Fn::GetAtt": [ids.weaveletSg, "GroupId"] });
    assert.equal(typeof env[ENV.SUBNETS], "object");
    const groups = joinedJson(env[ENV.GROUPS]) as GroupsEnv;
    assert.deepEqual(Object.keys(groups), ["hello-reverser", "tsweaver-main"]);
    assert.deepEqual(groups["hello-reverser"], {
      taskDefinition: `<${ids.reverserTask}>`,
      discoveryServiceId: `<${s.id(s.stack.weaver.groups.get("hello-reverser")!.discoveryService)}.Id>`,
      components: ["hello/Reverser"],
      min: 2,
      max: 8,
      cpuTarget: 70,
      scaleInProtection: true,
    });
    const listeners = joinedJson(env[ENV.LISTENERS]) as ListenersEnv;
    assert.deepEqual(listeners, {
      hello: {
        url: `http://<${ids.lb}.DNSName>`,
        port: 80,
        containerPort: 8080,
        listenerArn: `<${ids.listener}>`,
        healthCheckPath: "/healthz",
        deregistrationDelaySeconds: 30,
      },
    });
    assert.deepEqual(JSON.parse(env[ENV.ROLLOUT] as string), {
      steps: [10, 50, 100],
      stepSeconds: 60,
      maxErrorRate: 0.05,
      healthTimeoutSeconds: 600,
    });
    assert.deepEqual(env[ENV.VPC_ID], { Ref: s.id(s.stack.weaver.vpc) });
    assert.equal(env[ENV.VERSION], s.stack.version);
  });

  test("ALB: internet-facing, one HTTP listener answering 503 until the control plane's rule forwards to a version", () => {
    s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::LoadBalancer", {
      Scheme: "internet-facing",
      LoadBalancerAttributes: Match.arrayWith([{ Key: "routing.http.drop_invalid_header_fields.enabled", Value: "true" }]),
    });
    s.template.resourceCountIs("AWS::ElasticLoadBalancingV2::Listener", 1);
    s.template.hasResourceProperties("AWS::ElasticLoadBalancingV2::Listener", {
      Port: 80,
      Protocol: "HTTP",
      DefaultActions: [Match.objectLike({ Type: "fixed-response", FixedResponseConfig: Match.objectLike({ StatusCode: "503" }) })],
    });
    // Region-agnostic: no access-log bucket (the nag finding is acknowledged with the reason).
    s.template.resourceCountIs("AWS::S3::Bucket", 0);
  });

  test("security groups: RPC only from weavelets and the control plane, control port only from weavelets, listener ports only via the ALB", () => {
    const w = ids.weaveletSg;
    const c = ids.controlPlaneSg;
    const a = ids.albSg;
    assert.deepEqual(
      securityGroupRules(s.json).filter((r) => r.direction === "in"),
      [
        { group: a, direction: "in", port: "80", peer: "cidr:0.0.0.0/0" },
        { group: c, direction: "in", port: "9100", peer: `sg:${w}` },
        { group: w, direction: "in", port: "8080", peer: `sg:${a}` },
        { group: w, direction: "in", port: "9000", peer: `sg:${c}` },
        { group: w, direction: "in", port: "9000", peer: `sg:${w}` },
      ].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))),
    );
    const egress = securityGroupRules(s.json).filter((r) => r.direction === "out");
    assert.deepEqual(
      egress.filter((r) => r.group === a),
      [{ group: a, direction: "out", port: "8080", peer: `sg:${w}` }],
      "the ALB may only reach the tasks' listener port",
    );
  });

  test("IAM: no wildcard actions; '*' resources only for actions AWS authorizes on '*', each condition-scoped", () => {
    const all = statements(s.json);
    assert.ok(all.length > 0);
    for (const st of all) {
      assert.equal(st.Effect, "Allow");
      for (const a of actionsOf(st)) assert.ok(!a.includes("*"), `wildcard action ${a} in ${st.policy}`);
      if (!resourcesOf(st).includes("*")) continue;
      assert.deepEqual(resourcesOf(st), ["*"], `"*" must stand alone: ${JSON.stringify(st)}`);
      for (const a of actionsOf(st)) {
        const condition = STAR_ACTIONS[a];
        assert.ok(condition !== undefined, `${a} is granted on "*" in ${st.policy} (${st.Sid}); it must be scoped to an ARN`);
        if (condition === null) continue;
        const [op, key] = [condition.slice(0, condition.indexOf(":")), condition.slice(condition.indexOf(":") + 1)];
        assert.ok(st.Condition?.[op]?.[key] !== undefined, `${a} on "*" needs the ${op} ${key} condition (${st.Sid})`);
      }
    }
  });

  test("IAM: group tasks may only discover instances of this namespace", () => {
    assert.notEqual(ids.reverserRole, ids.mainRole);
    for (const role of [ids.reverserRole, ids.mainRole]) {
      const mine = statements(s.json).filter((st) => st.roles.includes(role));
      assert.deepEqual(
        new Set(mine.flatMap(actionsOf)),
        new Set(["servicediscovery:DiscoverInstances", "servicediscovery:DiscoverInstancesRevision"]),
      );
      assert.deepEqual(
        mine.map((st) => [st.Resource, st.Condition]),
        [
          [{ "Fn::GetAtt": [ids.namespace, "Arn"] }, undefined],
          ["*", { StringEquals: { "servicediscovery:NamespaceName": "tsweaver-hello" } }],
        ],
      );
      assert.equal(s.json.Resources[role]!.Properties!["ManagedPolicyArns"], undefined, "no managed policy by default");
    }
  });

  test("IAM: the control plane's rights are scoped to this cluster, namespace and load balancer", () => {
    const mine = statements(s.json).filter((st) => st.roles.includes(ids.controlPlaneRole));
    const bySid = (sid: string) => {
      const st = mine.find((x) => x.Sid === sid);
      assert.ok(st, `statement ${sid}`);
      return st;
    };
    const cluster = { ArnEquals: { "ecs:cluster": { "Fn::GetAtt": [ids.cluster, "Arn"] } } };
    assert.match(JSON.stringify(bySid("VersionServices").Resource), new RegExp(`:service/",\\{"Ref":"${ids.cluster}"\\},"/\\*"`));
    assert.deepEqual(bySid("VersionServices").Condition, cluster);
    assert.deepEqual(actionsOf(bySid("VersionServices")).sort(), [
      "ecs:CreateService",
      "ecs:DeleteService",
      "ecs:DescribeServices",
      "ecs:TagResource",
      "ecs:UntagResource",
      "ecs:UpdateService",
    ]);
    assert.deepEqual(bySid("ClusterTasks").Condition, cluster);
    assert.match(JSON.stringify(bySid("ClusterTasks").Resource), new RegExp(`:task/",\\{"Ref":"${ids.cluster}"\\},"/\\*"`));
    assert.deepEqual(bySid("ListInCluster").Condition, cluster);
    assert.deepEqual(bySid("PassTaskRoles").Condition, { StringEquals: { "iam:PassedToService": "ecs-tasks.amazonaws.com" } });
    assert.deepEqual(
      new Set(resourcesOf(bySid("PassTaskRoles"))),
      new Set([ids.executionRole, ids.reverserRole, ids.mainRole].map((id) => ({ "Fn::GetAtt": [id, "Arn"] }))),
    );
    const discovery = [...s.stack.weaver.groups.values()]
      .map((g) => g.discoveryService)
      .concat(s.stack.weaver.controlPlaneDiscoveryService);
    assert.deepEqual(new Set(resourcesOf(bySid("RegisterReplicas"))), new Set(discovery.map((d) => ({ "Fn::GetAtt": [s.id(d), "Arn"] }))));
    // Target groups only under this deployment's and listener's name prefix.
    const prefix = targetGroupName("tsweaver-hello", "hello", "");
    assert.match(JSON.stringify(bySid("VersionTargetGroups").Resource), new RegExp(`:targetgroup/${prefix}\\*"`));
    assert.ok(actionsOf(bySid("VersionTargetGroups")).includes("elasticloadbalancing:CreateTargetGroup"));
    assert.deepEqual(bySid("CreateListenerRules").Resource, { Ref: ids.listener });
    assert.match(
      JSON.stringify(bySid("ChangeListenerRules").Resource),
      new RegExp(`listener-rule/",\\{"Fn::GetAtt":\\["${ids.lb}","LoadBalancerFullName"\\]\\},"/\\*"`),
    );
    assert.match(JSON.stringify(bySid("VersionScaling").Resource), /:scalable-target\/\*"/);
    assert.deepEqual(bySid("ScalingServiceLinkedRole").Condition, {
      StringLike: { "iam:AWSServiceName": "ecs.application-autoscaling.amazonaws.com" },
    });
    assert.deepEqual(bySid("OwnStack").Resource, { Ref: "AWS::StackId" });
    // The deployment secret only, re-read to follow rotations.
    assert.deepEqual(bySid("DeploymentSecret").Resource, { Ref: s.id(s.stack.weaver.secret) });
    // This stack's alarms only (the rollout's alarm check).
    assert.match(JSON.stringify(bySid("DescribeOwnAlarms").Resource), /:alarm:tsweaver-hello\.\*"/);
    // Nothing else: no S3, no IAM beyond PassRole and the scaling service-linked role.
    const services = new Set(mine.flatMap(actionsOf).map((a) => a.split(":")[0]));
    assert.deepEqual(
      services,
      new Set([
        "ecs",
        "iam",
        "application-autoscaling",
        "servicediscovery",
        "elasticloadbalancing",
        "cloudformation",
        "secretsmanager",
        "cloudwatch",
      ]),
    );
  });

  test("IAM: task roles trust ECS tasks of this account only", () => {
    for (const role of [ids.reverserRole, ids.mainRole, ids.controlPlaneRole]) {
      const trust = s.json.Resources[role]!.Properties!["AssumeRolePolicyDocument"].Statement[0];
      assert.deepEqual(trust.Principal, { Service: "ecs-tasks.amazonaws.com" });
      assert.deepEqual(trust.Condition.StringEquals, { "aws:SourceAccount": { Ref: "AWS::AccountId" } });
      assert.ok(trust.Condition.ArnLike["aws:SourceArn"]);
    }
  });

  test("the execution role pulls the image, writes the log group and reads only the deployment secret", () => {
    const mine = statements(s.json).filter((st) => st.roles.includes(ids.executionRole));
    const secret = mine.find((st) => actionsOf(st).includes("secretsmanager:GetSecretValue"))!;
    assert.deepEqual(secret.Resource, { Ref: s.id(s.stack.weaver.secret) });
    const logsSt = mine.find((st) => actionsOf(st).includes("logs:PutLogEvents"))!;
    assert.deepEqual(logsSt.Resource, { "Fn::GetAtt": [s.id(s.stack.weaver.logGroup), "Arn"] });
  });

  test("log groups have the configured retention; the secret is generated", () => {
    s.template.allResourcesProperties("AWS::Logs::LogGroup", { RetentionInDays: 30 });
    s.template.hasResourceProperties("AWS::SecretsManager::Secret", {
      GenerateSecretString: { ExcludePunctuation: true, PasswordLength: 48 },
    });
  });

  test("the deployment CA's secret: created empty, read and written by the control plane's role only, given to no task", () => {
    const ca = s.id(s.stack.weaver.caSecret);
    const props = s.json.Resources[ca]!.Properties!;
    assert.equal(props["GenerateSecretString"], undefined, "no generated value: the control plane writes the CA");
    assert.equal(props["SecretString"], undefined);
    const grants = statements(s.json).filter((st) => JSON.stringify(st.Resource).includes(`"${ca}"`));
    assert.deepEqual(
      grants.map((st) => ({ roles: st.roles, actions: actionsOf(st).sort(), resources: resourcesOf(st) })),
      [
        {
          roles: [ids.controlPlaneRole],
          actions: ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
          resources: [{ Ref: ca }],
        },
      ],
    );
    // Its ARN goes to the control plane only; no container has it injected as a secret.
    for (const [id, r] of Object.entries(s.json.Resources).filter(([, r]) => r.Type === "AWS::ECS::TaskDefinition")) {
      const c = r.Properties!["ContainerDefinitions"][0] as { Secrets?: unknown[] };
      assert.doesNotMatch(JSON.stringify(c.Secrets ?? []), new RegExp(`"${ca}"`), `${id}: no CA in its secrets`);
      const env = containerEnv(s.json, id);
      if (id === ids.controlPlaneTask) assert.deepEqual(env[ENV.CA_SECRET_ARN], { Ref: ca });
      else assert.doesNotMatch(JSON.stringify(env), new RegExp(`"${ca}"`), `${id}: no CA in its environment`);
    }
  });

  test("outputs: the names tsweaver aws reads, with per-listener entries", () => {
    const o = s.json.Outputs;
    assert.deepEqual(
      Object.keys(o).sort(),
      [
        OUTPUTS.APP,
        OUTPUTS.CLUSTER_ARN,
        OUTPUTS.CLUSTER_NAME,
        OUTPUTS.CONTROLPLANE_SERVICE,
        OUTPUTS.DEPLOYMENT,
        OUTPUTS.SECRET_ARN,
        OUTPUTS.GROUPS,
        OUTPUTS.LISTENERS,
        OUTPUTS.LOAD_BALANCER_ARN,
        OUTPUTS.LOAD_BALANCER_DNS,
        OUTPUTS.LOG_GROUP,
        OUTPUTS.MAIN_GROUP,
        OUTPUTS.NAMESPACE_ID,
        OUTPUTS.NAMESPACE_NAME,
        OUTPUTS.VERSION,
        "UrlHello",
      ].sort(),
    );
    assert.equal(o[OUTPUTS.APP]!.Value, "hello");
    assert.equal(o[OUTPUTS.DEPLOYMENT]!.Value, "tsweaver-hello");
    assert.equal(o[OUTPUTS.MAIN_GROUP]!.Value, "tsweaver-main");
    assert.equal(o[OUTPUTS.NAMESPACE_NAME]!.Value, "tsweaver-hello");
    assert.deepEqual(o[OUTPUTS.CLUSTER_NAME]!.Value, { Ref: ids.cluster });
    assert.equal(o[OUTPUTS.VERSION]!.Value, s.stack.version);
    assert.deepEqual(joinedJson(o[OUTPUTS.GROUPS]!.Value), {
      "hello-reverser": {
        discoveryServiceId: `<${s.id(s.stack.weaver.groups.get("hello-reverser")!.discoveryService)}.Id>`,
        min: 2,
        max: 8,
      },
      "tsweaver-main": { discoveryServiceId: `<${s.id(s.stack.weaver.groups.get("tsweaver-main")!.discoveryService)}.Id>`, min: 1, max: 4 },
    });
    assert.deepEqual(joinedJson(o[OUTPUTS.LISTENERS]!.Value), {
      hello: { url: `http://<${ids.lb}.DNSName>`, listenerArn: `<${ids.listener}>` },
    });
  });

  test("the image is a Dockerfile asset, staged (not built) at synth", () => {
    const asset = s.stack.imageAsset!;
    assert.ok(asset);
    const staged = path.join(s.outdir, `asset.${asset.assetHash}`);
    assert.ok(existsSync(staged), staged);
    assert.deepEqual(readdirSync(staged).sort(), ["Dockerfile", "app.txt"]);
  });
});
