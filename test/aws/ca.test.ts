/**
 * The deployment CA's store against the emulator's Secrets Manager: the stack creates the secret empty,
 * the first control plane creates the CA, and control planes starting at the same time end up with one
 * CA (PutSecretValue under a fixed version token: the second put is refused and reads the first).
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { after, before, test } from "node:test";
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  ListSecretVersionIdsCommand,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { CA_VERSION_TOKEN, DeploymentCaStore } from "../../runtime/deployers/aws/ca.js";
import { newKeyAndCsr } from "../../runtime/deployers/aws/certs.js";
import { callAws } from "../../runtime/deployers/aws/clients.js";
import type { JsonLogger } from "../../runtime/deployers/aws/jsonlog.js";
import { clientConfig, useEmulator, type Emulator } from "./moto.js";

let emu: Emulator;
let sm: SecretsManagerClient;
const created: string[] = [];

before(async () => {
  emu = await useEmulator();
  sm = new SecretsManagerClient(clientConfig(emu.endpoint));
});

after(async () => {
  for (const arn of created) await sm.send(new DeleteSecretCommand({ SecretId: arn, ForceDeleteWithoutRecovery: true }));
  sm?.destroy();
  await emu?.stop();
});

async function emptySecret(name: string): Promise<string> {
  const arn = (await sm.send(new CreateSecretCommand({ Name: `${name}-${process.pid}-${Date.now()}` }))).ARN!;
  created.push(arn);
  return arn;
}

function store(secretArn: string, lines: string[]): DeploymentCaStore {
  const log: JsonLogger = { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) };
  return new DeploymentCaStore({ secretArn, deployment: "stack-ca-test", secrets: sm, call: callAws, log });
}

test("control planes starting at once create exactly one CA, and every one of them signs with it", async () => {
  const arn = await emptySecret("ca-race");
  const lines: string[] = [];
  const stores = Array.from({ length: 4 }, () => store(arn, lines));
  const cas = await Promise.all(stores.map((s) => s.ca()));
  assert.equal(new Set(cas.map((c) => c.certificate)).size, 1, "one CA for all");
  assert.equal(lines.filter((l) => l === "deployment CA created").length, 1, lines.join("; "));
  const versions = await sm.send(new ListSecretVersionIdsCommand({ SecretId: arn }));
  assert.deepEqual(
    versions.Versions?.map((v) => v.VersionId),
    [CA_VERSION_TOKEN],
  );
  // A later start reads it, and a certificate it signs chains to it.
  const later = store(arn, lines);
  const { csr } = await newKeyAndCsr("x");
  const issued = await later.issue(csr, { deployment: "stack-ca-test", version: "v0123456789", group: "g" }, 60_000);
  assert.equal(issued.ca, cas[0]!.certificate);
  assert.ok(new X509Certificate(issued.certificate).checkIssued(new X509Certificate(issued.ca)));
});

test("a secret that holds something else is reported, naming the secret; a missing one names the API and the secret", async () => {
  const arn = (await sm.send(new CreateSecretCommand({ Name: `ca-other-${process.pid}-${Date.now()}`, SecretString: "not json" }))).ARN!;
  created.push(arn);
  await assert.rejects(
    store(arn, []).ca(),
    new RegExp(`secret ${arn.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} does not hold a tsweaver deployment CA`),
  );
  await assert.rejects(
    store(`${arn}-gone`, []).ca(),
    /secretsmanager:PutSecretValue on secret .*-gone failed: ResourceNotFoundException: .*can't find the specified secret/,
  );
});
