// `npm start` (the demo) prints curl commands that work when pasted: with the client
// certificate -> 200 from the echo upstream; without -> refused in the handshake; the admin
// API lists that request; through the L4 tunnel -> 200. SIGINT then drains and exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/mtls-proxy.js', import.meta.url));

function sh(cmd: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', `${cmd} --silent --show-error --max-time 10`], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

test('the demo prints curl commands that work', { timeout: 60_000 }, async () => {
  const child = spawn(process.execPath, ['--max-semi-space-size=1', BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stderr.resume();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo printed no commands:\n${out}`)), 30_000);
    child.stdout.on('data', (d: string) => {
      out += d;
      if (out.includes('SIGHUP reloads')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  try {
    const lines = out.split('\n').map((l) => l.trim());
    const withCert = lines[lines.findIndex((l) => l.startsWith('With the client certificate')) + 1]!;
    const without = lines[lines.findIndex((l) => l.startsWith('Without a client certificate')) + 1]!;
    const tunnel = lines[lines.findIndex((l) => l.startsWith('Through the L4 tunnel')) + 1]!;
    assert.match(withCert, /^curl /);

    const ok = await sh(withCert);
    assert.equal(ok.code, 0, ok.out);
    const body = JSON.parse(ok.out) as { url: string; proxy_client_cert: string; headers: Record<string, string> };
    assert.equal(body.url, '/hello');
    assert.equal(body.proxy_client_cert, 'mtls-proxy');
    assert.match(body.headers['x-forwarded-client-cert']!, /Subject="CN=demo-client,O=mtls-proxy demo"/);

    const refused = await sh(without);
    assert.notEqual(refused.code, 0, 'a request without a client certificate was answered');
    assert.match(refused.out, /certificate required|alert|handshake/i);

    // the printed admin command shows the request just made, from the SQLite request log
    const admin = lines[lines.findIndex((l) => l.startsWith('The request log, through the admin API')) + 1]!;
    assert.match(admin, /^curl -u admin:\S+ http:\/\/127\.0\.0\.1:\d+\/api\/requests/);
    let rows: Array<{ path: string; status: number }> = [];
    for (let i = 0; i < 20 && rows.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 150));
      const res = await sh(admin);
      assert.equal(res.code, 0, res.out);
      rows = (JSON.parse(res.out) as { requests: Array<{ path: string; status: number }> }).requests;
    }
    assert.equal(rows[0]?.path, '/hello');
    assert.equal(rows[0]?.status, 200);

    const tun = await sh(tunnel);
    assert.equal(tun.code, 0, tun.out);
    assert.equal((JSON.parse(tun.out) as { url: string }).url, '/through-the-tunnel');
  } finally {
    child.kill('SIGINT');
  }
  assert.equal(await exited, 0);
});
