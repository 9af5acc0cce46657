// Copies of upstream body bytes that a client socket has to queue (Exchange.onUpstreamChunk:
// the bytes are a view of a reused read buffer). They go into 16 KiB slabs from a free list,
// and a slab returns to the list when its write completes, so a download to a client that is
// behind allocates nothing per chunk. A fresh Buffer per copy would instead leave a dead 16 KiB
// backing store per chunk for the next scavenge to free, and with little JS garbage per chunk
// scavenges are rare: the proxy's RSS grew by 35 MiB over a 256 MiB download that way.
import type { Writable } from 'node:stream';

const SLAB_BYTES = 16 * 1024;
/** Free slabs kept (2 MiB); one client holds ~64 in flight (BODY_BUFFER_LIMIT / SLAB_BYTES). */
const KEEP_FREE = 128;

class Slab {
  readonly buf = Buffer.allocUnsafeSlow(SLAB_BYTES);
  /** write()'s callback: the socket is done with the bytes (written, or dropped on error). */
  readonly done = (): void => {
    if (free.length < KEEP_FREE) free.push(this);
  };
}

const free: Slab[] = [];
let made = 0;
let copies = 0;

/** socket.write(a copy of view); returns what write() returned. */
export function writeCopy(socket: Writable, view: Buffer): boolean {
  const n = view.length;
  if (n > SLAB_BYTES) return socket.write(Buffer.from(view));
  copies++;
  let slab = free.pop();
  if (slab === undefined) {
    slab = new Slab();
    made++;
  }
  view.copy(slab.buf, 0, 0, n);
  return socket.write(slab.buf.subarray(0, n), slab.done);
}

/** Copies made, slabs allocated for them, slabs free now (for tests). */
export function slabStats(): { copies: number; made: number; free: number } {
  return { copies, made, free: free.length };
}
