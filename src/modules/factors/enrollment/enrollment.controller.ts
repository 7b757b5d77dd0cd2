import { Body, Controller, Get, HttpCode, Param, Post, Res } from '@nestjs/common';
import { ApiCreatedResponse, ApiExcludeEndpoint, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../../common/openapi.js';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import type { FastifyReply } from 'fastify';
import { sendPage } from '../../../web/html.js';
import {
  CreatedTotpDto, EnrollmentInfoDto, FactorIdDto, FactorNameDto, TotpConfirmDto, TotpConfirmedDto, WebauthnRegistrationDto,
} from '../dto/factor.dto.js';
import { enrollmentPage } from './enrollment-page.js';
import { EnrollmentService } from './enrollment.service.js';

/** The human side of enrollment: the secret in the link is the credential. */
@ApiTags('human: enrollment')
@ApiNotFoundResponse({ description: 'unknown, expired or revoked link' })
@ApiProblemResponses(400, 404, 429)
@Controller()
export class EnrollmentController {
  constructor(private readonly enrollment: EnrollmentService) {}

  @Get('enroll/:token')
  @ApiExcludeEndpoint()
  async page(@Param('token') token: string, @Res() reply: FastifyReply): Promise<void> {
    await sendPage(reply, async () => enrollmentPage(token, await this.enrollment.info(token)));
  }

  @Get('v1/enrollment/:token')
  @ApiOperation({ summary: 'Whose enrollment this is and what is enrolled (used by the page)' })
  @ApiOkResponse({ type: EnrollmentInfoDto })
  info(@Param('token') token: string): Promise<EnrollmentInfoDto> {
    return this.enrollment.info(token);
  }

  @Post('v1/enrollment/:token/webauthn/options')
  @HttpCode(200)
  @ApiOperation({ summary: 'PublicKeyCredentialCreationOptionsJSON for registering a passkey' })
  @ApiOkResponse({ schema: { type: 'object', description: 'PublicKeyCredentialCreationOptionsJSON (WebAuthn Level 3)', required: ['challenge', 'rp', 'user', 'pubKeyCredParams'], additionalProperties: true } })
  webauthnOptions(@Param('token') token: string, @Body() dto: FactorNameDto): Promise<PublicKeyCredentialCreationOptionsJSON> {
    return this.enrollment.webauthnOptions(token, dto.name);
  }

  @Post('v1/enrollment/:token/webauthn/verify')
  @ApiOperation({ summary: 'Verify the registration and store the passkey' })
  @ApiCreatedResponse({ type: FactorIdDto })
  webauthnVerify(@Param('token') token: string, @Body() dto: WebauthnRegistrationDto): Promise<FactorIdDto> {
    return this.enrollment.webauthnVerify(token, dto.response, dto.name);
  }

  @Post('v1/enrollment/:token/totp')
  @ApiOperation({ summary: 'Create an authenticator-app factor (inactive until a code is confirmed); the secret is shown once' })
  @ApiCreatedResponse({ type: CreatedTotpDto })
  totp(@Param('token') token: string, @Body() dto: FactorNameDto): Promise<CreatedTotpDto> {
    return this.enrollment.totpCreate(token, dto.name);
  }

  @Post('v1/enrollment/:token/totp/verify')
  @HttpCode(200)
  @ApiOperation({ summary: 'Confirm a code from the authenticator app: activates the factor' })
  @ApiOkResponse({ type: TotpConfirmedDto })
  totpVerify(@Param('token') token: string, @Body() dto: TotpConfirmDto): Promise<TotpConfirmedDto> {
    return this.enrollment.totpConfirm(token, dto.factorId, dto.code);
  }
}
