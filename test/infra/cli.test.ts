/** The CDK app cdk.json runs, started the way the CDK CLI starts it, and `cdk synth` itself, offline. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { after, test } from "node:test";
import { ROOT, tempDir, writeConfig } from "../support/index.js";
import { cdkContext, FAKE_APP, FIXTURES } from "./helpers.js";

const APP = path.join(ROOT, "dist/infra/bin/app.js");
const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** An environment without AWS credentials, profiles or metadata endpoints, and a throwaway HOME. */
function offlineEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("AWS_") && !k.startsWith("CDK_")) env[k] = v;
  const home = tempDir("tsweaver-cdk-home-");
  dirs.push(home);
  return { ...env, HOME: home, AWS_EC2_METADATA_DISABLED: "true", CDK_DISABLE_VERSION_CHECK: "1", ...extra };
}

/** Runs dist/infra/bin/app.js as the CLI does: context in CDK_CONTEXT_JSON, output dir in CDK_OUTDIR. */
function runApp(config: string) {
  const outdir = tempDir("tsweaver-cdk-out-");
  dirs.push(outdir);
  const r = spawnSync(process.execPath, [APP], {
    cwd: ROOT,
    encoding: "utf8",
    env: offlineEnv({ CDK_CONTEXT_JSON: JSON.stringify({ ...cdkContext(), config }), CDK_OUTDIR: outdir }),
    timeout: 120_000,
  });
  return { ...r, outdir };
}

test("the CDK app synthesizes the stack named in weaver.toml, with the AWS Solutions checks passing", () => {
  const r = runApp("test/infra/fixtures/hello/weaver.toml");
  assert.equal(r.status, 0, r.stderr);
  const template = JSON.parse(readFileSync(path.join(r.outdir, "tsweaver-hello.template.json"), "utf8"));
  // The control plane's service only (it creates each version's group services), and a task definition per group.
  assert.equal(Object.values(template.Resources).filter((x: any) => x.Type === "AWS::ECS::Service").length, 1);
  assert.equal(Object.values(template.Resources).filter((x: any) => x.Type === "AWS::ECS::TaskDefinition").length, 3);
  assert.match(template.Outputs.Version.Value, /^v[0-9a-f]{10}$/);
  const report = JSON.parse(readFileSync(path.join(r.outdir, "validation-report.json"), "utf8"));
  assert.deepEqual(report.pluginReports, [], "no plugin reported a violation");
});

test("a weaver.toml error stops the app with the file and key, and no stack trace", () => {
  const file = writeConfig(
    `[tsweaver]\nbinary = ${JSON.stringify(FAKE_APP)}\nargs = ["hello"]\n[aws.groups.hello-reverser]\nmax = "many"\n`,
  );
  const r = runApp(file);
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim(), `tsweaver: ${file}: aws.groups.hello-reverser.max: must be an integer from 1 to 1000 (got "many")`);
});

test("an app that cannot list its components stops the app with the reason", () => {
  const file = writeConfig(`[tsweaver]\nbinary = ${JSON.stringify(FAKE_APP)}\nargs = ["crash"]\n`);
  const r = runApp(file);
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /^tsweaver: .*weaver\.toml: tsweaver\.binary: listing the components of .* exited with status 3:\nError: Cannot find module 'left-pad'/,
  );
});

test("`cdk synth` works offline, without AWS credentials", () => {
  const outdir = tempDir("tsweaver-cdk-cli-");
  dirs.push(outdir);
  const cdk = path.join(ROOT, "node_modules/aws-cdk/bin/cdk");
  const config = path.relative(ROOT, path.join(FIXTURES, "hello/weaver.toml"));
  const r = spawnSync(process.execPath, [cdk, "synth", "--quiet", "-c", `config=${config}`, "-o", outdir], {
    cwd: ROOT,
    encoding: "utf8",
    env: offlineEnv(),
    timeout: 180_000,
  });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.ok(existsSync(path.join(outdir, "tsweaver-hello.template.json")));
  assert.ok(existsSync(path.join(outdir, "tsweaver-hello.assets.json")), "the image is an asset, to be built at deploy");
});
