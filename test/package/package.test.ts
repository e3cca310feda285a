/**
 * tsweaver as a user gets it, outside this repository: `npm pack` ships only what users need, and an app
 * scaffolded by `tsweaver init` in a temporary directory installs the packed tarball, builds, passes its
 * own test (one process), answers through a cross-process call on `tsweaver multi deploy`, synthesizes its
 * stack with `cdk synth` offline, and is activated on the AWS emulator harness with the stack its own CDK
 * app synthesizes (the `tsweaver/aws` construct of the installed package).
 *
 * The app's dependencies come from the npm registry or npm's cache (`--prefer-offline`: CI's `npm ci`
 * filled the cache with the same versions). The tarball is packed from the `dist/` `npm test` just built
 * (`--ignore-scripts`: `prepare` would only compile the same files again).
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { targetGroupName } from "../../runtime/deployers/aws/contract.js";
import { startFargate, type FargateSimulator } from "../aws/fargate.js";
import { clientConfig, useEmulator, type Emulator } from "../aws/moto.js";
import { createAppResources, type AppResources, type CfnTemplate } from "../aws/stack.js";
import { CLI, Proc, ROOT, get, runCli, tempDir, waitFor } from "../support/index.js";

/** What the package may contain: its entries' compiled code, the files the runtime reads, and the docs. */
const SHIPPED = [
  /^package\.json$/,
  /^README\.md$/,
  /^cdk\.json$/,
  /^protos\/[\w.-]+\.proto$/,
  /^dist\/runtime\//,
  /^dist\/infra\/(?!bin\/)[\w.-]+$/,
  /^runtime\/deployers\/multi\/dashboard\//,
  /^runtime\/cli\/templates\//,
];

const NAME = "shop";
let tmp: string;
let appDir: string;
/** The packed tarball. */
let tarball: string;
/** The installed package's CLI, as `npx tsweaver` runs it. */
let appCli: string;

/** This process's environment, minus the test runner's marker (a nested `node --test` would report to this runner). */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env["NODE_TEST_CONTEXT"];
  return env;
}

/** Runs a command to completion and returns its stdout; fails with its output. */
function run(cmd: string, args: string[], cwd: string, opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): string {
  try {
    return execFileSync(cmd, args, {
      cwd,
      env: opts.env ?? childEnv(),
      encoding: "utf8",
      timeout: opts.timeoutMs ?? 120_000,
      stdio: "pipe",
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  }
}

/** The environment of a CDK run: no AWS credentials, profiles (a throwaway HOME) or metadata endpoint; no version check. */
function offlineEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(childEnv())) if (!k.startsWith("AWS_") && !k.startsWith("CDK_")) env[k] = v;
  return { ...env, HOME: path.join(tmp, "home"), AWS_EC2_METADATA_DISABLED: "true", CDK_DISABLE_VERSION_CHECK: "1" };
}

before(
  async () => {
    tmp = tempDir("tsweaver-package-");
    // The emulated tasks run the app as another user than their agent, as the image does (docs/security.md):
    // that user must reach the app's files, as it can in a real image.
    chmodSync(tmp, 0o755);
    const packed = JSON.parse(run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", tmp], ROOT)) as {
      filename: string;
    }[];
    tarball = path.join(tmp, packed[0]!.filename);
    appDir = path.join(tmp, NAME);
    const init = run(process.execPath, [CLI, "init", appDir, "--tsweaver", tarball], tmp);
    assert.match(init, /created src\/main\.ts/);
    // The AWS deployer's SDK clients are optional peer dependencies of tsweaver: an app that deploys to AWS lists them.
    const { dependencies } = JSON.parse(readFileSync(path.join(appDir, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    assert.equal(dependencies["tsweaver"], `file:../${path.basename(tarball)}`);
    assert.ok(dependencies["@aws-sdk/client-ecs"], "the app depends on the AWS SDK clients");
    run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund"], appDir, { timeoutMs: 400_000 });
    appCli = path.join(appDir, "node_modules/tsweaver/dist/runtime/cli/main.js");
  },
  { timeout: 420_000 },
);

after(() => {
  if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
});

test("npm pack ships the entries, the CLI and the files the runtime reads; no tests, benchmarks, fixtures or examples", () => {
  const [pack] = JSON.parse(run("npm", ["pack", "--dry-run", "--ignore-scripts", "--json"], ROOT)) as { files: { path: string }[] }[];
  const files = pack!.files.map((f) => f.path);
  const unexpected = files.filter((f) => !SHIPPED.some((re) => re.test(f)));
  assert.deepEqual(unexpected, [], "every shipped file is one users need");
  assert.deepEqual(
    // The templates' test/ is the scaffolded app's own test.
    files.filter((f) => !f.startsWith("runtime/cli/templates/") && /(^|\/)(test|tests|bench|fixtures|examples)\//.test(f)),
    [],
  );
  const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
    bin: Record<string, string>;
    exports: Record<string, { types: string; default: string }>;
  };
  assert.deepEqual(Object.keys(pkg.exports).sort(), [".", "./aws", "./deployer"]);
  const needed = [
    ...Object.values(pkg.bin),
    ...Object.values(pkg.exports).flatMap((e) => [e.types, e.default]),
    "runtime/cli/templates/app/src/main.ts.tmpl",
    "runtime/deployers/multi/dashboard/index.html",
    "cdk.json",
  ].map((f) => f.replace(/^\.\//, ""));
  assert.deepEqual(
    needed.filter((f) => !files.includes(f)),
    [],
    "the bin, every export's code and types, the templates and the dashboard are shipped",
  );
});

test("the scaffold builds and its own test passes: the app in one process", () => {
  const out = run("npm", ["test"], appDir);
  assert.match(out, /^# pass 1$/m);
  assert.match(out, /^# fail 0$/m);
});

test("a local-only app (--no-aws): no CDK app, and neither aws-cdk-lib nor the AWS SDK installed; aws commands say what to install", () => {
  const local = path.join(tmp, "local-only");
  run(process.execPath, [appCli, "init", local, "--no-aws", "--tsweaver", tarball], tmp);
  assert.deepEqual(readdirSync(local).sort(), [".gitignore", "README.md", "package.json", "src", "test", "tsconfig.json", "weaver.toml"]);
  const pkg = JSON.parse(readFileSync(path.join(local, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  assert.deepEqual(Object.keys(pkg.dependencies), ["tsweaver"]);
  assert.deepEqual(Object.keys(pkg.devDependencies), ["@types/node", "typescript"]);
  assert.doesNotMatch(readFileSync(path.join(local, "weaver.toml"), "utf8"), /\[aws/);
  run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund"], local, { timeoutMs: 240_000 });
  for (const dep of ["@aws-sdk", "aws-cdk-lib", "constructs"])
    assert.ok(!existsSync(path.join(local, "node_modules", dep)), `${dep} is not installed`);
  const aws = spawnSync(
    process.execPath,
    [path.join(local, "node_modules/tsweaver/dist/runtime/cli/main.js"), "aws", "status", "--stack", "x"],
    {
      cwd: local,
      encoding: "utf8",
    },
  );
  assert.equal(aws.status, 1);
  assert.match(
    aws.stderr,
    new RegExp(
      `^tsweaver: the AWS deployer needs the AWS SDK clients .*: npm install (@aws-sdk/client-[\\w-]+@\\^3\\.\\d+\\.\\d+ ?){${sdkClientCount()}}$`,
      "m",
    ),
  );
});

test("init refuses to overwrite a file", () => {
  const again = spawnSync(process.execPath, [appCli, "init", appDir], { cwd: tmp, encoding: "utf8" });
  assert.equal(again.status, 1);
  assert.match(again.stderr, /^tsweaver: init: .* already has package\.json, README\.md, .*; init never overwrites files/);
});

test("tsweaver multi deploy: the listener answers through calls that cross processes", async () => {
  // The scaffold's fixed port, made a free one: tests run side by side.
  const config = path.join(appDir, "weaver.test.toml");
  writeFileSync(config, readFileSync(path.join(appDir, "weaver.toml"), "utf8").replaceAll('"localhost:8080"', '"127.0.0.1:0"'));
  const state = tempDir("tsweaver-package-state-");
  const env = { TSWEAVER_STATE_DIR: state };
  const deploy = new Proc(process.execPath, [appCli, "multi", "deploy", config], env, appDir);
  try {
    const [, address] = await deploy.waitForOutput(/listener http available on http:\/\/(\S+)/, 60_000);
    const reply = await waitFor("a greeting", async () => {
      const r = await get(`http://${address}/hello?name=World`);
      return r.status === 200 ? r : undefined;
    });
    assert.equal(reply.body, "Hello, dlroW!\n");
    // main, Greeter and Reverser each run in their own processes: the answer took two remote calls.
    const groups = await waitFor("main's, Greeter's and Reverser's groups started", () => {
      const status = JSON.parse(
        run(process.execPath, [appCli, "multi", "status", "--json"], appDir, { env: { ...childEnv(), ...env } }),
      ) as {
        groups: { name: string; started: boolean; replicas: { pid: number }[] }[];
      }[];
      const started = status[0]!.groups.filter((g) => g.started && g.replicas.some((r) => r.pid > 0)).map((g) => g.name);
      return started.length === 3 ? started.sort() : undefined;
    });
    assert.deepEqual(groups, [`${NAME}-greeter`, `${NAME}-reverser`, "tsweaver-main"]);
  } finally {
    deploy.kill("SIGINT");
    await deploy.exited;
    rmSync(state, { recursive: true, force: true });
  }
});

test("cdk synth offline in the app: the stack from the installed construct, the image staged from the app's directory", () => {
  const outdir = path.join(tmp, "cdk.out");
  run(process.execPath, [path.join(appDir, "node_modules/aws-cdk/bin/cdk"), "synth", "--quiet", "-o", outdir], appDir, {
    env: offlineEnv(),
    timeoutMs: 300_000,
  });
  const template = JSON.parse(readFileSync(path.join(outdir, `tsweaver-${NAME}.template.json`), "utf8")) as CfnTemplate;
  // A task definition per group the app's entry file listed (main, Greeter, Reverser), and the control plane's.
  const families = Object.values(template.Resources)
    .filter((r) => r.Type === "AWS::ECS::TaskDefinition")
    .map((r) => r.Properties!["Family"])
    .sort();
  assert.deepEqual(families, [
    `tsweaver-${NAME}-controlplane`,
    `tsweaver-${NAME}-${NAME}-greeter`,
    `tsweaver-${NAME}-${NAME}-reverser`,
    `tsweaver-${NAME}-tsweaver-main`,
  ]);
  const assets = JSON.parse(readFileSync(path.join(outdir, `tsweaver-${NAME}.assets.json`), "utf8")) as {
    dockerImages: Record<string, { source: { directory: string; dockerFile?: string } }>;
  };
  const [image] = Object.values(assets.dockerImages);
  assert.ok(image, "the app image is an asset, built at deploy");
  assert.equal(image.source.dockerFile, "infra/Dockerfile");
  const staged = path.join(outdir, image.source.directory);
  for (const f of ["infra/Dockerfile", "package.json", "package-lock.json", "weaver.toml", "dist/src/main.js"]) {
    assert.ok(existsSync(path.join(staged, f)), `the build context has ${f}`);
  }
  for (const f of ["node_modules", "test", "cdk.out"]) assert.ok(!existsSync(path.join(staged, f)), `the build context leaves out ${f}`);
});

test("activated on the AWS emulator harness: the stack the app's CDK app synthesizes, its tasks on the installed CLI", async () => {
  let emu: Emulator | undefined;
  let res: AppResources | undefined;
  let sim: FargateSimulator | undefined;
  try {
    emu = await useEmulator();
    res = await createAppResources({
      configFile: path.join(appDir, "weaver.toml"),
      listeners: { http: { container_port: 18091 } },
      rpcPort: 19011,
      controlPort: 19111,
      // The app's own CDK app (built by the synth test), run as the CDK CLI runs it.
      synth: (configFile) => {
        const outdir = tempDir("tsweaver-package-synth-");
        try {
          const cdkJson = JSON.parse(readFileSync(path.join(appDir, "cdk.json"), "utf8")) as { context: Record<string, unknown> };
          run(process.execPath, [path.join(appDir, "dist/infra/app.js")], appDir, {
            env: { ...offlineEnv(), CDK_CONTEXT_JSON: JSON.stringify({ ...cdkJson.context, config: configFile }), CDK_OUTDIR: outdir },
            timeoutMs: 180_000,
          });
          const name = readdirSync(outdir).find((f) => f.endsWith(".template.json"));
          assert.ok(name, `the app's CDK app wrote a template into ${outdir}`);
          return JSON.parse(readFileSync(path.join(outdir, name), "utf8")) as CfnTemplate;
        } finally {
          rmSync(outdir, { recursive: true, force: true });
        }
      },
    });
    sim = await startFargate({
      endpoint: emu.endpoint,
      cluster: res.clusterArn,
      workdir: res.workdir,
      // The image's entrypoint (the scaffold's infra/Dockerfile): the installed package's CLI.
      entrypoint: [process.execPath, appCli],
      taskEnv: () => ({ TSWEAVER_RECONCILE_MS: "500", TSWEAVER_DISCOVERY_MS: "200" }),
    });
    const activate = await runCli(["aws", "activate", res.configFile, "--timeout", "120"], {}, appCli);
    assert.equal(activate.code, 0, activate.err + activate.out);
    const elb = new ElasticLoadBalancingV2Client(clientConfig(emu.endpoint));
    try {
      const tg = await elb.send(new DescribeTargetGroupsCommand({ Names: [targetGroupName(res.stack, "http", res.version)] }));
      const health = await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg.TargetGroups![0]!.TargetGroupArn! }));
      const target = health.TargetHealthDescriptions?.[0]?.Target;
      assert.ok(target, "main is registered as the listener's target");
      const reply = await waitFor(
        "a greeting through the emulated deployment",
        async () => {
          const r = await get(`http://${target.Id}:${target.Port}/hello?name=World`, 30_000);
          return r.status === 200 ? r : undefined;
        },
        60_000,
        250,
      );
      assert.equal(reply.body, "Hello, dlroW!\n");
    } finally {
      elb.destroy();
    }
    const deactivate = await runCli(["aws", "deactivate", res.configFile, "--timeout", "60"], {}, appCli);
    assert.equal(deactivate.code, 0, deactivate.err);
  } finally {
    await sim?.stop();
    await res?.delete();
    await emu?.stop();
  }
});

/** How many AWS SDK clients the package names as optional peers (the install line lists each). */
function sdkClientCount(): number {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { peerDependencies: Record<string, string> };
  return Object.keys(pkg.peerDependencies).filter((n) => n.startsWith("@aws-sdk/")).length;
}
