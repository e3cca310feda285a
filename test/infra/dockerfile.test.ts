/**
 * The default image (infra/Dockerfile), checked without Docker: its stages are parsed, and the final
 * stage's COPY instructions are applied to the build context CDK stages for the default layout, giving
 * the file set the image would hold; the runtime's needs are looked up in it (the entrypoint, the
 * config, the app binary, what makes dist/ ES modules) and what it must not ship is looked for.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { loadConfig } from "../../runtime/core/config.js";
import { ROOT } from "../support/index.js";
import { FAKE_APP, FIXTURES, synth, synthText, type Synth } from "./helpers.js";

interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: readonly { op: string; args: string }[];
}

/** The stages of a Dockerfile (comments and blank lines dropped; no line continuations in ours) and its global ARGs. */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const args = new Map<string, string>();
  const stages: { from: string; name: string | undefined; instructions: { op: string; args: string }[] }[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    assert.ok(!line.endsWith("\\"), "no line continuations (this parser does not join them)");
    const [op, ...rest] = line.split(/\s+/);
    const a = rest.join(" ");
    if (op === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(a)!;
      stages.push({ from: m[1]!, name: m[2], instructions: [] });
    } else if (op === "ARG" && stages.length === 0) {
      const [k, v] = a.split("=");
      args.set(k!, v ?? "");
    } else {
      assert.ok(stages.length > 0, `${op} before the first FROM`);
      stages.at(-1)!.instructions.push({ op: op!, args: a });
    }
  }
  return { args, stages };
}

/** Every file under `dir`, as paths relative to it. */
function files(dir: string, prefix = ""): string[] {
  return readdirSync(path.join(dir, prefix)).flatMap((f) => {
    const rel = path.posix.join(prefix, f);
    return statSync(path.join(dir, rel)).isDirectory() ? files(dir, rel) : [rel];
  });
}

/** The TSWEAVER_APP_USER a stage's ENV instructions set. */
function appUserOf(instructions: Stage["instructions"]): string | undefined {
  const env = instructions.filter((i) => i.op === "ENV").map((i) => /^TSWEAVER_APP_USER=(\S+)$/.exec(i.args)?.[1]);
  return env.filter((v) => v !== undefined).at(-1);
}

const DOCKERFILE = parseDockerfile(readFileSync(path.join(ROOT, "infra/Dockerfile"), "utf8"));

test("infra/Dockerfile: the current Node LTS as a pinnable base, multi-stage, non-root, the CLI as entrypoint", () => {
  const base = DOCKERFILE.args.get("NODE_IMAGE");
  assert.match(base ?? "", /^public\.ecr\.aws\/docker\/library\/node:(\d+)-[a-z]+-slim$/);
  const major = Number(/node:(\d+)/.exec(base!)![1]);
  assert.ok(major >= 24 && major % 2 === 0, `an LTS line (even major, past Node 20's end of life): ${major}`);
  // Every stage starts from the one base, so one build argument (or digest) pins them all.
  assert.deepEqual(
    DOCKERFILE.stages.map((s) => [s.name, s.from]),
    [
      ["deps", "${NODE_IMAGE}"],
      ["configs", "${NODE_IMAGE}"],
      [undefined, "${NODE_IMAGE}"],
    ],
  );
  const deps = DOCKERFILE.stages[0]!.instructions;
  assert.ok(
    deps.some((i) => i.op === "RUN" && /npm ci --omit=dev --ignore-scripts/.test(i.args)),
    "production dependencies only, no scripts",
  );
  const final = DOCKERFILE.stages.at(-1)!.instructions;
  const user = final.filter((i) => i.op === "USER").at(-1)?.args;
  assert.ok(user !== undefined && user !== "root" && user !== "0", `the final stage runs as a non-root user (${user})`);
  assert.equal(appUserOf(final), user, "the agent (root in group tasks) runs the app as the image's non-root user");
  assert.deepEqual(final.find((i) => i.op === "ENTRYPOINT")?.args, '["node", "/app/dist/runtime/cli/main.js"]');
  assert.deepEqual(final.find((i) => i.op === "WORKDIR")?.args, "/app");
  assert.ok(!final.some((i) => i.op === "RUN"), "nothing runs in the final stage (no build tools needed there)");
});

describe("the final stage's files, from the context CDK stages for examples/hello", () => {
  let s: Synth;
  let image: Set<string>;
  let context: string;
  before(() => {
    s = synth(path.join(ROOT, "examples/hello/weaver.toml"), { binary: FAKE_APP, args: ["hello"] });
    context = path.join(s.outdir, `asset.${s.stack.imageAsset!.assetHash}`);
    const all = files(context);
    // Apply the final stage's COPY instructions to the staged context (`--from=deps` is node_modules,
    // installed in the image; `--from=configs` is every weaver.toml at its own path).
    image = new Set<string>();
    for (const i of DOCKERFILE.stages.at(-1)!.instructions.filter((x) => x.op === "COPY")) {
      const from = /--from=(\S+)/.exec(i.args)?.[1];
      const [src] = i.args.replace(/--from=\S+\s+/, "").split(/\s+/);
      if (from === "deps") image.add("node_modules/");
      else if (from === "configs") for (const f of all.filter((f) => path.posix.basename(f) === "weaver.toml")) image.add(f);
      else if (from === undefined) for (const f of all.filter((f) => f === src || f.startsWith(`${src}/`))) image.add(f);
      else assert.fail(`COPY from an unknown stage ${from}`);
    }
  });
  after(() => s?.dispose());

  test("the runtime's needs are there: entrypoint, the config, the app binary it names, package.json (ES modules)", () => {
    assert.ok(image.has("dist/runtime/cli/main.js"));
    assert.ok(image.has("dist/runtime/deployers/aws/agent.js") && image.has("dist/runtime/deployers/aws/controlplane.js"));
    assert.ok(image.has("examples/hello/weaver.toml"), "TSWEAVER_CONFIG's file");
    const config = loadConfig(path.join(context, "examples/hello/weaver.toml"));
    const binary = path.relative(context, config.binary).split(path.sep).join("/");
    assert.ok(image.has(binary), `the app binary weaver.toml names (${binary})`);
    assert.ok(image.has("package.json"));
    assert.equal(JSON.parse(readFileSync(path.join(context, "package.json"), "utf8")).type, "module");
    assert.ok(image.has("node_modules/"));
  });

  test("only dist/, package.json, dependencies and configs: no sources, tests, docs or lockfile", () => {
    const outside = [...image].filter(
      (f) => !(f.startsWith("dist/") || f === "package.json" || f === "node_modules/" || path.posix.basename(f) === "weaver.toml"),
    );
    assert.deepEqual(outside, []);
    for (const f of image) assert.ok(!/^(runtime|infra|test|docs|bench)\//.test(f) && !/\.ts$/.test(f.replace(/\.d\.ts$/, "")), f);
    assert.ok(![...image].some((f) => f.startsWith("dist/test/") || f.startsWith("dist/bench/")));
    assert.ok(!image.has("package-lock.json"));
    assert.ok(existsSync(path.join(context, "runtime")), "(the sources are in the context, for the configs stage, but not copied)");
  });
});

test("[aws] base_image becomes the NODE_IMAGE build argument (and so part of the asset's hash)", () => {
  const digest = "public.ecr.aws/docker/library/node:26-bookworm-slim@sha256:" + "a".repeat(64);
  const docker = JSON.stringify(path.join(FIXTURES, "docker"));
  const pinned = synthText(`[aws]\ndockerfile_dir = ${docker}\nconfig_in_image = "weaver.toml"\nbase_image = "${digest}"\n`);
  const plain = synthText(`[aws]\ndockerfile_dir = ${docker}\nconfig_in_image = "weaver.toml"\n`);
  try {
    const manifest = JSON.parse(readFileSync(path.join(pinned.outdir, `${pinned.stack.artifactId}.assets.json`), "utf8")) as {
      dockerImages: Record<string, { source: { dockerBuildArgs?: Record<string, string> } }>;
    };
    const images = Object.values(manifest.dockerImages);
    assert.equal(images.length, 1);
    assert.deepEqual(images[0]!.source.dockerBuildArgs, { NODE_IMAGE: digest });
    assert.notEqual(pinned.stack.imageAsset!.assetHash, plain.stack.imageAsset!.assetHash);
  } finally {
    pinned.dispose();
    plain.dispose();
  }
});

test("tsweaver init's Dockerfile: the same base and stages, the installed package's CLI, only what runs", () => {
  const tmpl = parseDockerfile(readFileSync(path.join(ROOT, "runtime/cli/templates/aws/infra/Dockerfile.tmpl"), "utf8"));
  assert.equal(tmpl.args.get("NODE_IMAGE"), DOCKERFILE.args.get("NODE_IMAGE"), "one Node line for the project and for new apps");
  assert.deepEqual(
    tmpl.stages.map((s) => [s.name, s.from]),
    [
      ["deps", "${NODE_IMAGE}"],
      [undefined, "${NODE_IMAGE}"],
    ],
  );
  const final = tmpl.stages.at(-1)!.instructions;
  assert.deepEqual(final.find((i) => i.op === "ENTRYPOINT")?.args, '["node", "/app/node_modules/tsweaver/dist/runtime/cli/main.js"]');
  assert.equal(final.filter((i) => i.op === "USER").at(-1)?.args, "node");
  assert.equal(appUserOf(final), "node", "the agent (root in group tasks) runs the app as the image's non-root user");
  assert.ok(!final.some((i) => i.op === "RUN"), "nothing runs in the final stage");
  const copied = final.filter((i) => i.op === "COPY").map((i) => i.args);
  assert.deepEqual(copied, ["--from=deps /app/node_modules ./node_modules", "package.json weaver.toml ./", "dist ./dist"]);
});
