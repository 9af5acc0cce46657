import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigErrors, configFromObject, loadConfig } from '../src/config/load.ts';

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const BASE = `
[listeners.edge]
address = "\${LISTEN}"
upstream = "backend"
  [listeners.edge.tls]
  cert = "certs/server.pem"
  key = "/abs/server-key.pem"
  client_ca = "../shared/ca.pem"
  allow = ["URI=spiffe://\${TRUST_DOMAIN}/orders", "CN=literal-$\${NOT_EXPANDED}"]

[request_log]
path = "data/requests.sqlite"

[upstreams.backend]
endpoints = ["\${BACKEND_HOST}:443"]
  [upstreams.backend.tls]
  server_name = "\${BACKEND_HOST}"
`;

test('${NAME} is replaced from the environment, in plain strings and inside arrays; $${ is a literal', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'mtls-proxy.toml');
  writeFileSync(file, BASE);
  const config = loadConfig(file, { LISTEN: '127.0.0.1:8443', TRUST_DOMAIN: 'prod', BACKEND_HOST: 'backend.internal' });
  const edge = config.listeners[0];
  assert.deepEqual(edge?.address, { host: '127.0.0.1', port: 8443 });
  assert.deepEqual(edge?.tls.allow, ['URI=spiffe://prod/orders', 'CN=literal-${NOT_EXPANDED}']);
  assert.deepEqual(config.upstreams.get('backend')?.endpoints, [{ host: 'backend.internal', port: 443 }]);
  assert.equal(config.upstreams.get('backend')?.tls.serverName, 'backend.internal');
});

test('a missing variable is an error naming the key, its line and the variable; all are reported', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'mtls-proxy.toml');
  writeFileSync(file, BASE);
  assert.throws(() => loadConfig(file, { LISTEN: '127.0.0.1:8443' }), (err: unknown) => {
    assert.ok(err instanceof ConfigErrors);
    const found = err.errors.map((e) => `${e.path}@${e.line}: ${e.message}`);
    assert.deepEqual(found, [
      'listeners.edge.tls.allow[0]@9: environment variable TRUST_DOMAIN is not set',
      'upstreams.backend.endpoints[0]@15: environment variable BACKEND_HOST is not set',
      'upstreams.backend.tls.server_name@17: environment variable BACKEND_HOST is not set',
    ]);
    return true;
  });
  // A variable set to the empty string is set: the schema then judges the value.
  assert.throws(() => loadConfig(file, { LISTEN: '', TRUST_DOMAIN: 'x', BACKEND_HOST: 'b' }), (err: unknown) => {
    assert.ok(err instanceof ConfigErrors);
    assert.deepEqual(err.errors.map((e) => e.path), ['listeners.edge.address']);
    return true;
  });
});

test('the process environment is the default', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'mtls-proxy.toml');
  writeFileSync(file, BASE);
  const name = `MTLS_TEST_${process.pid}`;
  process.env[name] = '127.0.0.1:9999';
  t.after(() => delete process.env[name]);
  writeFileSync(file, BASE.replaceAll('${LISTEN}', `\${${name}}`).replaceAll('${TRUST_DOMAIN}', 'x').replaceAll('${BACKEND_HOST}', 'b'));
  assert.deepEqual(loadConfig(file).listeners[0]?.address, { host: '127.0.0.1', port: 9999 });
});

test('relative paths resolve against the config file folder, not the working directory', (t) => {
  const dir = tempDir(t);
  const confDir = join(dir, 'etc', 'proxy');
  mkdirSync(confDir, { recursive: true });
  const file = join(confDir, 'mtls-proxy.toml');
  writeFileSync(file, BASE);
  const config = loadConfig(file, { LISTEN: ':8443', TRUST_DOMAIN: 'x', BACKEND_HOST: 'b' });
  assert.equal(config.source, file);
  const tls = config.listeners[0]?.tls;
  assert.equal(tls?.cert, join(confDir, 'certs/server.pem'));
  assert.equal(tls?.key, '/abs/server-key.pem');
  assert.equal(tls?.clientCa, join(dir, 'etc', 'shared', 'ca.pem'));
  assert.equal(config.requestLog?.path, join(confDir, 'data/requests.sqlite'));
  assert.notEqual(process.cwd(), confDir);
});

test('configFromObject resolves against baseDir and expands from opts.env', () => {
  const config = configFromObject({
    listeners: { l: { address: '127.0.0.1:0', upstream: 'u', tls: { cert: 'c.pem', key: '${KEY_FILE}' } } },
    upstreams: { u: { endpoints: ['127.0.0.1:1'], tls: { ca: 'ca.pem' } } },
  }, { baseDir: '/opt/demo', env: { KEY_FILE: 'keys/k.pem' }, source: null });
  assert.equal(config.listeners[0]?.tls.cert, '/opt/demo/c.pem');
  assert.equal(config.listeners[0]?.tls.key, '/opt/demo/keys/k.pem');
  assert.equal(config.upstreams.get('u')?.tls.ca, '/opt/demo/ca.pem');
  assert.throws(
    () => configFromObject({ listeners: { l: { address: '${ X }', upstream: 'u' } } }, { baseDir: '/opt', env: {} }),
    (err: unknown) => err instanceof ConfigErrors && err.errors.some((e) => e.path === 'listeners.l.address' && /not a valid environment variable reference/.test(e.message)),
  );
});

test('an unreadable config file is one clear error', (t) => {
  const dir = tempDir(t);
  assert.throws(() => loadConfig(join(dir, 'missing.toml')), (err: unknown) => {
    assert.ok(err instanceof ConfigErrors);
    assert.equal(err.errors.length, 1);
    assert.match(err.message, /cannot read config file .*missing\.toml: no such file/);
    return true;
  });
});
