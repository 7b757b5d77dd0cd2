import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from './app-error.js';
import { renderError } from './problem.filter.js';

/**
 * Errors raised before a request reaches a route, answered like every other error (problem+json,
 * or RFC 6749 JSON on /oauth) and never echoing the input (API.md v1.1 Conventions).
 */

/** Router errors (Fastify `frameworkErrors`): an undecodable or over-long path segment is an id that does not exist. */
export function onFrameworkError(_err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const { status, headers, body } = renderError(request.url, new AppError('not_found', 'no such resource'));
  void reply.code(status).headers({ ...headers, 'X-Request-Id': String(request.id), 'X-Content-Type-Options': 'nosniff' }).send(body);
}

/** Requests Node's HTTP parser refuses (Fastify `clientErrorHandler`): written to the socket, then closed. */
export function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const error =
    err.code === 'HPE_HEADER_OVERFLOW' ? new AppError('headers_too_large', 'request headers exceed the size limit') :
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? new AppError('request_timeout', 'the request took too long to arrive') :
    new AppError('validation_failed', 'the request could not be parsed as HTTP');
  // Only the request line tells /oauth (RFC 6749 JSON) from the rest; it is read, never echoed.
  const requestLine = (err as { rawPacket?: Buffer }).rawPacket?.toString('latin1', 0, 4096).split('\r\n', 1)[0] ?? '';
  const { status, headers, body } = renderError(requestLine.split(' ')[1] ?? '', error);
  const text = JSON.stringify(body);
  if (socket.writable) {
    const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status]}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), `Content-Length: ${Buffer.byteLength(text)}`, `X-Request-Id: ${randomUUID()}`, 'Connection: close'];
    socket.write(`${lines.join('\r\n')}\r\n\r\n${text}`);
  }
  socket.destroy();
}
