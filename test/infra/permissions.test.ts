/**
 * The app's own AWS access: `permissions` and `secrets` in weaver.toml (app-wide and per group) become
 * rights of the groups' own task roles and ECS-injected secrets; nothing reaches a group it was not
 * given to, and the stack's own grants stay as they are without them (test/infra/iam.test.ts).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as s3 from "aws-cdk-lib/aws-s3";
import { appSecretsEnv, weaveletBaseEnv } from "../../runtime/deployers/aws/agent.js";
import { ENV } from "../../runtime/deployers/aws/contract.js";
import { actionsOf, cdkAnnotations, containerEnv, nagFindings, resourcesOf, statements, synthText, type Synth } from "./helpers.js";

const DB_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf";
const API_KEY = "arn:aws:ssm:eu-west-1:123456789012:parameter/hello/api-key";
const S3_READ = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
const TABLE = "arn:aws:dynamodb:eu-west-1:123456789012:table/words";

describe("app permissions and secrets from weaver.toml", () => {
  let s: Synth;
  const role = (group: string) => s.id(s.stack.weaver.taskRole(group));
  const container = (group: string) =>
    s.json.Resources[s.id(s.stack.weaver.groups.get(group)!.taskDefinition)]!.Properties!["ContainerDefinitions"][0] as {
      Secrets: { Name: string; ValueFrom: unknown }[];
      Environment: { Name: string; Value: unknown }[];
    };

  before(() => {
    s = synthText(`
[aws]
config_in_image = "weaver.toml"
[aws.permissions]
managed_policies = ["${S3_READ}"]
[aws.secrets]
DB_PASSWORD = { arn = "${DB_SECRET}", field = "password" }
[[aws.groups.hello-reverser.permissions.statements]]
actions = ["dynamodb:GetItem", "dynamodb:Query"]
resources = ["${TABLE}", "${TABLE}/index/*"]
[aws.groups.hello-reverser.secrets]
API_KEY = "${API_KEY}"
`);
  });
  after(() => s.dispose());

  test("cdk-nag: clean (the configured managed policy and wildcard acknowledged as the app's own); CDK: no warnings", () => {
    assert.deepEqual(nagFindings(s.app), []);
    assert.deepEqual(cdkAnnotations(s.stack), []);
  });

  test("the app-wide managed policy is on every group's task role, not on the control plane's", () => {
    for (const g of ["hello-reverser", "tsweaver-main"])
      assert.deepEqual(s.json.Resources[role(g)]!.Properties!["ManagedPolicyArns"], [S3_READ]);
    assert.equal(s.json.Resources[s.id(s.stack.weaver.controlPlaneRole)]!.Properties!["ManagedPolicyArns"], undefined);
  });

  test("a group's statements go to that group's role only", () => {
    const dynamo = (r: string) =>
      statements(s.json).filter((st) => st.roles.includes(r) && actionsOf(st).some((a) => a.startsWith("dynamodb:")));
    const mine = dynamo(role("hello-reverser"));
    assert.equal(mine.length, 1);
    assert.deepEqual(
      [mine[0]!.Effect, actionsOf(mine[0]!), resourcesOf(mine[0]!)],
      ["Allow", ["dynamodb:GetItem", "dynamodb:Query"], [TABLE, `${TABLE}/index/*`]],
    );
    assert.deepEqual(dynamo(role("tsweaver-main")), []);
    assert.deepEqual(dynamo(s.id(s.stack.weaver.controlPlaneRole)), []);
  });

  test("secrets are ECS secrets (never plain environment), per group; the agent is told their names", () => {
    const reverser = container("hello-reverser");
    const main = container("tsweaver-main");
    const names = (c: ReturnType<typeof container>) => c.Secrets.map((x) => x.Name).sort();
    assert.deepEqual(names(reverser), ["API_KEY", "DB_PASSWORD", ENV.SECRET]);
    assert.deepEqual(names(main), ["DB_PASSWORD", ENV.SECRET]);
    assert.deepEqual(reverser.Secrets.find((x) => x.Name === "DB_PASSWORD")!.ValueFrom, `${DB_SECRET}:password::`);
    assert.deepEqual(reverser.Secrets.find((x) => x.Name === "API_KEY")!.ValueFrom, API_KEY);
    for (const c of [reverser, main]) {
      assert.ok(!c.Environment.some((e) => ["API_KEY", "DB_PASSWORD"].includes(e.Name)), "no secret in the plain environment");
    }
    const env = (g: string) => containerEnv(s.json, s.id(s.stack.weaver.groups.get(g)!.taskDefinition));
    assert.equal(env("hello-reverser")[ENV.APP_SECRETS], "API_KEY,DB_PASSWORD");
    assert.equal(env("tsweaver-main")[ENV.APP_SECRETS], "DB_PASSWORD");
  });

  test("the execution role reads exactly the configured secrets and parameters; no task role reads any", () => {
    const exec = statements(s.json).filter((st) => st.roles.includes(s.id(s.stack.weaver.executionRole)));
    const readers = (prefix: string) => exec.filter((st) => actionsOf(st).some((a) => a.startsWith(prefix))).flatMap(resourcesOf);
    assert.ok(readers("secretsmanager:").some((r) => r === DB_SECRET));
    assert.ok(readers("ssm:").some((r) => r === API_KEY));
    assert.ok(
      readers("ssm:").every((r) => r === API_KEY),
      "no other parameter",
    );
    for (const g of ["hello-reverser", "tsweaver-main"]) {
      const reads = statements(s.json).filter(
        (st) => st.roles.includes(role(g)) && actionsOf(st).some((a) => a.startsWith("secretsmanager:") || a.startsWith("ssm:")),
      );
      assert.deepEqual(reads, [], `group ${g}'s code reads no secret store`);
    }
  });

  test("CDK users grant more to a group's role (exported, typed)", () => {
    const bucket = new s3.Bucket(s.stack, "Words", { enforceSSL: true });
    bucket.grantRead(s.stack.weaver.taskRole("hello-reverser"));
    assert.throws(() => s.stack.weaver.taskRole("nope"), /no group "nope"; groups: .*hello-reverser/);
  });
});

test("the agent passes the app's secrets and its group's task role credentials, and nothing of its own, on to the weavelet", () => {
  const env = {
    [ENV.APP_SECRETS]: "DB_PASSWORD,API_KEY",
    DB_PASSWORD: "s3cret",
    API_KEY: "k",
    [ENV.SECRET]: "deployment-secret",
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: "/v2/credentials/x",
    ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/x",
    PATH: "/usr/bin",
  };
  const weavelet = { ...weaveletBaseEnv(env), ...appSecretsEnv(env) };
  assert.deepEqual(weavelet, {
    PATH: "/usr/bin",
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: "/v2/credentials/x",
    DB_PASSWORD: "s3cret",
    API_KEY: "k",
  });
  assert.deepEqual(appSecretsEnv({ DB_PASSWORD: "x" }), {}, "without the list, nothing");
});
