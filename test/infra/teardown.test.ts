/**
 * `cdk destroy` of an active app: CloudFormation deletes a resource only after everything that depends
 * on it, so the control plane service (which, stopped during the deletion, removes the versions'
 * services, target groups and every Cloud Map instance) must depend on the Cloud Map services, the
 * namespace, the listeners and the cluster: then it is deleted, and cleans up, before them.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { FIXTURES, synth, type Synth } from "./helpers.js";

let s: Synth;
before(() => {
  s = synth(path.join(FIXTURES, "hello/weaver.toml"));
});
after(() => s?.dispose());

/** Logical ids a resource depends on, directly or through others (DependsOn, Ref, Fn::GetAtt). */
function dependencies(json: Synth["json"], id: string, seen = new Set<string>()): Set<string> {
  const r = json.Resources[id] as { DependsOn?: string | string[]; Properties?: unknown } | undefined;
  if (!r) return seen;
  const direct = new Set<string>([r.DependsOn ?? []].flat());
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (node && typeof node === "object") {
      const o = node as Record<string, unknown>;
      if (typeof o["Ref"] === "string") direct.add(o["Ref"]);
      if (Array.isArray(o["Fn::GetAtt"])) direct.add(o["Fn::GetAtt"][0] as string);
      Object.values(o).forEach(visit);
    }
  };
  visit(r.Properties);
  for (const d of direct) {
    if (seen.has(d) || !json.Resources[d]) continue;
    seen.add(d);
    dependencies(json, d, seen);
  }
  return seen;
}

test("the control plane is deleted before the Cloud Map services, the namespace, the listeners and the cluster", () => {
  const w = s.stack.weaver;
  const deps = dependencies(s.json, s.id(w.controlPlaneService));
  const mustOutlive = [
    ...[...w.groups.values()].map((g) => ["Cloud Map service of " + g.name, g.discoveryService] as const),
    ["the control plane's Cloud Map service", w.controlPlaneDiscoveryService] as const,
    ["the namespace", w.namespace] as const,
    ["the cluster", w.cluster] as const,
    ...[...w.listeners.values()].map((l) => [`listener ${l.name}`, l.listener] as const),
  ];
  for (const [what, c] of mustOutlive) assert.ok(deps.has(s.id(c)), `the control plane service depends on ${what}`);
  // Explicit, not only through the task environment: the service itself names them.
  const service = s.json.Resources[s.id(w.controlPlaneService)] as { DependsOn?: string[] };
  const dependsOn = new Set(service.DependsOn ?? []);
  for (const g of w.groups.values()) assert.ok(dependsOn.has(s.id(g.discoveryService)), `DependsOn ${g.name}'s Cloud Map service`);
});

test("the control plane's stop timeout leaves room for the clean-up (Fargate's maximum, 120 s)", () => {
  const td = s.json.Resources[s.id(s.stack.weaver.controlPlaneTaskDefinition)]!.Properties!;
  assert.equal(td["ContainerDefinitions"][0].StopTimeout, 120);
});
