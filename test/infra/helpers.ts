/** Shared setup of the infra tests: synthesize a WeaverStack from a weaver.toml, then inspect it. */
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { App, type CfnResource, type Stack } from "aws-cdk-lib";
import { Annotations, Match, Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import type { IConstruct } from "constructs";
import { loadConfig, type AppConfig } from "../../runtime/core/config.js";
import { listAppComponents } from "../../runtime/core/components.js";
import { WeaverStack } from "../../infra/stack.js";
import { ROOT, tempDir, writeConfig } from "../support/index.js";

/** Fixtures stay in the source tree (tsc does not copy .mjs files). */
export const FIXTURES = path.join(ROOT, "test/infra/fixtures");
/** Stands in for a built app: `fake-app.mjs <hello|five|crash|silent|garbage|hang>`. */
export const FAKE_APP = path.join(FIXTURES, "fake-app.mjs");

/** The feature flags and settings of cdk.json, as `cdk synth` passes them to the app. */
export function cdkContext(): Record<string, unknown> {
  const json = JSON.parse(readFileSync(path.join(ROOT, "cdk.json"), "utf8")) as { context: Record<string, unknown> };
  return json.context;
}

export interface Synth {
  readonly app: App;
  readonly stack: WeaverStack;
  readonly template: Template;
  /** The resolved template. */
  readonly json: {
    Resources: Record<string, { Type: string; Properties?: Record<string, any> }>;
    Outputs: Record<string, { Value: unknown }>;
  };
  readonly outdir: string;
  /** Logical id of a construct's CloudFormation resource. */
  id(construct: IConstruct): string;
  dispose(): void;
}

/** Loads a weaver.toml (optionally replacing its binary), lists the components, synthesizes the stack. */
export function synth(configFile: string, opts: { binary?: string; args?: string[]; context?: Record<string, unknown> } = {}): Synth {
  let config: AppConfig = loadConfig(configFile);
  if (opts.binary !== undefined) config = { ...config, binary: opts.binary, args: opts.args ?? [] };
  const outdir = tempDir("tsweaver-cdk-");
  // Tests treat CDK's CloudFormation template validation findings as errors. (cdk.json keeps them
  // warnings: the first synth of a VPC lookup has placeholder subnet ids that would otherwise stop
  // `cdk synth` before the CLI can look the VPC up.)
  const context = { ...cdkContext(), "@aws-cdk/core:validateAgainstDefaultRules": true, ...opts.context };
  const app = new App({ outdir, context });
  const stack = new WeaverStack(app, { config, components: listAppComponents(config), projectRoot: ROOT });
  const template = Template.fromStack(stack);
  return {
    app,
    stack,
    template,
    json: template.toJSON() as Synth["json"],
    outdir,
    id: (c) => stack.getLogicalId((c.node.defaultChild ?? c) as CfnResource),
    dispose: () => rmSync(outdir, { recursive: true, force: true }),
  };
}

/** Synthesizes a weaver.toml given as text (written to a temp dir; binary = the fake app). */
export function synthText(text: string, fakeApp = "hello", context?: Record<string, unknown>): Synth {
  const file = writeConfig(`[tsweaver]\nname = "t"\nbinary = ${JSON.stringify(FAKE_APP)}\nargs = ["${fakeApp}"]\n${text}`);
  const s = synth(file, { context });
  return {
    ...s,
    dispose: () => {
      s.dispose();
      rmSync(path.dirname(file), { recursive: true, force: true });
    },
  };
}

/** cdk-nag AwsSolutions findings that were not acknowledged, as "rule at path". */
export function nagFindings(app: App): string[] {
  const report = new AwsSolutionsChecks(app).validateScope(app);
  return report.violations.flatMap((v) =>
    v.violatingResources.map((r) => `${v.ruleName} at ${(r as { constructPath?: string }).constructPath ?? r.resourceLogicalId}`),
  );
}

/** Errors and warnings CDK itself attached to the stack's constructs. */
export function cdkAnnotations(stack: Stack): string[] {
  const a = Annotations.fromStack(stack);
  return [...a.findError("*", Match.anyValue()), ...a.findWarning("*", Match.anyValue())].map(
    (m) => `${m.id}: ${JSON.stringify(m.entry.data)}`,
  );
}

export interface Statement {
  policy: string;
  roles: string[];
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

/** Every IAM policy statement of the template, with the policy's logical id and the roles it is attached to. */
export function statements(json: Synth["json"]): Statement[] {
  const out: Statement[] = [];
  for (const [policy, r] of Object.entries(json.Resources)) {
    if (r.Type !== "AWS::IAM::Policy") continue;
    const roles = ((r.Properties!["Roles"] ?? []) as { Ref: string }[]).map((x) => x.Ref);
    for (const s of r.Properties!["PolicyDocument"].Statement as Statement[]) out.push({ ...s, policy, roles });
  }
  return out;
}

export function actionsOf(s: Statement): string[] {
  return Array.isArray(s.Action) ? s.Action : [s.Action];
}

export function resourcesOf(s: Statement): unknown[] {
  return Array.isArray(s.Resource) ? s.Resource : [s.Resource];
}

export interface Rule {
  /** Logical id of the security group the rule belongs to. */
  group: string;
  direction: "in" | "out";
  port: string;
  /** `sg:<logical id>` or `cidr:<block>` (`cidr:vpc` for the VPC's CIDR). */
  peer: string;
}

/** Every security group rule (inline and standalone), normalized. */
export function securityGroupRules(json: Synth["json"]): Rule[] {
  const rules: Rule[] = [];
  const peerOf = (p: Record<string, any>): string => {
    const sg = p["SourceSecurityGroupId"] ?? p["DestinationSecurityGroupId"];
    if (sg) return `sg:${sg["Fn::GetAtt"][0]}`;
    const cidr = p["CidrIp"] ?? p["CidrIpv6"];
    if (typeof cidr === "string") return `cidr:${cidr}`;
    if (cidr?.["Fn::GetAtt"]?.[1] === "CidrBlock") return "cidr:vpc";
    return `cidr:${JSON.stringify(cidr)}`;
  };
  const portOf = (p: Record<string, any>): string =>
    p["IpProtocol"] === "-1" ? "all" : `${p["FromPort"]}${p["ToPort"] !== p["FromPort"] ? `-${p["ToPort"]}` : ""}`;
  for (const [id, r] of Object.entries(json.Resources)) {
    const p = r.Properties ?? {};
    if (r.Type === "AWS::EC2::SecurityGroup") {
      for (const x of p["SecurityGroupIngress"] ?? []) rules.push({ group: id, direction: "in", port: portOf(x), peer: peerOf(x) });
      for (const x of p["SecurityGroupEgress"] ?? []) {
        // CDK's placeholder egress rule for "no outbound" (255.255.255.255/32, icmp 252-86) allows nothing.
        if (x["CidrIp"] === "255.255.255.255/32") continue;
        rules.push({ group: id, direction: "out", port: portOf(x), peer: peerOf(x) });
      }
    } else if (r.Type === "AWS::EC2::SecurityGroupIngress" || r.Type === "AWS::EC2::SecurityGroupEgress") {
      const group = p["GroupId"]["Fn::GetAtt"][0] as string;
      rules.push({ group, direction: r.Type.endsWith("Ingress") ? "in" : "out", port: portOf(p), peer: peerOf(p) });
    }
  }
  return rules.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

/** The environment of a task definition's first container, as a plain object (values resolved JSON). */
export function containerEnv(json: Synth["json"], taskDefinitionId: string): Record<string, unknown> {
  const c = json.Resources[taskDefinitionId]!.Properties!["ContainerDefinitions"][0];
  return Object.fromEntries((c.Environment as { Name: string; Value: unknown }[]).map((e) => [e.Name, e.Value]));
}

/**
 * Parses a JSON document CloudFormation assembles with Fn::Join (outputs, env vars): every `Ref`/
 * `Fn::GetAtt` becomes the string "<LogicalId>" / "<LogicalId.Attr>".
 */
export function joinedJson(value: unknown): unknown {
  const flat = (v: unknown): string => {
    if (typeof v === "string") return v;
    const o = v as Record<string, any>;
    if (o["Fn::Join"]) return (o["Fn::Join"][1] as unknown[]).map(flat).join(o["Fn::Join"][0]);
    if (o["Ref"]) return `<${o["Ref"]}>`;
    if (o["Fn::GetAtt"]) return `<${o["Fn::GetAtt"].join(".")}>`;
    throw new Error(`unexpected ${JSON.stringify(v)}`);
  };
  return JSON.parse(flat(value));
}
