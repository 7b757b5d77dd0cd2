import { applyDecorators } from '@nestjs/common';
import { ApiExtraModels, ApiProperty, ApiPropertyOptional, ApiResponse, getSchemaPath, type ApiResponseSchemaHost } from '@nestjs/swagger';
import { ERROR_STATUS } from './errors/error-codes.js';

/** RFC 9457 problem details: every error of `/v1` and the pages (ProblemFilter). */
export class ProblemDetails {
  @ApiProperty({ format: 'uri', example: 'https://mfa-proxy.dev/problems/not-found' })
  type: string;

  @ApiProperty({ example: 'Not found' })
  title: string;

  @ApiProperty({ type: 'integer', example: 404 })
  status: number;

  @ApiProperty({ example: 'agent not found' })
  detail: string;

  @ApiProperty({ enum: Object.keys(ERROR_STATUS), description: 'Stable error code (API.md)' })
  code: string;
}

/** RFC 6749 §5.2 error response: every error of `/oauth/*`. */
export class OAuthErrorResponse {
  @ApiProperty({
    description: 'RFC 6749 §5.2 error code (also RFC 9449 invalid_dpop_proof, RFC 7009 unauthorized_client, CIBA Core §11/§13 codes)',
    example: 'invalid_client',
  })
  error: string;

  @ApiPropertyOptional({ example: 'client authentication failed' })
  error_description: string;
}

const DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request (validation_failed, malformed_json, or the operation’s own codes)',
  401: 'Missing or bad credential; WWW-Authenticate names the accepted schemes',
  403: 'The credential may not do this (forbidden, action_not_permitted)',
  404: 'Unknown id, an id of another tenant, or an unknown/expired link (not_found)',
  409: 'Conflict with the current state',
  410: 'Gone (expired, task_ended)',
  413: 'Request body exceeds 64 KiB',
  415: 'Unsupported media type',
  422: 'Idempotency key reused with another request',
  429: 'Rate limited; Retry-After gives the seconds to wait',
  431: 'Request headers too large',
  502: 'Upstream error',
  503: 'Service unavailable',
};

function headersFor(status: number): Record<string, { description: string; schema: { type: 'string' } }> | undefined {
  if (status === 401) return { 'WWW-Authenticate': { description: 'RFC 6750 §3 / RFC 9449 §7.1 / RFC 6749 §5.2 challenge', schema: { type: 'string' } } };
  if (status === 429) return { 'Retry-After': { description: 'Seconds to wait', schema: { type: 'string' } } };
  return undefined;
}

/**
 * Error responses of a `/v1` (or page) operation, as `application/problem+json`. On a controller
 * class it applies to every operation; on a method it adds to (or refines) the class's.
 */
export function ApiProblemResponses(...statuses: number[]): ClassDecorator & MethodDecorator {
  return applyDecorators(
    ApiExtraModels(ProblemDetails),
    ...statuses.map((status) => ApiResponse({
      status,
      description: DESCRIPTIONS[status] ?? 'Error',
      ...(headersFor(status) ? { headers: headersFor(status) } : {}),
      content: { 'application/problem+json': { schema: { $ref: getSchemaPath(ProblemDetails) } } },
    })),
  ) as ClassDecorator & MethodDecorator;
}

/** Error responses of an `/oauth/*` operation: the RFC 6749 §5.2 JSON object. */
export function ApiOAuthErrors(...statuses: number[]): ClassDecorator & MethodDecorator {
  return applyDecorators(
    ApiExtraModels(OAuthErrorResponse),
    ...statuses.map((status) => ApiResponse({
      status,
      description: status === 401 ? 'invalid_client (or invalid_token): client authentication failed; WWW-Authenticate names the accepted schemes' : DESCRIPTIONS[status] ?? 'Error',
      ...(headersFor(status) ? { headers: headersFor(status) } : {}),
      content: { 'application/json': { schema: { $ref: getSchemaPath(OAuthErrorResponse) } } },
    })),
  ) as ClassDecorator & MethodDecorator;
}

/** An OpenAPI schema object, as @nestjs/swagger's decorators take it (for `satisfies` on shared schemas). */
export type SchemaObject = ApiResponseSchemaHost['schema'];
