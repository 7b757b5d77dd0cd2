import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsInt, IsObject, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength } from 'class-validator';
import { AsParsed, NoControlChars } from '../../../common/validation.js';

export class CreateEnrollmentLinkDto {
  @ApiPropertyOptional({ description: 'Seconds until the link expires (60..604800)', default: 86400 })
  @IsOptional() @IsInt() @Min(60) @Max(604800)
  expiresIn?: number;
}

export class EnrollmentLinkDto {
  @ApiProperty({ description: 'Send this URL to the human. It contains a secret; it is shown once.', example: 'http://localhost:3000/enroll/mpx_enr_...' }) url: string;
  @ApiProperty() expiresAt: string;
}

export class FactorNameDto {
  @ApiPropertyOptional({ description: 'A name the human recognises, e.g. "YubiKey" or "Phone"', maxLength: 100 })
  @IsOptional() @IsString() @NoControlChars() @MinLength(1) @MaxLength(100)
  name?: string;
}

export class WebauthnRegistrationDto extends FactorNameDto {
  @ApiProperty({ description: 'RegistrationResponseJSON from navigator.credentials.create() (e.g. @simplewebauthn/browser startRegistration)', type: 'object', additionalProperties: true })
  @AsParsed() @IsObject()
  response: Record<string, unknown>;
}

export class FactorIdDto {
  @ApiProperty() factorId: string;
}

export class CreatedTotpDto {
  @ApiProperty() factorId: string;
  @ApiProperty({ description: 'Base32 secret (SHA1, 6 digits, 30 s). Shown once.' }) secret: string;
  @ApiProperty({ description: 'otpauth:// URI with issuer and account name' }) otpauthUri: string;
  @ApiProperty({ description: 'The URI as a QR code, SVG markup' }) qrSvg: string;
}

export class TotpConfirmDto {
  @ApiProperty() @IsString() @NoControlChars() @MaxLength(64)
  factorId: string;

  @ApiProperty({ example: '123456' }) @IsString() @Matches(/^\d{6}$/, { message: 'code must be 6 digits' })
  code: string;
}

export class TotpConfirmedDto {
  @ApiProperty() factorId: string;
  @ApiProperty({ enum: ['active'] }) status: 'active';
}

export class EnrollmentInfoDto {
  @ApiProperty({ type: 'object', properties: { name: { type: 'string' } } }) app: { name: string };
  @ApiProperty({ type: 'object', properties: { displayName: { type: 'string' } } }) user: { displayName: string };
  @ApiProperty() expiresAt: string;
  @ApiProperty({ type: 'array', items: { type: 'object' } }) factors: { id: string; type: string; name: string; createdAt: string }[];
}
