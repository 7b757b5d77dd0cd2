import { Body, Controller, HttpCode, Post, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import { CurrentApp, type AppPrincipal } from '../../common/auth/principals.js';
import { AppKeyGuard } from '../apps/app-key.guard.js';
import { VerifyMfaProxyTokenDto, VerifyResultDto } from './dto/verify.dto.js';
import { MfaProxyTokensService } from './mfa-proxy-tokens.service.js';

@ApiTags('app: verify')
@ApiBearerAuth('appKey')
@UseGuards(AppKeyGuard)
@ApiProblemResponses(400, 401, 429)
@Controller('v1/mfa-proxy-tokens')
export class MfaProxyTokensController {
  constructor(private readonly tokens: MfaProxyTokensService) {}

  @Post('verify')
  @HttpCode(200)
  @ApiOperation({ summary: 'Verify an MFA-proxy token for one exact action and consume it (exactly once across all instances)' })
  @ApiOkResponse({ type: VerifyResultDto })
  verify(@CurrentApp() app: AppPrincipal, @Body() dto: VerifyMfaProxyTokenDto): Promise<VerifyResultDto> {
    return this.tokens.verify(app.appId, dto);
  }
}
