import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsInt, IsObject, IsOptional, IsString, IsUrl, Matches, Max, MaxLength, Min, MinLength } from 'class-validator';
import { AsParsed, NoControlChars } from '../../../common/validation.js';

export class CreateTaskDto {
  @ApiProperty({ description: 'The agent’s own id for the task; becomes task_id of its tokens', example: 'research-2026-11-28' })
  @IsString() @Matches(/^[A-Za-z0-9._:/-]{1,128}$/, { message: 'taskId must match [A-Za-z0-9._:/-]{1,128}' })
  taskId: string;

  @ApiPropertyOptional({ maxLength: 500 }) @IsOptional() @IsString() @NoControlChars() @MaxLength(500)
  description?: string;

  @ApiProperty({ type: [String], description: 'Scopes of the worker’s tokens, within the agent’s boundaries' })
  @IsArray() @ArrayMinSize(1) @ArrayMaxSize(50) @IsString({ each: true }) @Matches(/^[a-z0-9_.:-]{1,64}$/, { each: true })
  scopes: string[];

  @ApiPropertyOptional({ description: 'Seconds (300..86400)', default: 28800 }) @IsOptional() @IsInt() @Min(300) @Max(86400)
  maxDuration?: number;

  @ApiProperty({ description: 'Public JWK of the worker (EC P-256 or Ed25519)', type: 'object', additionalProperties: true })
  @AsParsed() @IsObject()
  workerJwk: Record<string, unknown>;
}

export class TaskDto {
  @ApiProperty({ example: 'tsk_...' }) id: string;
  @ApiProperty() taskId: string;
  @ApiProperty({ enum: ['active', 'ended'] }) status: string;
  @ApiProperty({ type: [String] }) scopes: string[];
  @ApiProperty() expiresAt: string;
  @ApiPropertyOptional() endReason?: string;
}

export class CreateConnectionDto {
  @ApiProperty({ example: 'google-drive', description: 'Unique per app; a worker reaches the connection through the scope `connection:<name>`', pattern: '^[a-z0-9_.-]{1,48}$' })
  @IsString() @Matches(/^[a-z0-9_.-]{1,48}$/, { message: 'name must match [a-z0-9_.-]{1,48}' })
  name: string;
  @ApiProperty({ example: 'https://oauth.example.com/token' }) @IsString() @NoControlChars() @MaxLength(2048) @IsUrl({ protocols: ['http', 'https'], require_protocol: true, require_tld: false })
  tokenEndpoint: string;
  @ApiProperty() @IsString() @NoControlChars() @MinLength(1) @MaxLength(512) clientId: string;
  @ApiProperty({ description: 'Stored encrypted; never returned' }) @IsString() @MinLength(1) @MaxLength(2048) clientSecret: string;
  @ApiPropertyOptional({ type: [String] }) @IsOptional() @IsArray() @ArrayMaxSize(50) @IsString({ each: true }) @NoControlChars({ each: true }) @MaxLength(256, { each: true }) scopes?: string[];
}

export class DepositRefreshTokenDto {
  @ApiProperty({ description: 'The user’s upstream refresh token; stored encrypted, bound to this user and connection, never returned' })
  @IsString() @MinLength(1) @MaxLength(8192)
  refreshToken: string;
}
