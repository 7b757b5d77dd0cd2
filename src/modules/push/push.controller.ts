import { Body, Controller, Delete, Get, Header, HttpCode, Param, Post, UseGuards } from '@nestjs/common';
import { ApiCreatedResponse, ApiNoContentResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentHuman, type HumanPrincipal } from '../../common/auth/human.js';
import { ApiProblemResponses } from '../../common/openapi.js';
import { HumanSessionGuard } from '../me/session/human-session.guard.js';
import { CreatePushSubscriptionDto, CreatedPushSubscriptionDto, VapidPublicKeyDto } from './dto/push.dto.js';
import { PushService } from './push.service.js';

/** The application server key browsers subscribe with (public, no credential). */
@ApiTags('human: push')
@Controller('v1/push')
export class PushController {
  constructor(private readonly push: PushService) {}

  @Get('vapid-public-key')
  @Header('Cache-Control', 'public, max-age=300')
  @ApiOperation({ summary: "The VAPID public key (RFC 8292): the browser's applicationServerKey for pushManager.subscribe" })
  @ApiOkResponse({ type: VapidPublicKeyDto })
  @ApiProblemResponses(431)
  publicKey(): VapidPublicKeyDto {
    return this.push.vapidPublicKey();
  }
}

/** The signed-in human's Web Push subscriptions (API.md v1.1); state changes need X-Requested-With: mfa-proxy. */
@ApiTags('human: push')
@UseGuards(HumanSessionGuard)
@ApiProblemResponses(400, 401, 403)
@Controller('v1/me/push-subscriptions')
export class PushSubscriptionsController {
  constructor(private readonly push: PushService) {}

  @Post()
  @ApiOperation({ summary: 'Register this browser’s push subscription (PushSubscription.toJSON()); the same endpoint again refreshes its keys' })
  @ApiCreatedResponse({ type: CreatedPushSubscriptionDto })
  @ApiProblemResponses(409)
  subscribe(@CurrentHuman() human: HumanPrincipal, @Body() dto: CreatePushSubscriptionDto): Promise<CreatedPushSubscriptionDto> {
    return this.push.subscribe(human, dto);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Remove a push subscription of mine' })
  @ApiNoContentResponse()
  @ApiProblemResponses(404)
  unsubscribe(@CurrentHuman() human: HumanPrincipal, @Param('id') id: string): Promise<void> {
    return this.push.unsubscribe(human, id);
  }
}
