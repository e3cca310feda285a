import assert from "node:assert/strict";
import { test } from "node:test";
import { METRICS } from "../../../runtime/deployers/aws/contract.js";
import { emfLines } from "../../../runtime/deployers/aws/emf.js";
import { albResourceLabel, loadPolicy, requestsPolicy } from "../../../runtime/deployers/aws/scaling.js";
import { SERVED_CALLS } from "../../../runtime/telemetry/methods.js";

test("the request-count policy's resource label is the load balancer's and the target group's ARN tails", () => {
  const listener = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/tsweaver-hello/50dc6c495c0c9188/f2f7dc8efc522ab2";
  const tg = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/tw-1a2b3c4d-v0123456789/943f017f100becff";
  assert.equal(albResourceLabel(listener, tg), "app/tsweaver-hello/50dc6c495c0c9188/targetgroup/tw-1a2b3c4d-v0123456789/943f017f100becff");
  assert.deepEqual(requestsPolicy("app/a/1/targetgroup/b/2", 1000).PredefinedMetricSpecification, {
    PredefinedMetricType: "ALBRequestCountPerTarget",
    ResourceLabel: "app/a/1/targetgroup/b/2",
  });
  assert.throws(() => albResourceLabel(tg, tg), /not an application load balancer listener ARN/);
  assert.throws(() => albResourceLabel(listener, listener), /not a target group ARN/);
});

test("the load policy tracks the metric the agents publish, on exactly the dimensions their lines carry", () => {
  const policy = loadPolicy("hello", "hello-reverser", "v0123456789", 40);
  const spec = policy.CustomizedMetricSpecification!;
  assert.equal(policy.TargetValue, 40);
  assert.equal(spec.Statistic, "Average");
  // The line the agent writes for the same replica: its metric, namespace and dimension set must match.
  const { lines } = emfLines(
    [
      {
        name: SERVED_CALLS,
        kind: "COUNTER",
        labels: { component: "hello/Reverser", method: "reverse" },
        value: 30,
        bounds: [],
        counts: [],
        help: "",
      },
    ],
    { app: "hello", group: "hello-reverser", version: "v0123456789" },
    15_000,
  );
  const load = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((d) => METRICS.LOAD in d)!;
  const directive = (
    load["_aws"] as { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] }
  ).CloudWatchMetrics[0]!;
  assert.equal(spec.Namespace, directive.Namespace);
  assert.equal(spec.MetricName, directive.Metrics[0]!.Name);
  assert.equal(spec.Unit, directive.Metrics[0]!.Unit);
  assert.deepEqual(directive.Dimensions, [spec.Dimensions!.map((d) => d.Name)]);
  for (const d of spec.Dimensions!) assert.equal(load[d.Name!], d.Value, `dimension ${d.Name}`);
  assert.equal(load[METRICS.LOAD], 2, "30 calls in 15 s: 2 calls/s");
});
