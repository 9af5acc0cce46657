// How the primary merges its workers' answers for /api: counts add up, health is "in rotation
// in every worker", certificates are a union, reload reports keep each worker's result.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CertificateView, ListenerView, UpstreamView } from '../src/admin/types.ts';
import { mergeCertificates, mergeListeners, mergeReloads, mergeUpstreams } from '../src/cluster/merge.ts';

const listener = (open: number, accepted: number, tlsErrors: Array<[string, number]>, address = '127.0.0.1:8443'): ListenerView => ({
  name: 'edge', mode: 'http', address, upstream: 'backend',
  stats: { open, accepted, refused: 1, tlsErrors: new Map(tlsErrors), bytesIn: 10, bytesOut: 20 },
});

test('listeners: stats and TLS errors by reason add up; an address survives a worker that closed its own', () => {
  const w1 = [listener(2, 5, [['no_client_certificate', 1]], '')];
  const w2 = [listener(3, 7, [['no_client_certificate', 2], ['unknown_ca', 1]])];
  const [merged, ...rest] = mergeListeners([w1, w2]);
  assert.equal(rest.length, 0);
  assert.equal(merged!.address, '127.0.0.1:8443');
  assert.deepEqual({ ...merged!.stats, tlsErrors: Object.fromEntries(merged!.stats.tlsErrors) }, {
    open: 5, accepted: 12, refused: 2, bytesIn: 20, bytesOut: 40, tlsErrors: { no_client_certificate: 3, unknown_ca: 1 },
  });
  assert.equal(w1[0]!.stats.open, 2, 'the inputs are not modified');
});

test('upstreams: pool counts add up; healthy only when healthy in every worker; first last_error', () => {
  const up = (healthy: boolean, idle: number, lastError: string | null): UpstreamView[] => [{
    name: 'backend', endpoints: [{ endpoint: '10.0.0.5:443', healthy, lastError, size: idle + 1, idle, busy: 1, pending: 0 }],
  }];
  const merged = mergeUpstreams([up(true, 2, null), up(false, 1, 'MTLS_ERR_UPSTREAM_CONNECT'), up(true, 0, 'other')]);
  assert.deepEqual(merged, [{
    name: 'backend', endpoints: [{ endpoint: '10.0.0.5:443', healthy: false, lastError: 'MTLS_ERR_UPSTREAM_CONNECT', size: 6, idle: 3, busy: 3, pending: 0 }],
  }]);
});

test('certificates: one entry per role, owner and fingerprint across workers', () => {
  const cert = (role: CertificateView['role'], sha256: string): CertificateView => ({
    role, owner: 'edge', subject: 'CN=x', sans: [], issuer: 'CN=ca', notAfter: new Date(0), daysLeft: 1, sha256,
  });
  const merged = mergeCertificates([[cert('listener', 'a'), cert('client', 'c1')], [cert('listener', 'a'), cert('client', 'c2')]]);
  assert.deepEqual(merged.map((c) => `${c.role}:${c.sha256}`), ['listener:a', 'client:c1', 'client:c2']);
});

test('reload: changed anywhere is changed; a worker that did not answer is an error of its own', () => {
  const merged = mergeReloads([
    { id: 1, pid: 11, report: { changed: ['listeners.edge.tls'], unchanged: ['upstreams.backend.tls'], errors: [] } },
    { id: 2, pid: 12, report: { changed: [], unchanged: ['listeners.edge.tls', 'upstreams.backend.tls'], errors: [] } },
    { id: 3, pid: 13, report: null, error: 'worker 3 did not answer within 10000 ms' },
  ]);
  assert.deepEqual(merged.changed, ['listeners.edge.tls']);
  assert.deepEqual(merged.unchanged, ['upstreams.backend.tls']);
  assert.deepEqual(merged.errors, [{ what: 'worker 3', error: 'worker 3 did not answer within 10000 ms' }]);
  assert.deepEqual(merged.workers!.map((w) => [w.id, w.pid, w.changed.length, w.errors.length]), [[1, 11, 1, 0], [2, 12, 0, 0], [3, 13, 0, 1]]);
});
