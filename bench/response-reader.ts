// The loadgen's HTTP/1.1 response reader (bench/loadgen.ts).
const CRLF2 = Buffer.from('\r\n\r\n');
const MAX_HEAD = 64 * 1024;

export interface Response {
  status: number;
  bodyBytes: number;
  /** The first bytes of the body (up to 64), for answers the caller wants to read. */
  bodyStart: string;
  close: boolean;
}

/**
 * Minimal HTTP/1.1 response reader: finds the end of the head (across chunk boundaries),
 * takes Content-Length, counts body bytes, and carries on with any bytes after the body (several
 * responses in one chunk). Bodies are counted, never copied. Chunked or close-delimited responses
 * are reported as errors: the bench origin always sends Content-Length, and a proxy that changes
 * the framing is worth seeing.
 */
export class ResponseReader {
  #pending: Buffer | null = null;
  #bodyLeft = -1;
  #status = 0;
  #bodyBytes = 0;
  #bodyStart = '';
  #close = false;
  readonly onResponse: (r: Response) => void;

  constructor(onResponse: (r: Response) => void) {
    this.onResponse = onResponse;
  }

  /** True between a response's first byte and its last. */
  get busy(): boolean {
    return this.#pending !== null || this.#bodyLeft >= 0;
  }

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.#bodyLeft < 0) {
        const prev = this.#pending;
        const data = prev ? Buffer.concat([prev, chunk.subarray(off)]) : chunk.subarray(off);
        const from = prev ? Math.max(0, prev.length - 3) : 0;
        const end = data.indexOf(CRLF2, from);
        if (end < 0) {
          if (data.length > MAX_HEAD) throw new Error(`response head larger than ${MAX_HEAD} bytes`);
          this.#pending = Buffer.from(data);
          return;
        }
        this.#pending = null;
        off += end + 4 - (prev ? prev.length : 0);
        this.#head(data.toString('latin1', 0, end));
        if (this.#bodyLeft === 0) this.#finish();
        continue;
      }
      const take = Math.min(this.#bodyLeft, chunk.length - off);
      if (this.#bodyStart.length < 64) this.#bodyStart += chunk.toString('latin1', off, off + Math.min(take, 64 - this.#bodyStart.length));
      this.#bodyLeft -= take;
      this.#bodyBytes += take;
      off += take;
      if (this.#bodyLeft === 0) this.#finish();
    }
  }

  #head(head: string): void {
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
    if (!m) throw new Error(`bad status line: ${JSON.stringify(head.slice(0, 80))}`);
    this.#status = Number(m[1]);
    const lower = head.toLowerCase();
    if (/\r\ntransfer-encoding:/.test(lower)) throw new Error('response uses Transfer-Encoding; expected Content-Length');
    const cl = /\r\ncontent-length:[ \t]*(\d+)[ \t]*(?:\r\n|$)/.exec(lower);
    if (!cl) throw new Error(`response without Content-Length (status ${this.#status})`);
    this.#bodyLeft = Number(cl[1]);
    this.#bodyBytes = 0;
    this.#bodyStart = '';
    this.#close = /\r\nconnection:[^\r]*\bclose\b/.test(lower);
  }

  #finish(): void {
    this.#bodyLeft = -1;
    this.onResponse({ status: this.#status, bodyBytes: this.#bodyBytes, bodyStart: this.#bodyStart, close: this.#close });
  }
}
