// Replays one corpus case through a running listener and judges it. Beyond what the case
// expects, every replay checks the invariants that hold for any input: the origin receives only
// canonical messages (re-parsed strictly) and none but those expected, every answer the client
// gets is canonical, each forwarded request is in the request log, and no connection is left open.
import { connect } from 'node:tls';
import type { ListenerLimits } from '../config/types.ts';
import type { RequestRecord } from '../http/context.ts';
import type { Router } from '../http/router.ts';
import { headerValue, parseCanonicalResponse, type CanonicalMessage } from './canonical.ts';
import { renderBytes, type CorpusCase } from './corpus.ts';
import type { OriginWindow, RecordingOrigin } from './origin.ts';

export interface ReplayEnv {
  port: number;
  /** The client's TLS material: a certificate the listener accepts, and the CA of its server certificate. */
  client: { ca: string; cert: string; key: string; servername: string };
  origin: RecordingOrigin;
  limits: Pick<ListenerLimits, 'maxHeaderSize' | 'maxHeaders' | 'maxUriLength'>;
  /** The listener's routes: the target a client sent, as the origin should receive it. */
  router: Router | null;
  /** Every request log record the proxy emitted (appended to as requests finish). */
  records: readonly RequestRecord[];
  /** Client connections the proxy holds open. */
  openConnections(): number;
}

export interface CaseResult {
  name: string;
  family: string;
  pass: boolean;
  /** What was expected and what happened, one short line each. */
  expected: string;
  got: string;
  problems: string[];
}

interface ClientOutcome {
  bytes: Buffer;
  closed: boolean;
  error: string | null;
}

const ANSWER_TIMEOUT_MS = 2500;
const KEEPALIVE_GRACE_MS = 150;
const SETTLE_MS = 60;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Responses in `bytes`, parsed strictly; the n-th answers a HEAD when the origin's n-th message was one. */
export function parseResponses(bytes: Buffer, closed: boolean, origin: ReadonlyArray<{ method: string }>): { responses: CanonicalMessage[]; rest: 'none' | 'cut' | string } {
  const responses: CanonicalMessage[] = [];
  let off = 0;
  while (off < bytes.length) {
    const noBody = origin[responses.length]?.method === 'HEAD';
    const r = parseCanonicalResponse(bytes, off, { noBody, eof: closed });
    if (r.kind === 'incomplete') return { responses, rest: 'cut' };
    if (r.kind === 'invalid') return { responses, rest: `non-canonical response at byte ${off}: ${r.reason}` };
    const m = r.message;
    off = m.end;
    if (m.status >= 200) responses.push(m); // 1xx are interim: not counted
  }
  return { responses, rest: 'none' };
}

function errorCodeOf(m: CanonicalMessage): string | null {
  const match = /\((MTLS_ERR_[A-Z_]+)\)\n?$/.exec(m.body.toString('latin1'));
  return match ? match[1]! : null;
}

async function talk(env: ReplayEnv, bytes: Buffer, writes: number[], want: { responses: number; closed: boolean }): Promise<ClientOutcome> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let error: string | null = null;
    let done = false;
    let closed = false;
    let graceTimer: NodeJS.Timeout | null = null;
    const socket = connect({ host: '127.0.0.1', port: env.port, ca: env.client.ca, cert: env.client.cert, key: env.client.key, servername: env.client.servername });
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (graceTimer) clearTimeout(graceTimer);
      socket.destroy();
      resolve({ bytes: Buffer.concat(parts), closed, error });
    };
    const timer = setTimeout(finish, ANSWER_TIMEOUT_MS);
    socket.on('secureConnect', () => {
      void (async () => {
        let at = 0;
        for (const cut of [...writes.filter((w) => w < bytes.length), bytes.length]) {
          if (socket.destroyed) return;
          socket.write(bytes.subarray(at, cut));
          at = cut;
          if (cut < bytes.length) await sleep(40);
        }
      })();
    });
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      if (!want.closed && graceTimer === null) {
        const { responses } = parseResponses(Buffer.concat(parts), false, env.origin.messages);
        if (responses.length >= want.responses) graceTimer = setTimeout(finish, KEEPALIVE_GRACE_MS);
      }
    });
    socket.on('error', (e) => {
      error = e.message;
    });
    socket.on('end', () => {
      closed = true;
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
  });
}

function describeExpected(c: CorpusCase): string {
  const e = c.expect;
  const parts = [e.responses.length === 0 ? 'no answer' : e.responses.join(',')];
  if (e.error) parts.push(e.error);
  parts.push(e.closed ? 'closed' : 'open');
  parts.push(`origin ${e.forwarded.length}`);
  return parts.join(' ');
}

export async function replayCase(c: CorpusCase, env: ReplayEnv): Promise<CaseResult> {
  const problems: string[] = [];
  const bytes = renderBytes(c.request, env.limits);
  const recordsBefore = env.records.length;
  env.origin.begin(c.response ? { raw: renderBytes(c.response.raw, env.limits), close: c.response.close === true } : null);
  const out = await talk(env, bytes, c.writes ?? [], { responses: c.expect.responses.length, closed: c.expect.closed });
  await sleep(SETTLE_MS);
  const seen: OriginWindow = env.origin.end();

  // what the client got
  const parsed = parseResponses(out.bytes, out.closed, seen.messages);
  const statuses = parsed.responses.map((r) => r.status);
  const last = parsed.responses.at(-1);
  const code = last ? errorCodeOf(last) : null;
  if (parsed.rest !== 'none' && parsed.rest !== 'cut') problems.push(parsed.rest);
  if (parsed.rest === 'cut' && !c.expect.cut) problems.push('the last response was cut short');
  if (parsed.rest !== 'cut' && c.expect.cut) problems.push('expected the last response to be cut short by a close');
  if (statuses.join(',') !== c.expect.responses.join(',')) problems.push(`responses ${statuses.join(',') || 'none'}, expected ${c.expect.responses.join(',') || 'none'}`);
  if (c.expect.error !== undefined && code !== `MTLS_ERR_${c.expect.error}`) problems.push(`error ${code ?? 'none'}, expected MTLS_ERR_${c.expect.error}`);
  if (out.closed !== c.expect.closed) problems.push(out.closed ? 'the proxy closed the connection' : 'the connection was left open');

  // what the origin got
  for (const v of seen.violations) problems.push(`origin received a non-canonical message: ${v.reason}: ${JSON.stringify(v.bytes.slice(0, 200))}`);
  if (seen.partial.length > 0 && !c.partial) problems.push('origin holds an incomplete message');
  const fw = c.expect.forwarded;
  if (seen.messages.length !== fw.length) {
    problems.push(`origin received ${seen.messages.length} message(s) (${seen.messages.map((m) => `${m.method} ${m.target}`).join('; ') || 'none'}), expected ${fw.length}`);
  }
  for (let i = 0; i < Math.min(fw.length, seen.messages.length); i++) {
    const want = fw[i]!;
    const got = seen.messages[i]!;
    const sent = renderBytes(want.target, env.limits).toString('latin1');
    const target = env.router ? env.router.match('localhost', sent).target : sent;
    if (got.method !== want.method || got.target !== target) problems.push(`origin message ${i + 1}: ${got.method} ${got.target}, expected ${want.method} ${target}`);
    if (want.body !== undefined && got.body.toString('latin1') !== want.body) problems.push(`origin message ${i + 1}: body ${JSON.stringify(got.body.toString('latin1').slice(0, 80))}, expected ${JSON.stringify(want.body.slice(0, 80))}`);
    for (const [name, value] of Object.entries(want.headers ?? {})) {
      const v = headerValue(got, name);
      if (v !== value) problems.push(`origin message ${i + 1}: ${name}: ${v ?? '(absent)'}, expected ${value}`);
    }
    for (const name of want.absent ?? []) if (headerValue(got, name) !== null) problems.push(`origin message ${i + 1}: ${name} must not be forwarded`);
  }

  // the request log: every forwarded request is a record, a refusal is a record with its code
  const records = env.records.slice(recordsBefore);
  for (const m of seen.messages) {
    if (m.requestId === null) problems.push(`origin message ${m.method} ${m.target} has no x-request-id`);
    else if (!records.some((r) => r.id === m.requestId)) problems.push(`forwarded request ${m.requestId} is not in the request log`);
  }
  if (c.expect.error !== undefined && !records.some((r) => r.error === `MTLS_ERR_${c.expect.error}`)) problems.push(`no request log record with MTLS_ERR_${c.expect.error}`);

  // nothing left open on the proxy's side
  const deadline = Date.now() + 2000;
  while (env.openConnections() > 0 && Date.now() < deadline) await sleep(10);
  if (env.openConnections() > 0) problems.push(`the proxy still holds ${env.openConnections()} client connection(s)`);

  const got = [statuses.length === 0 ? 'no answer' : statuses.join(',')];
  if (code) got.push(code.replace(/^MTLS_ERR_/, ''));
  if (parsed.rest === 'cut') got.push('cut');
  got.push(out.closed ? 'closed' : 'open');
  got.push(`origin ${seen.messages.length}`);
  return { name: c.name, family: c.family, pass: problems.length === 0, expected: describeExpected(c), got: got.join(' '), problems };
}
