import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import {
  ArrayMaxSize, ArrayMinSize, IsArray, IsIn, IsInt, IsObject, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength,
} from 'class-validator';
import { SCOPE_PATTERN } from '../../../common/scopes.js';
import { AsParsed, NoControlChars } from '../../../common/validation.js';

const BOUNDARY_MESSAGE = 'each boundary must match [a-z0-9_.:-]{1,64} with an optional * suffix';

export class JwksDto {
  @ApiProperty({ description: 'Public JWKs (EC P-256, Ed25519 or RSA ≥ 2048) for private_key_jwt', type: 'array', items: { type: 'object' } })
  @IsArray() @ArrayMinSize(1) @ArrayMaxSize(10) @IsObject({ each: true })
  keys: Record<string, unknown>[];
}

export class CreateAgentDto {
  @ApiProperty({ example: 'usr_...' })
  @IsString() @NoControlChars() @MaxLength(64)
  userId: string;

  @ApiProperty({ example: 'research-bot', maxLength: 200 })
  @IsString() @NoControlChars() @MinLength(1) @MaxLength(200)
  name: string;

  @ApiProperty({ description: 'The model that drives the agent; recorded in tokens and the audit trail.', example: 'claude-sonnet-4.5' })
  @IsString() @NoControlChars() @MinLength(1) @MaxLength(200)
  model: string;

  @ApiProperty({ type: [String], example: ['research:read', 'files:*'], description: 'Scopes the agent may ever hold.' })
  @IsArray() @ArrayMaxSize(100) @IsString({ each: true }) @Matches(SCOPE_PATTERN, { each: true, message: BOUNDARY_MESSAGE })
  permissionBoundaries: string[];

  @ApiPropertyOptional({ description: 'Agent token lifetime in seconds (60..3600)', default: 300 })
  @IsOptional() @IsInt() @Min(60) @Max(3600)
  tokenTtl?: number;

  @ApiPropertyOptional({ description: 'Requests per minute on agent endpoints', default: 600 })
  @IsOptional() @IsInt() @Min(1) @Max(1_000_000)
  rateLimitPerMinute?: number;

  @ApiPropertyOptional({ type: JwksDto, description: 'Public keys for private_key_jwt; when given, no client secret is issued.' })
  @IsOptional() @AsParsed() @IsObject()
  jwks?: JwksDto;

  @ApiPropertyOptional({ description: 'CIBA ping mode: where `{ auth_req_id }` is POSTed once a backchannel request is decided (https; loopback only when WEBHOOK_ALLOW_PRIVATE)', maxLength: 2048 })
  @IsOptional() @IsString() @NoControlChars() @MaxLength(2048)
  cibaNotificationEndpoint?: string;
}

export class UpdateAgentDto {
  @ApiPropertyOptional() @IsOptional() @IsString() @NoControlChars() @MinLength(1) @MaxLength(200)
  name?: string;

  @ApiPropertyOptional({ type: [String] })
  @IsOptional() @IsArray() @ArrayMaxSize(100) @IsString({ each: true }) @Matches(SCOPE_PATTERN, { each: true, message: BOUNDARY_MESSAGE })
  permissionBoundaries?: string[];

  @ApiPropertyOptional({ enum: ['active', 'suspended'] })
  @IsOptional() @IsIn(['active', 'suspended'])
  status?: 'active' | 'suspended';

  @ApiPropertyOptional({ nullable: true, type: String, description: 'CIBA ping endpoint; null removes it', maxLength: 2048 })
  @IsOptional() @IsString() @NoControlChars() @MaxLength(2048)
  cibaNotificationEndpoint?: string | null;
}

export class ListAgentsQuery {
  @ApiPropertyOptional({ description: 'Only the agents of this user' })
  @IsOptional() @IsString() @MaxLength(64)
  userId?: string;
}

export class AgentDto {
  @ApiProperty({ example: 'agt_...' }) id: string;
  @ApiProperty() userId: string;
  @ApiProperty() name: string;
  @ApiProperty() model: string;
  @ApiProperty({ type: [String] }) permissionBoundaries: string[];
  @ApiProperty({ enum: ['active', 'suspended'] }) status: 'active' | 'suspended' | 'revoked';
  @ApiProperty() tokenTtl: number;
  @ApiProperty() rateLimitPerMinute: number;
  @ApiProperty({ enum: ['client_secret', 'private_key_jwt'] }) authMethod: 'client_secret' | 'private_key_jwt';
  @ApiProperty({ nullable: true, type: String, description: 'CIBA ping endpoint' }) cibaNotificationEndpoint: string | null;
  @ApiProperty() createdAt: string;
}

export class CreatedAgentDto extends AgentDto {
  @ApiPropertyOptional({ description: 'Client secret for /oauth/token. Shown once; only its hash is stored.', example: 'mpx_sec_...' })
  clientSecret?: string;
}

export class AgentSecretDto {
  @ApiProperty({ description: 'The new client secret. Shown once; the previous one stops working.' }) clientSecret: string;
}
