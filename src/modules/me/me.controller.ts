import { Controller, Get, HttpCode, Post, Res, UseGuards } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { CurrentHuman, type HumanPrincipal } from '../../common/auth/human.js';
import { ApiProblemResponses } from '../../common/openapi.js';
import { MeDto } from './dto/me.dto.js';
import { MeService } from './me.service.js';
import { HumanSessionGuard } from './session/human-session.guard.js';
import { HumanSessionsService } from './session/human-sessions.service.js';

/** The signed-in human: who they are, and signing out. */
@ApiTags('human: dashboard')
@UseGuards(HumanSessionGuard)
@ApiProblemResponses(401, 403)
@Controller('v1/me')
export class MeController {
  constructor(
    private readonly me: MeService,
    private readonly sessions: HumanSessionsService,
  ) {}

  @Get()
  @ApiOperation({ summary: 'The signed-in user and their app' })
  @ApiOkResponse({ type: MeDto })
  profile(@CurrentHuman() human: HumanPrincipal): Promise<MeDto> {
    return this.me.profile(human);
  }

  @Post('sign-out')
  @HttpCode(204)
  @ApiOperation({ summary: 'End this session (needs X-Requested-With: mfa-proxy)' })
  async signOut(@CurrentHuman() human: HumanPrincipal, @Res({ passthrough: true }) reply: FastifyReply): Promise<void> {
    reply.header('Set-Cookie', await this.sessions.end(human));
  }
}
