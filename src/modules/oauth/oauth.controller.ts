import { Body, Controller, Get, Headers, HttpCode, Post, Res, UseGuards } from '@nestjs/common';
import { ApiBasicAuth, ApiBearerAuth, ApiBody, ApiConsumes, ApiOkResponse, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { ClientIp } from '../../common/net/client-ip.js';
import { ApiOAuthErrors, ApiProblemResponses, type SchemaObject } from '../../common/openapi.js';
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
const METADATA_SCHEMA = { type: 'object', required: ['issuer'], properties: { issuer: { type: 'string', format: 'uri' } }, additionalProperties: true } satisfies SchemaObject;
const TOKEN_RESPONSE_SCHEMA = {
  type: 'object',
  required: ['access_token', 'token_type', 'expires_in'],
  properties: {
    access_token: { type: 'string' },
    token_type: { type: 'string', enum: ['Bearer', 'DPoP'] },
    expires_in: { type: 'integer' },
    scope: { type: 'string' },
    authorization_details: { type: 'array', items: { type: 'object' }, description: 'CIBA grant: the approved mfa_proxy_action' },
    id_token: { type: 'string', description: 'CIBA grant with scope openid' },
  },
} satisfies SchemaObject;
const INTROSPECTION_SCHEMA = {
  type: 'object',
  required: ['active'],
  properties: {
    active: { type: 'boolean' },
    token_type: { type: 'string', enum: ['Bearer', 'DPoP'] },
    scope: { type: 'string' },
    client_id: { type: 'string' },
    sub: { type: 'string' },
    iss: { type: 'string' },
    aud: { oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    exp: { type: 'integer' },
    iat: { type: 'integer' },
    jti: { type: 'string' },
    act: { type: 'object', properties: { sub: { type: 'string' } } },
    model: { type: 'string' },
    task_id: { type: 'string' },
    cnf: { type: 'object', properties: { jkt: { type: 'string' } } },
  },
  additionalProperties: true,
} satisfies SchemaObject;
const AGENT_CLIENT_AUTH = 'client_secret_basic (agentClient), client_secret_post or private_key_jwt (RFC 7523) in the body';

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
  @ApiOperation({ summary: 'Client credentials grant: an agent gets a short-lived scoped access token (RFC 6749, 7523, 9068, 9449); extension grants (CIBA) too', description: `Client authentication: ${AGENT_CLIENT_AUTH}. An optional DPoP proof binds the token.` })
  @ApiSecurity('agentClient')
  @ApiSecurity('dpop')
  @ApiOkResponse({ schema: TOKEN_RESPONSE_SCHEMA })
  @ApiOAuthErrors(400, 401, 429)
  @ApiConsumes('application/x-www-form-urlencoded', 'application/json')
  @ApiBody({ schema: { type: 'object', required: ['grant_type'], properties: { grant_type: { type: 'string', enum: ['client_credentials'] }, scope: { type: 'string' }, task_id: { type: 'string' }, client_id: { type: 'string' }, client_secret: { type: 'string' }, client_assertion_type: { type: 'string' }, client_assertion: { type: 'string' } } } })
  async token(
    @Headers('authorization') authorization: string | undefined,
    @Headers('dpop') dpop: string | string[] | undefined,
    @Body() body: unknown,
    @ClientIp() ip: string, // the TCP peer, or the client a TRUST_PROXY proxy names
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
  @ApiOperation({ summary: 'RFC 7662 introspection of an agent token, for the app that owns the agent', description: 'App authentication: Basic with the app id and an API key (appClient), the same in the body (client_secret_post), or Bearer <API key> (appKey).' })
  @ApiConsumes('application/x-www-form-urlencoded', 'application/json')
  @ApiBody({ schema: { type: 'object', required: ['token'], properties: { token: { type: 'string' }, token_type_hint: { type: 'string' }, client_id: { type: 'string' }, client_secret: { type: 'string' } } } })
  @ApiOkResponse({ schema: INTROSPECTION_SCHEMA })
  @ApiOAuthErrors(400, 401)
  introspect(@CurrentApp() app: AppPrincipal, @Body() body: unknown): Promise<IntrospectionResponse> {
    return this.oauth.introspect(app.appId, formBody(body));
  }

  @Post('oauth/revoke')
  @HttpCode(200)
  @ApiOperation({ summary: 'RFC 7009 revocation of one of the calling agent’s tokens (client authentication as at /oauth/token)', description: `Client authentication: ${AGENT_CLIENT_AUTH}, or Bearer with one of the agent's live (non-DPoP) access tokens. Another client's token: 400 unauthorized_client.` })
  @ApiSecurity('agentClient')
  @ApiBearerAuth('agentToken')
  @ApiConsumes('application/x-www-form-urlencoded', 'application/json')
  @ApiBody({ schema: { type: 'object', required: ['token'], properties: { token: { type: 'string' }, token_type_hint: { type: 'string' }, client_id: { type: 'string' }, client_secret: { type: 'string' }, client_assertion_type: { type: 'string' }, client_assertion: { type: 'string' } } } })
  @ApiOkResponse({ schema: { type: 'object', additionalProperties: false, description: 'Empty: revoked, or unknown/invalid (RFC 7009 §2.2)' } })
  @ApiOAuthErrors(400, 401, 429)
  async revoke(@Headers('authorization') authorization: string | undefined, @Body() body: unknown, @ClientIp() ip: string): Promise<Record<string, never>> {
    await this.oauth.revoke(authorization, formBody(body), ip);
    return {};
  }

  @Get('.well-known/oauth-authorization-server')
  @ApiOperation({ summary: 'RFC 8414 authorization server metadata' })
  @ApiOkResponse({ schema: METADATA_SCHEMA })
  @ApiProblemResponses(431)
  serverMetadata(): Record<string, unknown> {
    return this.metadata.document();
  }

  @Get('.well-known/openid-configuration')
  @ApiOperation({ summary: 'OpenID Connect Discovery 1.0 provider metadata (the same document as RFC 8414 metadata)' })
  @ApiOkResponse({ schema: METADATA_SCHEMA })
  @ApiProblemResponses(431)
  openidConfiguration(): Record<string, unknown> {
    return this.metadata.document();
  }

  @Get('.well-known/oauth-protected-resource')
  @ApiOperation({ summary: 'RFC 9728 protected resource metadata of the agent API' })
  @ApiOkResponse({ schema: { type: 'object', required: ['resource'], properties: { resource: { type: 'string', format: 'uri' }, authorization_servers: { type: 'array', items: { type: 'string' } } }, additionalProperties: true } })
  @ApiProblemResponses(431)
  protectedResourceMetadata(): Record<string, unknown> {
    return this.metadata.protectedResource();
  }

  @Get('.well-known/jwks.json')
  @ApiOperation({ summary: 'Public signing keys (current and recently rotated)' })
  @ApiOkResponse({ schema: { type: 'object', required: ['keys'], properties: { keys: { type: 'array', items: { type: 'object', additionalProperties: true } } } } })
  @ApiProblemResponses(431)
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
  @ApiOkResponse({ schema: { type: 'object', properties: { appId: { type: 'string' }, userId: { type: 'string' }, agentId: { type: 'string' }, model: { type: 'string' }, taskId: { type: 'string', nullable: true }, scopes: { type: 'array', items: { type: 'string' } }, exp: { type: 'integer' }, jkt: { type: 'string', nullable: true } }, additionalProperties: true } })
  @ApiProblemResponses(401, 429)
  whoami(@CurrentAgent() agent: AgentPrincipal): Omit<AgentPrincipal, 'jti' | 'boundaries'> {
    const { jti: _jti, boundaries: _b, ...rest } = agent;
    return rest;
  }
}
