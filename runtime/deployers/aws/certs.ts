/**
 * Certificates for TLS component calls on AWS. The control plane holds the deployment CA (its key lives
 * in a Secrets Manager secret only the control plane's role can read) and signs each task agent's
 * certificate signing request for the identity it verified against ECS; the agent keeps its private
 * key in its own memory and hands key, certificate and CA to its weavelet over the control pipe.
 *
 * Keys are ECDSA P-256. A weavelet certificate names its identity as runtime/rpc/tls.ts expects: the
 * subjectAltName URI tsweaver://<version>/<group> (the version is a weavelet's deployment id on AWS,
 * so versions refuse each other), and the subject O=<deployment>, OU=<version>, CN=<group>.
 */
import "reflect-metadata"; // @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs it
import { webcrypto, X509Certificate as NodeX509Certificate } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { identityUri } from "../../rpc/tls.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const MINUTE = 60_000;
/** Certificates start this long before they are issued: clocks of tasks and control plane differ a little. */
const CLOCK_SKEW_MS = 5 * MINUTE;
/** The CA certificate's lifetime (its key never leaves Secrets Manager and the control plane). */
const CA_LIFETIME_MS = 10 * 365 * 24 * 60 * MINUTE;

/** The deployment CA, as stored (JSON) in its Secrets Manager secret. */
export interface DeploymentCa {
  /** PEM certificate of the CA (self-signed). */
  readonly certificate: string;
  /** PEM (PKCS#8) private key of the CA. */
  readonly privateKey: string;
}

/** What a weavelet certificate names: the control plane fills it from the task it verified, never from the CSR. */
export interface CertificateSubject {
  readonly deployment: string;
  readonly version: string;
  readonly group: string;
}

/** An issued certificate and its validity. */
export interface IssuedCertificate {
  readonly certificate: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

const pem = (label: string, der: ArrayBuffer): string =>
  `-----BEGIN ${label}-----\n${Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "")}\n-----END ${label}-----\n`;

const derOf = (text: string): Buffer => Buffer.from(text.replace(/-----(BEGIN|END) [A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");

/** A positive 128-bit serial number (RFC 5280: unique per CA, at most 20 octets). */
function serialNumber(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString("hex");
}

async function newKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** A DN attribute value from a validated name: letters, digits, '-', '_', '.' only (nothing to escape). */
function dnValue(v: string, what: string): string {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(v)) throw new Error(`cannot name ${what} ${JSON.stringify(v)} in a certificate`);
  return v;
}

/** A new self-signed CA for `deployment`. */
export async function newDeploymentCa(deployment: string): Promise<DeploymentCa> {
  const keys = await newKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=tsweaver deployment CA, O=${dnValue(deployment, "deployment")}`,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + CA_LIFETIME_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificate: cert.toString("pem"), privateKey: pem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)) };
}

/** The CA stored in a secret's value; throws naming the secret when the value is not one. */
export function parseDeploymentCa(value: string, where: string): DeploymentCa {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new Error(`${where} does not hold a tsweaver deployment CA (not JSON)`);
  }
  const p = parsed as Partial<Record<keyof DeploymentCa, unknown>>;
  if (typeof p.certificate !== "string" || typeof p.privateKey !== "string")
    throw new Error(`${where} does not hold a tsweaver deployment CA (expected {"certificate": PEM, "privateKey": PEM})`);
  const cert = new NodeX509Certificate(p.certificate);
  if (!cert.ca) throw new Error(`${where}: its certificate is not a CA certificate`);
  return { certificate: p.certificate, privateKey: p.privateKey };
}

/** A task's key pair and the CSR for it (the key stays with the caller). */
export async function newKeyAndCsr(subject: string): Promise<{ key: string; csr: string }> {
  const keys = await newKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${dnValue(subject, "the subject")}`,
    keys,
    signingAlgorithm: ALG,
  });
  return { key: pem("PRIVATE KEY", await webcrypto.subtle.exportKey("pkcs8", keys.privateKey)), csr: csr.toString("pem") };
}

/**
 * Signs `csrPem` with the CA for `subject`, valid for `lifetimeMs`. Of the CSR only its public key is
 * used, once its signature proves the requester holds the private key: the names come from `subject`.
 * Only ECDSA P-256 keys are accepted.
 */
export async function signCsr(
  ca: DeploymentCa,
  csrPem: string,
  subject: CertificateSubject,
  lifetimeMs: number,
): Promise<IssuedCertificate> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new Error(`the certificate request does not parse: ${(err as Error).message}`);
  }
  const alg = csr.publicKey.algorithm as EcKeyAlgorithm;
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-256")
    throw new Error(
      `the certificate request's key is ${alg.name}${alg.namedCurve ? ` ${alg.namedCurve}` : ""}; only ECDSA P-256 keys are signed`,
    );
  if (!(await csr.verify())) throw new Error("the certificate request's signature does not verify (proof of key possession failed)");
  const caCert = new x509.X509Certificate(ca.certificate);
  const signingKey = await webcrypto.subtle.importKey("pkcs8", derOf(ca.privateKey), ALG, false, ["sign"]);
  const now = Date.now();
  const notBefore = new Date(now - CLOCK_SKEW_MS);
  const notAfter = new Date(now + lifetimeMs);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${dnValue(subject.group, "group")}, OU=${dnValue(subject.version, "version")}, O=${dnValue(subject.deployment, "deployment")}`,
    issuer: caCert.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    publicKey: csr.publicKey,
    signingKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: "url", value: identityUri({ deploymentId: subject.version, group: subject.group }) },
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { certificate: cert.toString("pem"), notBefore, notAfter };
}
