import { Body, Controller, Headers, HttpCode, Post, Res } from '@nestjs/common';
import { ApiBody, ApiConsumes, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ClientIp } from '../../common/net/client-ip.js';
import { ApiOAuthErrors } from '../../common/openapi.js';
import type { FastifyReply } from 'fastify';
import { OAuthError } from '../../common/errors/app-error.js';
import { CibaService } from './ciba.service.js';
import { BC_AUTHORIZE_SCHEMA, BcAuthorizeResponseDto } from './dto/ciba.dto.js';

/** `/oauth/*` bodies are form-encoded (RFC 6749) or JSON; anything else is not an object. */
function formBody(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new OAuthError('invalid_request', 'send the parameters as application/x-www-form-urlencoded');
  return body as Record<string, unknown>;
}

@ApiTags('oauth')
@ApiOAuthErrors(400, 401, 429)
@Controller()
export class CibaController {
  constructor(private readonly ciba: CibaService) {}

  @Post('oauth/bc-authorize')
  @HttpCode(200)
  @ApiOperation({ summary: 'OpenID CIBA Core 1.0 backchannel authentication request (poll and ping modes): starts a step-up the human approves' })
  @ApiConsumes('application/x-www-form-urlencoded', 'application/json')
  @ApiBody({ schema: BC_AUTHORIZE_SCHEMA })
  @ApiOkResponse({ type: BcAuthorizeResponseDto })
  authorize(
    @Headers('authorization') authorization: string | undefined,
    @Body() body: unknown,
    @ClientIp() ip: string,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<BcAuthorizeResponseDto> {
    reply.header('Cache-Control', 'no-store');
    return this.ciba.authorize(authorization, formBody(body), ip);
  }
}
