// llhttp compiled to WebAssembly, as shipped inside undici (pinned exactly in package.json).
// One wasm instance per process, one parser per connection (llhttp_alloc). The callbacks
// wasm calls back into are fixed functions that dispatch to the parser currently executing:
// no closure per parser or per chunk. Request mode downstream, response mode upstream.
// Lenient flags are never enabled: strictness is the smuggling defence (CVE-2022-32213,
// CVE-2022-32214, CVE-2022-35256, CVE-2023-30589, CVE-2024-27982 were all leniencies).
import { createRequire } from 'node:module';

const requireUndici = createRequire(import.meta.url);

interface LlhttpConstants {
  ERROR: Record<string, number>;
  TYPE: Record<string, number>;
  METHODS: Record<string, number>;
}
const constants = requireUndici('undici/lib/llhttp/constants.js') as LlhttpConstants;

// The few WebAssembly APIs used here (the Node typings don't declare the global).
interface WasmModule {
  readonly __brand: 'WasmModule';
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (mod: WasmModule, imports: Record<string, Record<string, (...args: number[]) => number>>) => { exports: unknown };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

interface LlhttpExports {
  memory: { buffer: ArrayBuffer };
  llhttp_alloc(type: number): number;
  llhttp_free(ptr: number): void;
  malloc(size: number): number;
  free(ptr: number): void;
  llhttp_execute(ptr: number, data: number, len: number): number;
  llhttp_finish(ptr: number): number;
  llhttp_resume(ptr: number): void;
  llhttp_resume_after_upgrade(ptr: number): void;
  llhttp_get_error_pos(ptr: number): number;
  llhttp_get_error_reason(ptr: number): number;
  llhttp_get_method(ptr: number): number;
  llhttp_get_http_major(ptr: number): number;
  llhttp_get_http_minor(ptr: number): number;
  llhttp_get_status_code(ptr: number): number;
  llhttp_should_keep_alive(ptr: number): number;
  llhttp_message_needs_eof(ptr: number): number;
  [lenientSetter: `llhttp_set_lenient_${string}`]: (ptr: number, on: number) => void;
}

export const ERR = {
  OK: constants.ERROR.OK ?? 0,
  PAUSED: constants.ERROR.PAUSED ?? 21,
  PAUSED_UPGRADE: constants.ERROR.PAUSED_UPGRADE ?? 22,
  PAUSED_H2_UPGRADE: constants.ERROR.PAUSED_H2_UPGRADE ?? 23,
  USER: constants.ERROR.USER ?? 24,
  INVALID_METHOD: constants.ERROR.INVALID_METHOD ?? 6,
  INVALID_URL: constants.ERROR.INVALID_URL ?? 7,
  INVALID_VERSION: constants.ERROR.INVALID_VERSION ?? 9,
} as const;

/** llhttp error number -> its name ("HPE_INVALID_CHUNK_SIZE"), for logs and the request log. */
const ERROR_NAMES: string[] = [];
for (const [name, n] of Object.entries(constants.ERROR)) ERROR_NAMES[n] = `HPE_${name}`;
export function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `HPE_${code}`;
}

/** Method number -> method name, built once. */
const METHOD_NAMES: string[] = [];
for (const [name, n] of Object.entries(constants.METHODS)) METHOD_NAMES[n] = name;

export const TYPE_REQUEST = constants.TYPE.REQUEST ?? 1;
export const TYPE_RESPONSE = constants.TYPE.RESPONSE ?? 2;

/**
 * What a parser reports to. Span callbacks get the socket's chunk and a [start, end) range
 * of it: bodies are taken as `subarray` views, never copied. A callback returns 0 to go on,
 * -1 to fail the parse (the handler keeps its own reason), or ERR.PAUSED to stop after it.
 * onHeadersComplete may return 1 to tell a response parser the message has no body (HEAD).
 */
export interface ParserHandler {
  onMessageBegin(): number;
  onUrl(data: Buffer, start: number, end: number): number;
  onStatus(data: Buffer, start: number, end: number): number;
  onHeaderField(data: Buffer, start: number, end: number): number;
  onHeaderValue(data: Buffer, start: number, end: number): number;
  onHeadersComplete(statusCode: number, upgrade: boolean, keepAlive: boolean): number;
  onBody(data: Buffer, start: number, end: number): number;
  onMessageComplete(): number;
}

let wasm: LlhttpExports | null = null;
let current: HttpParser | null = null;
let currentChunk: Buffer | null = null;
let inputPtr = 0;
let inputSize = 0;
let inputView: Uint8Array | null = null;

function start(at: number): number {
  return at - inputPtr;
}

function load(): LlhttpExports {
  if (wasm) return wasm;
  let mod: WasmModule | null = null;
  if (process.env.MTLS_PROXY_NO_WASM_SIMD !== '1') {
    try {
      mod = new WA.Module(requireUndici('undici/lib/llhttp/llhttp_simd-wasm.js') as Buffer);
    } catch {
      mod = null; // CPU without wasm SIMD: the plain build below
    }
  }
  mod ??= new WA.Module(requireUndici('undici/lib/llhttp/llhttp-wasm.js') as Buffer);
  const env = {
    wasm_on_message_begin: (_p: number): number => current!.handler.onMessageBegin(),
    wasm_on_url: (_p: number, at: number, len: number): number => {
      const s = start(at);
      return current!.handler.onUrl(currentChunk!, s, s + len);
    },
    wasm_on_status: (_p: number, at: number, len: number): number => {
      const s = start(at);
      return current!.handler.onStatus(currentChunk!, s, s + len);
    },
    wasm_on_header_field: (_p: number, at: number, len: number): number => {
      const s = start(at);
      return current!.handler.onHeaderField(currentChunk!, s, s + len);
    },
    wasm_on_header_value: (_p: number, at: number, len: number): number => {
      const s = start(at);
      return current!.handler.onHeaderValue(currentChunk!, s, s + len);
    },
    wasm_on_headers_complete: (_p: number, status: number, upgrade: number, keepAlive: number): number =>
      current!.handler.onHeadersComplete(status, upgrade === 1, keepAlive === 1),
    wasm_on_body: (_p: number, at: number, len: number): number => {
      const s = start(at);
      return current!.handler.onBody(currentChunk!, s, s + len);
    },
    wasm_on_message_complete: (_p: number): number => current!.handler.onMessageComplete(),
  };
  const instance = new WA.Instance(mod, { env });
  wasm = instance.exports as unknown as LlhttpExports;
  return wasm;
}

const EMPTY = Buffer.alloc(0);

// llhttp's LENIENT_FLAGS bits and the setter for each (llhttp.h order).
const LENIENT_SETTERS = ['headers', 'chunked_length', 'keep_alive', 'transfer_encoding', 'version', 'data_after_close', 'optional_lf_after_cr', 'optional_crlf_after_chunk', 'optional_cr_before_lf', 'spaces_after_chunk_size'] as const;
let lenientForTesting = 0;

/**
 * TEST ONLY: request parsers created after this call get llhttp's lenient `flags` (bits of
 * LENIENT_FLAGS), i.e. a deliberately weakened build, to prove that the selftest and the corpus
 * test can fail. Nothing in src/ calls it and no config or environment reaches it: only code
 * loaded into the process (test/support/weaken-parser.ts, through `node --import`) can.
 */
export function weakenRequestParsersForTesting(flags: number): void {
  lenientForTesting = flags;
}

export class HttpParser {
  handler: ParserHandler;
  #ptr: number;
  #w: LlhttpExports;
  /** Set by execute(): where parsing stopped in the last chunk (after a pause or error). */
  stoppedAt = 0;

  constructor(type: number, handler: ParserHandler) {
    this.#w = load();
    this.handler = handler;
    this.#ptr = this.#w.llhttp_alloc(type);
    if (lenientForTesting !== 0 && type === TYPE_REQUEST) {
      for (let bit = 0; bit < LENIENT_SETTERS.length; bit++) {
        if (lenientForTesting & (1 << bit)) this.#w[`llhttp_set_lenient_${LENIENT_SETTERS[bit]!}`]!(this.#ptr, 1);
      }
    }
  }

  /**
   * Parse one chunk. Returns ERR.OK, ERR.PAUSED (a callback paused: the bytes from
   * `stoppedAt` on are not consumed), ERR.PAUSED_UPGRADE, or an error number.
   */
  execute(chunk: Buffer): number {
    const w = this.#w;
    const len = chunk.length;
    if (len > inputSize) {
      if (inputPtr) w.free(inputPtr);
      inputSize = Math.ceil(len / 16384) * 16384;
      inputPtr = w.malloc(inputSize);
    }
    if (inputView === null || inputView.buffer !== w.memory.buffer || inputView.byteOffset !== inputPtr || inputView.byteLength !== inputSize) {
      inputView = new Uint8Array(w.memory.buffer, inputPtr, inputSize);
    }
    inputView.set(chunk);
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the wasm callbacks dispatch to the executing parser
    current = this;
    currentChunk = chunk;
    let ret: number;
    try {
      ret = w.llhttp_execute(this.#ptr, inputPtr, len);
    } finally {
      current = null;
      currentChunk = null;
    }
    this.stoppedAt = ret === ERR.OK ? len : w.llhttp_get_error_pos(this.#ptr) - inputPtr;
    return ret;
  }

  /** The peer closed: completes a close-delimited body; errors if a message was cut short. */
  finish(): number {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- as in execute()
    current = this;
    currentChunk = EMPTY;
    try {
      return this.#w.llhttp_finish(this.#ptr);
    } finally {
      current = null;
      currentChunk = null;
    }
  }

  resume(): void {
    this.#w.llhttp_resume(this.#ptr);
  }

  resumeAfterUpgrade(): void {
    this.#w.llhttp_resume_after_upgrade(this.#ptr);
  }

  get method(): string {
    return METHOD_NAMES[this.#w.llhttp_get_method(this.#ptr)] ?? 'UNKNOWN';
  }

  get httpMajor(): number {
    return this.#w.llhttp_get_http_major(this.#ptr);
  }

  get httpMinor(): number {
    return this.#w.llhttp_get_http_minor(this.#ptr);
  }

  get shouldKeepAlive(): boolean {
    return this.#w.llhttp_should_keep_alive(this.#ptr) === 1;
  }

  /** llhttp's own reason for the last error ("Invalid character in chunk size"). */
  get errorReason(): string {
    const w = this.#w;
    const p = w.llhttp_get_error_reason(this.#ptr);
    if (!p) return '';
    const mem = new Uint8Array(w.memory.buffer);
    let end = p;
    while (end < mem.length && mem[end] !== 0) end++;
    return Buffer.from(mem.buffer, p, end - p).toString('latin1');
  }

  destroy(): void {
    if (this.#ptr) {
      this.#w.llhttp_free(this.#ptr);
      this.#ptr = 0;
    }
  }
}
