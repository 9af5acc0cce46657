// checkCertificates on real certificate files: chains, CA bundles, EKU per role, CRLs, validity.
import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { chmodSync } from 'node:fs';
import * as x509 from '@peculiar/x509';
import { checkCertificates, type Problem } from '../src/certs/inspect.ts';
import { configFromObject } from '../src/config/load.ts';
import type { Config } from '../src/config/types.ts';
import { createAuthority, createCrl, type Authority } from '../src/pki/dev-pki.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';

const DAY = 86_400_000;

async function setup(t: { after(fn: () => void): void }): Promise<TestPki> {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  pki.file('ca.pem', pki.ca.cert);
  pki.file('server.pem', pki.server.cert);
  pki.file('server-key.pem', pki.server.key);
  pki.file('proxy.pem', pki.proxyClient.cert);
  pki.file('proxy-key.pem', pki.proxyClient.key);
  return pki;
}

function config(pki: TestPki, tls: Record<string, unknown> = {}, upstreamTls: Record<string, unknown> = {}): Config {
  return configFromObject({
    listeners: { edge: { address: '127.0.0.1:0', upstream: 'backend', tls: { cert: 'server.pem', key: 'server-key.pem', client_ca: 'ca.pem', ...tls } } },
    upstreams: { backend: { endpoints: ['127.0.0.1:1'], tls: { cert: 'proxy.pem', key: 'proxy-key.pem', ca: 'ca.pem', ...upstreamTls } } },
  }, { baseDir: pki.dir, env: {} });
}

function summary(problems: Problem[]): string[] {
  return problems.map((p) => `${p.level} ${p.path}: ${p.message}`);
}

/** An intermediate CA signed by `root`, usable with dev-pki's issue(). */
async function intermediate(root: Authority): Promise<Authority> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as unknown as Authority['keys'];
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: '0a1b2c', subject: 'CN=test intermediate', issuer: root.certificate.subject,
    notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 365 * DAY),
    signingAlgorithm: alg, publicKey: keys.publicKey, signingKey: root.keys.privateKey,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  return { name: 'test intermediate', keys, certificate, cert: certificate.toString('pem'), key: '', serial: '0a1b2c' };
}

test('a consistent setup has no problems', async (t) => {
  const pki = await setup(t);
  assert.deepEqual(checkCertificates(config(pki)), []);
});

test('a leaf from an unconfigured CA is a "chain not verifiable" warning', async (t) => {
  const pki = await setup(t);
  const other = await createAuthority('other CA');
  const { issue } = await import('../src/pki/dev-pki.ts');
  const foreign = await issue(other, { cn: 'localhost', usage: ['server'] });
  pki.file('foreign.pem', foreign.cert);
  pki.file('foreign-key.pem', foreign.key);
  assert.deepEqual(summary(checkCertificates(config(pki, { cert: 'foreign.pem', key: 'foreign-key.pem' }))), [
    'warning listeners.edge.tls.cert: chain not verifiable: issuer CN=other CA not in any configured CA',
  ]);
  // The same CA shipped inside the cert file completes the chain.
  pki.file('foreign-chain.pem', foreign.cert + other.cert);
  assert.deepEqual(checkCertificates(config(pki, { cert: 'foreign-chain.pem', key: 'foreign-key.pem' })), []);
});

test('a regenerated CA with the same name is an error, not a silent pass', async (t) => {
  const pki = await setup(t);
  const impostor = await createAuthority('test CA');
  pki.file('ca.pem', impostor.cert);
  const problems = checkCertificates(config(pki));
  assert.deepEqual(problems.map((p) => `${p.level} ${p.path}`), ['error listeners.edge.tls.cert', 'error upstreams.backend.tls.cert']);
  assert.match(problems[0]?.message ?? '', /not signed by the configured CA CN=test CA: same name, different key/);
});

test('intermediates come from the cert file; the root may sit in any configured bundle', async (t) => {
  const pki = await setup(t);
  const { issue } = await import('../src/pki/dev-pki.ts');
  const mid = await intermediate(pki.ca);
  const leaf = await issue(mid, { cn: 'localhost', usage: ['server'] });
  pki.file('leaf.pem', leaf.cert);
  pki.file('leaf-key.pem', leaf.key);
  pki.file('leaf-chain.pem', leaf.cert + mid.cert);
  assert.deepEqual(checkCertificates(config(pki, { cert: 'leaf-chain.pem', key: 'leaf-key.pem' })), []);
  assert.deepEqual(summary(checkCertificates(config(pki, { cert: 'leaf.pem', key: 'leaf-key.pem' }))), [
    'warning listeners.edge.tls.cert: chain not verifiable: issuer CN=test intermediate not in any configured CA',
  ]);
  // A bundle configured only on the upstream side still counts as a trust anchor for the listener.
  const listenerOnly = configFromObject({
    listeners: { edge: { address: '127.0.0.1:0', upstream: 'backend', tls: { cert: 'leaf-chain.pem', key: 'leaf-key.pem' } } },
    upstreams: { backend: { endpoints: ['127.0.0.1:1'], tls: { ca: 'ca.pem' } } },
  }, { baseDir: pki.dir, env: {} });
  assert.deepEqual(checkCertificates(listenerOnly), []);
});

test('a CA bundle without a CA certificate is an error', async (t) => {
  const pki = await setup(t);
  pki.file('not-ca.pem', pki.client.cert);
  pki.file('garbage.pem', 'hello\n');
  const problems = summary(checkCertificates(config(pki, { client_ca: 'not-ca.pem' }, { ca: 'garbage.pem' })));
  assert.ok(problems.some((p) => /^error listeners\.edge\.tls\.client_ca: .*not-ca\.pem contains no CA certificate/.test(p)), problems.join('\n'));
  assert.ok(problems.some((p) => /^error upstreams\.backend\.tls\.ca: no PEM certificate found in .*garbage\.pem$/.test(p)), problems.join('\n'));
});

test('EKU must fit the role; a certificate without EKU fits any', async (t) => {
  const pki = await setup(t);
  pki.file('server-as-client.pem', pki.server.cert);
  pki.file('server-as-client-key.pem', pki.server.key);
  assert.deepEqual(summary(checkCertificates(config(pki, {}, { cert: 'server-as-client.pem', key: 'server-as-client-key.pem' }))), [
    'error upstreams.backend.tls.cert: extended key usage does not allow clientAuth, needed as a TLS client certificate (toward the upstream); it allows serverAuth',
  ]);
  // The CA certificate has no EKU extension at all.
  pki.file('ca-key.pem', pki.ca.key);
  assert.deepEqual(checkCertificates(config(pki, { cert: 'ca.pem', key: 'ca-key.pem' })), []);
});

test('not yet valid is an error; expiry inside 30 days is a warning with the days left', async (t) => {
  const pki = await setup(t);
  const future = await pki.issue({ cn: 'localhost', usage: ['server'], notBefore: new Date(Date.now() + 2 * DAY), days: 90 });
  pki.file('future.pem', future.cert);
  pki.file('future-key.pem', future.key);
  const [problem, ...rest] = checkCertificates(config(pki, { cert: 'future.pem', key: 'future-key.pem' }));
  assert.equal(rest.length, 0);
  assert.equal(problem?.level, 'error');
  assert.match(problem?.message ?? '', /^certificate is not valid until \d{4}-/);
  // Moving the clock instead of the certificate: 20.5 days before the proxy cert's end.
  const proxyEnd = new x509.X509Certificate(pki.proxyClient.cert).notAfter.getTime();
  const late = checkCertificates(config(pki), new Date(proxyEnd - 20.5 * DAY));
  assert.ok(summary(late).includes(`warning upstreams.backend.tls.cert: certificate expires in 20 days (${new Date(proxyEnd).toISOString()})`), summary(late).join('\n'));
});

test('CRLs: a good one passes, garbage is an error, one from another CA is a warning', async (t) => {
  const pki = await setup(t);
  pki.file('crl.pem', await createCrl(pki.ca, [pki.client.serial]));
  assert.deepEqual(checkCertificates(config(pki, { crl: 'crl.pem' })), []);
  pki.file('bad-crl.pem', '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n');
  const bad = checkCertificates(config(pki, { crl: 'bad-crl.pem' }));
  assert.deepEqual(bad.map((p) => `${p.level} ${p.path}`), ['error listeners.edge.tls.crl']);
  pki.file('other-crl.pem', await createCrl(await createAuthority('other CA'), []));
  assert.deepEqual(summary(checkCertificates(config(pki, { crl: 'other-crl.pem' }))), [
    'warning listeners.edge.tls.crl: CRL issuer CN=other CA is not a CA in client_ca, so it revokes nothing',
  ]);
});

test('unparseable and encrypted keys, and group-readable key files', async (t) => {
  const pki = await setup(t);
  pki.file('junk-key.pem', '-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n');
  pki.file('enc-key.pem', '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n');
  const junk = summary(checkCertificates(config(pki, { key: 'junk-key.pem' })));
  assert.equal(junk.length, 1);
  assert.match(junk[0] ?? '', /^error listeners\.edge\.tls\.key: private key in .*junk-key\.pem cannot be parsed/);
  assert.match(summary(checkCertificates(config(pki, { key: 'enc-key.pem' })))[0] ?? '', /encrypted private key/);
  chmodSync(`${pki.dir}/server-key.pem`, 0o644);
  assert.deepEqual(summary(checkCertificates(config(pki))), [
    `warning listeners.edge.tls.key: ${pki.dir}/server-key.pem is readable by group or others (mode 0644); chmod 600 it`,
  ]);
});
