import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { groupsOf, loadConfig, parseConfig } from "../../../runtime/core/config.js";
import { ConfigError } from "../../../runtime/core/errors.js";
import { parseAwsConfig, type AwsConfig } from "../../../runtime/deployers/aws/config.js";
import {
  defaultStackName,
  listenerUrlOutputKey,
  parseServiceName,
  pascalCase,
  targetGroupName,
  versionedServiceName,
  versionId,
} from "../../../runtime/deployers/aws/contract.js";
import { ROOT } from "../../support/index.js";

const F = "/apps/shop/weaver.toml";
const SHOP = ["shop/Cart", "shop/Catalog", "shop/Pricing", "tsweaver/Main"];

/** Parses `aws` (the text after `[aws]`-level tables) for an app with the SHOP components. */
function aws(text: string, app = '[tsweaver]\nname = "shop"\nbinary = "m.js"\ncolocate = [["shop/Pricing", "shop/Catalog"]]\n'): AwsConfig {
  const config = parseConfig(app + text, F);
  return parseAwsConfig(config, groupsOf(config, SHOP));
}

test("without an [aws] section every default is filled in, for every group", () => {
  const c = aws("");
  assert.equal(c.stack, "tsweaver-shop");
  assert.equal(c.account, undefined);
  assert.equal(c.region, undefined);
  assert.equal(c.vpcId, undefined);
  assert.equal(c.natGateways, 2);
  assert.equal(c.vpcEndpoints, "gateway");
  assert.equal(c.flowLogs, true);
  assert.equal(c.containerInsights, true);
  assert.equal(c.architecture, "x86_64");
  assert.equal(c.image, undefined);
  assert.equal(c.dockerfileDir, undefined);
  assert.equal(c.internalAlb, false);
  assert.equal(c.accessLogs, true);
  assert.equal(c.rpcPort, 9000);
  assert.equal(c.controlPort, 9100);
  assert.equal(c.logRetentionDays, 30);
  assert.deepEqual(c.controlPlane, { cpu: 256, memory: 512 });
  assert.deepEqual(c.listeners, []);
  assert.deepEqual(
    c.groups.map((g) => [g.name, g.components, g.min, g.max, g.cpu, g.memory, g.cpuTarget]),
    [
      ["shop-catalog", ["shop/Catalog", "shop/Pricing"], 1, 4, 256, 512, 70],
      ["shop-cart", ["shop/Cart"], 1, 4, 256, 512, 70],
      ["tsweaver-main", ["tsweaver/Main"], 1, 4, 256, 512, 70],
    ],
  );
});

test("every key is read: top level, groups, listeners, control plane", () => {
  const c = aws(`
[aws]
stack = "shop-prod"
account = "123456789012"
region = "eu-west-1"
vpc_id = "vpc-0123456789abcdef0"
container_insights = false
architecture = "arm64"
image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop:1.2"
config_in_image = "conf/weaver.toml"
internal_alb = true
access_logs = false
rpc_port = 7000
control_port = 7100
log_retention_days = 365
[aws.controlplane]
cpu = 512
memory = 2048
[aws.groups.shop-cart]
min = 3
max = 10
cpu = 1024
memory = 4096
cpu_target = 50
[aws.groups.tsweaver-main]
min = 6
[aws.listeners.web]
port = 443
container_port = 8000
public = false
health_check_path = "/healthz"
deregistration_delay_seconds = 5
certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/abc"
[aws.listeners.admin]
port = 8080
`);
  assert.equal(c.stack, "shop-prod");
  assert.equal(c.account, "123456789012");
  assert.equal(c.region, "eu-west-1");
  assert.equal(c.vpcId, "vpc-0123456789abcdef0");
  assert.equal(c.containerInsights, false);
  assert.equal(c.architecture, "arm64");
  assert.equal(c.image, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop:1.2");
  assert.equal(c.configInImage, "conf/weaver.toml");
  assert.equal(c.internalAlb, true);
  assert.equal(c.accessLogs, false);
  assert.equal(c.rpcPort, 7000);
  assert.equal(c.controlPort, 7100);
  assert.equal(c.logRetentionDays, 365);
  assert.deepEqual(c.controlPlane, { cpu: 512, memory: 2048 });
  const cart = c.groups.find((g) => g.name === "shop-cart")!;
  assert.deepEqual([cart.min, cart.max, cart.cpu, cart.memory, cart.cpuTarget], [3, 10, 1024, 4096, 50]);
  const main = c.groups.find((g) => g.name === "tsweaver-main")!;
  assert.deepEqual([main.min, main.max], [6, 6], "max defaults to at least min");
  assert.deepEqual(c.listeners, [
    {
      name: "admin",
      port: 8080,
      containerPort: 8080,
      public: true,
      healthCheckPath: "/",
      deregistrationDelaySeconds: 30,
      certificateArn: undefined,
      redirectPort: undefined,
    },
    {
      name: "web",
      port: 443,
      containerPort: 8000,
      public: false,
      healthCheckPath: "/healthz",
      deregistrationDelaySeconds: 5,
      certificateArn: "arn:aws:acm:eu-west-1:123456789012:certificate/abc",
      redirectPort: 80,
    },
  ]);
});

test("[aws] tracing: off by default, otlp with an otlp_endpoint, xray when asked", () => {
  assert.equal(aws("").tracing, "off");
  assert.equal(aws('[aws]\notlp_endpoint = "http://collector:4318"\n').tracing, "otlp");
  assert.equal(aws('[aws]\ntracing = "otlp"\notlp_endpoint = "http://collector:4318"\n').tracing, "otlp");
  assert.equal(aws('[aws]\ntracing = "xray"\n').tracing, "xray");
  assert.equal(aws('[aws]\ntracing = "off"\n').tracing, "off");
});

test("default container ports are 8080, 8081, ... in name order, skipping ports already taken", () => {
  const c = aws(`
[aws]
rpc_port = 8081
[aws.listeners.c]
port = 3
[aws.listeners.a]
port = 1
[aws.listeners.b]
port = 2
container_port = 8082
`);
  assert.deepEqual(
    c.listeners.map((l) => [l.name, l.containerPort]),
    [
      ["a", 8080],
      ["b", 8082],
      ["c", 8083],
    ],
  );
});

test("dockerfile_dir is resolved next to weaver.toml", () => {
  const c = aws('[aws]\ndockerfile_dir = "../docker"\ndockerfile = "app.Dockerfile"\n');
  assert.equal(c.dockerfileDir, "/apps/docker");
  assert.equal(c.dockerfile, "app.Dockerfile");
});

test("the default stack name is tsweaver-<app>, with '_' made '-'", () => {
  assert.equal(defaultStackName("my_app"), "tsweaver-my-app");
  assert.equal(aws("", '[tsweaver]\nname = "my_shop"\nbinary = "m.js"\n').stack, "tsweaver-my-shop");
});

test("output keys are PascalCase listener names", () => {
  assert.equal(pascalCase("hello-reverser"), "HelloReverser");
  assert.equal(listenerUrlOutputKey("public_api"), "UrlPublicApi");
});

test("[aws.rollout]: defaults, and every key read", () => {
  assert.deepEqual(aws("").rollout, { steps: [10, 50, 100], stepSeconds: 60, maxErrorRate: 0.05, healthTimeoutSeconds: 600 });
  assert.deepEqual(aws("[aws.rollout]\nsteps = [25, 100]\nstep_seconds = 5\nmax_error_rate = 0\nhealth_timeout_seconds = 30\n").rollout, {
    steps: [25, 100],
    stepSeconds: 5,
    maxErrorRate: 0,
    healthTimeoutSeconds: 30,
  });
  assert.deepEqual(aws("[aws.rollout]\nsteps = [100]\n").rollout.steps, [100]);
});

test("version ids: what the tasks run decides them; service and target group names carry them", () => {
  const v = versionId({ image: "asset-1", config: "{}", binary: "main" });
  assert.match(v, /^v[0-9a-f]{10}$/);
  assert.equal(versionId({ image: "asset-1", config: "{}", binary: "main" }), v);
  for (const other of [
    { image: "asset-2", config: "{}", binary: "main" },
    { image: "asset-1", config: "{ }", binary: "main" },
    { image: "asset-1", config: "{}", binary: "main2" },
    { image: "asset-1{}", config: "", binary: "main" },
  ]) {
    assert.notEqual(versionId(other), v, JSON.stringify(other));
  }
  assert.equal(versionedServiceName("hello-reverser", v), `hello-reverser-${v}`);
  assert.deepEqual(parseServiceName(`hello-reverser-${v}`), { group: "hello-reverser", version: v });
  assert.deepEqual(parseServiceName(`a-v0123456789-${v}`), { group: "a-v0123456789", version: v });
  assert.equal(parseServiceName("tsweaver_controlplane"), undefined);
  assert.equal(parseServiceName("hello-reverser"), undefined);
  const tg = targetGroupName("tsweaver-hello-with-a-long-stack-name", "hello", v);
  assert.ok(tg.length <= 32, tg);
  assert.match(tg, new RegExp(`^tw-[0-9a-f]{8}-${v}$`));
  assert.notEqual(targetGroupName("other-stack", "hello", v), tg);
});

const bad: [string, string, RegExp][] = [
  ["unknown top-level key", '[aws]\nregoin = "x"\n', /aws\.regoin: unknown key \(known keys: stack, account, region/],
  [
    "unknown group",
    "[aws.groups.shop-pricing]\nmin = 1\n",
    /aws\.groups\.shop-pricing: unknown group.*shop-catalog \(shop\/Catalog, shop\/Pricing\)/,
  ],
  ["unknown group key", "[aws.groups.shop-cart]\nreplicas = 2\n", /aws\.groups\.shop-cart\.replicas: unknown key/],
  ["unknown listener key", '[aws.listeners.web]\naddress = "x"\n', /aws\.listeners\.web\.address: unknown key/],
  ["unknown controlplane key", "[aws.controlplane]\nmin = 2\n", /aws\.controlplane\.min: unknown key/],
  ["groups not a table", "[aws]\ngroups = 3\n", /aws\.groups: must be a table/],
  ["group not a table", "[aws.groups]\nshop-cart = 3\n", /aws\.groups\.shop-cart: must be a table/],
  [
    "string for an int",
    '[aws.groups.shop-cart]\nmax = "4"\n',
    /aws\.groups\.shop-cart\.max: must be an integer from 1 to 1000 \(got "4"\)/,
  ],
  ["float for an int", "[aws]\nrpc_port = 9000.5\n", /aws\.rpc_port: must be an integer/],
  ["min 0", "[aws.groups.shop-cart]\nmin = 0\n", /aws\.groups\.shop-cart\.min: must be an integer from 1/],
  ["max below min", "[aws.groups.shop-cart]\nmin = 5\nmax = 2\n", /aws\.groups\.shop-cart\.max: must be at least min \(5\)/],
  ["bad Fargate cpu", "[aws.groups.shop-cart]\ncpu = 300\n", /aws\.groups\.shop-cart\.cpu: must be a Fargate CPU size/],
  [
    "bad Fargate memory",
    "[aws.groups.shop-cart]\ncpu = 1024\nmemory = 512\n",
    /aws\.groups\.shop-cart\.memory: Fargate tasks with cpu = 1024 take memory 2048 to 8192 in steps of 1024/,
  ],
  [
    "bad control plane size",
    "[aws.controlplane]\ncpu = 256\nmemory = 4096\n",
    /aws\.controlplane\.memory: Fargate tasks with cpu = 256 take memory 512, 1024, 2048/,
  ],
  ["bool as string", '[aws]\ninternal_alb = "yes"\n', /aws\.internal_alb: must be true or false/],
  ["bad stack name", '[aws]\nstack = "1shop"\n', /aws\.stack: must start with a letter/],
  ["bad account", '[aws]\naccount = "12345"\n', /aws\.account: must be a 12-digit/],
  ["bad region", '[aws]\nregion = "Europe"\n', /aws\.region: must be an AWS region/],
  ["bad vpc id", '[aws]\nvpc_id = "default"\naccount = "123456789012"\nregion = "eu-west-1"\n', /aws\.vpc_id: must be a VPC id/],
  ["vpc without env", '[aws]\nvpc_id = "vpc-0123456789abcdef0"\n', /aws\.vpc_id: importing a VPC needs aws\.account and aws\.region/],
  [
    "nat with imported vpc",
    '[aws]\nvpc_id = "vpc-0123456789abcdef0"\naccount = "123456789012"\nregion = "eu-west-1"\nnat_gateways = 1\n',
    /aws\.nat_gateways: applies only to the VPC the stack creates/,
  ],
  ["three NATs", "[aws]\nnat_gateways = 3\n", /aws\.nat_gateways: must be an integer from 0 to 2/],
  ["alarm error rate", "[aws.alarms]\nerror_rate = 5\n", /aws\.alarms\.error_rate: must be a number above 0 and at most 1/],
  ["alarm topic", '[aws.alarms]\ntopic_arn = "ops"\n', /aws\.alarms\.topic_arn: must be an SNS topic ARN/],
  ["alarm key", "[aws.alarms]\np50_ms = 3\n", /aws\.alarms.*p50_ms/],
  ["endpoints", '[aws]\nvpc_endpoints = "some"\n', /aws\.vpc_endpoints: must be "none", "gateway" or "all" \(got "some"\)/],
  [
    "endpoints with imported vpc",
    '[aws]\nvpc_id = "vpc-0123456789abcdef0"\naccount = "123456789012"\nregion = "eu-west-1"\nvpc_endpoints = "all"\n',
    /aws\.vpc_endpoints: applies only to the VPC the stack creates/,
  ],
  ["image and dockerfile_dir", '[aws]\nimage = "nginx"\ndockerfile_dir = "."\n', /aws\.dockerfile_dir: set either aws\.image/],
  ["dockerfile outside context", '[aws]\ndockerfile = "../Dockerfile"\n', /aws\.dockerfile: must be a path inside the build context/],
  ["architecture", '[aws]\narchitecture = "amd64"\n', /aws\.architecture: must be "x86_64" or "arm64"/],
  ["retention", "[aws]\nlog_retention_days = 10\n", /aws\.log_retention_days: must be one of 1, 3, 5/],
  ["otlp endpoint", '[aws]\notlp_endpoint = "collector:4318"\n', /aws\.otlp_endpoint: must be an http\(s\) URL/],
  ["tracing value", '[aws]\ntracing = "jaeger"\n', /aws\.tracing: must be one of "xray", "otlp", "off" \(got "jaeger"\)/],
  ["tracing otlp without endpoint", '[aws]\ntracing = "otlp"\n', /aws\.tracing: "otlp" sends traces to aws\.otlp_endpoint: set it/],
  [
    "endpoint with xray tracing",
    '[aws]\ntracing = "xray"\notlp_endpoint = "http://collector:4318"\n',
    /aws\.otlp_endpoint: is used only with tracing = "otlp" \(tracing is "xray"\)/,
  ],
  ["same rpc and control port", "[aws]\nrpc_port = 9100\n", /aws\.control_port: must differ from aws\.rpc_port \(9100\)/],
  [
    "container port on rpc port",
    "[aws.listeners.web]\ncontainer_port = 9000\n",
    /aws\.listeners\.web\.container_port: 9000 is already used by aws\.rpc_port/,
  ],
  [
    "two listeners on one port",
    "[aws.listeners.a]\nport = 8000\n[aws.listeners.b]\nport = 8000\n",
    /aws\.listeners\.b\.port: port 8000 is already used by aws\.listeners\.a\.port/,
  ],
  [
    "redirect clashes with a listener",
    '[aws.listeners.a]\n[aws.listeners.b]\ncertificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/x"\n',
    /aws\.listeners\.b\.redirect_http: the HTTP→HTTPS redirect needs port 80, already used by aws\.listeners\.a\.port; set redirect_http = false/,
  ],
  [
    "redirect without certificate",
    "[aws.listeners.a]\nredirect_http = true\n",
    /aws\.listeners\.a\.redirect_http: applies only to HTTPS listeners/,
  ],
  ["bad certificate", '[aws.listeners.a]\ncertificate_arn = "my-cert"\n', /aws\.listeners\.a\.certificate_arn: must be an ACM/],
  ["bad health path", '[aws.listeners.a]\nhealth_check_path = "healthz"\n', /aws\.listeners\.a\.health_check_path: must start with "\/"/],
  ["bad listener name", '[aws.listeners."my listener"]\n', /aws\.listeners\.my listener: listener names must start with a letter/],
  [
    "deregistration delay",
    "[aws.listeners.a]\nderegistration_delay_seconds = -1\n",
    /aws\.listeners\.a\.deregistration_delay_seconds: must be an integer from 0 to 3600 \(got -1\)/,
  ],
  [
    "unknown rollout key",
    "[aws.rollout]\nstep = 5\n",
    /aws\.rollout\.step: unknown key \(known keys: steps, step_seconds, max_error_rate, health_timeout_seconds\)/,
  ],
  [
    "steps not ending at 100",
    "[aws.rollout]\nsteps = [10, 50]\n",
    /aws\.rollout\.steps: must be percentages from 1 to 100, ascending, the last one 100, e\.g\. \[10, 50, 100\] \(got \[10,50\]\)/,
  ],
  ["steps not ascending", "[aws.rollout]\nsteps = [50, 10, 100]\n", /aws\.rollout\.steps: must be percentages .*\(got \[50,10,100\]\)/],
  ["steps empty", "[aws.rollout]\nsteps = []\n", /aws\.rollout\.steps: must be percentages/],
  ["steps not numbers", '[aws.rollout]\nsteps = "10,100"\n', /aws\.rollout\.steps: must be percentages .*\(got "10,100"\)/],
  ["step seconds", "[aws.rollout]\nstep_seconds = 1.5\n", /aws\.rollout\.step_seconds: must be an integer from 0 to 86400 \(got 1\.5\)/],
  [
    "error rate above 1",
    "[aws.rollout]\nmax_error_rate = 5\n",
    /aws\.rollout\.max_error_rate: must be a number from 0 to 1, e\.g\. 0\.05 for 5% \(got 5\)/,
  ],
  [
    "health timeout",
    "[aws.rollout]\nhealth_timeout_seconds = 1\n",
    /aws\.rollout\.health_timeout_seconds: must be an integer from 10 to 86400 \(got 1\)/,
  ],
  [
    "unknown scaling key",
    "[aws.scaling]\nrequests = 5\n",
    /aws\.scaling\.requests: unknown key \(known keys: cpu_target, requests_per_target, load_target, scale_in_protection\)/,
  ],
  ["cpu target", "[aws.scaling]\ncpu_target = 95\n", /aws\.scaling\.cpu_target: must be an integer from 10 to 90 \(got 95\)/],
  ["group cpu target", "[aws.groups.shop-cart]\ncpu_target = 5\n", /aws\.groups\.shop-cart\.cpu_target: must be an integer from 10 to 90/],
  [
    "requests per target as a float",
    "[aws.listeners.web]\n[aws.scaling]\nrequests_per_target = 10.5\n",
    /aws\.scaling\.requests_per_target: must be an integer from 1 to 1000000 \(got 10\.5\)/,
  ],
  [
    "requests per target without listeners",
    "[aws.scaling]\nrequests_per_target = 1000\n",
    /aws\.scaling\.requests_per_target: tracks requests through the load balancer, and this app exports no listener/,
  ],
  [
    "group requests per target without listeners",
    "[aws.groups.shop-cart]\nrequests_per_target = 1000\n",
    /aws\.groups\.shop-cart\.requests_per_target: tracks requests through the load balancer/,
  ],
  ["load target zero", "[aws.scaling]\nload_target = 0\n", /aws\.scaling\.load_target: must be a number from 0\.1 to 1000000 \(got 0\)/],
  ["load target string", '[aws.groups.shop-cart]\nload_target = "50"\n', /aws\.groups\.shop-cart\.load_target: must be a number/],
  ["protection as string", '[aws.scaling]\nscale_in_protection = "yes"\n', /aws\.scaling\.scale_in_protection: must be true or false/],
];

test("autoscaling: CPU at 70% and busy replicas protected by default; [aws.scaling] sets every group, a group's own keys win", () => {
  const scaling = (c: AwsConfig) => c.groups.map((g) => [g.name, g.cpuTarget, g.requestsPerTarget, g.loadTarget, g.scaleInProtection]);
  assert.deepEqual(scaling(aws("")), [
    ["shop-catalog", 70, undefined, undefined, true],
    ["shop-cart", 70, undefined, undefined, true],
    ["tsweaver-main", 70, undefined, undefined, true],
  ]);
  const c = aws(`
[aws.listeners.web]
[aws.scaling]
cpu_target = 60
load_target = 25.5
[aws.groups.shop-cart]
load_target = 100
scale_in_protection = false
[aws.groups.tsweaver-main]
requests_per_target = 1200
cpu_target = 50
`);
  assert.deepEqual(scaling(c), [
    ["shop-catalog", 60, undefined, 25.5, true],
    ["shop-cart", 60, undefined, 100, false],
    ["tsweaver-main", 50, 1200, 25.5, true],
  ]);
});

for (const [what, text, message] of bad) {
  test(`[aws] error names the file and key: ${what}`, () => {
    assert.throws(
      () => aws(text),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
        assert.ok(err.message.startsWith(`${F}: `), `message must start with the file: ${err.message}`);
        assert.match(err.message, message);
        return true;
      },
    );
  });
}

test("groups that would share a logical id are refused", () => {
  const config = parseConfig('[tsweaver]\nbinary = "m.js"\n', F);
  // x/1 → group x-1 and x1 → group x1: both would be construct GroupX1.
  assert.throws(
    () => parseAwsConfig(config, groupsOf(config, ["x/1", "x1", "tsweaver/Main"])),
    /group x1 and group x-1 both map to the CloudFormation logical id GroupX1/,
  );
});

test("an app without tsweaver/Main is refused", () => {
  const config = parseConfig('[tsweaver]\nbinary = "m.js"\n', F);
  assert.throws(() => parseAwsConfig(config, groupsOf(config, ["shop/Cart"])), /no tsweaver\/Main component/);
});

test("examples/five/weaver.toml: five groups, with its sizes and one listener", () => {
  const config = loadConfig(path.join(ROOT, "examples/five/weaver.toml"));
  const components = ["five/Catalog", "five/Checkout", "five/Currency", "five/Inventory", "five/Pricing", "tsweaver/Main"];
  const c = parseAwsConfig(config, groupsOf(config, components));
  assert.equal(c.stack, "tsweaver-five");
  assert.equal(c.region, "us-east-1");
  assert.deepEqual(
    c.groups.map((g) => [g.name, g.min, g.max, g.cpu, g.memory]),
    [
      ["five-currency", 1, 8, 512, 1024],
      ["five-catalog", 1, 3, 256, 512],
      ["five-checkout", 1, 4, 256, 512],
      ["five-inventory", 1, 4, 256, 512],
      ["tsweaver-main", 2, 6, 256, 512],
    ],
  );
  assert.deepEqual(
    c.listeners.map((l) => [l.name, l.port, l.containerPort, l.healthCheckPath]),
    [["shop", 80, 8080, "/healthz"]],
  );
});

test("permissions and secrets: app-wide and per group, parsed with their sources", () => {
  const c = aws(`[aws.permissions]
managed_policies = ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]
[[aws.permissions.statements]]
actions = ["s3:PutObject"]
resources = ["arn:aws:s3:::uploads/*"]
[aws.secrets]
DB = { arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf", field = "password" }
[aws.groups.shop-cart.secrets]
KEY = "arn:aws:ssm:us-east-1:123456789012:parameter/shop/key"
[[aws.groups.shop-cart.permissions.statements]]
effect = "Deny"
actions = ["s3:DeleteObject"]
resources = ["*"]
`);
  assert.deepEqual(c.permissions, {
    managedPolicies: ["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"],
    statements: [{ effect: "Allow", actions: ["s3:PutObject"], resources: ["arn:aws:s3:::uploads/*"] }],
  });
  assert.deepEqual(c.secrets, {
    DB: { source: "secretsmanager", arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf", field: "password" },
  });
  const cart = c.groups.find((g) => g.name === "shop-cart")!;
  assert.deepEqual(cart.secrets, {
    KEY: { source: "ssm", arn: "arn:aws:ssm:us-east-1:123456789012:parameter/shop/key", field: undefined },
  });
  assert.deepEqual(cart.permissions.statements, [{ effect: "Deny", actions: ["s3:DeleteObject"], resources: ["*"] }]);
  assert.deepEqual(c.groups.find((g) => g.name === "tsweaver-main")!.permissions, { managedPolicies: [], statements: [] });
  assert.deepEqual(aws("").secrets, {});
});

for (const [what, text, error] of [
  [
    "policy ARN",
    '[aws.permissions]\nmanaged_policies = ["AmazonS3ReadOnlyAccess"]\n',
    /aws\.permissions\.managed_policies: must be IAM managed policy ARNs .*got "AmazonS3ReadOnlyAccess"/,
  ],
  [
    "permissions key",
    "[aws.permissions]\npolicies = []\n",
    /aws\.permissions\.policies: unknown key \(known keys: managed_policies, statements\)/,
  ],
  [
    "statement without actions",
    '[[aws.groups.shop-cart.permissions.statements]]\nresources = ["*"]\n',
    /aws\.groups\.shop-cart\.permissions\.statements\[0\]\.actions: required/,
  ],
  [
    "statement action",
    '[[aws.permissions.statements]]\nactions = ["GetObject"]\nresources = ["*"]\n',
    /aws\.permissions\.statements\[0\]\.actions: must be IAM actions .*got "GetObject"/,
  ],
  [
    "statement resource",
    '[[aws.permissions.statements]]\nactions = ["s3:GetObject"]\nresources = ["my-bucket"]\n',
    /statements\[0\]\.resources: must be ARNs or "\*" \(got "my-bucket"\)/,
  ],
  [
    "statement effect",
    '[[aws.permissions.statements]]\neffect = "allow"\nactions = ["s3:GetObject"]\nresources = ["*"]\n',
    /statements\[0\]\.effect: must be "Allow" or "Deny"/,
  ],
  [
    "partial secret ARN",
    '[aws.secrets]\nDB = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"\n',
    /aws\.secrets\.DB: must be a complete Secrets Manager secret ARN .*6-character/,
  ],
  [
    "secret name",
    '[aws.secrets]\n"my-db" = "arn:aws:ssm:us-east-1:123456789012:parameter/x"\n',
    /aws\.secrets\.my-db: the name is an environment variable/,
  ],
  [
    "reserved name",
    '[aws.secrets]\nAWS_SECRET_ACCESS_KEY = "arn:aws:ssm:us-east-1:123456789012:parameter/x"\n',
    /aws\.secrets\.AWS_SECRET_ACCESS_KEY: names starting with TSWEAVER_, AWS_ or ECS_ are reserved/,
  ],
  [
    "field on a parameter",
    '[aws.secrets]\nK = { arn = "arn:aws:ssm:us-east-1:123456789012:parameter/x", field = "a" }\n',
    /aws\.secrets\.K\.field: applies only to Secrets Manager/,
  ],
  [
    "secret twice",
    '[aws.secrets]\nK = "arn:aws:ssm:us-east-1:123456789012:parameter/x"\n[aws.groups.shop-cart.secrets]\nK = "arn:aws:ssm:us-east-1:123456789012:parameter/y"\n',
    /aws\.groups\.shop-cart\.secrets\.K: K is already set by aws\.secrets/,
  ],
] as const) {
  test(`permissions/secrets error names the key: ${what}`, () => {
    assert.throws(
      () => aws(text),
      (err: Error) => err instanceof ConfigError && error.test(err.message) && err.message.startsWith(F),
    );
  });
}

test("health_port: 9101 by default; it may not clash with the RPC, control or listener ports", () => {
  assert.equal(aws("").healthPort, 9101);
  assert.equal(aws("[aws]\nhealth_port = 7000\n").healthPort, 7000);
  assert.throws(
    () => aws("[aws]\nhealth_port = 9000\n"),
    /aws\.health_port: must differ from aws\.rpc_port \(9000\) and aws\.control_port \(9100\)/,
  );
  assert.throws(
    () => aws("[aws.listeners.web]\ncontainer_port = 9101\n"),
    /aws\.listeners\.web\.container_port: 9101 is already used by aws\.health_port/,
  );
});

test("base_image: an image reference, best by digest; not with a prebuilt image", () => {
  const digest = `public.ecr.aws/docker/library/node:26-bookworm-slim@sha256:${"0".repeat(64)}`;
  assert.equal(aws(`[aws]\nbase_image = "${digest}"\n`).baseImage, digest);
  assert.equal(aws("").baseImage, undefined);
  assert.throws(() => aws('[aws]\nbase_image = "node 26"\n'), /aws\.base_image: must be an image reference, best pinned by digest/);
  assert.throws(
    () => aws('[aws]\nimage = "nginx"\nbase_image = "node:26"\n'),
    /aws\.base_image: applies to the image built from a Dockerfile/,
  );
});
