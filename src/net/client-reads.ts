// Client sockets of the HTTP listeners read into one buffer shared by all of them, as upstream
// sockets read into their own (src/pool/connection.ts, Node's `onread` option).
//
// Why: without it every read of a client socket is a fresh 16 KiB Buffer whose backing store
// is malloc'd, and freed only after a later scavenge. A 256 MiB upload is 16 384 of them, and
// with little JS garbage per chunk scavenges are rare, so dead stores pile up between them:
// 21-24 MiB of ArrayBuffers at an upload's peak, against 1.2 MiB with shared reads, and the
// proxy's peak RSS ~111 MiB against ~90 (bench/tools/bulk.sh upload, four runs each way).
//
// How: tls.Server gives accepted sockets no `onread` (Node passes it only when tls.connect makes
// the socket: `onread: !socket ? tlsOptions.onread : null` in _tls_wrap.js). We set on the
// socket what net.Socket's constructor sets for `onread` (its kBuffer / kBufferCb / kBufferGen
// fields, found by name on a probe socket made with `onread`) and call the handle's
// `useUserBuffer`, as net.Socket's initSocketHandle does. Where that probe finds anything other
// than what it expects (another Node), clients read the ordinary way: nothing breaks, the
// memory saving is lost (test/client-read-buffer.test.ts fails on Node 24 if it is).
// MTLS_PROXY_NO_SHARED_READS=1 turns it off (for A/B measurements).
//
// One buffer for every client socket is safe because a read's callback runs to its end before
// the next read of any socket is copied in (Node's TLS layer copies decrypted bytes into the
// buffer right before calling back, and nothing we do inside a callback makes another socket
// read). What the HTTP layer keeps of a read past its callback must be a copy: see
// DownstreamConnection (#onRead, the held pipelined bytes) and Exchange (detachViews, writes
// queued behind a write in flight).
import { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** Node's TLS layer hands out at most 16 KiB of cleartext per read (one TLS record). */
const READ_BYTES = 16 * 1024;

interface Internals {
  kBuffer: symbol;
  kBufferCb: symbol;
  kBufferGen: symbol;
}

type Fields = Record<symbol, unknown>;
interface StreamHandle {
  useUserBuffer?: (buffer: Buffer) => void;
}

let internals: Internals | null | undefined;
let shared: Buffer | null = null;
let sharedStore: ArrayBufferLike | null = null;

function probe(): Internals | null {
  if (process.env.MTLS_PROXY_NO_SHARED_READS === '1') return null;
  try {
    const buffer = Buffer.alloc(1);
    const callback = (): boolean => true;
    const s = new Socket({ onread: { buffer, callback } });
    const symbols = Object.getOwnPropertySymbols(s);
    const find = (name: string): symbol | undefined => symbols.find((x) => x.description === name);
    const kBuffer = find('kBuffer');
    const kBufferCb = find('kBufferCb');
    const kBufferGen = find('kBufferGen');
    const f = s as unknown as Fields;
    const ok = kBuffer !== undefined && kBufferCb !== undefined && kBufferGen !== undefined && f[kBuffer] === buffer && f[kBufferCb] === callback && f[kBufferGen] === null;
    s.destroy();
    return ok ? { kBuffer, kBufferCb, kBufferGen } : null;
  } catch {
    return null;
  }
}

/**
 * Make `socket` read into the shared buffer, handing each read to `callback` (bytes read, the
 * buffer) instead of emitting it as 'data'. Returns false, changing nothing, where this Node
 * does not allow it. The callback must not keep views of the buffer past its return.
 */
export function readIntoShared(socket: TLSSocket, callback: (nread: number, buffer: Buffer) => boolean): boolean {
  if (internals === undefined) internals = probe();
  if (internals === null) return false;
  const handle = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (handle === null || typeof handle.useUserBuffer !== 'function') return false;
  if (shared === null) {
    shared = Buffer.allocUnsafeSlow(READ_BYTES);
    sharedStore = shared.buffer;
  }
  const f = socket as unknown as Fields;
  f[internals.kBuffer] = shared;
  f[internals.kBufferCb] = callback;
  f[internals.kBufferGen] = null;
  handle.useUserBuffer(shared);
  return true;
}

/** Whether `view` points into the shared read buffer (so it is overwritten by the next read). */
export function isSharedReadView(view: Buffer): boolean {
  return view.buffer === sharedStore;
}

/** Whether client sockets read into the shared buffer in this process (for tests and the log). */
export function sharedReadsAvailable(): boolean {
  if (internals === undefined) internals = probe();
  return internals !== null;
}
