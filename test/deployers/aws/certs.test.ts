// Certificates the control plane signs: names from what it verified only, proof of key possession, P-256 only.
import assert from "node:assert/strict";
import { webcrypto, X509Certificate } from "node:crypto";
import { test } from "node:test";
import { newDeploymentCa, newKeyAndCsr, parseDeploymentCa, signCsr } from "../../../runtime/deployers/aws/certs.js";
import { checkOwnCertificate } from "../../../runtime/rpc/tls.js";

const SUBJECT = { deployment: "stack-a", version: "v0123456789", group: "shop-cart" };

test("a signed certificate names the verified deployment, version and group, whatever the CSR asked for", async () => {
  const ca = await newDeploymentCa("stack-a");
  assert.deepEqual(parseDeploymentCa(JSON.stringify(ca), "test"), ca);
  const { key, csr } = await newKeyAndCsr("shop-payment");
  const issued = await signCsr(ca, csr, SUBJECT, 3_600_000);
  const cert = new X509Certificate(issued.certificate);
  assert.equal(cert.subjectAltName, "URI:tsweaver://v0123456789/shop-cart");
  assert.equal(cert.subject, "CN=shop-cart\nOU=v0123456789\nO=stack-a");
  assert.ok(cert.checkIssued(new X509Certificate(ca.certificate)));
  assert.ok(cert.verify(new X509Certificate(ca.certificate).publicKey));
  assert.equal(cert.ca, false);
  // Usable as the weavelet's own credentials for exactly that identity.
  const tls = { cert: issued.certificate, key, ca: ca.certificate, identity: { deploymentId: SUBJECT.version, group: SUBJECT.group } };
  checkOwnCertificate(tls, tls.identity);
  assert.throws(
    () => checkOwnCertificate(tls, { deploymentId: SUBJECT.version, group: "shop-payment" }),
    /names tsweaver:\/\/v0123456789\/shop-cart, but this weavelet is tsweaver:\/\/v0123456789\/shop-payment/,
  );
  const other = await newKeyAndCsr("x");
  assert.throws(() => checkOwnCertificate({ ...tls, key: other.key }, tls.identity), /private key does not belong/);
  const lifetime = Date.parse(cert.validTo) - Date.now();
  assert.ok(lifetime > 3_500_000 && lifetime <= 3_600_000, String(lifetime));
});

test("a CSR whose signature does not verify, a malformed one and a non-P-256 key are refused", async () => {
  const ca = await newDeploymentCa("stack-a");
  const { csr } = await newKeyAndCsr("g");
  // Flip a byte of the signature (the DER ends with it).
  const der = Buffer.from(csr.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
  der[der.length - 3] = der[der.length - 3]! ^ 0x01;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
  await assert.rejects(signCsr(ca, tampered, SUBJECT, 60_000), /signature does not verify|does not parse/);
  await assert.rejects(
    signCsr(ca, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", SUBJECT, 60_000),
    /does not parse/,
  );
  // A P-384 key: a valid CSR, not a key the deployment signs.
  const x509 = await import("@peculiar/x509");
  const alg = { name: "ECDSA", namedCurve: "P-384", hash: "SHA-384" };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const p384 = await x509.Pkcs10CertificateRequestGenerator.create({ name: "CN=g", keys, signingAlgorithm: alg });
  await assert.rejects(signCsr(ca, p384.toString("pem"), SUBJECT, 60_000), /ECDSA P-384; only ECDSA P-256 keys are signed/);
});

test("a secret value that is not a CA is refused naming where it came from", () => {
  assert.throws(() => parseDeploymentCa("nope", "secret arn:x"), /secret arn:x does not hold a tsweaver deployment CA \(not JSON\)/);
  assert.throws(() => parseDeploymentCa("{}", "secret arn:x"), /expected \{"certificate": PEM, "privateKey": PEM\}/);
});
