/**
 * Least privilege, proven: the AWS calls each task role's code makes are read from the code itself (the
 * AWS SDK command classes its entry file imports, following its relative imports), and the synthesized
 * stack must grant that role exactly those actions, plus those AWS requires alongside them, each on
 * this stack's resources wherever IAM allows resource-level permissions. Adding an AWS call to the
 * runtime without granting it (or granting what nothing calls) fails here.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { IConstruct } from "constructs";
import { XRAY_ACTIONS, type WeaverApp } from "../../infra/weaver-app.js";
import { ENV } from "../../runtime/deployers/aws/contract.js";
import { ROOT } from "../support/index.js";
import { actionsOf, containerEnv, FIXTURES, resourcesOf, statements, synth, synthText, type Synth } from "./helpers.js";

/** Each task role: the entry file of the code that runs with it, the role and (one of) its task definitions. */
const ROLES: Record<string, { entry: string; role: (w: WeaverApp) => IConstruct; taskDefinition: (w: WeaverApp) => IConstruct }> = {
  controlPlane: {
    entry: "runtime/deployers/aws/controlplane.ts",
    role: (w) => w.controlPlaneRole,
    taskDefinition: (w) => w.controlPlaneTaskDefinition,
  },
  // Every group has its own task role; by default each may do only what the agent calls.
  "group tsweaver-main": {
    entry: "runtime/deployers/aws/agent.ts",
    role: (w) => w.taskRole("tsweaver-main"),
    taskDefinition: (w) => w.groups.get("tsweaver-main")!.taskDefinition,
  },
  "group hello-reverser": {
    entry: "runtime/deployers/aws/agent.ts",
    role: (w) => w.taskRole("hello-reverser"),
    taskDefinition: (w) => w.groups.get("hello-reverser")!.taskDefinition,
  },
};

/** IAM service prefix of each AWS SDK v3 client package. */
const IAM_PREFIX: Record<string, string> = {
  "client-ecs": "ecs",
  "client-elastic-load-balancing-v2": "elasticloadbalancing",
  "client-servicediscovery": "servicediscovery",
  "client-application-auto-scaling": "application-autoscaling",
  "client-cloudformation": "cloudformation",
  "client-cloudwatch-logs": "logs",
  "client-cloudwatch": "cloudwatch",
  "client-secrets-manager": "secretsmanager",
};

/** Actions AWS authorizes along with a call, given how the runtime makes it. */
const IMPLIED: Record<string, readonly string[]> = {
  // The task definition it runs names the task and execution roles.
  "ecs:CreateService": ["iam:PassRole"],
  // The first registration of an account creates ECS's autoscaling service-linked role.
  "application-autoscaling:RegisterScalableTarget": ["iam:CreateServiceLinkedRole"],
  // Created with tags (their version and listener; the rule's owner).
  "elasticloadbalancing:CreateTargetGroup": ["elasticloadbalancing:AddTags"],
  "elasticloadbalancing:CreateRule": ["elasticloadbalancing:AddTags"],
};

/**
 * What a sidecar does with a task role, per `[aws] tracing` mode and role: actions beyond the calls of
 * the role's code. IAM has no resource-level permission or condition key for any of them.
 */
const SIDECAR_GRANTS: Record<string, Record<string, readonly string[]>> = {
  xray: { controlPlane: [], "group tsweaver-main": XRAY_ACTIONS, "group hello-reverser": XRAY_ACTIONS },
};

/** The secrets each role may read, one line each. */
const SECRETS_READ: Record<string, (w: WeaverApp) => IConstruct[]> = {
  controlPlane: (w) => [w.secret, w.caSecret],
  "group tsweaver-main": () => [],
  "group hello-reverser": () => [],
};

/** Actions IAM authorizes only on "*", with the condition key that scopes each to this stack. */
const STAR_ONLY: Record<string, string> = {
  "ecs:ListTasks": "ecs:cluster",
  "ecs:ListServices": "ecs:cluster",
  "servicediscovery:DiscoverInstances": "servicediscovery:NamespaceName",
  "servicediscovery:DiscoverInstancesRevision": "servicediscovery:NamespaceName",
  "elasticloadbalancing:DescribeTargetHealth": "aws:RequestedRegion",
  "elasticloadbalancing:DescribeTargetGroups": "aws:RequestedRegion",
  "elasticloadbalancing:DescribeRules": "aws:RequestedRegion",
  "elasticloadbalancing:DescribeTags": "aws:RequestedRegion",
};

/**
 * Actions on tasks, granted to the control plane only and only on this cluster's tasks: among them the
 * scale-in protection of busy replicas, which no group role (the app's code holds it) may set.
 */
const TASK_ACTIONS: readonly string[] = ["ecs:DescribeTasks", "ecs:UpdateTaskProtection"];

/** The source files an entry file runs: itself and, transitively, every file it imports by a relative path. */
function closure(entry: string, seen = new Map<string, string>()): Map<string, string> {
  const file = path.join(ROOT, entry);
  if (seen.has(file)) return seen;
  const text = readFileSync(file, "utf8");
  seen.set(file, text);
  for (const m of text.matchAll(/from\s+"(\.{1,2}\/[^"]+)\.js"/g))
    closure(path.relative(ROOT, path.resolve(path.dirname(file), `${m[1]}.ts`)), seen);
  return seen;
}

/** The environment variables the code reads: `ENV.X` (contract.ts) or a literal name, in `process.env[...]`, `required(...)` or `json<T>(...)`. */
function envReadsOf(entry: string): Set<string> {
  const out = new Set<string>();
  for (const text of closure(entry).values()) {
    for (const m of text.matchAll(/(?:\benv\[|required\(|json<\w+>\()\s*(?:ENV\.([A-Z_]+)|"([A-Z_][A-Z0-9_]*)")/g)) {
      if (m[1]) {
        const name = (ENV as Record<string, string>)[m[1]];
        assert.ok(name, `ENV.${m[1]} is not in contract.ts`);
        out.add(name);
      } else out.add(m[2]!);
    }
  }
  return out;
}

/** The IAM actions of the AWS SDK commands the code imports (type-only imports excluded). */
export function awsCallsOf(entry: string): Set<string> {
  const out = new Set<string>();
  for (const text of closure(entry).values()) {
    for (const m of text.matchAll(/import\s+(type\s+)?\{([^}]*)\}\s+from\s+"@aws-sdk\/([^"]+)"/g)) {
      if (m[1]) continue;
      const prefix = IAM_PREFIX[m[3]!];
      for (const name of m[2]!.split(",").map((n) => n.trim())) {
        const command = /^([A-Z][A-Za-z0-9]+)Command$/.exec(name)?.[1] ?? /^paginate([A-Z][A-Za-z0-9]+)$/.exec(name)?.[1];
        if (command === undefined) continue;
        assert.ok(prefix, `@aws-sdk/${m[3]}: add its IAM service prefix to IAM_PREFIX`);
        out.add(`${prefix}:${command}`);
      }
    }
  }
  return out;
}

describe("IAM: each task role is granted exactly the AWS calls its code makes", () => {
  let s: Synth;
  before(() => {
    s = synth(path.join(FIXTURES, "hello/weaver.toml"));
  });
  after(() => s?.dispose());

  test("the calls are read from the code (the derivation sees what the runtime calls)", () => {
    const cp = awsCallsOf(ROLES["controlPlane"]!.entry);
    for (const a of ["ecs:DescribeTasks", "ecs:CreateService", "servicediscovery:RegisterInstance", "secretsmanager:GetSecretValue"])
      assert.ok(cp.has(a), `${a} is among the control plane's calls (${[...cp].join(", ")})`);
    assert.deepEqual([...awsCallsOf(ROLES["group tsweaver-main"]!.entry)].sort(), [
      "servicediscovery:DiscoverInstances",
      "servicediscovery:DiscoverInstancesRevision",
    ]);
  });

  for (const [name, r] of Object.entries(ROLES)) {
    test(`${name}: granted actions = the calls + what AWS requires with them`, () => {
      const calls = awsCallsOf(r.entry);
      const expected = new Set([...calls, ...[...calls].flatMap((a) => IMPLIED[a] ?? [])]);
      const role = s.id(r.role(s.stack.weaver));
      const granted = new Set(
        statements(s.json)
          .filter((st) => st.roles.includes(role))
          .flatMap(actionsOf),
      );
      const extra = [...granted].filter((a) => !expected.has(a)).sort();
      const missing = [...expected].filter((a) => !granted.has(a)).sort();
      assert.deepEqual({ extra, missing }, { extra: [], missing: [] }, `${name}: granted but never called, or called but not granted`);
    });

    test(`${name}: every grant is on this stack's resources, or condition-scoped where IAM allows only "*"`, () => {
      const role = s.id(r.role(s.stack.weaver));
      for (const st of statements(s.json).filter((x) => x.roles.includes(role))) {
        assert.equal(st.Effect, "Allow");
        for (const res of resourcesOf(st)) {
          if (res === "*") {
            for (const a of actionsOf(st)) {
              const key = STAR_ONLY[a];
              assert.ok(key, `${st.Sid}: ${a} on "*", but IAM has resource-level permissions for it`);
              const keys = Object.values(st.Condition ?? {}).flatMap((c) => Object.keys(c));
              assert.ok(keys.includes(key), `${st.Sid}: ${a} on "*" must be scoped by ${key} (has ${keys.join(", ") || "none"})`);
            }
          } else {
            // An ARN the stack builds from its own resources (Ref/GetAtt/its name), never a literal wildcard.
            assert.match(JSON.stringify(res), /"Ref"|"Fn::GetAtt"/, `${st.Sid}: ${JSON.stringify(res)}`);
          }
        }
      }
    });

    test(`${name}: every environment variable the stack sets on the task is read by its code`, () => {
      const reads = envReadsOf(r.entry);
      const set = Object.keys(containerEnv(s.json, s.id(r.taskDefinition(s.stack.weaver))));
      assert.ok(set.length >= 4, `the task definition sets its environment (${set.join(", ")})`);
      assert.deepEqual(
        set.filter((k) => !reads.has(k)),
        [],
        `${name}: set by the stack but read by nothing`,
      );
    });

    test(`${name}: reads only its own secrets`, () => {
      const role = s.id(r.role(s.stack.weaver));
      const read = statements(s.json)
        .filter((x) => x.roles.includes(role) && actionsOf(x).some((a) => a.startsWith("secretsmanager:")))
        .flatMap(resourcesOf);
      assert.deepEqual(
        read.map((x) => JSON.stringify(x)).sort(),
        SECRETS_READ[name]!(s.stack.weaver)
          .map((c) => JSON.stringify({ Ref: s.id(c) }))
          .sort(),
      );
    });
  }
});

describe("IAM: actions on tasks are the control plane's, on this cluster's tasks only", () => {
  let s: Synth;
  before(() => {
    s = synth(path.join(FIXTURES, "hello/weaver.toml"));
  });
  after(() => s?.dispose());

  for (const action of TASK_ACTIONS) {
    test(action, () => {
      const cluster = s.id(s.stack.weaver.cluster);
      const controlPlane = s.id(s.stack.weaver.controlPlaneRole);
      const granting = statements(s.json).filter((st) => actionsOf(st).includes(action));
      assert.ok(granting.length > 0, `${action} is granted (the control plane's code calls it)`);
      for (const st of granting) {
        assert.deepEqual(st.roles, [controlPlane], `${st.Sid}: only the control plane's role`);
        for (const res of resourcesOf(st)) {
          const text = JSON.stringify(res);
          assert.match(text, new RegExp(`:task/",\\{"Ref":"${cluster}"\\},"/\\*"`), `${st.Sid}: ${text} is this cluster's tasks`);
        }
      }
    });
  }
});

for (const [mode, grants] of Object.entries(SIDECAR_GRANTS)) {
  describe(`IAM with tracing = "${mode}": each role gets its code's calls and exactly the sidecar's actions more`, () => {
    let s: Synth;
    before(() => {
      s = synthText(
        `\n[aws]\nimage = "ghcr.io/acme/hello:1.0"\nconfig_in_image = "weaver.toml"\ntracing = "${mode}"\n[aws.listeners.hello]\n`,
      );
    });
    after(() => s?.dispose());

    for (const [name, r] of Object.entries(ROLES)) {
      test(`${name}: granted = the calls + what AWS requires with them + ${grants[name]!.join(", ") || "nothing"}`, () => {
        const calls = awsCallsOf(r.entry);
        const expected = new Set([...calls, ...[...calls].flatMap((a) => IMPLIED[a] ?? []), ...grants[name]!]);
        const role = s.id(r.role(s.stack.weaver));
        const mine = statements(s.json).filter((st) => st.roles.includes(role));
        const granted = new Set(mine.flatMap(actionsOf));
        const extra = [...granted].filter((a) => !expected.has(a)).sort();
        const missing = [...expected].filter((a) => !granted.has(a)).sort();
        assert.deepEqual({ extra, missing }, { extra: [], missing: [] });
        // The sidecar's actions stand alone, on "*" (the only place IAM allows them).
        for (const st of mine.filter((x) => actionsOf(x).some((a) => grants[name]!.includes(a)))) {
          assert.deepEqual(actionsOf(st).sort(), [...grants[name]!].sort(), `${st.Sid}: the sidecar's actions only`);
          assert.deepEqual(resourcesOf(st), ["*"]);
        }
      });
    }
  });
}
