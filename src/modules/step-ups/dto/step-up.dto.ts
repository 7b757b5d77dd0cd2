import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize, ArrayMinSize, ArrayUnique, IsArray, IsIn, IsInt, IsObject, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength, ValidateNested,
} from 'class-validator';
import { AsParsed, NoControlChars } from '../../../common/validation.js';

const ACTION = /^[a-z0-9_.:-]{1,64}$/;

export class GrantDto {
  @ApiProperty({ enum: ['token', 'sudo'] }) @IsIn(['token', 'sudo'])
  type: 'token' | 'sudo';

  @ApiPropertyOptional({ type: [String], description: 'sudo: scopes to add, within the agent’s boundaries' })
  @IsOptional() @IsArray() @ArrayMinSize(1) @ArrayMaxSize(50) @IsString({ each: true }) @Matches(ACTION, { each: true, message: 'each scope must match [a-z0-9_.:-]{1,64}' })
  scopes?: string[];

  @ApiPropertyOptional({ description: 'sudo: seconds (60..900)', default: 300 })
  @IsOptional() @IsInt() @Min(60) @Max(900)
  duration?: number;
}

export class CreateStepUpDto {
  @ApiProperty({ example: 'files:delete', description: 'A scope string within the agent’s permission boundaries' })
  @IsString() @Matches(ACTION, { message: 'action must match [a-z0-9_.:-]{1,64}' })
  action: string;

  @ApiPropertyOptional({ example: 'drive://reports/q3.pdf', maxLength: 512 })
  @IsOptional() @IsString() @NoControlChars() @MinLength(1) @MaxLength(512)
  resource?: string;

  @ApiPropertyOptional({ type: 'object', additionalProperties: true, description: 'Shown to the human; up to 8 KiB as JSON' })
  @IsOptional() @AsParsed() @IsObject()
  details?: Record<string, unknown>;

  @ApiPropertyOptional({ maxLength: 64, description: 'Short text shown to the human (CIBA binding_message), marked as written by the agent' })
  @IsOptional() @IsString() @NoControlChars() @MinLength(1) @MaxLength(64)
  bindingMessage?: string;

  @ApiPropertyOptional({ type: [String], enum: ['webauthn', 'totp'] })
  @IsOptional() @IsArray() @ArrayMinSize(1) @ArrayUnique() @IsIn(['webauthn', 'totp'], { each: true })
  methods?: ('webauthn' | 'totp')[];

  @ApiPropertyOptional({ description: 'Seconds the human has to decide (60..900)', default: 300 })
  @IsOptional() @IsInt() @Min(60) @Max(900)
  expiresIn?: number;

  @ApiPropertyOptional({ type: GrantDto })
  @IsOptional() @IsObject() @ValidateNested() @Type(() => GrantDto)
  grant?: GrantDto;
}

export class StepUpQuery {
  @ApiPropertyOptional({ description: 'Long-poll up to this many seconds (0..30) for a change of status' })
  @IsOptional() @Type(() => Number) @IsInt() @Min(0) @Max(30)
  wait?: number;
}

export class CreatedStepUpDto {
  @ApiProperty() id: string;
  @ApiProperty({ enum: ['pending'] }) status: string;
  @ApiProperty() action: string;
  @ApiProperty({ nullable: true, type: String }) resource: string | null;
  @ApiProperty() detailsHash: string;
  @ApiProperty({ description: 'Show this to the human too: they see the same code on the approval page' }) bindingCode: string;
  @ApiPropertyOptional({ description: 'The human’s approval page. Only when the app set approvalUrlToAgent (or for an app-initiated step-up); otherwise it reaches the human through the app (step_up.created)' }) approvalUrl?: string;
  @ApiProperty() expiresAt: string;
  @ApiProperty({ description: 'Minimum polling interval, seconds' }) interval: number;
}

export class StepUpDto {
  @ApiProperty() id: string;
  @ApiProperty({ enum: ['pending', 'approved', 'denied', 'expired', 'cancelled'] }) status: string;
  @ApiProperty() action: string;
  @ApiProperty({ nullable: true, type: String }) resource: string | null;
  @ApiProperty() detailsHash: string;
  @ApiProperty() expiresAt: string;
  @ApiPropertyOptional() decidedAt?: string;
  @ApiPropertyOptional({ enum: ['webauthn', 'totp'] }) method?: string;
  @ApiPropertyOptional() reason?: string;
  @ApiPropertyOptional({ description: 'The single-use MFA-proxy token: in the first response after approval only' }) mfaProxyToken?: string;
  @ApiPropertyOptional({ description: 'Sudo grant: the elevated agent token, once' }) sudoToken?: string;
  @ApiPropertyOptional() sudoExpiresAt?: string;
  @ApiPropertyOptional({ description: 'true once the token was handed out' }) tokenIssued?: boolean;
}
