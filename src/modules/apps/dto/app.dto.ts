import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsBoolean, IsOptional, IsString, IsUrl, Matches, MaxLength, MinLength, ValidateIf } from 'class-validator';
import { NoControlChars } from '../../../common/validation.js';

const ORIGIN = /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/;
const URL_OPTIONS = { protocols: ['http', 'https'], require_protocol: true, require_tld: false };

export class CreateAppDto {
  @ApiProperty({ example: 'Acme Research', maxLength: 200 })
  @IsString() @NoControlChars() @MinLength(1) @MaxLength(200)
  name: string;

  @ApiPropertyOptional({ description: 'Where events are POSTed (Standard Webhooks).', example: 'https://acme.example/hooks/mfa-proxy' })
  @IsOptional() @IsString() @MaxLength(2048) @NoControlChars() @IsUrl(URL_OPTIONS)
  webhookUrl?: string;

  @ApiPropertyOptional({ description: 'Extra WebAuthn origins accepted for this app, e.g. https://app.acme.example', type: [String] })
  @IsOptional() @IsArray() @ArrayMaxSize(20) @IsString({ each: true }) @Matches(ORIGIN, { each: true, message: 'each origin must be scheme://host[:port]' })
  origins?: string[];

  @ApiPropertyOptional({ description: 'Give the approval URL (a capability of the human) to the agent in its step-up response too. Default false: it reaches the human through the app (step_up.created), the dashboard and Web Push only.', default: false })
  @IsOptional() @IsBoolean()
  approvalUrlToAgent?: boolean;
}

export class UpdateAppDto {
  @ApiPropertyOptional({ maxLength: 200 })
  @IsOptional() @IsString() @NoControlChars() @MinLength(1) @MaxLength(200)
  name?: string;

  @ApiPropertyOptional({ description: 'New webhook URL; null removes it.', nullable: true, type: String })
  @IsOptional() @ValidateIf((_, v) => v !== null) @IsString() @MaxLength(2048) @NoControlChars() @IsUrl(URL_OPTIONS)
  webhookUrl?: string | null;

  @ApiPropertyOptional({ type: [String] })
  @IsOptional() @IsArray() @ArrayMaxSize(20) @IsString({ each: true }) @Matches(ORIGIN, { each: true, message: 'each origin must be scheme://host[:port]' })
  origins?: string[];

  @ApiPropertyOptional({ description: 'Give the approval URL (a capability of the human) to the agent in its step-up response too. Default false: it reaches the human through the app (step_up.created), the dashboard and Web Push only.', default: false })
  @IsOptional() @IsBoolean()
  approvalUrlToAgent?: boolean;
}

export class ApiKeySummaryDto {
  @ApiProperty({ example: 'key_3pQ...' }) id: string;
  @ApiProperty() createdAt: string;
}

export class AppDto {
  @ApiProperty({ example: 'app_Zb7...' }) id: string;
  @ApiProperty() name: string;
  @ApiProperty({ nullable: true, type: String }) webhookUrl: string | null;
  @ApiProperty({ type: [String] }) origins: string[];
  @ApiProperty() approvalUrlToAgent: boolean;
  @ApiProperty({ type: [ApiKeySummaryDto] }) apiKeys: ApiKeySummaryDto[];
  @ApiProperty() createdAt: string;
}

export class CreatedAppDto {
  @ApiProperty() id: string;
  @ApiProperty() name: string;
  @ApiProperty({ nullable: true, type: String }) webhookUrl: string | null;
  @ApiProperty({ type: [String] }) origins: string[];
  @ApiProperty() approvalUrlToAgent: boolean;
  @ApiProperty({ description: 'The app API key. Shown once; only its hash is stored.', example: 'mpx_app_...' }) apiKey: string;
  @ApiProperty({ description: 'Id of the API key, for deleting it later.' }) apiKeyId: string;
  @ApiProperty({ description: 'Standard Webhooks signing secret. Shown once.', example: 'whsec_...' }) webhookSecret: string;
  @ApiProperty() createdAt: string;
}

export class CreatedApiKeyDto {
  @ApiProperty() id: string;
  @ApiProperty({ description: 'The new API key. Shown once; only its hash is stored.' }) apiKey: string;
  @ApiProperty() createdAt: string;
}
