import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsObject, IsOptional, IsString, Matches, MaxLength, MinLength } from 'class-validator';
import { AsParsed, NoControlChars } from '../../../common/validation.js';

export class AssertionDto {
  @ApiProperty({ description: 'AuthenticationResponseJSON from navigator.credentials.get()', type: 'object', additionalProperties: true })
  @AsParsed() @IsObject()
  response: Record<string, unknown>;
}

export class ApprovalCodeDto {
  @ApiProperty({ example: '123456' }) @IsString() @Matches(/^\d{6}$/, { message: 'code must be 6 digits' })
  code: string;
}

export class DenyDto {
  @ApiPropertyOptional({ maxLength: 200 }) @IsOptional() @IsString() @NoControlChars() @MinLength(1) @MaxLength(200)
  reason?: string;
}

/** (TAC) The app-signed transaction challenge behind a step-up: what it describes is the app's, not the agent's. */
export class TransactionChallengeDto {
  @ApiProperty({ description: 'Always "app": action, resource and details of this request come from a challenge the app signed' }) describedBy: 'app';
  @ApiProperty({ description: "The app's resource that signed the challenge (its iss)" }) issuer: string;
  @ApiProperty({ description: 'The transaction id' }) txn: string;
  @ApiProperty({ description: "The app's reason (the challenge's `reason`), written by the app" }) reason: string;
}

export class ApprovalDto {
  @ApiProperty() id: string;
  @ApiProperty({ enum: ['pending', 'approved', 'denied', 'expired', 'cancelled'] }) status: string;
  @ApiProperty() app: { name: string };
  @ApiProperty() agent: { id: string; name: string; model: string };
  @ApiProperty() user: { displayName: string };
  @ApiProperty() action: string;
  @ApiProperty({ nullable: true, type: String }) resource: string | null;
  @ApiProperty({ type: 'object', additionalProperties: true }) details: Record<string, unknown>;
  @ApiProperty() detailsHash: string;
  @ApiProperty({ nullable: true, type: String, description: 'Written by the agent' }) bindingMessage: string | null;
  @ApiProperty() bindingCode: string;
  @ApiProperty({ nullable: true, type: String }) taskId: string | null;
  @ApiProperty({ type: [String] }) methods: string[];
  @ApiProperty() expiresAt: string;
  @ApiPropertyOptional() grant?: { type: string; scopes?: string[]; duration?: number };
  @ApiPropertyOptional() reason?: string;
  @ApiPropertyOptional({ type: TransactionChallengeDto, description: '(TAC) Present when the request comes from an app-signed transaction challenge' }) transactionChallenge?: TransactionChallengeDto;
}
