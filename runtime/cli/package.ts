/** The installed tsweaver package itself: its root directory and its package.json. */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export interface PackageJson {
  readonly version: string;
  readonly devDependencies?: Readonly<Record<string, string>>;
  readonly peerDependencies?: Readonly<Record<string, string>>;
}

/** The package's root: the nearest directory above this file (dist/runtime/cli/ or runtime/cli/) whose package.json is tsweaver's. */
export function packageRoot(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (existsSync(file) && (JSON.parse(readFileSync(file, "utf8")) as { name?: string }).name === "tsweaver") return dir;
    if (path.dirname(dir) === dir) throw new Error("the tsweaver package's package.json was not found; the installation is incomplete");
  }
}

export function packageJson(): PackageJson {
  return JSON.parse(readFileSync(path.join(packageRoot(), "package.json"), "utf8")) as PackageJson;
}

/**
 * The AWS SDK clients the AWS deployer uses, as `name@range`: optional peer dependencies, so an app that
 * never deploys to AWS does not install them (`tsweaver init` adds them to an app with the AWS parts).
 */
export function awsSdkDependencies(pkg: PackageJson = packageJson()): Record<string, string> {
  return Object.fromEntries(Object.entries(pkg.peerDependencies ?? {}).filter(([name]) => name.startsWith("@aws-sdk/")));
}

/**
 * Imports a module of the AWS deployer; when an AWS SDK client is not installed, fails saying which
 * packages to install instead of with the loader's "Cannot find package".
 */
export async function importAwsModule<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const missing = /Cannot find package '(@aws-sdk\/[^']+)'/.exec(e.message ?? "");
    if (e.code !== "ERR_MODULE_NOT_FOUND" || missing === null) throw err;
    const install = Object.entries(awsSdkDependencies()).map(([name, range]) => `${name}@${range}`);
    throw new Error(
      `the AWS deployer needs the AWS SDK clients (optional peer dependencies of tsweaver), and ${missing[1]} is not installed: npm install ${install.join(" ")}`,
    );
  }
}
