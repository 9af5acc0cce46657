// HTTP Basic auth for the admin plane (RFC 7617), checked with bcrypt against
// admin.password_hash, with a per-address limiter on failures.
//
// The numbers, and why:
// - Each address has a bucket of FAILURE_BURST (5) tokens, refilled at one per
//   FAILURE_REFILL_MS (10 s). An attempt that presents credentials takes a token before bcrypt
//   runs and gives it back when the password is right, so a client can have at most 5 guesses in
//   flight and then about 6 a minute: at that rate a password from a 10^6 list takes ~3 months.
// - While the bucket is empty the answer is 429 too_many_attempts with Retry-After, and bcrypt
//   does not run, also for the right password: answering 200 there would turn the lockout into an
//   oracle that still tests guesses, only more slowly. A lockout lasts 10 s per missing token.
// - Failures that still had tokens are answered after FAILURE_DELAY_MS (250 ms) times the number
//   of tokens used (250, 500, 750, 1000, 1250 ms), so a serial guesser is slowed before the
//   lockout, and a wrong user name costs the same time as a wrong password.
// - A request without an Authorization header (a browser's first request, before it asks for
//   the password) and a server without password_hash take no token: there is nothing to guess.
// - The table of addresses is capped at MAX_TRACKED_ADDRESSES (10 000) entries; the least
//   recently failed is evicted first, and full buckets are dropped, so memory stays bounded
//   under a spray from many addresses (which the cap then lets through at 5 guesses each).
// - A success is remembered for 60 s by an HMAC of the exact header, so a polling dashboard
//   does not run bcrypt on every request; a different password never matches it.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import bcrypt from 'bcrypt';

export const FAILURE_BURST = 5;
export const FAILURE_REFILL_MS = 10_000;
export const FAILURE_DELAY_MS = 250;
export const MAX_TRACKED_ADDRESSES = 10_000;
/** bcrypt reads the first 72 bytes only; a longer password would pass on its first 72 (cli.ts refuses to hash one). */
const BCRYPT_MAX_BYTES = 72;
/** Successful checks remembered (see BasicAuth's #successes). */
const SUCCESS_CACHE_TTL_MS = 60_000;
const SUCCESS_CACHE_MAX = 32;

export const WWW_AUTHENTICATE = 'Basic realm="mtls-proxy", charset="UTF-8"';

export type AuthFailureReason = 'missing' | 'malformed' | 'bad_credentials' | 'rate_limited' | 'no_password_configured';

export type AuthResult =
  | { ok: true; username: string }
  | { ok: false; reason: AuthFailureReason; /** For rate_limited: whole seconds until a token is back. */ retryAfterSeconds: number };

export interface AuthFailureSink {
  authFailure(reason: string): void;
}

export interface BasicCredentials {
  username: string;
  password: string;
}

// RFC 7617 section 2: credentials = "Basic" 1*SP token68; token68 here must be canonical base64,
// because Buffer.from(…, 'base64') silently skips characters it does not know.
const BASIC_RE = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i;
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parse an Authorization header: 'missing' when absent, 'malformed' for anything not strict Basic. */
export function parseBasicAuth(header: string | undefined): BasicCredentials | 'missing' | 'malformed' {
  if (header === undefined || header === '') return 'missing';
  const match = BASIC_RE.exec(header);
  const token = match?.[1];
  if (token === undefined || token.length % 4 !== 0) return 'malformed';
  let decoded: string;
  try {
    decoded = utf8.decode(Buffer.from(token, 'base64'));
  } catch {
    return 'malformed';
  }
  // The user-id cannot contain a colon (RFC 7617 section 2); the password can.
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'malformed';
  const username = decoded.slice(0, colon);
  if (CONTROL_RE.test(username)) return 'malformed';
  return { username, password: decoded.slice(colon + 1) };
}

export interface LimiterOptions {
  burst?: number;
  refillMs?: number;
  maxEntries?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Token bucket of failures per client address; bounded, least recently failed evicted first. */
export class FailureLimiter {
  readonly burst: number;
  readonly refillMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(opts: LimiterOptions = {}) {
    this.burst = opts.burst ?? FAILURE_BURST;
    this.refillMs = opts.refillMs ?? FAILURE_REFILL_MS;
    this.#maxEntries = opts.maxEntries ?? MAX_TRACKED_ADDRESSES;
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Tokens the address has now (fractional while refilling). */
  tokens(address: string): number {
    const b = this.#buckets.get(address);
    if (b === undefined) return this.burst;
    return Math.min(this.burst, b.tokens + (this.#now() - b.at) / this.refillMs);
  }

  /** Milliseconds until the address has a whole token again; 0 when it has one now. */
  waitMs(address: string): number {
    const tokens = this.tokens(address);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) * this.refillMs);
  }

  /** Take a token; false (and nothing taken) when there is none. */
  take(address: string): boolean {
    const tokens = this.tokens(address);
    if (tokens < 1) return false;
    this.#store(address, tokens - 1);
    return true;
  }

  /** Give back a token taken for an attempt that turned out right. */
  refund(address: string): void {
    const tokens = Math.min(this.burst, this.tokens(address) + 1);
    if (tokens >= this.burst) this.#buckets.delete(address);
    else this.#store(address, tokens);
  }

  #store(address: string, tokens: number): void {
    // Re-inserted so that Map order is least recently touched first.
    this.#buckets.delete(address);
    if (this.#buckets.size >= this.#maxEntries) this.#buckets.delete(this.#buckets.keys().next().value!);
    this.#buckets.set(address, { tokens, at: this.#now() });
  }
}

export interface BasicAuthOptions {
  username: string;
  passwordHash: string | null;
  failures?: AuthFailureSink | null;
  limiter?: FailureLimiter;
  /** Base delay before a 401 for a wrong guess; 0 in unit tests of other behaviour. */
  failureDelayMs?: number;
}

/** Checks one request's Authorization header for the client at `address`. */
export class BasicAuth {
  readonly #username: Buffer;
  readonly #passwordHash: string | null;
  readonly #failures: AuthFailureSink | null;
  readonly #limiter: FailureLimiter;
  readonly #delayMs: number;
  // The dashboard polls several endpoints every few seconds; at bcrypt cost 12 (~250 ms of a
  // thread-pool thread each) that is a busy core while a tab is open. So a success is
  // remembered for 60 s, keyed by an HMAC (per-process random key) of the exact header: only
  // the very same user:password hits, and nothing wrong can. The cost: someone holding a dump
  // of this process could test guesses at HMAC speed; such a dump also holds recent
  // Authorization headers in clear, so it gives away little more.
  readonly #cacheKey = randomBytes(32);
  readonly #successes = new Map<string, { username: string; until: number }>();

  constructor(opts: BasicAuthOptions) {
    this.#username = digest(opts.username);
    this.#passwordHash = opts.passwordHash;
    this.#failures = opts.failures ?? null;
    this.#limiter = opts.limiter ?? new FailureLimiter();
    this.#delayMs = opts.failureDelayMs ?? FAILURE_DELAY_MS;
  }

  get limiter(): FailureLimiter {
    return this.#limiter;
  }

  async check(header: string | undefined, address: string): Promise<AuthResult> {
    if (this.#passwordHash === null) return this.#fail('no_password_configured');
    const parsed = parseBasicAuth(header);
    if (parsed === 'missing') return this.#fail('missing');
    // Before the cache too: during a lockout even the right password is refused.
    if (!this.#limiter.take(address)) return this.#fail('rate_limited', Math.ceil(this.#limiter.waitMs(address) / 1000));
    const key = createHmac('sha256', this.#cacheKey).update(header ?? '').digest('hex');
    const cached = this.#successes.get(key);
    if (cached !== undefined && cached.until > Date.now()) {
      this.#limiter.refund(address);
      return { ok: true, username: cached.username };
    }
    const ok = parsed !== 'malformed' && (await this.#verify(parsed, this.#passwordHash));
    if (ok) {
      this.#limiter.refund(address);
      this.#remember(key, parsed.username);
      return { ok: true, username: parsed.username };
    }
    const used = Math.max(1, Math.ceil(this.#limiter.burst - this.#limiter.tokens(address)));
    if (this.#delayMs > 0) await sleep(this.#delayMs * used);
    return this.#fail(parsed === 'malformed' ? 'malformed' : 'bad_credentials');
  }

  async #verify(creds: BasicCredentials, hash: string): Promise<boolean> {
    // Compare digests: equal length, so timingSafeEqual never throws and the time does not
    // depend on where the names differ.
    const userOk = timingSafeEqual(digest(creds.username), this.#username);
    if (Buffer.byteLength(creds.password) > BCRYPT_MAX_BYTES) return false;
    // Always run bcrypt, also for a wrong user name, so timing does not tell which was wrong.
    // bcrypt.compare runs on the libuv thread pool; compareSync would stall every connection.
    const passwordOk = await bcrypt.compare(creds.password, hash);
    return userOk && passwordOk;
  }

  #remember(key: string, username: string): void {
    this.#successes.delete(key);
    if (this.#successes.size >= SUCCESS_CACHE_MAX) this.#successes.delete(this.#successes.keys().next().value!);
    this.#successes.set(key, { username, until: Date.now() + SUCCESS_CACHE_TTL_MS });
  }

  #fail(reason: AuthFailureReason, retryAfterSeconds = 0): AuthResult {
    this.#failures?.authFailure(reason);
    return { ok: false, reason, retryAfterSeconds };
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
