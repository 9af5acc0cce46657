// What an llhttp error on a request means to the client: its ProxyError (and so its status).
// Shared by the downstream connection and the fuzz harness that models its parser path.
import { ProxyError } from '../errors.ts';
import { ERR, errorName, type HttpParser } from './llhttp.ts';

/** llhttp errors that are about message framing (RFC 9112 §6.3): smuggling vectors. */
const FRAMING_ERRORS = new Set(['HPE_INVALID_TRANSFER_ENCODING', 'HPE_UNEXPECTED_CONTENT_LENGTH', 'HPE_INVALID_CONTENT_LENGTH', 'HPE_INVALID_CHUNK_SIZE']);

/** The error for llhttp's `ret` on a request parser (one of our callbacks did not fail it). */
export function requestParseError(parser: HttpParser, ret: number): ProxyError {
  const name = errorName(ret);
  const reason = parser.errorReason;
  if (ret === ERR.INVALID_VERSION) {
    const major = parser.httpMajor;
    const minor = parser.httpMinor;
    return major === 1 && minor <= 1 ? new ProxyError('BAD_REQUEST', reason) : new ProxyError('VERSION_NOT_SUPPORTED', `HTTP/${major}.${minor} is not supported`);
  }
  if (ret === ERR.PAUSED_H2_UPGRADE) return new ProxyError('VERSION_NOT_SUPPORTED', 'HTTP/2 is not supported on this listener');
  if (ret === ERR.INVALID_METHOD) return new ProxyError('BAD_METHOD', reason);
  if (FRAMING_ERRORS.has(name)) return new ProxyError('AMBIGUOUS_FRAMING', `${reason} (${name})`);
  return new ProxyError('BAD_REQUEST', `${reason} (${name})`);
}
