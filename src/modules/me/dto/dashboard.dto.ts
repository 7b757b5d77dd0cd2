import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsIn, IsInt, IsOptional, IsString, Matches, Max, Min } from 'class-validator';
import { ApprovalDto } from '../../approvals/dto/approval.dto.js';

export class StepUpsQueryDto {
  @ApiPropertyOptional({ enum: ['pending', 'all'], default: 'pending' }) @IsOptional() @IsIn(['pending', 'all']) status?: 'pending' | 'all';
}

export class MeStepUpDto extends ApprovalDto {
  @ApiPropertyOptional() decidedAt?: string;
}

export class MeStepUpsDto {
  @ApiProperty({ type: [MeStepUpDto], description: 'Newest first; everything the approval page shows' }) stepUps: MeStepUpDto[];
}

export class MeAgentDto {
  @ApiProperty() id: string;
  @ApiProperty() name: string;
  @ApiProperty() model: string;
  @ApiProperty({ enum: ['active', 'suspended'] }) status: string;
  @ApiProperty({ type: [String] }) permissionBoundaries: string[];
  @ApiProperty({ nullable: true, type: String, description: 'Its last request (from the audit trail)' }) lastUsedAt: string | null;
}

export class MeAgentsDto {
  @ApiProperty({ type: [MeAgentDto] }) agents: MeAgentDto[];
}

export class SudoGrantDto {
  @ApiProperty() stepUpId: string;
  @ApiProperty() agentId: string;
  @ApiProperty({ type: [String] }) scopes: string[];
  @ApiProperty() expiresAt: string;
}

export class MeTaskDto {
  @ApiProperty({ example: 'tsk_...' }) id: string;
  @ApiProperty({ description: "The agent's own task id" }) taskId: string;
  @ApiProperty() agentId: string;
  @ApiProperty({ type: [String] }) scopes: string[];
  @ApiProperty() expiresAt: string;
}

export class MeGrantsDto {
  @ApiProperty({ type: [SudoGrantDto] }) sudo: SudoGrantDto[];
  @ApiProperty({ type: [MeTaskDto] }) tasks: MeTaskDto[];
}

export class ActivityQueryDto {
  @ApiPropertyOptional({ description: 'Cursor: the nextCursor of the previous page' }) @IsOptional() @IsString() @Matches(/^\d{1,15}$/, { message: 'after must be a cursor returned as nextCursor' }) after?: string;
  @ApiPropertyOptional({ default: 50, minimum: 1, maximum: 200 }) @IsOptional() @Type(() => Number) @IsInt() @Min(1) @Max(200) limit?: number;
}

export class MeFactorDto {
  @ApiProperty() id: string;
  @ApiProperty({ enum: ['webauthn', 'totp'] }) type: string;
  @ApiProperty() name: string;
  @ApiProperty() createdAt: string;
  @ApiProperty({ nullable: true, type: String }) lastUsedAt: string | null;
}

export class MeFactorsDto {
  @ApiProperty({ type: [MeFactorDto] }) factors: MeFactorDto[];
}
