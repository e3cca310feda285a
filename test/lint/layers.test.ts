// The layer rule of eslint.config.js, proven on code that breaks it: each case lints a few lines as if
// they were a file at the given path in this repository, and expects exactly the named rule (or none).
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ESLint } from "eslint";
import tseslint from "typescript-eslint";
import { ROOT } from "../support/index.js";

// Type information is not needed for import rules, and the virtual files below are in no tsconfig.
const eslint = new ESLint({ cwd: ROOT, overrideConfig: tseslint.configs.disableTypeChecked });

async function importErrors(file: string, specifier: string): Promise<{ rule: string | null; message: string }[]> {
  const [result] = await eslint.lintText(`import * as m from ${JSON.stringify(specifier)};\nexport const keep = m;\n`, {
    filePath: path.join(ROOT, file),
  });
  assert.ok(result, `eslint returned no result for ${file}`);
  return result.messages.map((m) => ({ rule: m.ruleId, message: m.message }));
}

async function assertForbidden(file: string, specifier: string, rule: string): Promise<void> {
  const errors = await importErrors(file, specifier);
  assert.equal(errors.length, 1, `${file} importing ${specifier}: expected one ${rule} error, got ${JSON.stringify(errors)}`);
  assert.equal(errors[0]!.rule, rule);
  assert.match(errors[0]!.message, /DESIGN\.md/);
}

async function assertAllowed(file: string, specifier: string): Promise<void> {
  assert.deepEqual(await importErrors(file, specifier), [], `${file} may import ${specifier}`);
}

const weaveletFile = readdirSync(path.join(ROOT, "runtime/weavelet")).find((f) => f.endsWith(".ts") && f !== "weavelet.ts");

test("core imports nothing above it", async () => {
  await assertForbidden("runtime/core/selftest.ts", "../rpc/frames.js", "import-x/no-restricted-paths");
  await assertForbidden("runtime/core/selftest.ts", "../index.js", "import-x/no-restricted-paths");
  await assertAllowed("runtime/core/selftest.ts", "./errors.js");
});

test("rpc imports core and codec, not telemetry or the weavelet", async () => {
  await assertAllowed("runtime/rpc/selftest.ts", "../core/errors.js");
  await assertAllowed("runtime/rpc/selftest.ts", "../codec/codec.js");
  await assertForbidden("runtime/rpc/selftest.ts", "../telemetry/metrics.js", "import-x/no-restricted-paths");
  await assertForbidden("runtime/rpc/selftest.ts", "../weavelet/weavelet.js", "import-x/no-restricted-paths");
});

test("the envelope never imports the weavelet; the weavelet never imports the envelope", async () => {
  await assertForbidden("runtime/envelope/selftest.ts", "../weavelet/weavelet.js", "import-x/no-restricted-paths");
  await assertForbidden("runtime/weavelet/selftest.ts", "../envelope/envelope.js", "import-x/no-restricted-paths");
});

test("deployers use the envelope, not the weavelet, and not each other", async () => {
  await assertAllowed("runtime/deployers/multi/selftest.ts", "../../envelope/envelope.js");
  // However the path is spelled, it resolves to the same forbidden file.
  await assertForbidden("runtime/deployers/multi/selftest.ts", "../../weavelet/weavelet.js", "import-x/no-restricted-paths");
  await assertForbidden("runtime/deployers/multi/selftest.ts", "../../deployers/../weavelet/weavelet.js", "import-x/no-restricted-paths");
  await assertForbidden("runtime/deployers/multi/selftest.ts", "../aws/config.js", "import-x/no-restricted-paths");
});

test("the in-process deployer may import the weavelet's hosting entry only", async () => {
  await assertAllowed("runtime/deployers/single/selftest.ts", "../../weavelet/weavelet.js");
  assert.ok(weaveletFile, "runtime/weavelet has a file besides weavelet.ts");
  await assertForbidden(
    "runtime/deployers/single/selftest.ts",
    `../../weavelet/${weaveletFile.replace(/\.ts$/, ".js")}`,
    "import-x/no-restricted-paths",
  );
});

test("AWS SDK clients only in the AWS deployer; aws-cdk-lib only in infra/", async () => {
  await assertForbidden("runtime/telemetry/selftest.ts", "@aws-sdk/client-ecs", "no-restricted-imports");
  await assertAllowed("runtime/deployers/aws/selftest.ts", "@aws-sdk/client-ecs");
  await assertForbidden("runtime/deployers/aws/selftest.ts", "aws-cdk-lib", "no-restricted-imports");
  await assertAllowed("infra/selftest.ts", "aws-cdk-lib/aws-ecs");
});

test("infra/ imports from runtime/ only the AWS contract", async () => {
  await assertForbidden("infra/selftest.ts", "../runtime/rpc/frames.js", "import-x/no-restricted-paths");
  await assertAllowed("infra/selftest.ts", "../runtime/deployers/aws/config.js");
  // The construct itself: the contract and nothing else.
  await assertAllowed("infra/weaver-app.ts", "../runtime/deployers/aws/contract.js");
  await assertForbidden("infra/weaver-app.ts", "../runtime/deployers/aws/config.js", "import-x/no-restricted-paths");
  await assertForbidden("runtime/core/selftest.ts", "../../infra/stack.js", "import-x/no-restricted-paths");
});
