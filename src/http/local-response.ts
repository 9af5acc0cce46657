// Responses the proxy answers itself (400, 403, 431, 502, 504, ...). Always
// `Connection: close`: after a framing error nothing later on the connection can be trusted
// (RFC 9112 §11.2), and a refused client gets no second try on the same connection.
import { STATUS_CODES } from 'node:http';
import type { ProxyError } from '../errors.ts';

/** The caller writes the result as latin1: the length is counted the same way (a byte per char). */
export function localResponse(err: ProxyError, requestId: string | null, extraHeaders = ''): string {
  const reason = STATUS_CODES[err.status] ?? 'Error';
  const body = `${err.status} ${reason}: ${err.message} (${err.code})\n`;
  const id = requestId ? `x-request-id: ${requestId}\r\n` : '';
  return (
    `HTTP/1.1 ${err.status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body, 'latin1')}\r\n` +
    `${id}${extraHeaders}connection: close\r\ncache-control: no-store\r\n\r\n${body}`
  );
}

/** 499 is nginx's "client closed request": logged, never sent. */
export const CLIENT_CLOSED_STATUS = 499;
