/**
 * The agent-auth peer: the smallest NestJS 12 app on Fastify that authenticates a request the
 * way the service must, i.e. a guard verifying the service's agent token (Bearer, ES256) with
 * jose against the service's JWKS (fetched once, cached): the framework's own cost per request,
 * with no logging, no interceptors and no database. Usage: node dist/bench/servers/peer-nest.js <config.json>
 */
import 'reflect-metadata';
import { Controller, Get, Injectable, Module, Req, UnauthorizedException, UseGuards, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';

export interface PeerNestConfig {
  port: number;
  jwksUrl: string;
  serviceIssuer: string;
}

const config = JSON.parse(readFileSync(process.argv[2], 'utf8')) as PeerNestConfig;
const jwks = createLocalJWKSet((await (await fetch(config.jwksUrl)).json()) as JSONWebKeySet);

interface AuthedRequest { headers: Record<string, string | undefined>; claims?: JWTPayload }

@Injectable()
class AgentTokenGuard implements CanActivate {
  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const req = ctx.switchToHttp().getRequest<AuthedRequest>();
    const h = req.headers.authorization;
    if (!h?.startsWith('Bearer ')) throw new UnauthorizedException();
    try {
      req.claims = (await jwtVerify(h.slice(7), jwks, { algorithms: ['ES256'], typ: 'at+jwt', issuer: config.serviceIssuer, audience: config.serviceIssuer, requiredClaims: ['exp', 'iat', 'jti', 'sub'] })).payload;
      return true;
    } catch {
      throw new UnauthorizedException();
    }
  }
}

@Controller('v1')
class WhoamiController {
  @Get('whoami')
  @UseGuards(AgentTokenGuard)
  whoami(@Req() req: AuthedRequest): Record<string, unknown> {
    const c = req.claims!;
    return { agentId: c.client_id, userId: c.sub, appId: (c.aud as string[])[1], model: c.model, scopes: String(c.scope).split(' '), expiresAt: new Date(c.exp! * 1000).toISOString() };
  }

  @Get('healthz')
  health(): { status: string } {
    return { status: 'ok' };
  }
}

@Module({ controllers: [WhoamiController], providers: [AgentTokenGuard] })
class PeerModule {}

const app = await NestFactory.create<NestFastifyApplication>(PeerModule, new FastifyAdapter(), { logger: false });
await app.listen({ port: config.port, host: '127.0.0.1' });
console.log(`peer-nest listening on ${config.port}`);
