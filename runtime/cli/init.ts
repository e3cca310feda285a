/**
 * `tsweaver init <dir>`: scaffolds a new app that depends on the tsweaver package — package.json,
 * tsconfig.json, src/main.ts (two components and a listener), a test, weaver.toml with `[single]`,
 * `[multi]` and `[aws]` sections, and (unless `--no-aws`) cdk.json, infra/app.ts and infra/Dockerfile.
 * The files come from runtime/cli/templates/ (see its README); init never overwrites a file.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { awsSdkDependencies, packageJson, packageRoot } from "./package.js";

/** What an app name must look like: a valid npm package name, tsweaver app name and CloudFormation stack name part. */
const APP_NAME = /^[a-z][a-z0-9-]{0,39}$/;

export interface InitOptions {
  /** The app's name (package.json, `[tsweaver] name`, component names). Default: derived from the directory's name. */
  readonly name?: string;
  /** How package.json depends on tsweaver: a version range, a git URL or a local tarball/directory. Default: `^<this version>`. */
  readonly tsweaver?: string;
  /** Scaffold the AWS deployment (cdk.json, infra/, `[aws]`, the CDK dev dependencies). Default true. */
  readonly aws?: boolean;
  /** Where progress goes. Default: stdout. */
  readonly out?: (line: string) => void;
}

/** A file to create, relative to the app directory. */
interface ScaffoldFile {
  readonly path: string;
  readonly content: string;
}

/** The app name derived from a directory name: lowercase, other characters as '-', starting with a letter. */
export function appNameFromDir(dir: string): string | undefined {
  const name = path
    .basename(path.resolve(dir))
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^[^a-z]+/, "")
    .slice(0, 40)
    .replace(/-+$/, "");
  return APP_NAME.test(name) ? name : undefined;
}

/** A dependency spec as package.json in `dir` needs it: local paths become `file:` paths relative to `dir`. */
function dependencySpec(spec: string, dir: string): string {
  const local = spec.startsWith("file:") ? spec.slice("file:".length) : spec;
  const isPath = /^(\.{0,2}\/|~\/)/.test(local) || local.endsWith(".tgz") || local.endsWith(".tar.gz");
  if (!isPath) return spec;
  const rel = path.relative(dir, path.resolve(local)).split(path.sep).join("/");
  return `file:${rel.startsWith(".") ? rel : `./${rel}`}`;
}

/** Every file under `dir`, as paths relative to it with `/` separators. */
function listFiles(dir: string, prefix = ""): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]))
    .sort();
}

/** The template files of `templates/<set>/`, rendered: `.tmpl` dropped, `gitignore` → `.gitignore`, `{{name}}` filled in. */
function renderTemplates(templates: string, set: string, name: string): ScaffoldFile[] {
  const dir = path.join(templates, set);
  return listFiles(dir)
    .filter((f) => f.endsWith(".tmpl"))
    .map((f) => ({
      path: f.slice(0, -".tmpl".length).replace(/(^|\/)gitignore$/, "$1.gitignore"),
      content: readFileSync(path.join(dir, f), "utf8").replaceAll("{{name}}", name),
    }));
}

/** A dependency map in npm's order. */
function sorted(deps: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(deps).sort(([a], [b]) => a.localeCompare(b)));
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** The files of a new app, in the order they are written. */
export function scaffold(dir: string, opts: InitOptions = {}): { name: string; files: ScaffoldFile[] } {
  const name = opts.name ?? appNameFromDir(dir);
  if (name === undefined) {
    throw new Error(`init: cannot make an app name of the directory name ${JSON.stringify(path.basename(path.resolve(dir)))}; pass --name`);
  }
  if (!APP_NAME.test(name)) {
    throw new Error(
      `init: --name: must be a lowercase letter, then up to 39 lowercase letters, digits or '-' (got ${JSON.stringify(name)})`,
    );
  }
  const aws = opts.aws ?? true;
  const root = packageRoot();
  const pkg = packageJson();
  // The app builds and deploys with the versions this package is tested with.
  const version = (dep: string): string => {
    const v = pkg.devDependencies?.[dep] ?? pkg.peerDependencies?.[dep];
    if (v === undefined)
      throw new Error(`init: the tsweaver package's package.json names no version of ${dep}; the installation is incomplete`);
    return v;
  };
  // The AWS deployer's SDK clients are optional peer dependencies of tsweaver: the app's tasks need them.
  const dependencies: Record<string, string> = {
    tsweaver: dependencySpec(opts.tsweaver ?? `^${pkg.version}`, path.resolve(dir)),
    ...(aws ? awsSdkDependencies(pkg) : {}),
  };
  const devDependencies: Record<string, string> = { "@types/node": version("@types/node"), typescript: version("typescript") };
  if (aws)
    Object.assign(devDependencies, {
      "aws-cdk": version("aws-cdk"),
      "aws-cdk-lib": version("aws-cdk-lib"),
      constructs: version("constructs"),
    });

  const files = new Map<string, string>();
  files.set(
    "package.json",
    json({
      name,
      version: "0.1.0",
      private: true,
      type: "module",
      engines: { node: ">=20" },
      scripts: {
        build: "tsc",
        ...(aws ? { "build:infra": "tsc && tsc -p infra" } : {}),
        start: "npm run build && tsweaver multi deploy weaver.toml",
        "start:single": "npm run build && TSWEAVER_CONFIG=weaver.toml node dist/src/main.js",
        test: "npm run build && node --test dist/test/",
      },
      dependencies: sorted(dependencies),
      devDependencies: sorted(devDependencies),
    }),
  );
  const templates = path.join(root, "runtime", "cli", "templates");
  for (const f of renderTemplates(templates, "app", name)) files.set(f.path, f.content);
  if (aws) {
    // The CDK feature flags the construct is tested with (this package's cdk.json), and weaver.toml.
    const cdk = JSON.parse(readFileSync(path.join(root, "cdk.json"), "utf8")) as { context?: Record<string, unknown> };
    const flags = Object.fromEntries(Object.entries(cdk.context ?? {}).filter(([k]) => k !== "config"));
    files.set(
      "cdk.json",
      json({ app: "npm run --silent build:infra && node dist/infra/app.js", context: { config: "weaver.toml", ...flags } }),
    );
    for (const f of renderTemplates(templates, "aws", name)) files.set(f.path, (files.get(f.path) ?? "") + f.content);
  }
  return { name, files: [...files].map(([p, content]) => ({ path: p, content })) };
}

/** `tsweaver init <dir>`: writes the scaffold, refusing if any of its files exists, and prints the next steps. */
export function initCommand(dir: string, opts: InitOptions = {}): void {
  const out = opts.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const target = path.resolve(dir);
  const { name, files } = scaffold(target, opts);
  const existing = files.map((f) => f.path).filter((p) => existsSync(path.join(target, p)));
  if (existing.length > 0) {
    throw new Error(`init: ${dir} already has ${existing.join(", ")}; init never overwrites files: choose a new or empty directory`);
  }
  out(`tsweaver init: creating app ${name} in ${target}`);
  for (const f of files) {
    const file = path.join(target, f.path);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, f.content, { flag: "wx" });
    out(`  created ${f.path}`);
  }
  const rel = path.relative(process.cwd(), target);
  const cd = rel === "" ? "." : rel.startsWith("..") ? target : rel;
  out("");
  out("Next:");
  if (cd !== ".") out(`  cd ${cd}`);
  out("  npm install");
  out("  npm start                              # many local processes; then: curl 'localhost:8080/hello?name=World'");
  out("  npm test");
  if (opts.aws ?? true) out("  npx cdk synth                          # the AWS stack, offline; README.md has the deploy steps");
}
