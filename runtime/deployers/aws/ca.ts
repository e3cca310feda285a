/**
 * The deployment CA on AWS: its certificate and private key are the value of a Secrets Manager secret
 * the stack creates empty, and that only the control plane's role may read or write. The first control
 * plane to start creates the CA; every later one (and a concurrently starting one) reads it.
 */
import { GetSecretValueCommand, PutSecretValueCommand, type SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { AwsCallError } from "./clients.js";
import {
  newDeploymentCa,
  parseDeploymentCa,
  signCsr,
  type CertificateSubject,
  type DeploymentCa,
  type IssuedCertificate,
} from "./certs.js";
import type { JsonLogger } from "./jsonlog.js";

/**
 * The version id (ClientRequestToken) of the CA's first value. Two control planes that both find the
 * secret empty both put under this token; Secrets Manager accepts the first and refuses the second
 * (ResourceExistsException: the token is taken with another value), so there is only ever one CA and
 * the loser reads the winner's.
 */
export const CA_VERSION_TOKEN = "tsweaver-deployment-ca-00000000000001";

/** Runs one AWS call, counted and with an error naming the API and resource (the control plane's aws_). */
type AwsCall = <T>(api: string, resource: string, fn: () => Promise<T>) => Promise<T>;

export interface DeploymentCaStoreOptions {
  /** ARN of the CA's secret. */
  readonly secretArn: string;
  /** The deployment (stack) the CA is for. */
  readonly deployment: string;
  readonly secrets: SecretsManagerClient;
  readonly call: AwsCall;
  readonly log: JsonLogger;
}

/** Loads (or, the first time, creates) the deployment CA and signs certificates with it. */
export class DeploymentCaStore {
  private loading: Promise<DeploymentCa> | undefined;

  constructor(private readonly opts: DeploymentCaStoreOptions) {}

  /** The CA; loaded once, and tried again on the next use if loading failed. */
  ca(): Promise<DeploymentCa> {
    this.loading ??= this.load().catch((err: unknown) => {
      this.loading = undefined;
      throw err;
    });
    return this.loading;
  }

  /** Signs a task's CSR for `subject` (see certs.ts: names come from `subject` only). */
  async issue(csr: string, subject: CertificateSubject, lifetimeMs: number): Promise<IssuedCertificate & { ca: string }> {
    const ca = await this.ca();
    return { ...(await signCsr(ca, csr, subject, lifetimeMs)), ca: ca.certificate };
  }

  private async load(): Promise<DeploymentCa> {
    const existing = await this.read();
    if (existing !== undefined) return existing;
    const ca = await newDeploymentCa(this.opts.deployment);
    try {
      await this.opts.call("secretsmanager:PutSecretValue", `secret ${this.opts.secretArn}`, () =>
        this.opts.secrets.send(
          new PutSecretValueCommand({
            SecretId: this.opts.secretArn,
            ClientRequestToken: CA_VERSION_TOKEN,
            SecretString: JSON.stringify(ca),
          }),
        ),
      );
    } catch (err) {
      if (!(err instanceof AwsCallError && err.awsError === "ResourceExistsException")) throw err;
      const winner = await this.read();
      if (winner === undefined)
        throw new Error(`secret ${this.opts.secretArn}: the deployment CA was created concurrently but cannot be read`);
      this.opts.log.info("deployment CA created by another control plane: using it", {});
      return winner;
    }
    // Read back: if another control plane's put won after all, its CA is the one in force.
    const stored = await this.read();
    if (stored === undefined) throw new Error(`secret ${this.opts.secretArn}: the deployment CA just stored cannot be read`);
    if (stored.certificate === ca.certificate) this.opts.log.info("deployment CA created", { secret: this.opts.secretArn });
    return stored;
  }

  /** The CA in the secret; undefined while the secret is empty. */
  private async read(): Promise<DeploymentCa | undefined> {
    const where = `secret ${this.opts.secretArn}`;
    let value: string | undefined;
    try {
      const out = await this.opts.call("secretsmanager:GetSecretValue", where, () =>
        this.opts.secrets.send(new GetSecretValueCommand({ SecretId: this.opts.secretArn, VersionStage: "AWSCURRENT" })),
      );
      value = out.SecretString;
    } catch (err) {
      // An empty secret (created without a value) has no AWSCURRENT version yet.
      if (err instanceof AwsCallError && err.awsError === "ResourceNotFoundException") return undefined;
      throw err;
    }
    return value === undefined || value === "" ? undefined : parseDeploymentCa(value, where);
  }
}
