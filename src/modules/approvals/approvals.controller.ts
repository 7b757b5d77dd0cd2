import { Body, Controller, Get, HttpCode, Param, Post, Res } from '@nestjs/common';
import { ApiExcludeEndpoint, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiProblemResponses } from '../../common/openapi.js';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import type { FastifyReply } from 'fastify';
import { sendPage } from '../../web/html.js';
import { approvalPage } from './approval-page.js';
import { ApprovalsService } from './approvals.service.js';
import { ApprovalCodeDto, ApprovalDto, AssertionDto, DenyDto } from './dto/approval.dto.js';

@ApiTags('human: approvals')
@ApiNotFoundResponse({ description: 'unknown approval token' })
@ApiProblemResponses(400, 404, 409, 410, 429)
@Controller()
export class ApprovalsController {
  constructor(private readonly approvals: ApprovalsService) {}

  @Get('approve/:token')
  @ApiExcludeEndpoint()
  async page(@Param('token') token: string, @Res() reply: FastifyReply): Promise<void> {
    await sendPage(reply, async () => approvalPage(token, await this.approvals.lookup(token)));
  }

  @Get('v1/approvals/:token')
  @ApiOperation({ summary: 'What the human is asked to approve, and its status' })
  @ApiOkResponse({ type: ApprovalDto })
  lookup(@Param('token') token: string): Promise<ApprovalDto> {
    return this.approvals.lookup(token);
  }

  @Get('v1/approvals/:token/events')
  @ApiOperation({ summary: 'Live status of this one step-up as Server-Sent Events (event "status"); ends once decided' })
  @ApiOkResponse({ description: 'Server-Sent Events: event "status" with the step-up status JSON', content: { 'text/event-stream': { schema: { type: 'string' } } } })
  async events(@Param('token') token: string, @Res() reply: FastifyReply): Promise<void> {
    const s = await this.approvals.resolve(token); // 404 before the stream opens
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    await this.approvals.watch(s, {
      write: (chunk) => raw.write(chunk),
      end: () => raw.end(),
      onClose: (fn) => raw.on('close', fn),
    });
  }

  @Post('v1/approvals/:token/webauthn/options')
  @HttpCode(200)
  @ApiOperation({ summary: 'PublicKeyCredentialRequestOptionsJSON whose challenge commits to this exact request' })
  @ApiOkResponse({ schema: { type: 'object', description: 'PublicKeyCredentialRequestOptionsJSON (WebAuthn Level 3)', required: ['challenge'], additionalProperties: true } })
  webauthnOptions(@Param('token') token: string): Promise<PublicKeyCredentialRequestOptionsJSON> {
    return this.approvals.webauthnOptions(token);
  }

  @Post('v1/approvals/:token/webauthn/verify')
  @HttpCode(200)
  @ApiOperation({ summary: 'Approve with a passkey assertion' })
  @ApiOkResponse({ schema: { type: 'object', properties: { status: { type: 'string', enum: ['approved', 'denied'] } } } })
  webauthnVerify(@Param('token') token: string, @Body() dto: AssertionDto): Promise<{ status: 'approved' | 'denied' }> {
    return this.approvals.webauthnVerify(token, dto.response);
  }

  @Post('v1/approvals/:token/totp')
  @HttpCode(200)
  @ApiOperation({ summary: 'Approve with an authenticator-app code (5 wrong codes deny the request)' })
  @ApiOkResponse({ schema: { type: 'object', properties: { status: { type: 'string', enum: ['approved', 'denied'] } } } })
  totp(@Param('token') token: string, @Body() dto: ApprovalCodeDto): Promise<{ status: 'approved' | 'denied' }> {
    return this.approvals.totpApprove(token, dto.code);
  }

  @Post('v1/approvals/:token/deny')
  @HttpCode(200)
  @ApiOperation({ summary: 'Deny the request' })
  @ApiOkResponse({ schema: { type: 'object', properties: { status: { type: 'string', enum: ['approved', 'denied'] } } } })
  deny(@Param('token') token: string, @Body() dto: DenyDto): Promise<{ status: 'approved' | 'denied' }> {
    return this.approvals.deny(token, dto.reason);
  }
}
