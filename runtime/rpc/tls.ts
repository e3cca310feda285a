// TLS 1.3 for component RPC: both sides present a certificate issued by the deployment's CA, and each
// checks that the other's certificate names a weavelet of its own deployment. The identity is a URI in
// the certificate's subjectAltName: tsweaver://<deployment>/<group> (each part URI-encoded).
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { ConnectionOptions as TlsConnectOptions, PeerCertificate, TlsOptions } from "node:tls";
import type { PeerIdentity } from "./auth.js";

/** A weavelet's TLS credentials: its certificate and key, and the CA its peers' certificates come from. */
export interface RpcTls {
  /** PEM certificate (chain, leaf first) naming this weavelet's identity. */
  readonly cert: string;
  /** PEM private key of the certificate. */
  readonly key: string;
  /** PEM certificate of the deployment CA: the only issuer trusted for peers. */
  readonly ca: string;
  /** Who this weavelet is (must match its certificate); peers must be of the same deployment. */
  readonly identity: PeerIdentity;
}

const SCHEME = "tsweaver://";

/** The subjectAltName URI of a weavelet's certificate. */
export function identityUri(id: PeerIdentity): string {
  return `${SCHEME}${encodeURIComponent(id.deploymentId)}/${encodeURIComponent(id.group)}`;
}

/**
 * The identity in a certificate's subjectAltName (`"URI:tsweaver://dep/group, DNS:..."`, as both
 * X509Certificate.subjectAltName and PeerCertificate.subjectaltname render it); undefined if it names
 * none or more than one.
 */
export function identityFromAltNames(altNames: string | undefined): PeerIdentity | undefined {
  const found = (altNames ?? "")
    .split(", ")
    .filter((n) => n.startsWith(`URI:${SCHEME}`))
    .map((n) => n.slice(`URI:${SCHEME}`.length).split("/"));
  if (found.length !== 1 || found[0]!.length !== 2) return undefined;
  try {
    const [deploymentId, group] = found[0]!.map((p) => decodeURIComponent(p));
    return deploymentId && group ? { deploymentId, group } : undefined;
  } catch {
    return undefined;
  }
}

/** The identity a peer's verified certificate proves. */
export function peerIdentity(cert: X509Certificate | undefined): PeerIdentity | undefined {
  return identityFromAltNames(cert?.subjectAltName);
}

const TLS13 = { minVersion: "TLSv1.3", maxVersion: "TLSv1.3" } as const;

/** Server options: TLS 1.3 only, a client certificate from the CA required. */
export function serverTlsOptions(t: RpcTls): TlsOptions {
  return { ...TLS13, cert: t.cert, key: t.key, ca: t.ca, requestCert: true, rejectUnauthorized: true };
}

/**
 * Client options: TLS 1.3 only, the server's certificate must come from the CA and name a weavelet of
 * our deployment (replicas are dialled by IP address: the identity, not a host name, is what counts).
 */
export function clientTlsOptions(t: RpcTls): TlsConnectOptions {
  return {
    ...TLS13,
    cert: t.cert,
    key: t.key,
    ca: t.ca,
    rejectUnauthorized: true,
    checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => {
      const id = identityFromAltNames(cert.subjectaltname);
      if (id === undefined) return new Error("the server's certificate names no tsweaver identity");
      if (id.deploymentId !== t.identity.deploymentId) return new Error("the server's certificate is for another deployment");
      return undefined;
    },
  };
}

/**
 * Checks that `t` can serve as `identity`: its certificate parses, names exactly that identity, is
 * within its validity dates, and matches its private key. Throws an error saying what does not fit.
 */
export function checkOwnCertificate(t: RpcTls, identity: PeerIdentity): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(t.cert);
  } catch (err) {
    throw new Error(`the TLS certificate handed to the weavelet does not parse: ${(err as Error).message}`);
  }
  const named = peerIdentity(cert);
  if (named?.deploymentId !== identity.deploymentId || named.group !== identity.group || t.identity.deploymentId !== identity.deploymentId)
    throw new Error(
      `the TLS certificate names ${named === undefined ? "no tsweaver identity" : identityUri(named)}, but this weavelet is ${identityUri(identity)}`,
    );
  const now = Date.now();
  if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo))
    throw new Error(`the TLS certificate is valid from ${cert.validFrom} to ${cert.validTo}, not now`);
  if (!cert.checkPrivateKey(createPrivateKey(t.key))) throw new Error("the TLS private key does not belong to the certificate");
}
