// The dashboard in a real browser: headless Chromium (Debian's package, driven by playwright-core)
// logs in with HTTP Basic, sees the request it just proxied in the table, the listener's
// certificate flagged as expiring, no console errors or CSP violations; the screenshot becomes
// docs/dashboard.png for the README.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcrypt';
import { AdminServer } from '../src/admin/server.ts';
import { RequestLog } from '../src/admin/request-log.ts';
import { silentLogger } from '../src/log.ts';
import type { Locator } from 'playwright-core';
import { launchChromium } from './support/chromium.ts';
import { makeTestPki } from './support/pki.ts';
import { clientAgent, request, startProxy } from './support/proxy.ts';
import { startUpstream } from './support/upstream.ts';

const DAY = 86_400_000;
// Refreshing the README's picture is a deliberate act (UPDATE_SCREENSHOT=1 npm run test:unit);
// an ordinary run writes it to the temp folder, so tests leave the tree clean.
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1' ? fileURLToPath(new URL('../docs/dashboard.png', import.meta.url)) : join(tmpdir(), `mtls-proxy-dashboard-${process.pid}.png`);
// A path a client controls, with markup in it: the page must show it as text, never parse it.
const HOSTILE_PATH = '/orders/<b/id=injected>x</b>';

/** Matches exactly this text (Playwright's hasText is a substring match otherwise). */
function exactly(text: string): RegExp {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
}

async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test('dashboard: a logged-in browser sees the proxied request and the expiring listener certificate', async (t) => {
  // torn down in reverse, whatever step failed
  const cleanup: Array<() => unknown> = [];
  t.after(async () => {
    for (const fn of cleanup.reverse()) await fn();
  });
  const pki = await makeTestPki();
  cleanup.push(() => pki.cleanup());
  // The listener's certificate expires in 10 days: the dashboard must flag it (warn, < 30 days).
  const soon = await pki.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], usage: ['server'], notAfter: new Date(Date.now() + 10 * DAY) });
  const up = await startUpstream(pki);
  cleanup.push(() => up.close());
  up.handlers.set('/flaky', (_req, res) => {
    res.writeHead(503, { 'content-length': '0' });
    res.end();
  });
  const dbDir = mkdtempSync(join(tmpdir(), 'mtls-dashboard-'));
  cleanup.push(() => rmSync(dbDir, { recursive: true, force: true }));
  const log = RequestLog.open({ path: join(dbDir, 'requests.sqlite'), retentionMs: 7 * DAY, maxRows: 100_000 }, silentLogger);
  cleanup.push(() => log.close());
  const proxy = await startProxy(pki, up.port, { tls: { cert: pki.file('soon.pem', soon.cert), key: pki.file('soon-key.pem', soon.key) } });
  cleanup.push(() => proxy.stop()); // before the log closes, as the server orders it
  log.attach(proxy.server);
  log.start();
  const admin = new AdminServer({
    config: { address: { host: '127.0.0.1', port: 0 }, username: 'admin', passwordHash: await bcrypt.hash('password', 4) },
    view: proxy.server,
    metrics: null,
    requestLog: log,
    logger: silentLogger,
  });
  const { port } = await admin.listen();
  cleanup.push(() => admin.close());
  const agent = clientAgent(pki);
  cleanup.push(() => agent.destroy());
  const browser = await launchChromium();
  cleanup.push(() => browser.close());

  // Traffic for the chart and the table, in three bursts 2 s apart (the chart's resolution):
  // successes and two 503s from the origin; the request we look for goes last, the newest row.
  for (let burst = 0; burst < 3; burst++) {
    if (burst > 0) await sleep(2_000);
    for (let i = 0; i < 4 * (burst + 1); i++) assert.equal((await request(proxy.port, agent, 'GET', `/api/items/${burst}-${i}`)).status, 200);
  }
  for (let i = 0; i < 2; i++) assert.equal((await request(proxy.port, agent, 'GET', '/flaky')).status, 503);
  assert.equal((await request(proxy.port, agent, 'POST', '/api/items', '{"name":"widget"}', { 'content-type': 'application/json' })).status, 200);
  const res = await request(proxy.port, agent, 'GET', HOSTILE_PATH);
  assert.equal(res.status, 200);
  const requestId = res.headers['x-request-id'];
  assert.ok(typeof requestId === 'string' && requestId !== '');

  const context = await browser.newContext({ httpCredentials: { username: 'admin', password: 'password' }, viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    // CSP violations are reported as console errors ("Refused to ... Content Security Policy")
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  // runs in the page (as a string: the test's tsconfig has no DOM types), before the page's own script
  await page.addInitScript({ content: "document.addEventListener('securitypolicyviolation', (e) => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));" });

  const nav = await page.goto(`http://127.0.0.1:${port}/`);
  assert.equal(nav?.status(), 200);
  assert.match(nav.headers()['content-security-policy'] ?? '', /script-src 'self'/);

  const rows = page.locator('#requests tr');
  const idCells = page.locator('#requests td.id');
  const rowOf = (id: string): Locator => rows.filter({ has: page.locator('td.id', { hasText: exactly(id) }) });

  // the request we proxied, by its exact id, with its path shown as text
  await rowOf(requestId).waitFor({ timeout: 15_000 });
  assert.equal(await rowOf(requestId).locator('.path').textContent(), HOSTILE_PATH);
  assert.equal(await page.locator('#injected').count(), 0, 'a path from the log was parsed as markup');

  // a certificate row for the listener, flagged warn (10 days left), sorted before longer-lived ones
  const certRows = page.locator('#certificates tr');
  await certRows.filter({ has: page.locator('td:nth-child(3)', { hasText: exactly('listener') }) }).waitFor({ timeout: 15_000 });
  const certs: Array<{ cls: string; days: number; role: string }> = [];
  for (const tr of await certRows.all()) {
    const cells = await tr.locator('td').allTextContents();
    certs.push({ cls: (await tr.getAttribute('class')) ?? '', days: Number(cells[0]), role: cells[2] ?? '' });
  }
  const listenerCert = certs.find((c) => c.role === 'listener');
  assert.ok(listenerCert, JSON.stringify(certs));
  assert.equal(listenerCert.cls, 'warn');
  assert.ok(listenerCert.days === 9 || listenerCert.days === 10, `days left ${listenerCert.days}`);
  assert.deepEqual(certs.map((c) => c.days), certs.map((c) => c.days).sort((a, b) => a - b));

  // header, listener and upstream tables from /api/status and /api/upstreams
  assert.equal(await page.locator('#version').textContent(), proxy.server.version);
  assert.equal(await page.locator('#phase').textContent(), 'running');
  assert.equal(await page.locator('#status').textContent(), 'live');
  assert.equal(await page.locator('#listeners td.strong').first().textContent(), 'edge');
  assert.equal(await page.locator('#upstreams .badge').first().textContent(), 'healthy');
  assert.equal(await page.locator('#chart polyline').count(), 2);

  // the filters go to the API: 5xx leaves only the origin's 503s, Clear brings everything back
  await page.locator('#filters input[name="status"]').fill('5xx');
  await page.locator('#filters button[type="submit"]').click();
  await until(async () => {
    const statuses = await page.locator('#requests td:nth-child(6)').allTextContents();
    return statuses.length === 2 && statuses.every((x) => x === '503');
  }, 'only the two 503 rows after status=5xx');
  assert.match(page.url(), /#status=5xx$/);
  await page.locator('#filters button[type="reset"]').click();
  await rowOf(requestId).waitFor({ timeout: 10_000 });

  // limit goes to the API too (and keeps the picture for the README short)
  await page.locator('#filters input[name="limit"]').fill('8');
  await page.locator('#filters button[type="submit"]').click();
  await until(async () => (await idCells.count()) === 8, '8 rows after limit=8');
  assert.match(page.url(), /#limit=8$/);
  await page.waitForTimeout(2_500); // one more poll for the chart
  mkdirSync(join(SCREENSHOT, '..'), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  assert.deepEqual(problems, []);

  // the admin API goes away: the page says so and keeps polling
  await admin.close();
  await page.locator('#status', { hasText: exactly('admin API unreachable') }).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#status').getAttribute('aria-live'), 'polite');
});
