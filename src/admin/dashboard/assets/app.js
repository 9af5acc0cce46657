// The admin dashboard: polls the admin API every 2 s and draws with DOM APIs only. Paths, hosts,
// certificate subjects and request ids come from clients, so every cell is set with textContent,
// never innerHTML; the CSP (script-src 'self'; style-src 'self') allows no inline code or style.
/* global document, fetch, history, location, Node, Option, HTMLSelectElement, URLSearchParams */

const POLL_MS = 2000;
const SECONDS_PER_POINT = POLL_MS / 1000;
const WINDOW_MS = 5 * 60_000;
const POINTS = WINDOW_MS / POLL_MS; // 150 points of 2 s
const CERTS_EVERY = 15; // certificates only change on reload: every 30 s is enough
const ROW_CAP = 1000; // the API clamps limit to this
// The request log writes rows in batches, and a row's ts is when the request started, so a row
// can show up after a poll that already asked for its time. Each chart query overlaps the last
// one by this much and drops ids it has counted.
const LATE_MS = 10_000;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path, params) {
  const query = params ? params.toString() : '';
  let res;
  try {
    res = await fetch(query ? `${path}?${query}` : path, { credentials: 'same-origin', cache: 'no-store', headers: { accept: 'application/json' } });
  } catch {
    throw new ApiError('admin API unreachable', 0);
  }
  if (res.status === 401) throw new ApiError('not authorised', 401);
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: reported below
  }
  if (!res.ok) {
    const detail = body && typeof body.message === 'string' ? body.message : res.statusText;
    throw new ApiError(`${path}: ${res.status} ${detail}`, res.status);
  }
  if (body === null || typeof body !== 'object') throw new ApiError(`${path}: answer is not JSON`, res.status);
  return body;
}

// --- small DOM helpers -------------------------------------------------------------------------

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function row(cells, className) {
  const tr = el('tr', null, className);
  for (const c of cells) tr.append(c instanceof Node ? c : el('td', c));
  return tr;
}

function num(value) {
  return el('td', value, 'num');
}

function emptyRow(colspan, text) {
  const td = el('td', text, 'empty');
  td.colSpan = colspan;
  return row([td]);
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function fmtDuration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s % 60}s`;
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function fmtRate(r) {
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}

function pad(n, w = 2) {
  return String(n).padStart(w, '0');
}

function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function timeCell(iso) {
  const ms = Date.parse(iso);
  const t = el('time', Number.isFinite(ms) ? `${clock(ms)}.${pad(new Date(ms).getMilliseconds(), 3)}` : iso);
  t.dateTime = iso;
  t.title = iso;
  const td = el('td', null, 'nowrap');
  td.append(t);
  return td;
}

/** Replace a select's options when the set of names changed, keeping the chosen value. */
function setOptions(select, names) {
  const have = [...select.options].slice(1).map((o) => o.value);
  if (have.length === names.length && have.every((v, i) => v === names[i])) return;
  const chosen = select.value;
  select.replaceChildren(new Option('any', ''), ...names.map((n) => new Option(n, n)));
  select.value = names.includes(chosen) ? chosen : '';
}

// --- status, listeners -------------------------------------------------------------------------

const PHASES = new Set(['starting', 'running', 'draining', 'stopped']);
let clockOffset = 0; // server clock minus ours: the chart's time axis follows the rows' ts

async function pollStatus() {
  const s = await api('/api/status');
  const serverNow = Date.parse(s.started_at) + s.uptime_seconds * 1000;
  if (Number.isFinite(serverNow)) clockOffset = serverNow - Date.now();
  setText($('version'), String(s.version));
  const phase = $('phase');
  setText(phase, String(s.phase));
  phase.className = `badge phase-${PHASES.has(s.phase) ? s.phase : 'unknown'}`;
  setText($('uptime'), fmtDuration(s.uptime_seconds));
  setText($('open-connections'), String(s.open_connections));

  const rows = s.listeners.map((l) => {
    const errors = Object.entries(l.tls_errors ?? {}).filter(([, n]) => n > 0);
    const total = errors.reduce((sum, [, n]) => sum + n, 0);
    const tlsCell = el('td');
    if (total === 0) tlsCell.append(el('span', '0', 'muted'));
    else {
      tlsCell.append(el('span', String(total), 'badge warn'), ' ');
      tlsCell.append(el('span', errors.map(([reason, n]) => `${reason} ${n}`).join(', '), 'detail'));
    }
    return row([el('td', l.name, 'strong'), l.mode, el('td', l.address, 'mono'), l.upstream, num(l.open_connections), num(l.accepted), num(l.refused), tlsCell]);
  });
  $('listeners').replaceChildren(...(rows.length ? rows : [emptyRow(8, 'no listeners')]));
  setOptions(document.querySelector('#filters select[name="listener"]'), s.listeners.map((l) => l.name));
}

// --- upstreams ---------------------------------------------------------------------------------

async function pollUpstreams() {
  const { upstreams } = await api('/api/upstreams');
  const rows = [];
  for (const u of upstreams) {
    for (const e of u.endpoints) {
      const health = el('td');
      health.append(el('span', e.healthy ? 'healthy' : 'down', e.healthy ? 'badge ok' : 'badge danger'));
      const use = el('td', null, 'nowrap');
      const meter = document.createElement('meter');
      meter.min = 0;
      meter.max = Math.max(e.pool.size, 1);
      meter.value = e.pool.busy;
      meter.title = `${e.pool.busy} busy of ${e.pool.size} open`;
      use.append(meter, el('span', ` ${e.pool.busy}/${e.pool.size}`, 'detail'));
      const pending = num(e.pool.pending);
      if (e.pool.pending > 0) pending.classList.add('hot');
      rows.push(row([el('td', u.name, 'strong'), el('td', e.endpoint, 'mono'), health, use, num(e.pool.idle), num(e.pool.busy), pending, el('td', e.last_error ?? '', 'detail')]));
    }
  }
  $('upstreams').replaceChildren(...(rows.length ? rows : [emptyRow(8, 'no upstreams')]));
  setOptions(document.querySelector('#filters select[name="upstream"]'), upstreams.map((u) => u.name));
}

// --- certificates ------------------------------------------------------------------------------

function expiryClass(daysLeft) {
  if (daysLeft < 7) return 'danger'; // also expired (negative)
  if (daysLeft < 30) return 'warn';
  return '';
}

async function pollCertificates() {
  const { certificates } = await api('/api/certificates');
  const sorted = [...certificates].sort((a, b) => a.days_left - b.days_left);
  const rows = sorted.map((c) => {
    const cls = expiryClass(c.days_left);
    const days = el('td', null, 'num');
    days.append(el('span', c.days_left < 0 ? `expired ${-c.days_left}d ago` : String(c.days_left), cls ? `badge ${cls}` : ''));
    const notAfter = timeCell(c.not_after);
    notAfter.firstChild.textContent = c.not_after.slice(0, 10);
    const sha = el('td', `${c.sha256.slice(0, 16)}…`, 'mono');
    sha.title = c.sha256;
    return row([days, notAfter, c.role, c.owner, el('td', c.subject, 'mono'), el('td', c.sans.join(', '), 'detail'), el('td', c.issuer, 'detail'), sha], cls);
  });
  $('certificates').replaceChildren(...(rows.length ? rows : [emptyRow(8, 'no certificates')]));
}

// --- recent requests ---------------------------------------------------------------------------

const form = $('filters');
const FILTERS = ['status', 'upstream', 'listener', 'client_subject', 'since', 'limit'];
let lastRequestsKey = '';

/** The form as the API's query: only the filters that are set; since as epoch milliseconds. */
function requestQuery() {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (value === '') continue;
    if (name === 'since') {
      const ms = new Date(value).getTime(); // datetime-local: the browser's time zone
      if (Number.isFinite(ms)) params.set('since', String(ms));
    } else params.set(name, value);
  }
  return params;
}

function statusClass(status) {
  return status >= 500 ? 'bad' : status >= 400 ? 'warn-text' : '';
}

async function pollRequests() {
  const status = $('requests-status');
  let body;
  try {
    body = await api('/api/requests', requestQuery());
  } catch (err) {
    setText(status, err.message);
    status.classList.add('error');
    return;
  }
  status.classList.remove('error');
  if (body.enabled === false) {
    setText(status, 'the request log is off (no [request_log] section in the config)');
    $('requests').replaceChildren(emptyRow(10, 'no request log'));
    return;
  }
  const list = body.requests;
  setText(status, `${list.length} ${list.length === 1 ? 'request' : 'requests'}, newest first`);
  const key = list.map((r) => r.id).join(',');
  if (key === lastRequestsKey) return; // rows never change once logged: keep the user's selection
  lastRequestsKey = key;
  const rows = list.map((r) => {
    const client = el('td', null, 'client');
    client.title = r.client_subject ?? 'no client certificate';
    client.append(el('div', r.client_subject ?? '—', r.client_subject ? 'clip' : 'muted'), el('div', r.client_addr, 'detail mono'));
    const target = el('td', null, 'nowrap');
    target.append(el('div', r.upstream ?? '—', r.upstream ? '' : 'muted'), el('div', r.endpoint ?? '', 'detail mono'));
    const req = el('td', null, 'request');
    const line = el('div', null, 'clip');
    const path = el('span', r.path, 'path');
    line.append(el('span', r.method, 'method'), ' ', path);
    req.title = `${r.method} ${r.host}${r.path}`;
    req.append(line, el('div', r.host, 'detail'));
    return row([
      timeCell(r.ts), el('td', r.id, 'mono id'), r.listener, client, req,
      el('td', r.status, `num strong ${statusClass(r.status)}`), target, el('td', `${fmtBytes(r.bytes_in)} / ${fmtBytes(r.bytes_out)}`, 'num nowrap'),
      num(Math.round(r.duration_ms)), el('td', r.error ?? '', 'mono bad'),
    ]);
  });
  $('requests').replaceChildren(...(rows.length ? rows : [emptyRow(10, 'no requests match')]));
}

function saveFilters() {
  const saved = new URLSearchParams();
  for (const name of FILTERS) {
    const v = form.elements[name].value;
    if (v !== '' && !(name === 'limit' && v === '100')) saved.set(name, v);
  }
  const hash = saved.toString();
  history.replaceState(null, '', hash ? `#${hash}` : location.pathname);
}

function loadFilters() {
  const saved = new URLSearchParams(location.hash.slice(1));
  for (const name of FILTERS) {
    const v = saved.get(name);
    if (v === null) continue;
    const field = form.elements[name];
    // selects get their options on the first poll: add the saved one now so the value sticks
    if (field instanceof HTMLSelectElement && ![...field.options].some((o) => o.value === v)) field.append(new Option(v, v));
    field.value = v;
  }
}

form.addEventListener('submit', (e) => {
  e.preventDefault(); // the CSP has form-action 'none': the form never navigates
  saveFilters();
  lastRequestsKey = '';
  void pollRequests();
});
form.addEventListener('reset', () => {
  // the reset event fires before the fields are cleared
  setTimeout(() => form.requestSubmit(), 0);
});

// --- the traffic chart -------------------------------------------------------------------------
// Rates come from /api/requests, not from /metrics: the request log row has both the status and
// the proxy's error code (an MTLS_ERR_* request can end in a 4xx), it is behind the page's auth,
// and it works when metrics are off. Each poll asks for rows since (newest seen - LATE_MS),
// counts ids not seen before into 2 s buckets by their ts, and forgets ids older than the next
// query's start. Limits, shown on the page: over ROW_CAP rows per poll the figures are lower
// bounds, and a request logged more than LATE_MS after it started is not counted.

const buckets = new Map(); // bucket (server ms / POLL_MS) -> { total, errors }
const counted = new Map(); // request id -> ts, for ids the next (overlapping) query returns again
let cursor = null;
let lowerBoundUntil = 0; // buckets before this (ms) may be missing rows the cap cut off
let chartOff = '';

async function pollChart() {
  const now = Date.now() + clockOffset;
  const since = cursor ?? now - WINDOW_MS;
  const body = await api('/api/requests', new URLSearchParams({ since: String(Math.floor(since)), limit: String(ROW_CAP) }));
  if (body.enabled === false) {
    chartOff = 'The request log is off: no traffic figures.';
    return;
  }
  chartOff = '';
  const rows = body.requests;
  let newest = since;
  let oldestNew = true;
  for (const r of rows) {
    const ts = Date.parse(r.ts);
    if (!Number.isFinite(ts)) continue;
    if (ts > newest) newest = ts;
    if (counted.has(r.id)) {
      oldestNew = false;
      continue;
    }
    oldestNew = true;
    counted.set(r.id, ts);
    const b = Math.floor(ts / POLL_MS);
    let c = buckets.get(b);
    if (!c) buckets.set(b, (c = { total: 0, errors: 0 }));
    c.total++;
    if (r.status >= 500 || r.error !== null) c.errors++;
  }
  // newest first: when the cap cut the answer and even its oldest row was new, rows in between are missing
  if (rows.length >= ROW_CAP && oldestNew) lowerBoundUntil = Math.max(lowerBoundUntil, Date.parse(rows[rows.length - 1].ts));
  cursor = Math.max(since, Math.min(newest, now) - LATE_MS);
  for (const [id, ts] of counted) if (ts < cursor) counted.delete(id);
  const first = Math.floor((now - WINDOW_MS) / POLL_MS);
  for (const b of buckets.keys()) if (b < first) buckets.delete(b);
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function drawChart() {
  const chart = $('chart');
  // drawn in CSS pixels (viewBox = the element's size) so the labels are not stretched
  const W = Math.max(chart.clientWidth, 200);
  const H = Math.max(chart.clientHeight, 100);
  chart.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const PLOT = { left: 44, right: W - 8, top: 8, bottom: H - 24 };
  const now = Date.now() + clockOffset;
  // the current bucket is still filling (and its rows may not be flushed yet): end before it
  const end = Math.floor(now / POLL_MS);
  const first = end - POINTS;
  const req = [];
  const err = [];
  for (let b = first; b < end; b++) {
    const c = buckets.get(b);
    req.push(c ? c.total / SECONDS_PER_POINT : 0);
    err.push(c ? c.errors / SECONDS_PER_POINT : 0);
  }
  const peak = Math.max(...req);
  const top = niceMax(peak);
  const x = (i) => PLOT.left + ((PLOT.right - PLOT.left) * i) / (POINTS - 1);
  const y = (v) => PLOT.bottom - ((PLOT.bottom - PLOT.top) * v) / top;
  const line = (values) => values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');

  const parts = [];
  for (const f of [0, 0.5, 1]) {
    const gy = y(top * f);
    parts.push(svg('line', { x1: PLOT.left, x2: PLOT.right, y1: gy, y2: gy, class: 'grid' }));
    parts.push(svg('text', { x: PLOT.left - 6, y: gy + 4, class: 'axis', 'text-anchor': 'end' }, String(Number((top * f).toPrecision(3)))));
  }
  for (const [i, label, anchor] of [[0, '−5 min', 'start'], [POINTS / 2, '−2.5 min', 'middle'], [POINTS - 1, 'now', 'end']]) {
    parts.push(svg('text', { x: x(i), y: H - 6, class: 'axis', 'text-anchor': anchor }, label));
  }
  if (lowerBoundUntil > (first + 1) * POLL_MS) {
    const i = Math.min(POINTS - 1, Math.floor(lowerBoundUntil / POLL_MS) - first);
    parts.push(svg('rect', { x: PLOT.left, y: PLOT.top, width: x(i) - PLOT.left, height: PLOT.bottom - PLOT.top, class: 'partial' }));
  }
  parts.push(svg('polygon', { points: `${x(0)},${PLOT.bottom} ${line(req)} ${x(POINTS - 1)},${PLOT.bottom}`, class: 'area-req' }));
  parts.push(svg('polyline', { points: line(req), class: 'line-req' }));
  parts.push(svg('polyline', { points: line(err), class: 'line-err' }));
  chart.replaceChildren(chart.querySelector('desc'), ...parts);

  // "now": the last 10 s of complete buckets
  const recent = req.slice(-5);
  const recentErr = err.slice(-5);
  const r = recent.reduce((a, b) => a + b, 0) / recent.length;
  const e = recentErr.reduce((a, b) => a + b, 0) / recentErr.length;
  setText($('rate-req'), fmtRate(r));
  setText($('rate-err'), fmtRate(e));
  setText($('rate-share'), r > 0 ? `${((100 * e) / r).toFixed(1)} %` : '–');
  setText($('rate-peak'), fmtRate(peak));

  const note = $('chart-note');
  const text = chartOff || (lowerBoundUntil > first * POLL_MS ? `More than ${ROW_CAP} requests per poll: the shaded part counts only some of them.` : '');
  setText(note, text);
  note.hidden = text === '';
}

// --- the loop ----------------------------------------------------------------------------------

const statusLine = $('status');
let tick = 0;
let certsDue = 0;

async function poll() {
  const jobs = [pollStatus(), pollUpstreams(), pollChart(), pollRequests()];
  const certs = tick >= certsDue;
  if (certs) jobs.push(pollCertificates());
  const results = await Promise.allSettled(jobs);
  if (certs && results[4].status === 'fulfilled') certsDue = tick + CERTS_EVERY;
  tick++;
  drawChart();
  const failed = results.find((r) => r.status === 'rejected');
  // only the state goes into the live region, so a screen reader hears changes, not every poll
  if (failed) {
    const reason = failed.reason;
    setText(statusLine, reason instanceof ApiError ? reason.message : `dashboard error: ${String(reason)}`);
    statusLine.className = 'status error';
  } else {
    setText(statusLine, 'live');
    statusLine.className = 'status ok';
  }
  setText($('updated'), `updated ${clock(Date.now())}`);
  setTimeout(poll, POLL_MS);
}

loadFilters();
void poll();
