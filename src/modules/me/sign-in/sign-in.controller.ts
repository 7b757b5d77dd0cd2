import { Body, Controller, Get, HttpCode, Param, Post, Res, UseGuards } from '@nestjs/common';
import { type ApiResponseNoStatusOptions, ApiBearerAuth, ApiCreatedResponse, ApiExcludeEndpoint, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { FastifyReply } from 'fastify';
import { ClientIp } from '../../../common/net/client-ip.js';
import { CurrentApp, type AppPrincipal } from '../../../common/auth/principals.js';
import { ApiProblemResponses } from '../../../common/openapi.js';
import { sendPage } from '../../../web/html.js';
import { AppKeyGuard } from '../../apps/app-key.guard.js';
import { ApprovalCodeDto, AssertionDto } from '../../approvals/dto/approval.dto.js';
import { CreateSignInLinkDto, SignedInDto, SignInLinkDto } from '../dto/sign-in.dto.js';
import { CsrfGuard } from '../session/human-session.guard.js';
import { loginPage, signInPage } from './sign-in-page.js';
import { SignInService, type SignedIn } from './sign-in.service.js';

const OPTIONS_SCHEMA = { schema: { type: 'object', description: 'PublicKeyCredentialRequestOptionsJSON (WebAuthn Level 3)', required: ['challenge'], additionalProperties: true } } satisfies ApiResponseNoStatusOptions;

/** Sets the session cookie and answers who signed in. */
function signedIn(reply: FastifyReply, s: SignedIn): SignedInDto {
  reply.header('Set-Cookie', s.cookie);
  reply.header('Cache-Control', 'no-store');
  return { status: 'signed_in', user: s.user };
}

/** The app issues a sign-in link for one of its users. */
@ApiTags('users')
@ApiBearerAuth('appKey')
@UseGuards(AppKeyGuard)
@ApiProblemResponses(400, 401, 404)
@Controller('v1/users/:id')
export class SignInLinksController {
  constructor(private readonly signIn: SignInService) {}

  @Post('sign-in-links')
  @ApiOperation({ summary: 'A single-use link that signs the human in to their dashboard (with a passkey or TOTP code of theirs)' })
  @ApiCreatedResponse({ type: SignInLinkDto })
  create(@CurrentApp() app: AppPrincipal, @Param('id') id: string, @Body() dto: CreateSignInLinkDto): Promise<SignInLinkDto> {
    return this.signIn.createLink(app.appId, id, dto.expiresIn);
  }
}

/** The human signs in: with a link and a factor of theirs, or with a discoverable passkey. */
@ApiTags('human: sign-in')
@ApiProblemResponses(400, 403, 404, 409, 429)
@Controller()
export class SignInController {
  constructor(private readonly signIn: SignInService) {}

  @Get('me/sign-in/:token')
  @ApiExcludeEndpoint()
  async page(@Param('token') token: string, @Res() reply: FastifyReply): Promise<void> {
    await sendPage(reply, async () => signInPage(token, await this.signIn.info(token)));
  }

  @Get('me/login')
  @ApiExcludeEndpoint()
  async login(@Res() reply: FastifyReply): Promise<void> {
    await sendPage(reply, async () => loginPage());
  }

  @Post('v1/me/sign-in/:token/webauthn/options')
  @UseGuards(CsrfGuard)
  @HttpCode(200)
  @ApiOperation({ summary: "Request options for a passkey of the link's user" })
  @ApiOkResponse(OPTIONS_SCHEMA)
  linkOptions(@Param('token') token: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return this.signIn.linkWebauthnOptions(token);
  }

  @Post('v1/me/sign-in/:token/webauthn/verify')
  @UseGuards(CsrfGuard)
  @HttpCode(200)
  @ApiOperation({ summary: 'Sign in with the passkey assertion; sets the session cookie' })
  @ApiOkResponse({ type: SignedInDto })
  async linkVerify(@Param('token') token: string, @Body() dto: AssertionDto, @Res({ passthrough: true }) reply: FastifyReply): Promise<SignedInDto> {
    return signedIn(reply, await this.signIn.linkWebauthnVerify(token, dto.response));
  }

  @Post('v1/me/sign-in/:token/totp')
  @UseGuards(CsrfGuard)
  @HttpCode(200)
  @ApiOperation({ summary: 'Sign in with an authenticator-app code; sets the session cookie (5 wrong codes spend the link)' })
  @ApiOkResponse({ type: SignedInDto })
  async linkTotp(@Param('token') token: string, @Body() dto: ApprovalCodeDto, @Res({ passthrough: true }) reply: FastifyReply): Promise<SignedInDto> {
    return signedIn(reply, await this.signIn.linkTotp(token, dto.code));
  }

  @Post('v1/me/login/webauthn/options')
  @UseGuards(CsrfGuard)
  @HttpCode(200)
  @ApiOperation({ summary: 'Request options for passkey sign-in without a link (discoverable credentials: no allowCredentials)' })
  @ApiOkResponse(OPTIONS_SCHEMA)
  loginOptions(@ClientIp() ip: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return this.signIn.loginOptions(ip);
  }

  @Post('v1/me/login/webauthn/verify')
  @UseGuards(CsrfGuard)
  @HttpCode(200)
  @ApiOperation({ summary: 'Sign in with a discoverable passkey; sets the session cookie' })
  @ApiOkResponse({ type: SignedInDto })
  async loginVerify(@Body() dto: AssertionDto, @ClientIp() ip: string, @Res({ passthrough: true }) reply: FastifyReply): Promise<SignedInDto> {
    return signedIn(reply, await this.signIn.loginVerify(dto.response, ip));
  }
}
