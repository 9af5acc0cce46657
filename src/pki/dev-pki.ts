// A throwaway PKI made in-process with @peculiar/x509 (never by shelling out to openssl):
// used by `demo`, `pki init` and every test (a fresh CA per run). ECDSA P-256 keeps key
// generation in the milliseconds.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG: webcrypto.EcKeyGenParams & webcrypto.EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY_MS = 86_400_000;

export interface Issued {
  /** PEM certificate. */
  cert: string;
  /** PEM PKCS#8 private key. */
  key: string;
  /** Serial number, lowercase hex. */
  serial: string;
}

export interface Authority extends Issued {
  name: string;
  keys: CryptoKeyPair;
  certificate: x509.X509Certificate;
}

export interface IssueOptions {
  /** Common name; the subject is `CN=<cn>` plus `O=<org>` when given. */
  cn: string;
  org?: string;
  dns?: string[];
  ips?: string[];
  uris?: string[];
  /** Which extended key usages to put in the certificate. */
  usage: Array<'server' | 'client'>;
  notBefore?: Date;
  notAfter?: Date;
  days?: number;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyPem(keys: CryptoKeyPair): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function serialHex(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // positive INTEGER
  return Buffer.from(bytes).toString('hex');
}

export async function createAuthority(name = 'mtls-proxy dev CA', opts: { days?: number; notBefore?: Date; notAfter?: Date } = {}): Promise<Authority> {
  const keys = await newKeys();
  const serial = serialHex();
  const notBefore = opts.notBefore ?? new Date(Date.now() - 60_000);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial,
    name: `CN=${name}`,
    notBefore,
    notAfter: opts.notAfter ?? new Date(notBefore.getTime() + (opts.days ?? 3650) * DAY_MS),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { name, keys, certificate, cert: certificate.toString('pem'), key: await keyPem(keys), serial };
}

export async function issue(ca: Authority, opts: IssueOptions): Promise<Issued> {
  const keys = await newKeys();
  const serial = serialHex();
  const names: x509.JsonGeneralName[] = [
    ...(opts.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
    ...(opts.uris ?? []).map((value) => ({ type: 'url' as const, value })),
  ];
  const usages = opts.usage.map((u) => (u === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth));
  const notBefore = opts.notBefore ?? new Date(Date.now() - 60_000);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension(usages, false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  // Encoded least specific first (O, then CN), as CAs do, so the RFC 4514 string reads
  // "CN=x,O=y" (RFC 4514 §2.1 writes the RDN sequence in reverse).
  const subject = opts.org ? `O=${opts.org}, CN=${opts.cn}` : `CN=${opts.cn}`;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject,
    issuer: ca.certificate.subject,
    notBefore,
    notAfter: opts.notAfter ?? new Date(notBefore.getTime() + (opts.days ?? 825) * DAY_MS),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions,
  });
  return { cert: certificate.toString('pem'), key: await keyPem(keys), serial };
}

/** A PEM CRL signed by `ca` revoking the given serial numbers. */
export async function createCrl(ca: Authority, revokedSerials: string[]): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.certificate.subject,
    thisUpdate: new Date(Date.now() - 60_000),
    nextUpdate: new Date(Date.now() + 30 * DAY_MS),
    signingAlgorithm: ALG,
    signingKey: ca.keys.privateKey,
    entries: revokedSerials.map((serialNumber) => ({ serialNumber, revocationDate: new Date(Date.now() - 30_000) })),
  });
  // @peculiar/x509 labels it "CRL"; OpenSSL and Node read only "X509 CRL" (RFC 7468 §5)
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL');
}

export interface DevPki {
  ca: Authority;
  server: Issued;
  client: Issued;
  /** The proxy's own client certificate toward upstreams. */
  proxy: Issued;
}

/** The set `pki init` and `demo` write: a CA, a server cert for localhost/127.0.0.1, a client cert. */
export async function createDevPki(): Promise<DevPki> {
  const ca = await createAuthority();
  const server = await issue(ca, { cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1', '::1'], usage: ['server'] });
  const client = await issue(ca, { cn: 'demo-client', org: 'mtls-proxy demo', uris: ['spiffe://demo/client'], usage: ['client'] });
  const proxy = await issue(ca, { cn: 'mtls-proxy', org: 'mtls-proxy demo', uris: ['spiffe://demo/proxy'], usage: ['client'] });
  return { ca, server, client, proxy };
}
