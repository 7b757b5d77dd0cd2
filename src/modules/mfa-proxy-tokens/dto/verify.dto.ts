import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsObject, IsOptional, IsString, MaxLength, MinLength, ValidateIf } from 'class-validator';
import { z } from 'zod';
import { AsParsed, CompiledSchema, NoControlChars, schemas } from '../../../common/validation.js';

/**
 * The verify body as a compiled schema (the hot path); it accepts exactly what the decorators below
 * accept. `action` is required, unless `txn` is given (a TAC token: the transaction names the operation).
 */
export const verifyBodySchema = z
  .strictObject({
    token: schemas.string(1, 8192),
    action: schemas.text(1, 64).optional(),
    // @IsOptional() lets null through as well as a missing key.
    resource: schemas.text(0, 512).nullish(),
    details: schemas.parsedObject().nullish(),
    agentId: schemas.text(0, 64).nullish(),
    txn: schemas.text(1, 255).nullish(),
    jkt: schemas.text(1, 64).nullish(),
  })
  .refine((b) => b.action !== undefined || (b.txn !== undefined && b.txn !== null), { path: ['action'], message: 'must be a string' });

@CompiledSchema(verifyBodySchema)
export class VerifyMfaProxyTokenDto {
  @ApiProperty({ description: 'The MFA-proxy token the agent presented' })
  @IsString() @MinLength(1) @MaxLength(8192)
  token: string;

  @ApiPropertyOptional({ description: 'The action the agent is about to perform. Required, unless `txn` is given (a transaction-challenge token), where it must match the token’s authorization detail if given.', example: 'files:delete' })
  @ValidateIf((o: VerifyMfaProxyTokenDto) => o.action !== undefined || o.txn === undefined || o.txn === null) @IsString() @NoControlChars() @MinLength(1) @MaxLength(64)
  action?: string;

  @ApiPropertyOptional({ description: 'The resource, when the step-up named one' })
  @IsOptional() @IsString() @NoControlChars() @MaxLength(512)
  resource?: string;

  @ApiPropertyOptional({ type: 'object', additionalProperties: true, description: 'The details the human approved; compared by RFC 8785 hash' })
  @IsOptional() @AsParsed() @IsObject()
  details?: Record<string, unknown>;

  @ApiPropertyOptional({ description: 'The agent that presented the token' })
  @IsOptional() @IsString() @NoControlChars() @MaxLength(64)
  agentId?: string;

  @ApiPropertyOptional({ description: '(TAC) The transaction id of the challenge the app issued: verifies a transaction-challenge access token (whose `aud` is the app’s resource) instead of an MFA-proxy token. A missing or different txn is `details_mismatch`; with an MFA-proxy token (bound to no transaction) a txn is `details_mismatch` too.', maxLength: 255 })
  @IsOptional() @IsString() @NoControlChars() @MinLength(1) @MaxLength(255)
  txn?: string;

  @ApiPropertyOptional({ description: '(TAC, RFC 9449) The JWK SHA-256 thumbprint of the key whose DPoP proof the app checked when the agent presented the token. A token bound to another key is `agent_mismatch` and is not consumed.', maxLength: 64 })
  @IsOptional() @IsString() @NoControlChars() @MinLength(1) @MaxLength(64)
  jkt?: string;
}

export type VerifyReason =
  | 'malformed' | 'invalid_signature' | 'expired' | 'wrong_audience' | 'action_mismatch'
  | 'resource_mismatch' | 'details_mismatch' | 'agent_mismatch' | 'already_used' | 'revoked';

export class VerifyResultDto {
  @ApiProperty() valid: boolean;
  @ApiPropertyOptional({ enum: ['malformed', 'invalid_signature', 'expired', 'wrong_audience', 'action_mismatch', 'resource_mismatch', 'details_mismatch', 'agent_mismatch', 'already_used', 'revoked'] })
  reason?: VerifyReason;
  @ApiPropertyOptional() stepUpId?: string;
  @ApiPropertyOptional() userId?: string;
  @ApiPropertyOptional() agentId?: string;
  @ApiPropertyOptional() model?: string;
  @ApiPropertyOptional({ nullable: true, type: String }) taskId?: string | null;
  @ApiPropertyOptional() action?: string;
  @ApiPropertyOptional({ nullable: true, type: String }) resource?: string | null;
  @ApiPropertyOptional() detailsHash?: string;
  @ApiPropertyOptional({ enum: ['webauthn', 'totp'] }) method?: string;
  @ApiPropertyOptional() approvedAt?: string;
  @ApiPropertyOptional({ description: '(TAC) The transaction the token was issued for' }) txn?: string;
  @ApiPropertyOptional({ description: '(TAC, RFC 9449) Present when the token is DPoP-bound: the app must have checked a DPoP proof of this key', type: 'object', properties: { jkt: { type: 'string' } } }) cnf?: { jkt: string };
}
