/**
 * The CloudWatch dashboard every stack gets, the alarms `[aws.alarms]` opts into and the trace export
 * `[aws] tracing` chooses (template assertions).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { IConstruct } from "constructs";
import { ADOT_COLLECTOR_IMAGE, COLLECTOR_CONTAINER, XRAY_ACTIONS } from "../../infra/weaver-app.js";
import { alarmNamePrefix } from "../../infra/dashboard.js";
import { ENV, METRICS, versionedServiceName } from "../../runtime/deployers/aws/contract.js";
import { actionsOf, cdkAnnotations, containerEnv, nagFindings, resourcesOf, statements, synthText, type Synth } from "./helpers.js";

type Json = Record<string, unknown>;

/** The dashboard body as JSON (CloudFormation joins it from literal strings and tokens). */
function dashboardBody(s: Synth): string {
  const [d] = Object.values(s.template.findResources("AWS::CloudWatch::Dashboard"));
  assert.ok(d, "a dashboard");
  return JSON.stringify((d["Properties"] as Json)["DashboardBody"]);
}

describe("observability: the default dashboard, no alarms", () => {
  let s: Synth;
  before(() => {
    s = synthText(`
[aws]
image = "ghcr.io/acme/hello:1.0"
config_in_image = "weaver.toml"
[aws.listeners.hello]
`);
  });
  after(() => s.dispose());

  test("one dashboard named after the stack with per-group ECS, EMF and load-balancer widgets of this version", () => {
    s.template.resourceCountIs("AWS::CloudWatch::Dashboard", 1);
    s.template.resourceCountIs("AWS::CloudWatch::Alarm", 0);
    assert.equal(
      containerEnv(s.json, s.id(s.stack.weaver.controlPlaneTaskDefinition))[ENV.ALARMS],
      "[]",
      "no alarms to watch during a rollout",
    );
    const body = dashboardBody(s);
    for (const g of s.stack.weaver.groups.values()) {
      assert.match(body, new RegExp(`${g.name}: served calls/s and error rate`));
      assert.match(body, new RegExp(`${g.name}: tasks and registered replicas`));
      assert.ok(body.includes(versionedServiceName(g.name, s.stack.weaver.version)), `${g.name}'s service of this version`);
    }
    for (const metric of [
      METRICS.SERVED_CALLS,
      METRICS.SERVED_ERRORS,
      METRICS.SERVED_LATENCY,
      METRICS.RECONCILE_ERRORS,
      METRICS.REGISTERED_REPLICAS,
    ]) {
      assert.ok(body.includes(metric), metric);
    }
    for (const metric of [
      "RunningTaskCount",
      "CPUUtilization",
      "MemoryUtilization",
      "RequestCount",
      "HTTPCode_Target_5XX_Count",
      "TargetResponseTime",
    ]) {
      assert.ok(body.includes(metric), metric);
    }
    assert.ok(body.includes(`\\"${METRICS.NAMESPACE}\\"`), "the agents' EMF namespace");
  });

  test("cdk-nag and CDK: clean", () => {
    assert.deepEqual(nagFindings(s.app), []);
    assert.deepEqual(cdkAnnotations(s.stack), []);
  });
});

describe("observability: every alarm, notifying a topic; no dashboard", () => {
  let s: Synth;
  before(() => {
    s = synthText(`
[aws]
image = "ghcr.io/acme/hello:1.0"
config_in_image = "weaver.toml"
dashboard = false
[aws.alarms]
error_rate = 0.02
p99_ms = 800
alb_5xx = 10
reconcile_errors = 3
topic_arn = "arn:aws:sns:us-east-1:123456789012:ops"
[aws.listeners.hello]
`);
  });
  after(() => s.dispose());

  test("per group an error-rate and a p99 alarm, plus load-balancer 5xx and reconcile errors, each notifying the topic", () => {
    s.template.resourceCountIs("AWS::CloudWatch::Dashboard", 0);
    const alarms = Object.values(s.template.findResources("AWS::CloudWatch::Alarm")).map((r) => r["Properties"] as Json);
    const groups = s.stack.weaver.groups.size;
    assert.equal(alarms.length, groups * 2 + 2);
    for (const a of alarms) {
      assert.deepEqual(a["AlarmActions"], ["arn:aws:sns:us-east-1:123456789012:ops"]);
      assert.deepEqual(a["OKActions"], ["arn:aws:sns:us-east-1:123456789012:ops"]);
      assert.equal(a["TreatMissingData"], "notBreaching");
    }
    const thresholds = alarms.map((a) => a["Threshold"]).sort((x, y) => Number(x) - Number(y));
    assert.deepEqual(thresholds, [...Array(groups).fill(0.02), 3, 10, ...Array(groups).fill(800)]);
    const errorRate = alarms.find((a) => a["Threshold"] === 0.02)!;
    assert.match(JSON.stringify(errorRate["Metrics"]), /IF\(calls > 0, errors \/ calls, 0\)/);
    assert.equal(errorRate["ComparisonOperator"], "GreaterThanThreshold");
    const reconcile = alarms.find((a) => a["Threshold"] === 3)!;
    assert.match(JSON.stringify(reconcile), new RegExp(`"MetricName":"${METRICS.RECONCILE_ERRORS}".*"Period":300`));
    assert.equal(reconcile["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
  });

  test("the alarms are named after the deployment, listed in the control plane's TSWEAVER_ALARMS, which may describe only those", () => {
    const w = s.stack.weaver;
    const names = Object.values(s.template.findResources("AWS::CloudWatch::Alarm"))
      .map((r) => (r["Properties"] as Json)["AlarmName"] as string)
      .sort();
    assert.equal(names.length, w.groups.size * 2 + 2);
    for (const n of names) assert.ok(n.startsWith(alarmNamePrefix(w.deploymentId)), n);
    assert.ok(names.includes(`${alarmNamePrefix(w.deploymentId)}tsweavermainErrorRate`), names.join(", "));
    const env = containerEnv(s.json, s.id(w.controlPlaneTaskDefinition));
    assert.deepEqual((JSON.parse(String(env[ENV.ALARMS])) as string[]).sort(), names);
    const grants = statements(s.json).filter(
      (st) => st.roles.includes(s.id(w.controlPlaneRole)) && actionsOf(st).includes("cloudwatch:DescribeAlarms"),
    );
    assert.equal(grants.length, 1);
    assert.deepEqual(actionsOf(grants[0]!), ["cloudwatch:DescribeAlarms"]);
    const resource = JSON.stringify(resourcesOf(grants[0]!));
    assert.ok(resource.includes(`":alarm:${alarmNamePrefix(w.deploymentId)}*"`), resource);
  });

  test("cdk-nag and CDK: clean", () => {
    assert.deepEqual(nagFindings(s.app), []);
    assert.deepEqual(cdkAnnotations(s.stack), []);
  });
});

/** Each `[aws] tracing` mode: the OTLP endpoint the group tasks export to, and whether a collector sidecar runs beside them. */
const TRACING: { mode: string; toml: string; endpoint: string | undefined; collector: boolean }[] = [
  { mode: "off", toml: "", endpoint: undefined, collector: false },
  { mode: "otlp", toml: 'otlp_endpoint = "http://collector.internal:4318"', endpoint: "http://collector.internal:4318", collector: false },
  { mode: "xray", toml: 'tracing = "xray"', endpoint: "http://localhost:4318", collector: true },
];

for (const t of TRACING) {
  describe(`observability: tracing = "${t.mode}"`, () => {
    let s: Synth;
    before(() => {
      s = synthText(`
[aws]
image = "ghcr.io/acme/hello:1.0"
config_in_image = "weaver.toml"
${t.toml}
[aws.listeners.hello]
`);
    });
    after(() => s.dispose());

    test(`every group task: ${t.endpoint ? `exports to ${t.endpoint}` : "no exporter"}${t.collector ? ", beside an ADOT collector sending to X-Ray" : ""}`, () => {
      assert.equal(s.stack.weaver.tracing, t.mode);
      for (const g of s.stack.weaver.groups.values()) {
        const containers = s.json.Resources[s.id(g.taskDefinition)]!.Properties!["ContainerDefinitions"] as Json[];
        assert.equal(containers.length, t.collector ? 2 : 1, g.name);
        const [agent, collector] = containers;
        assert.equal(containerEnv(s.json, s.id(g.taskDefinition))["OTEL_EXPORTER_OTLP_ENDPOINT"], t.endpoint);
        if (!t.collector) continue;
        assert.equal(collector!["Name"], COLLECTOR_CONTAINER);
        assert.equal(collector!["Image"], ADOT_COLLECTOR_IMAGE);
        assert.equal(collector!["Essential"], false, "a failing collector loses traces, not the task");
        const config = String(
          (collector!["Environment"] as { Name: string; Value: string }[]).find((e) => e.Name === "AOT_CONFIG_CONTENT")?.Value,
        );
        assert.match(
          config,
          /endpoint: 127\.0\.0\.1:4318[\s\S]*exporters:\n {2}awsxray: \{\}[\s\S]*traces:\n {6}receivers: \[otlp\]\n {6}processors: \[batch\]\n {6}exporters: \[awsxray\]/,
        );
        assert.deepEqual(agent!["DependsOn"], [{ ContainerName: COLLECTOR_CONTAINER, Condition: "START" }]);
      }
    });

    test(`X-Ray permissions: ${t.collector ? "every group's task role, nothing else" : "none"}`, () => {
      const xrayOf = (role: IConstruct) =>
        statements(s.json)
          .filter((st) => st.roles.includes(s.id(role)))
          .flatMap(actionsOf)
          .filter((a) => a.startsWith("xray:"))
          .sort();
      for (const g of s.stack.weaver.groups.values()) assert.deepEqual(xrayOf(g.taskRole), t.collector ? [...XRAY_ACTIONS].sort() : []);
      assert.deepEqual(xrayOf(s.stack.weaver.controlPlaneRole), []);
    });

    test("cdk-nag and CDK: clean", () => {
      assert.deepEqual(nagFindings(s.app), []);
      assert.deepEqual(cdkAnnotations(s.stack), []);
    });
  });
}
