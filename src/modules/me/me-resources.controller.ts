import { Body, Controller, Delete, Get, HttpCode, Param, Post, UseGuards } from '@nestjs/common';
import { ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import { CurrentHuman, type HumanPrincipal } from '../../common/auth/human.js';
import { ApiProblemResponses } from '../../common/openapi.js';
import { CreatedTotpDto, FactorIdDto, FactorNameDto, TotpConfirmDto, TotpConfirmedDto, WebauthnRegistrationDto } from '../factors/dto/factor.dto.js';
import { MeAgentsService } from './dashboard/me-agents.service.js';
import { MeFactorsService } from './dashboard/me-factors.service.js';
import { MeAgentDto, MeAgentsDto, MeFactorsDto, MeGrantsDto } from './dto/dashboard.dto.js';
import { HumanSessionGuard } from './session/human-session.guard.js';

/** What the signed-in human controls: their agents, sudo grants and tasks, and their factors. */
@ApiTags('human: dashboard')
@UseGuards(HumanSessionGuard)
@ApiProblemResponses(400, 401, 403, 404, 409, 410)
@Controller('v1/me')
export class MeResourcesController {
  constructor(
    private readonly agents: MeAgentsService,
    private readonly factors: MeFactorsService,
  ) {}

  @Get('agents')
  @ApiOperation({ summary: 'Your agents (not revoked), with their last use' })
  @ApiOkResponse({ type: MeAgentsDto })
  agentList(@CurrentHuman() human: HumanPrincipal): Promise<MeAgentsDto> {
    return this.agents.list(human);
  }

  @Post('agents/:id/suspend')
  @HttpCode(200)
  @ApiOperation({ summary: 'Suspend an agent: its tokens stop working until resumed' })
  @ApiOkResponse({ type: MeAgentDto })
  suspend(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string): Promise<MeAgentDto> {
    return this.agents.setStatus(human, id, 'suspended');
  }

  @Post('agents/:id/resume')
  @HttpCode(200)
  @ApiOperation({ summary: 'Resume a suspended agent' })
  @ApiOkResponse({ type: MeAgentDto })
  resume(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string): Promise<MeAgentDto> {
    return this.agents.setStatus(human, id, 'active');
  }

  @Delete('agents/:id')
  @HttpCode(204)
  @ApiOperation({ summary: "Revoke an agent for good (as the app's DELETE)" })
  @ApiNoContentResponse()
  revoke(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string): Promise<void> {
    return this.agents.revoke(human, id);
  }

  @Get('grants')
  @ApiOperation({ summary: 'Active sudo grants and tasks, with their end' })
  @ApiOkResponse({ type: MeGrantsDto })
  grants(@CurrentHuman() human: HumanPrincipal): Promise<MeGrantsDto> {
    return this.agents.grants(human);
  }

  @Delete('grants/:stepUpId')
  @HttpCode(204)
  @ApiOperation({ summary: 'End a sudo grant now: its token is refused at once' })
  @ApiNoContentResponse()
  endGrant(@CurrentHuman() human: HumanPrincipal, @Param('stepUpId') stepUpId: string): Promise<void> {
    return this.agents.endGrant(human, stepUpId);
  }

  @Delete('tasks/:id')
  @HttpCode(204)
  @ApiOperation({ summary: 'End a task now: no more tokens' })
  @ApiNoContentResponse()
  endTask(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string): Promise<void> {
    return this.agents.endTask(human, id);
  }

  @Get('factors')
  @ApiOperation({ summary: 'Your active factors' })
  @ApiOkResponse({ type: MeFactorsDto })
  factorList(@CurrentHuman() human: HumanPrincipal): Promise<MeFactorsDto> {
    return this.factors.list(human);
  }

  @Post('factors/webauthn/options')
  @HttpCode(200)
  @ApiOperation({ summary: 'Registration options for a new passkey (within 5 min of a factor proof, else 403 reauth_required)' })
  @ApiOkResponse({ schema: { type: 'object', description: 'PublicKeyCredentialCreationOptionsJSON (WebAuthn Level 3)', required: ['challenge', 'rp', 'user', 'pubKeyCredParams'], additionalProperties: true } })
  webauthnOptions(@CurrentHuman() human: HumanPrincipal, @Body() _dto: FactorNameDto): Promise<PublicKeyCredentialCreationOptionsJSON> {
    return this.factors.webauthnOptions(human);
  }

  @Post('factors/webauthn/verify')
  @ApiOperation({ summary: 'Store the new passkey' })
  @ApiCreatedResponse({ type: FactorIdDto })
  webauthnVerify(@CurrentHuman() human: HumanPrincipal, @Body() dto: WebauthnRegistrationDto): Promise<FactorIdDto> {
    return this.factors.webauthnVerify(human, dto.response, dto.name);
  }

  @Post('factors/totp')
  @ApiOperation({ summary: 'A new authenticator-app factor (inactive until a code is confirmed); the secret is shown once' })
  @ApiCreatedResponse({ type: CreatedTotpDto })
  totp(@CurrentHuman() human: HumanPrincipal, @Body() dto: FactorNameDto): Promise<CreatedTotpDto> {
    return this.factors.totpCreate(human, dto.name);
  }

  @Post('factors/totp/verify')
  @HttpCode(200)
  @ApiOperation({ summary: 'Confirm a code: activates the factor' })
  @ApiOkResponse({ type: TotpConfirmedDto })
  totpVerify(@CurrentHuman() human: HumanPrincipal, @Body() dto: TotpConfirmDto): Promise<TotpConfirmedDto> {
    return this.factors.totpConfirm(human, dto.factorId, dto.code);
  }

  @Delete('factors/:id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Remove a factor (never your last active one: 409 last_factor)' })
  @ApiNoContentResponse()
  removeFactor(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string): Promise<void> {
    return this.factors.remove(human, id);
  }
}
