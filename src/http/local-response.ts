// Responses the proxy answers itself (400, 403, 431, 502, 504, ...). Always
// `Connection: close`: after a framing error nothing later on the connection can be trusted
// (RFC 9112 §11.2), and a refused client gets no second try on the same connection.
import type { ProxyError } from '../errors.ts';

// The reason phrases of the statuses the proxy answers with itself (RFC 9110 §15). Our own
// table, not node:http's STATUS_CODES: importing node:http pulls ~2 MiB of modules (http2
// compat, its client) into a process that never uses them.
const REASONS: Readonly<Record<number, string>> = {
  400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 408: 'Request Timeout', 411: 'Length Required',
  413: 'Content Too Large', 414: 'URI Too Long', 417: 'Expectation Failed', 421: 'Misdirected Request',
  431: 'Request Header Fields Too Large', 499: 'Client Closed Request', 500: 'Internal Server Error',
  501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** The caller writes the result as latin1: the length is counted the same way (a byte per char). */
export function localResponse(err: ProxyError, requestId: string | null, extraHeaders = ''): string {
  const reason = REASONS[err.status] ?? 'Error';
  const body = `${err.status} ${reason}: ${err.message} (${err.code})\n`;
  const id = requestId ? `x-request-id: ${requestId}\r\n` : '';
  return (
    `HTTP/1.1 ${err.status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body, 'latin1')}\r\n` +
    `${id}${extraHeaders}connection: close\r\ncache-control: no-store\r\n\r\n${body}`
  );
}

/** 499 is nginx's "client closed request": logged, never sent. */
export const CLIENT_CLOSED_STATUS = 499;
