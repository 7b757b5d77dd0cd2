import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import { NoControlChars } from '../../../common/validation.js';

export class AuditQuery {
  @ApiPropertyOptional() @IsOptional() @IsString() @NoControlChars() @MaxLength(64) userId?: string;
  @ApiPropertyOptional() @IsOptional() @IsString() @NoControlChars() @MaxLength(64) agentId?: string;
  @ApiPropertyOptional() @IsOptional() @IsString() @NoControlChars() @MaxLength(128) taskId?: string;
  @ApiPropertyOptional({ example: 'step_up.approved' }) @IsOptional() @IsString() @NoControlChars() @MaxLength(64) type?: string;
  @ApiPropertyOptional({ description: 'Cursor: the nextCursor of the previous page' }) @IsOptional() @IsString() @NoControlChars() @MaxLength(32) after?: string;
  @ApiPropertyOptional({ default: 50, minimum: 1, maximum: 200 }) @IsOptional() @Type(() => Number) @IsInt() @Min(1) @Max(200) limit?: number;
}

export class AuditEventDto {
  @ApiProperty() id: string;
  @ApiProperty() seq: number;
  @ApiProperty() at: string;
  @ApiProperty({ nullable: true, type: String }) requestId: string | null;
  @ApiProperty({ enum: ['operator', 'app', 'agent', 'human', 'user', 'system'] }) actorType: string;
  @ApiProperty({ nullable: true, type: String }) actorId: string | null;
  @ApiProperty({ nullable: true, type: String }) userId: string | null;
  @ApiProperty({ nullable: true, type: String }) agentId: string | null;
  @ApiProperty({ nullable: true, type: String }) model: string | null;
  @ApiProperty({ nullable: true, type: String }) taskId: string | null;
  @ApiProperty() type: string;
  @ApiProperty({ nullable: true, type: String }) action: string | null;
  @ApiProperty({ nullable: true, type: String }) resource: string | null;
  @ApiProperty({ enum: ['success', 'failure', 'denied'] }) outcome: string;
  @ApiProperty({ nullable: true, type: Number }) status: number | null;
  @ApiProperty({ nullable: true, type: String }) ip: string | null;
  @ApiPropertyOptional({ type: 'object', additionalProperties: true, description: 'What changed, e.g. agent.updated: { before, after }' }) details?: Record<string, unknown>;
  @ApiProperty() prevHash: string;
  @ApiProperty() hash: string;
}

export class AuditPageDto {
  @ApiProperty({ type: [AuditEventDto] }) events: AuditEventDto[];
  @ApiProperty({ nullable: true, type: String }) nextCursor: string | null;
}

export class AuditVerifyDto {
  @ApiProperty() valid: boolean;
  @ApiProperty() count: number;
  @ApiProperty() headHash: string;
  @ApiPropertyOptional({ description: 'The first sequence number whose event was edited, deleted or moved' }) firstBadSeq?: number;
}
