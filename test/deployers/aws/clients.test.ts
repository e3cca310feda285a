import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { AwsClients } from "../../../runtime/deployers/aws/clients.js";
import { clientsFor } from "../../../runtime/deployers/aws/cli.js";
import { tempDir, writeConfig } from "../../support/index.js";

// The region is resolved as the AWS SDK and CDK do (env, then the profile), with the app's [aws] region first.
function withEnv(env: Record<string, string | undefined>, fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    const saved = new Map(["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"].map((k) => [k, process.env[k]]));
    for (const k of saved.keys()) delete process.env[k];
    Object.assign(process.env, env);
    try {
      await fn();
    } finally {
      for (const [k, v] of saved) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  };
}

function profileFile(text: string): string {
  const file = path.join(tempDir(), "config");
  writeFileSync(file, text);
  return file;
}

test(
  "the region of the AWS profile is used when the environment names none",
  withEnv({ AWS_CONFIG_FILE: profileFile("[default]\nregion = eu-west-1\n[profile other]\nregion = ap-south-1\n") }, async () => {
    assert.equal(await new AwsClients().resolvedRegion(), "eu-west-1");
  }),
);

test(
  "AWS_PROFILE picks the profile whose region is used",
  withEnv(
    { AWS_CONFIG_FILE: profileFile("[default]\nregion = eu-west-1\n[profile other]\nregion = ap-south-1\n"), AWS_PROFILE: "other" },
    async () => {
      assert.equal(await new AwsClients().resolvedRegion(), "ap-south-1");
    },
  ),
);

test(
  "AWS_REGION beats AWS_DEFAULT_REGION, which beats the profile",
  withEnv({ AWS_CONFIG_FILE: profileFile("[default]\nregion = eu-west-1\n"), AWS_DEFAULT_REGION: "eu-north-1" }, async () => {
    assert.equal(await new AwsClients().resolvedRegion(), "eu-north-1");
    process.env["AWS_REGION"] = "sa-east-1";
    assert.equal(await new AwsClients().resolvedRegion(), "sa-east-1");
  }),
);

test(
  "[aws] region in weaver.toml wins over the environment and the profile",
  withEnv({ AWS_CONFIG_FILE: profileFile("[default]\nregion = eu-west-1\n"), AWS_REGION: "sa-east-1" }, async () => {
    const config = writeConfig(`[tsweaver]\nbinary = "app.js"\n\n[aws]\nregion = "ca-central-1"\n`);
    assert.equal(await clientsFor({ config }).resolvedRegion(), "ca-central-1");
    assert.equal(await clientsFor({ config: writeConfig(`[tsweaver]\nbinary = "app.js"\n`) }).resolvedRegion(), "sa-east-1");
  }),
);

test(
  "no region anywhere: the error names the three ways to set one",
  withEnv({ AWS_CONFIG_FILE: profileFile("[default]\noutput = json\n") }, async () => {
    await assert.rejects(
      new AwsClients().resolvedRegion(),
      /no AWS region: set \[aws\] region in weaver\.toml, AWS_REGION, or a region in your AWS profile/,
    );
  }),
);
