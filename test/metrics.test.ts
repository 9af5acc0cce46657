// Prometheus metrics against a running proxy: every series of the contract with the right
// labels after real traffic (200s, a 502, a refused TLS handshake, a tcp tunnel), the expiry
// gauges for held and presented certificates, default process metrics, and bounded
// cardinality: distinct paths and unknown methods never mint new series.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { Metrics } from '../src/admin/metrics.ts';
import type { ProxyView } from '../src/admin/types.ts';
import { proxyFixture } from './support/fixture.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { clientAgent, request, startProxy } from './support/proxy.ts';
import { startUpstream } from './support/upstream.ts';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the text exposition's sample lines (label values here never hold `"` or `,`). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) labels[pair[1]!] = pair[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Samples of `name` whose labels include every one of `labels`. */
function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  const exact = samples.filter((s) => s.name === name && Object.keys(s.labels).length === Object.keys(labels).length);
  return find(exact, name, labels)[0]?.value;
}

async function scrape(m: Metrics): Promise<Sample[]> {
  return parse(await m.render());
}

/** Request records are published when the exchange ends, which may be just after the client saw the response. */
async function until(m: Metrics, check: (s: Sample[]) => boolean): Promise<Sample[]> {
  for (let i = 0; ; i++) {
    const s = await scrape(m);
    if (check(s) || i === 100) return s;
    await sleep(10);
  }
}

function expiry(pem: string): number {
  return Math.floor(new X509Certificate(pem).validToDate.getTime() / 1000);
}

function connectWithoutCert(pki: TestPki, port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert });
    s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    s.on('error', () => {});
    s.on('close', () => resolve());
    s.setTimeout(2000, () => s.destroy());
  });
}

test('metrics after real traffic: requests, durations, bytes, connections, pools, TLS errors, expiry, defaults', async (t) => {
  const { pki, up, proxy, agent } = await proxyFixture(t, { tls: { client_auth: 'require' } });
  const metrics = new Metrics(proxy.server, proxy.server);
  t.after(() => metrics.close());
  const endpoint = `127.0.0.1:${up.port}`;

  for (let i = 0; i < 3; i++) assert.equal((await request(proxy.port, agent, 'GET', '/ok')).status, 200);
  assert.equal((await request(proxy.port, agent, 'POST', '/orders', 'x'.repeat(1000))).status, 200);
  await connectWithoutCert(pki, proxy.port);

  const ok = { listener: 'edge', upstream: 'backend', method: 'GET', code: '200' };
  const s = await until(metrics, (x) => value(x, 'mtls_proxy_requests_total', { ...ok, method: 'POST' }) === 1 && find(x, 'mtls_proxy_tls_handshake_errors_total').length > 0);
  assert.equal(value(s, 'mtls_proxy_requests_total', ok), 3);
  assert.equal(value(s, 'mtls_proxy_requests_total', { ...ok, method: 'POST' }), 1);
  assert.equal(value(s, 'mtls_proxy_request_duration_seconds_count', { listener: 'edge', upstream: 'backend' }), 4);
  assert.ok(value(s, 'mtls_proxy_request_duration_seconds_sum', { listener: 'edge', upstream: 'backend' })! > 0);
  assert.equal(value(s, 'mtls_proxy_request_duration_seconds_bucket', { listener: 'edge', upstream: 'backend', le: '+Inf' }), 4);
  assert.ok(find(s, 'mtls_proxy_request_duration_seconds_bucket', { le: '0.001' }).length === 1, 'buckets start at 1ms');
  assert.ok(find(s, 'mtls_proxy_request_duration_seconds_bucket', { le: '30' }).length === 1, 'and reach 30s');
  assert.ok(value(s, 'mtls_proxy_upstream_connect_duration_seconds_count', { upstream: 'backend' })! >= 1);

  assert.ok(value(s, 'mtls_proxy_bytes_received_total', { listener: 'edge' })! >= 1000, 'the POST body counts');
  assert.ok(value(s, 'mtls_proxy_bytes_sent_total', { listener: 'edge' })! > 0);
  assert.ok(value(s, 'mtls_proxy_active_connections', { listener: 'edge' })! >= 1, 'the keep-alive connection is open');

  assert.equal(value(s, 'mtls_proxy_upstream_endpoint_healthy', { upstream: 'backend', endpoint }), 1);
  assert.ok(value(s, 'mtls_proxy_upstream_pool_connections', { upstream: 'backend', endpoint, state: 'idle' })! >= 1, 'a pooled connection waits');
  assert.equal(value(s, 'mtls_proxy_upstream_pool_connections', { upstream: 'backend', endpoint, state: 'busy' }), 0);
  assert.equal(value(s, 'mtls_proxy_upstream_pool_connections', { upstream: 'backend', endpoint, state: 'pending' }), 0);

  assert.deepEqual(find(s, 'mtls_proxy_tls_handshake_errors_total'), [
    { name: 'mtls_proxy_tls_handshake_errors_total', labels: { listener: 'edge', reason: 'no_client_certificate' }, value: 1 },
  ]);

  const certs = 'mtls_proxy_certificate_expiry_timestamp_seconds';
  assert.deepEqual(find(s, 'mtls_proxy_metrics_collect_errors_total'), [], 'every gauge could be read from the proxy');
  assert.equal(value(s, certs, { role: 'listener', subject: 'CN=localhost' }), expiry(pki.server.cert));
  assert.equal(value(s, certs, { role: 'client', subject: 'CN=test-client,O=Example' }), expiry(pki.client.cert));
  assert.equal(value(s, certs, { role: 'upstream-client', subject: 'CN=proxy' }), expiry(pki.proxyClient.cert));
  assert.equal(find(s, certs, { role: 'client-ca' }).length, 1);
  assert.equal(find(s, certs, { role: 'upstream-ca' }).length, 1);

  // prom-client's default process metrics, each registered by hand (all but the GC histogram)
  for (const name of ['mtls_proxy_process_cpu_user_seconds_total', 'mtls_proxy_process_start_time_seconds', 'mtls_proxy_process_resident_memory_bytes',
    'mtls_proxy_process_open_fds', 'mtls_proxy_process_max_fds', 'mtls_proxy_nodejs_eventloop_lag_seconds', 'mtls_proxy_nodejs_active_resources_total',
    'mtls_proxy_nodejs_active_handles_total', 'mtls_proxy_nodejs_active_requests_total', 'mtls_proxy_nodejs_heap_size_used_bytes', 'mtls_proxy_nodejs_version_info']) {
    assert.equal(find(s, name).length, 1, `${name} is exported`);
  }
  assert.ok(find(s, 'mtls_proxy_nodejs_heap_space_size_used_bytes').length > 1, 'heap spaces are exported');
  // left out on purpose: a perf_hooks observer per GC costs the data path (docs/metrics.md)
  assert.equal(s.filter((x) => x.name.includes('nodejs_gc_duration_seconds')).length, 0, 'no GC histogram');
  assert.match(metrics.contentType, /^text\/plain; version=0\.0\.4/);

  metrics.authFailure('bad_credentials');
  metrics.authFailure('bad_credentials');
  metrics.authFailure('Not A Label!');
  const a = await scrape(metrics);
  assert.equal(value(a, 'mtls_proxy_admin_auth_failures_total', { reason: 'bad_credentials' }), 2);
  assert.equal(value(a, 'mtls_proxy_admin_auth_failures_total', { reason: 'other' }), 1);
});

test('cardinality: distinct paths add no series, unknown methods share "OTHER"', async (t) => {
  const { proxy, agent } = await proxyFixture(t);
  const metrics = new Metrics(proxy.server, proxy.server);
  t.after(() => metrics.close());
  const series = (s: Sample[]): number => find(s, 'mtls_proxy_requests_total').length + find(s, 'mtls_proxy_request_duration_seconds_count').length;
  await request(proxy.port, agent, 'GET', '/first');
  const before = await until(metrics, (x) => find(x, 'mtls_proxy_requests_total').length === 1);
  assert.equal(series(before), 2);

  for (let i = 0; i < 50; i++) await request(proxy.port, agent, 'GET', `/items/${i}?session=${i * 7919}`, undefined, { 'x-request-id': `distinct-${i}` });
  const ok = { listener: 'edge', upstream: 'backend', method: 'GET', code: '200' };
  const after = await until(metrics, (x) => value(x, 'mtls_proxy_requests_total', ok) === 51);
  assert.equal(value(after, 'mtls_proxy_requests_total', ok), 51);
  assert.equal(series(after), 2, '50 paths and request ids: still one series');

  for (const method of ['PROPFIND', 'MKCOL', 'PROPFIND']) assert.equal((await request(proxy.port, agent, method, '/dav')).status, 200);
  const other = { ...ok, method: 'OTHER' };
  const weird = await until(metrics, (x) => value(x, 'mtls_proxy_requests_total', other) === 3);
  assert.equal(value(weird, 'mtls_proxy_requests_total', other), 3);
  assert.equal(series(weird), 3, 'two unknown methods: one "OTHER" series');
  assert.ok(!(await metrics.render()).includes('/items/'), 'no path in any label');
});

test('a bad endpoint: 502 counted, connect errors counted, endpoint unhealthy', async (t) => {
  // Port 1 on loopback: nothing listens, the connect is refused at once.
  const { proxy, agent } = await proxyFixture(t, { endpoints: ['127.0.0.1:1'] });
  const metrics = new Metrics(proxy.server, proxy.server);
  t.after(() => metrics.close());
  assert.equal((await request(proxy.port, agent, 'GET', '/down')).status, 502);
  const bad = { listener: 'edge', upstream: 'backend', method: 'GET', code: '502' };
  const s = await until(metrics, (x) => value(x, 'mtls_proxy_requests_total', bad) === 1);
  assert.equal(value(s, 'mtls_proxy_requests_total', bad), 1);
  assert.ok(value(s, 'mtls_proxy_upstream_connect_errors_total', { upstream: 'backend' })! >= 1);
  assert.equal(value(s, 'mtls_proxy_upstream_endpoint_healthy', { upstream: 'backend', endpoint: '127.0.0.1:1' }), 0);
});

test('a tcp tunnel adds its bytes to the listener counters', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port, { listener: { mode: 'tcp' } });
  const metrics = new Metrics(proxy.server, proxy.server);
  t.after(async () => {
    metrics.close();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  await new Promise<void>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
    s.on('secureConnect', () => s.write('GET /tunnelled HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'));
    s.on('data', () => {});
    s.on('error', reject);
    s.on('close', () => resolve());
  });
  const s = await until(metrics, (x) => (value(x, 'mtls_proxy_bytes_sent_total', { listener: 'edge' }) ?? 0) > 0);
  assert.ok(value(s, 'mtls_proxy_bytes_received_total', { listener: 'edge' })! > 0);
  assert.ok(value(s, 'mtls_proxy_bytes_sent_total', { listener: 'edge' })! > 0);
  assert.equal(find(s, 'mtls_proxy_requests_total').length, 0, 'a tunnel is not an HTTP request');
});

test('close() drops every series and stops counting', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port);
  const metrics = new Metrics(proxy.server, proxy.server);
  const second = new Metrics(proxy.server, proxy.server, { clientCertLimit: 0 });
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    second.close();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  metrics.close();
  metrics.close();
  assert.equal((await metrics.render()).trim(), '');
  assert.equal((await request(proxy.port, agent, 'GET', '/after-close')).status, 200);
  const s = await until(second, (x) => find(x, 'mtls_proxy_requests_total').length === 1);
  assert.equal(find(s, 'mtls_proxy_requests_total').length, 1, 'a second registry on the same proxy counts on its own');
  assert.equal(find(s, 'mtls_proxy_certificate_expiry_timestamp_seconds', { role: 'client' }).length, 0, 'clientCertLimit 0 exports no client certificates');
  assert.equal(find(s, 'mtls_proxy_certificate_expiry_timestamp_seconds', { role: 'listener' }).length, 1);
});

test('a gauge source that throws is left out and counted; the rest of the scrape is served', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port);
  const s = proxy.server;
  const view: ProxyView = {
    version: s.version, startedAt: s.startedAt, phase: s.phase, config: s.config,
    listeners: () => s.listeners(), upstreams: () => s.upstreams(), readiness: () => s.readiness(), reload: () => s.reload(),
    certificates: () => {
      throw new Error('a certificate that no longer parses');
    },
  };
  const metrics = new Metrics(view, s);
  t.after(async () => {
    metrics.close();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const first = await scrape(metrics);
  assert.equal(find(first, 'mtls_proxy_certificate_expiry_timestamp_seconds').length, 0);
  assert.equal(value(first, 'mtls_proxy_metrics_collect_errors_total', { metric: 'certificate_expiry_timestamp_seconds' }), 1, 'counted in the same scrape');
  assert.equal(value(first, 'mtls_proxy_upstream_endpoint_healthy', { upstream: 'backend', endpoint: `127.0.0.1:${up.port}` }), 1);
  assert.equal(value(first, 'mtls_proxy_active_connections', { listener: 'edge' }), 0);
});

test('request log counters: rows written, dropped (queue full) and queued, write time, read at scrape time', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { RequestLog } = await import('../src/admin/request-log.ts');
  const { silentLogger } = await import('../src/log.ts');
  const { proxy, agent } = await proxyFixture(t);
  const dir = mkdtempSync(join(tmpdir(), 'mtls-metrics-log-'));
  // no start(): nothing flushes until the test says so; room for two rows
  const log = RequestLog.open({ path: join(dir, 'r.sqlite'), retentionMs: 86_400_000, maxRows: 1000 }, silentLogger, { queueLimit: 2 });
  log.attach(proxy.server);
  const metrics = new Metrics(proxy.server, proxy.server, { requestLogStats: () => log.stats });
  const without = new Metrics(proxy.server, proxy.server);
  t.after(async () => {
    metrics.close();
    without.close();
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < 3; i++) assert.equal((await request(proxy.port, agent, 'GET', `/r${i}`)).status, 200);
  const s = await until(metrics, (x) => value(x, 'mtls_proxy_request_log_rows_dropped_total', {}) === 1);
  assert.equal(value(s, 'mtls_proxy_request_log_queue_rows', {}), 2);
  assert.equal(value(s, 'mtls_proxy_request_log_rows_dropped_total', {}), 1);
  assert.equal(value(s, 'mtls_proxy_request_log_rows_written_total', {}), 0);
  log.flush();
  const after = await scrape(metrics);
  assert.equal(value(after, 'mtls_proxy_request_log_rows_written_total', {}), 2);
  assert.equal(value(after, 'mtls_proxy_request_log_queue_rows', {}), 0);
  assert.equal(value(after, 'mtls_proxy_request_log_rows_dropped_total', {}), 1);
  const spent = value(after, 'mtls_proxy_request_log_write_seconds_total', {})!;
  assert.ok(spent > 0 && spent < 1, `write time counted: ${spent} s`);
  assert.equal(find(await scrape(without), 'mtls_proxy_request_log_rows_written_total').length, 0, 'no request log, no series');
});
