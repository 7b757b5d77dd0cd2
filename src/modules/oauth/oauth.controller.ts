import { Body, Controller, Get, Headers, HttpCode, Ip, Post, Res, UseGuards } from '@nestjs/common';
import { ApiBasicAuth, ApiBearerAuth, ApiBody, ApiConsumes, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { CurrentAgent, CurrentApp, type AgentPrincipal, type AppPrincipal } from '../../common/auth/principals.js';
import { OAuthError } from '../../common/errors/app-error.js';
import { AppClientGuard } from '../apps/app-key.guard.js';
import { KeysService } from '../keys/keys.service.js';
import { AgentGuard } from './agent.guard.js';
import { OAuthMetadata } from './metadata.js';
import { OAuthService, type IntrospectionResponse, type TokenResponse } from './oauth.service.js';

/** `/oauth/*` bodies are form-encoded (RFC 6749) or JSON; anything else is not an object. */
function formBody(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new OAuthError('invalid_request', 'send the parameters as application/x-www-form-urlencoded');
  return body as Record<string, unknown>;
}

const FORM_SCHEMA = { type: 'object', additionalProperties: { type: 'string' } } as const;

@ApiTags('oauth')
@Controller()
export class OAuthController {
  constructor(
    private readonly oauth: OAuthService,
    private readonly keys: KeysService,
    private readonly metadata: OAuthMetadata,
  ) {}

  @Post('oauth/token')
  @HttpCode(200)
  @ApiOperation({ summary: 'Client credentials grant: an agent gets a short-lived scoped access token (RFC 6749, 7523, 9068, 9449)' })
  @ApiConsumes('application/x-www-form-urlencoded', 'application/json')
  @ApiBody({ schema: { type: 'object', required: ['grant_type'], properties: { grant_type: { type: 'string', enum: ['client_credentials'] }, scope: { type: 'string' }, task_id: { type: 'string' }, client_id: { type: 'string' }, client_secret: { type: 'string' }, client_assertion_type: { type: 'string' }, client_assertion: { type: 'string' } } } })
  async token(
    @Headers('authorization') authorization: string | undefined,
    @Headers('dpop') dpop: string | string[] | undefined,
    @Body() body: unknown,
    @Ip() ip: string, // Fastify's request.ip: the peer address (trustProxy is off)
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<TokenResponse | Record<string, unknown>> {
    reply.header('Cache-Control', 'no-store').header('Pragma', 'no-cache');
    return this.oauth.token(authorization, dpop, formBody(body), ip);
  }

  @Post('oauth/introspect')
  @HttpCode(200)
  @UseGuards(AppClientGuard)
  @ApiBearerAuth('appKey')
  @ApiBasicAuth('appClient')
  @ApiOperation({ summary: 'RFC 7662 introspection of an agent token, for the app that owns the agent' })
  @ApiConsumes('application/x-www-form-urlencoded', 'application/json')
  @ApiBody({ schema: FORM_SCHEMA })
  introspect(@CurrentApp() app: AppPrincipal, @Body() body: unknown): Promise<IntrospectionResponse> {
    return this.oauth.introspect(app.appId, formBody(body));
  }

  @Post('oauth/revoke')
  @HttpCode(200)
  @ApiOperation({ summary: 'RFC 7009 revocation of one of the calling agent’s tokens (client authentication as at /oauth/token)' })
  @ApiConsumes('application/x-www-form-urlencoded', 'application/json')
  @ApiBody({ schema: FORM_SCHEMA })
  async revoke(@Headers('authorization') authorization: string | undefined, @Body() body: unknown, @Ip() ip: string): Promise<Record<string, never>> {
    await this.oauth.revoke(authorization, formBody(body), ip);
    return {};
  }

  @Get('.well-known/oauth-authorization-server')
  @ApiOperation({ summary: 'RFC 8414 authorization server metadata' })
  serverMetadata(): Record<string, unknown> {
    return this.metadata.document();
  }

  @Get('.well-known/openid-configuration')
  @ApiOperation({ summary: 'OpenID Connect Discovery 1.0 provider metadata (the same document as RFC 8414 metadata)' })
  openidConfiguration(): Record<string, unknown> {
    return this.metadata.document();
  }

  @Get('.well-known/oauth-protected-resource')
  @ApiOperation({ summary: 'RFC 9728 protected resource metadata of the agent API' })
  protectedResourceMetadata(): Record<string, unknown> {
    return this.metadata.protectedResource();
  }

  @Get('.well-known/jwks.json')
  @ApiOperation({ summary: 'Public signing keys (current and recently rotated)' })
  async jwks(@Res({ passthrough: true }) reply: FastifyReply): Promise<unknown> {
    reply.header('Cache-Control', 'public, max-age=300');
    return this.keys.jwks();
  }
}

@ApiTags('agents (agent-authenticated)')
@ApiBearerAuth('agentToken')
@Controller('v1')
export class WhoamiController {
  @Get('whoami')
  @UseGuards(AgentGuard)
  @ApiOperation({ summary: 'The calling agent as the service sees it (user, agent, model, task, scopes)' })
  @ApiOkResponse({ schema: { type: 'object' } })
  whoami(@CurrentAgent() agent: AgentPrincipal): Omit<AgentPrincipal, 'jti' | 'boundaries'> {
    const { jti: _jti, boundaries: _b, ...rest } = agent;
    return rest;
  }
}
