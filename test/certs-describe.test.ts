// describeCertificate: the facts the admin API and XFCC show about a certificate.
import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { describeCertificate } from '../src/certs/inspect.ts';
import { createAuthority, issue } from '../src/pki/dev-pki.ts'; // also installs the webcrypto provider

const DAY = 86_400_000;

test('subject and issuer as RFC 4514 strings, SANs by type, sha256 of the DER', async () => {
  const ca = await createAuthority('test CA');
  const now = new Date();
  const cert = await issue(ca, {
    cn: 'orders', org: 'Example', dns: ['orders.internal'], ips: ['10.0.0.7', '::1'], uris: ['spiffe://prod/orders'],
    usage: ['client'], notBefore: new Date(now.getTime() - DAY), notAfter: new Date(now.getTime() + 10.5 * DAY),
  });
  const info = describeCertificate(cert.cert, now);
  // RFC 4514 prints the last RDN first: node lists the DER order one per line.
  const derOrder = new X509Certificate(cert.cert).subject.split('\n');
  assert.deepEqual(derOrder.slice().sort(), ['CN=orders', 'O=Example']);
  assert.equal(info.subject, derOrder.reverse().join(','));
  assert.equal(info.issuer, 'CN=test CA');
  assert.deepEqual(info.sans, ['DNS:orders.internal', 'IP:10.0.0.7', 'IP:::1', 'URI:spiffe://prod/orders']);
  assert.equal(info.daysLeft, 10);
  assert.equal(info.notAfter.getTime(), new X509Certificate(cert.cert).validToDate.getTime());
  const der = new X509Certificate(cert.cert).raw;
  assert.equal(info.sha256, createHash('sha256').update(der).digest('hex'));
  assert.match(info.sha256, /^[0-9a-f]{64}$/);
  // A Buffer and a bundle work too: the first certificate is described.
  assert.deepEqual(describeCertificate(Buffer.from(cert.cert + ca.cert), now), info);
});

test('days left rounds down and goes negative after expiry; names are escaped per RFC 4514', async () => {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: [{ O: [' a+b;c '] }, { CN: ['Ops, Inc. <root>=1'] }], keys: keys as webcrypto.CryptoKeyPair, signingAlgorithm: alg,
    notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + DAY),
  });
  const pem = cert.toString('pem');
  const info = describeCertificate(pem, new Date(new X509Certificate(pem).validToDate.getTime() + 1_000));
  assert.equal(info.daysLeft, -1);
  assert.equal(info.subject, 'CN=Ops\\, Inc. \\<root\\>=1,O=\\ a\\+b\\;c\\ ');
  assert.deepEqual(info.sans, []);
  assert.throws(() => describeCertificate('not a certificate'), /no PEM certificate/);
});
