// Client identity from a certificate, the allow-list matcher and the XFCC value: unit cases,
// a differential check of the RFC 4514 subject against `openssl x509 -nameopt RFC2253`
// (the printer Envoy uses), and fast-check properties that subjects and XFCC read back exactly.
import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import fc from 'fast-check';
import { ConfigError } from '../src/errors.ts';
import { compileAllowList, formatXfcc, identityFromCertificate, parseXfcc, type ClientIdentity } from '../src/net/identity.ts';
import { formatRfc4514, type NameAttribute } from '../src/net/x509-names.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';

const pki: TestPki = await makeTestPki();
test.after(() => { pki.cleanup(); });

function identity(over: Partial<ClientIdentity>): ClientIdentity {
  return { subject: 'CN=x', cn: 'x', dns: [], uris: [], sha256: 'ab'.repeat(32), notAfter: new Date(0), serial: '01', ...over };
}

test('identityFromCertificate reads the test client certificate', () => {
  const cert = new X509Certificate(pki.client.cert);
  const id = identityFromCertificate(cert);
  assert.equal(id.subject, 'CN=test-client,O=Example');
  assert.equal(id.cn, 'test-client');
  assert.deepEqual(id.dns, ['client.internal']);
  assert.deepEqual(id.uris, ['spiffe://test/client']);
  assert.equal(id.sha256, createHash('sha256').update(cert.raw).digest('hex'));
  assert.equal(id.serial, pki.client.serial);
  assert.equal(id.notAfter.getTime(), cert.validToDate.getTime());
});

test('allow-list: empty allows everyone', () => {
  assert.equal(compileAllowList([])(identity({ cn: null })), true);
});

test('allow-list: CN is exact and case-sensitive', () => {
  const allow = compileAllowList(['CN=orders']);
  assert.equal(allow(identity({ cn: 'orders' })), true);
  assert.equal(allow(identity({ cn: 'Orders' })), false);
  assert.equal(allow(identity({ cn: 'orders2' })), false);
  assert.equal(allow(identity({ cn: null })), false);
});

test('allow-list: DNS "*." matches exactly one label, "**." one or more, case-insensitively', () => {
  const one = compileAllowList(['DNS=*.internal']);
  const many = compileAllowList(['dns=**.Internal']);
  const exact = compileAllowList(['DNS=api.example.com']);
  const cases: Array<[string, boolean, boolean]> = [
    ['a.internal', true, true],
    ['A.Internal', true, true],
    ['a.internal.', true, true],
    ['a.b.internal', false, true],
    ['internal', false, false],
    ['.internal', false, false],
    ['ainternal', false, false],
    ['a.internal.evil', false, false],
  ];
  for (const [name, oneLabel, anyLabels] of cases) {
    assert.equal(one(identity({ dns: [name] })), oneLabel, `*.internal vs ${name}`);
    assert.equal(many(identity({ dns: [name] })), anyLabels, `**.internal vs ${name}`);
  }
  assert.equal(exact(identity({ dns: ['API.example.com'] })), true);
  assert.equal(exact(identity({ dns: ['x.api.example.com'] })), false);
  assert.equal(one(identity({ dns: ['nope.example', 'ok.internal'] })), true, 'any SAN may match');
});

test('allow-list: URI "*" matches any run of characters, otherwise exact', () => {
  const allow = compileAllowList(['URI=spiffe://prod/*', 'URI=spiffe://stage/*/worker', 'URI=https://exact/path']);
  assert.equal(allow(identity({ uris: ['spiffe://prod/orders'] })), true);
  assert.equal(allow(identity({ uris: ['spiffe://prod/a/b/c'] })), true);
  assert.equal(allow(identity({ uris: ['spiffe://prod/'] })), true);
  assert.equal(allow(identity({ uris: ['spiffe://prod'] })), false);
  assert.equal(allow(identity({ uris: ['spiffe://production/x'] })), false);
  assert.equal(allow(identity({ uris: ['spiffe://stage/eu/worker'] })), true);
  assert.equal(allow(identity({ uris: ['spiffe://stage/eu/worker/2'] })), false);
  assert.equal(allow(identity({ uris: ['https://exact/path'] })), true);
  assert.equal(allow(identity({ uris: ['https://exact/path/'] })), false);
  assert.equal(allow(identity({ uris: ['SPIFFE://prod/x'] })), false);
});

test('allow-list: kinds combine with OR', () => {
  const allow = compileAllowList(['CN=orders', 'DNS=*.internal', 'URI=spiffe://prod/*']);
  assert.equal(allow(identity({ cn: 'billing', dns: ['b.internal'] })), true);
  assert.equal(allow(identity({ cn: 'billing', uris: ['spiffe://prod/billing'] })), true);
  assert.equal(allow(identity({ cn: 'billing', dns: ['b.external'], uris: ['spiffe://dev/billing'] })), false);
});

test('allow-list: malformed entries are config errors naming the entry', () => {
  for (const bad of ['orders', 'CN=', 'OU=eng', 'DNS=a.*.internal', 'DNS=*', 'DNS=*.', 'DNS=in*ternal', 'DNS=***.x']) {
    assert.throws(() => compileAllowList(['CN=ok', bad], 'listeners.edge.tls.allow'), (err: unknown) => {
      assert.ok(err instanceof ConfigError, bad);
      assert.equal(err.path, 'listeners.edge.tls.allow[1]');
      return true;
    });
  }
});

test('allow-list: glob matching stays linear on hostile input', () => {
  const allow = compileAllowList([`URI=${'a*'.repeat(20)}b`]);
  const started = performance.now();
  assert.equal(allow(identity({ uris: ['a'.repeat(50_000)] })), false);
  assert.ok(performance.now() - started < 200);
});

test('XFCC: Envoy form for the test client', () => {
  const id = identityFromCertificate(new X509Certificate(pki.client.cert));
  assert.equal(formatXfcc(id), `Hash=${id.sha256};Subject="CN=test-client,O=Example";URI=spiffe://test/client;DNS=client.internal`);
});

test('XFCC: delimiters are quoted, quotes and backslashes escaped, unsafe SAN bytes percent-encoded', () => {
  const id = identity({ subject: 'CN=a\\"b\\,c', uris: ['urn:x;y=z', 'http://h/a b'], dns: ['x\r\nX-Injected: 1'] });
  const header = formatXfcc(id);
  assert.equal(header, `Hash=${id.sha256};Subject="CN=a\\\\\\"b\\\\,c";URI="urn:x;y=z";URI=http://h/a%20b;DNS=x%0D%0AX-Injected:%201`);
  assert.deepEqual(parseXfcc(header), [[['Hash', id.sha256], ['Subject', 'CN=a\\"b\\,c'], ['URI', 'urn:x;y=z'], ['URI', 'http://h/a%20b'], ['DNS', 'x%0D%0AX-Injected:%201']]]);
});

// --- RFC 4514: a reader for what formatRfc4514 writes, to show the strings are unambiguous ---
function readRfc4514(dn: string): Array<Array<[string, string]>> {
  const rdns: Array<Array<[string, string]>> = [];
  let rdn: Array<[string, string]> = [];
  let i = 0;
  while (i < dn.length) {
    const eq = dn.indexOf('=', i);
    assert.ok(eq > i, `attribute type at ${i} in ${dn}`);
    const type = dn.slice(i, eq);
    i = eq + 1;
    const bytes: number[] = [];
    if (dn[i] === '#') {
      for (i++; i < dn.length && /[0-9A-F]/.test(dn[i] as string); i += 2) bytes.push(parseInt(dn.slice(i, i + 2), 16));
      rdn.push([type, `#${Buffer.from(bytes).toString('hex')}`]);
    } else {
      while (i < dn.length && dn[i] !== ',' && dn[i] !== '+') {
        const c = dn[i] as string;
        if (c === '\\') {
          const next = dn[i + 1] as string;
          if (/[0-9A-F]/.test(next)) {
            bytes.push(parseInt(dn.slice(i + 1, i + 3), 16));
            i += 3;
          } else {
            bytes.push(next.charCodeAt(0));
            i += 2;
          }
        } else {
          assert.ok(!'"+,;<>\\'.includes(c) && c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) < 0x7f, `raw ${JSON.stringify(c)} in ${dn}`);
          bytes.push(c.charCodeAt(0));
          i++;
        }
      }
      rdn.push([type, Buffer.from(bytes).toString('utf8')]);
    }
    if (dn[i] === ',' || i >= dn.length) {
      rdns.push(rdn);
      rdn = [];
    }
    i++;
  }
  return rdns;
}

const TYPES: Array<[string, string]> = [['2.5.4.3', 'CN'], ['2.5.4.10', 'O'], ['2.5.4.11', 'OU'], ['2.5.4.6', 'C'], ['0.9.2342.19200300.100.1.25', 'DC']];
const asciiChar = fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c));
const codePoint = fc.integer({ min: 0, max: 0x10ffff }).filter((c) => c < 0xd800 || c > 0xdfff).map((c) => String.fromCodePoint(c));
const attrValue = fc.string({ unit: fc.oneof(fc.constantFrom(...'"+,;<>\\=# \t\n/é€'), asciiChar, codePoint), maxLength: 12 });
const attr = fc.record({ type: fc.constantFrom(...TYPES), value: attrValue });
const rdnsArb = fc.array(fc.array(attr, { minLength: 1, maxLength: 3 }), { minLength: 0, maxLength: 5 });

function toAttributes(rdns: Array<Array<{ type: [string, string]; value: string }>>): NameAttribute[][] {
  return rdns.map((rdn) => rdn.map(({ type, value }) => {
    const bytes = Buffer.from(value, 'utf8');
    const der = Buffer.concat([Buffer.from([12, ...(bytes.length < 128 ? [bytes.length] : [0x81, bytes.length])]), bytes]);
    return { oid: type[0], tag: 12, value: bytes, der };
  }));
}

test('property: RFC 4514 subjects read back to the same RDNs, in reverse DER order', () => {
  fc.assert(fc.property(rdnsArb, (rdns) => {
    const dn = formatRfc4514(toAttributes(rdns));
    const expected = [...rdns].reverse().map((rdn) => [...rdn].reverse().map(({ type, value }): [string, string] => [type[1], value]));
    assert.deepEqual(readRfc4514(dn), expected);
    assert.ok(/^[\x20-\x7e]*$/.test(dn), 'printable ASCII only');
  }), { numRuns: 500 });
});

const sanArb = fc.string({ unit: fc.oneof(fc.constantFrom(...',;="\\ \r\n\t:/?#@!$&\'()*+'), asciiChar, fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c))), maxLength: 16 })
  .filter((s) => !s.includes('%'));

function percentDecode(s: string): string {
  return s.replace(/%([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

test('property: XFCC parses back unambiguously into one element with every field', () => {
  fc.assert(fc.property(rdnsArb, fc.array(sanArb, { maxLength: 3 }), fc.array(sanArb, { maxLength: 3 }), (rdns, uris, dns) => {
    const id = identity({ subject: formatRfc4514(toAttributes(rdns)), uris, dns });
    const header = formatXfcc(id);
    assert.ok(/^[\x20-\x7e]*$/.test(header), 'a valid header value: no controls, no raw non-ASCII');
    const elements = parseXfcc(header);
    assert.equal(elements.length, 1);
    const pairs = elements[0] as Array<[string, string]>;
    assert.deepEqual(pairs.slice(0, 2), [['Hash', id.sha256], ['Subject', id.subject]]);
    assert.deepEqual(pairs.slice(2).filter(([k]) => k === 'URI').map(([, v]) => percentDecode(v)), uris);
    assert.deepEqual(pairs.slice(2).filter(([k]) => k === 'DNS').map(([, v]) => percentDecode(v)), dns);
  }), { numRuns: 500 });
});

test('property: XFCC elements joined by "," (several hops) still split correctly', () => {
  fc.assert(fc.property(fc.array(fc.tuple(rdnsArb, fc.array(sanArb, { maxLength: 2 })), { minLength: 1, maxLength: 3 }), (hops) => {
    const ids = hops.map(([rdns, uris]) => identity({ subject: formatRfc4514(toAttributes(rdns)), uris }));
    const parsed = parseXfcc(ids.map(formatXfcc).join(','));
    assert.deepEqual(parsed.map((pairs) => pairs[1]?.[1]), ids.map((id) => id.subject));
  }), { numRuns: 200 });
});

// --- differential: OpenSSL's RFC 2253 printer (what Envoy's subjectPeerCertificate uses) ---
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

type StringKind = 'utf8String' | 'printableString' | 'ia5String' | 'bmpString' | 'universalString';
const subjects: Array<Array<Record<string, Array<Partial<Record<StringKind, string>>>>>> = [
  [{ C: [{ printableString: 'US' }] }, { O: [{ utf8String: 'Example, Inc.' }] }, { CN: [{ utf8String: 'orders' }] }],
  [{ CN: [{ utf8String: 'a"b\\c;d<e>f+g=h' }] }],
  [{ CN: [{ utf8String: '#leading hash' }] }, { OU: [{ utf8String: ' padded ' }] }],
  [{ CN: [{ utf8String: '#' }] }], // OpenSSL forgets this escape; see escapeValue
  [{ CN: [{ utf8String: 'café ☕ 𝄞' }] }],
  [{ CN: [{ utf8String: 'tab\there\nnl' }] }],
  [{ O: [{ bmpString: 'bmp é' }] }, { CN: [{ universalString: 'uni ü' }] }],
  [{ DC: [{ ia5String: 'internal' }] }, { DC: [{ ia5String: 'example' }] }, { CN: [{ utf8String: 'svc' }] }],
  [{ CN: [{ utf8String: 'multi' }], O: [{ utf8String: 'valued' }] }, { '2.5.4.12': [{ utf8String: 'title' }] }],
  [{ '1.2.840.113549.1.9.1': [{ ia5String: 'ops@example.com' }] }, { '1.3.6.1.4.1.99999.1': [{ utf8String: 'custom' }] }],
];

test('differential: subjects print as `openssl x509 -nameopt RFC2253` prints them', { skip: !hasOpenssl && 'openssl not installed' }, async () => {
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  for (const [i, json] of subjects.entries()) {
    const name = new x509.Name(json);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '01', name, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000),
    });
    const path = pki.file(`subject-${i}.pem`, cert.toString('pem'));
    const out = spawnSync('openssl', ['x509', '-in', path, '-noout', '-subject', '-nameopt', 'RFC2253'], { encoding: 'utf8' });
    assert.equal(out.status, 0, `${i}: ${out.stderr}`);
    let expected = out.stdout.replace(/^subject=\s?/, '').replace(/\n$/, '');
    if (expected === 'CN=#') expected = 'CN=\\#'; // RFC 4514 §2.4 requires the escape; we keep it
    assert.equal(identityFromCertificate(new X509Certificate(cert.toString('pem'))).subject, expected, JSON.stringify(json));
  }
});
