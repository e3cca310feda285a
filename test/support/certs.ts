/** Test certificates for TLS component calls: a deployment CA and weavelet certificates it issues. */
import "reflect-metadata"; // @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs it
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import type { PeerIdentity } from "../../runtime/rpc/auth.js";
import { identityUri, type RpcTls } from "../../runtime/rpc/tls.js";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 24 * 3600 * 1000;
let serial = 1;

/** A certificate authority: its certificate (PEM) and signing key. */
export interface TestCa {
  readonly pem: string;
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
}

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END PRIVATE KEY-----\n`;
}

/** A new self-signed CA. */
export async function newCa(name = "tsweaver test CA"): Promise<TestCa> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: String(serial++).padStart(2, "0"),
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 30 * DAY),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return { pem: cert.toString("pem"), cert, keys };
}

/** TLS credentials for `identity`, issued by `ca` (valid now, unless `validity` says otherwise). */
export async function issue(ca: TestCa, identity: PeerIdentity, validity?: { notBefore: Date; notAfter: Date }): Promise<RpcTls> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: String(serial++).padStart(2, "0"),
    subject: `CN=${identity.group}`,
    issuer: ca.cert.subject,
    notBefore: validity?.notBefore ?? new Date(Date.now() - DAY),
    notAfter: validity?.notAfter ?? new Date(Date.now() + DAY),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: identityUri(identity) }]),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ],
  });
  return { cert: cert.toString("pem"), key: await keyPem(keys.privateKey), ca: ca.pem, identity };
}
