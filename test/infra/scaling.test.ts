/**
 * Autoscaling settings travel from weaver.toml to the control plane (which puts the policies on each
 * version's services): `[aws.scaling]` for every group, a group's own keys over it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ENV, type GroupsEnv } from "../../runtime/deployers/aws/contract.js";
import { cdkAnnotations, containerEnv, joinedJson, nagFindings, synthText, type Synth } from "./helpers.js";

describe("[aws.scaling] and per-group scaling keys", () => {
  let s: Synth;
  before(() => {
    s = synthText(`
[aws]
image = "ghcr.io/acme/hello:1.0"
config_in_image = "weaver.toml"
[aws.listeners.hello]
[aws.scaling]
load_target = 40
[aws.groups.tsweaver-main]
requests_per_target = 1500
cpu_target = 55
[aws.groups.hello-reverser]
scale_in_protection = false
`);
  });
  after(() => s?.dispose());

  test("the control plane's TSWEAVER_GROUPS carries each group's targets and protection", () => {
    const env = containerEnv(s.json, s.id(s.stack.weaver.controlPlaneTaskDefinition));
    const groups = joinedJson(env[ENV.GROUPS]) as GroupsEnv;
    const scaling = Object.fromEntries(
      Object.entries(groups).map(([name, g]) => [name, [g.cpuTarget, g.requestsPerTarget, g.loadTarget, g.scaleInProtection]]),
    );
    assert.deepEqual(scaling, {
      "hello-reverser": [70, undefined, 40, false],
      "tsweaver-main": [55, 1500, 40, true],
    });
  });

  test("the construct exposes them per group", () => {
    const main = s.stack.weaver.groups.get("tsweaver-main")!;
    assert.deepEqual([main.cpuTargetPercent, main.requestsPerTarget, main.loadTarget, main.scaleInProtection], [55, 1500, 40, true]);
  });

  test("cdk-nag and CDK: clean", () => {
    assert.deepEqual(nagFindings(s.app), []);
    assert.deepEqual(cdkAnnotations(s.stack), []);
  });
});
