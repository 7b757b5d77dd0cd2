import { Body, Controller, Headers, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ClientIp } from '../../common/net/client-ip.js';
import { ApiOAuthErrors } from '../../common/openapi.js';
import type { FastifyReply } from 'fastify';
import { OAuthError } from '../../common/errors/app-error.js';
import { TxnAuthorizationService, type TxnAuthorizationPending, type TxnAuthorizationToken } from './txn-authorization.service.js';

/** `/oauth/*` bodies are form-encoded (RFC 6749) or JSON; anything else is not an object. */
function formBody(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new OAuthError('invalid_request', 'send the parameters as application/x-www-form-urlencoded');
  return body as Record<string, unknown>;
}

@ApiTags('oauth')
@ApiOAuthErrors(400, 401, 429)
@Controller('oauth')
export class TxnAuthorizationController {
  constructor(private readonly txn: TxnAuthorizationService) {}

  @Post('txn-authorization')
  @HttpCode(200)
  @ApiOperation({ summary: 'Transaction Authorization Challenge (draft-rosomakho-oauth-txn-challenge-00 §5): present an app-signed challenge, or poll for its single-use access token' })
  @ApiConsumes('application/x-www-form-urlencoded', 'application/json')
  @ApiOkResponse({
    description: 'A challenge accepted (pending), or on a poll after approval the single-use access token (once)',
    schema: {
      oneOf: [
        { type: 'object', required: ['transaction_authorization_id', 'expires_in', 'interval'], properties: { transaction_authorization_id: { type: 'string' }, expires_in: { type: 'integer' }, interval: { type: 'integer' } } },
        { type: 'object', required: ['access_token', 'token_type', 'expires_in', 'authorization_details'], properties: { access_token: { type: 'string' }, token_type: { type: 'string', enum: ['Bearer', 'DPoP'] }, expires_in: { type: 'integer' }, authorization_details: { type: 'array', items: { type: 'object', additionalProperties: true } } } },
      ],
    },
  })
  @ApiBody({ schema: { type: 'object', properties: { transaction_challenge: { type: 'string' }, transaction_authorization_id: { type: 'string' }, client_id: { type: 'string' }, client_secret: { type: 'string' }, client_assertion_type: { type: 'string' }, client_assertion: { type: 'string' } } } })
  handle(
    @Headers('authorization') authorization: string | undefined,
    @Headers('dpop') dpop: string | string[] | undefined,
    @Body() body: unknown,
    @ClientIp() ip: string,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<TxnAuthorizationPending | TxnAuthorizationToken> {
    reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache');
    return this.txn.handle(authorization, dpop, formBody(body), ip);
  }
}
