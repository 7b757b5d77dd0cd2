import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsBoolean, IsObject, IsOptional, IsString, IsUrl, Matches, MaxLength, MinLength, ValidateIf } from 'class-validator';
import { AsParsed, NoControlChars } from '../../../common/validation.js';

const ORIGIN = /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/;
const URL_OPTIONS = { protocols: ['http', 'https'], require_protocol: true, require_tld: false };

export class ChallengeJwksDto {
  @ApiProperty({ description: 'Public JWKs', type: 'array', items: { type: 'object' } })
  keys: Record<string, unknown>[];
}

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

  @ApiPropertyOptional({ description: "(TAC) The app's resource identifier: an absolute https URL (http on loopback only when WEBHOOK_ALLOW_PRIVATE), no query or fragment, unique across apps. It is the `iss` of the app's transaction challenges and the `aud` of the tokens issued for them.", example: 'https://api.acme.example', maxLength: 512 })
  @IsOptional() @IsString() @NoControlChars() @MaxLength(512)
  resource?: string;

  @ApiPropertyOptional({ type: ChallengeJwksDto, description: '(TAC) Public keys (EC P-256, Ed25519 or RSA ≥ 2048; at most 10, 16 KiB) with which the app signs transaction challenges. Private key members are refused.' })
  @IsOptional() @AsParsed() @IsObject()
  challengeJwks?: ChallengeJwksDto;
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

  @ApiPropertyOptional({ description: "(TAC) The app's resource identifier: an absolute https URL (http on loopback only when WEBHOOK_ALLOW_PRIVATE), no query or fragment, unique across apps. It is the `iss` of the app's transaction challenges and the `aud` of the tokens issued for them.", example: 'https://api.acme.example', maxLength: 512, nullable: true, type: String })
  @IsOptional() @ValidateIf((_, v) => v !== null) @IsString() @NoControlChars() @MaxLength(512)
  resource?: string | null;

  @ApiPropertyOptional({ type: ChallengeJwksDto, description: '(TAC) Public keys (EC P-256, Ed25519 or RSA ≥ 2048; at most 10, 16 KiB) with which the app signs transaction challenges. Private key members are refused.', nullable: true })
  @IsOptional() @ValidateIf((_, v) => v !== null) @AsParsed() @IsObject()
  challengeJwks?: ChallengeJwksDto | null;
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
  @ApiProperty({ nullable: true, type: String, description: '(TAC) iss of its transaction challenges, aud of their tokens' }) resource: string | null;
  @ApiProperty({ nullable: true, type: ChallengeJwksDto }) challengeJwks: ChallengeJwksDto | null;
  @ApiProperty({ type: [ApiKeySummaryDto] }) apiKeys: ApiKeySummaryDto[];
  @ApiProperty() createdAt: string;
}

export class CreatedAppDto {
  @ApiProperty() id: string;
  @ApiProperty() name: string;
  @ApiProperty({ nullable: true, type: String }) webhookUrl: string | null;
  @ApiProperty({ type: [String] }) origins: string[];
  @ApiProperty() approvalUrlToAgent: boolean;
  @ApiProperty({ nullable: true, type: String }) resource: string | null;
  @ApiProperty({ nullable: true, type: ChallengeJwksDto }) challengeJwks: ChallengeJwksDto | null;
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
