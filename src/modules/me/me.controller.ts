import { Body, Controller, Get, HttpCode, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import { type ApiResponseNoStatusOptions, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { FastifyReply } from 'fastify';
import { CurrentHuman, type HumanPrincipal } from '../../common/auth/human.js';
import { ApiProblemResponses } from '../../common/openapi.js';
import { AuditPageDto } from '../audit/dto/audit.dto.js';
import { ApprovalCodeDto, AssertionDto, DenyDto } from '../approvals/dto/approval.dto.js';
import { MeStepUpsService } from './dashboard/me-step-ups.service.js';
import { ActivityQueryDto, MeStepUpsDto, StepUpsQueryDto } from './dto/dashboard.dto.js';
import { MeDto } from './dto/me.dto.js';
import { MeService } from './me.service.js';
import { HumanSessionGuard } from './session/human-session.guard.js';
import { HumanSessionsService } from './session/human-sessions.service.js';

const DECIDED = { schema: { type: 'object', properties: { status: { type: 'string', enum: ['approved', 'denied'] } } } } satisfies ApiResponseNoStatusOptions;

/** The signed-in human: who they are, signing out, their activity, and their step-ups (decided inline). */
@ApiTags('human: dashboard')
@UseGuards(HumanSessionGuard)
@ApiProblemResponses(400, 401, 403, 404, 409, 410, 429)
@Controller('v1/me')
export class MeController {
  constructor(
    private readonly me: MeService,
    private readonly sessions: HumanSessionsService,
    private readonly stepUps: MeStepUpsService,
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
  @ApiNoContentResponse()
  async signOut(@CurrentHuman() human: HumanPrincipal, @Res({ passthrough: true }) reply: FastifyReply): Promise<void> {
    reply.header('Set-Cookie', await this.sessions.end(human));
  }

  @Get('activity')
  @ApiOperation({ summary: "The user's audit events, newest first (request events left out)" })
  @ApiOkResponse({ type: AuditPageDto })
  activity(@CurrentHuman() human: HumanPrincipal, @Query() q: ActivityQueryDto): Promise<AuditPageDto> {
    return this.me.activity(human, q);
  }

  @Get('step-ups')
  @ApiOperation({ summary: "The user's step-ups (pending, or all), with everything the approval page shows" })
  @ApiOkResponse({ type: MeStepUpsDto })
  stepUpList(@CurrentHuman() human: HumanPrincipal, @Query() q: StepUpsQueryDto): Promise<MeStepUpsDto> {
    return this.stepUps.list(human, q.status);
  }

  @Post('step-ups/:id/webauthn/options')
  @HttpCode(200)
  @ApiOperation({ summary: 'As POST /v1/approvals/<token>/webauthn/options, for one of your step-ups' })
  @ApiOkResponse({ schema: { type: 'object', description: 'PublicKeyCredentialRequestOptionsJSON (WebAuthn Level 3)', required: ['challenge'], additionalProperties: true } })
  webauthnOptions(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return this.stepUps.webauthnOptions(human, id);
  }

  @Post('step-ups/:id/webauthn/verify')
  @HttpCode(200)
  @ApiOperation({ summary: 'Approve inline with a passkey (same rules and events as the approval page)' })
  @ApiOkResponse(DECIDED)
  webauthnVerify(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string, @Body() dto: AssertionDto): Promise<{ status: 'approved' | 'denied' }> {
    return this.stepUps.webauthnVerify(human, id, dto.response);
  }

  @Post('step-ups/:id/totp')
  @HttpCode(200)
  @ApiOperation({ summary: 'Approve inline with an authenticator-app code (5 wrong codes deny the request)' })
  @ApiOkResponse(DECIDED)
  totp(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string, @Body() dto: ApprovalCodeDto): Promise<{ status: 'approved' | 'denied' }> {
    return this.stepUps.totp(human, id, dto.code);
  }

  @Post('step-ups/:id/deny')
  @HttpCode(200)
  @ApiOperation({ summary: 'Deny inline' })
  @ApiOkResponse(DECIDED)
  deny(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string, @Body() dto: DenyDto): Promise<{ status: 'approved' | 'denied' }> {
    return this.stepUps.deny(human, id, dto.reason);
  }
}
