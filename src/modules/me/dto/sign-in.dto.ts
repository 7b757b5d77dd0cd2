import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsInt, IsOptional, Max, Min } from 'class-validator';

export class CreateSignInLinkDto {
  @ApiPropertyOptional({ description: 'Seconds until the link expires (60..3600)', default: 600 })
  @IsOptional() @IsInt() @Min(60) @Max(3600)
  expiresIn?: number;
}

export class SignInLinkDto {
  @ApiProperty({ description: 'Send this URL to the human: single use, it contains a secret and is shown once.', example: 'http://localhost:3000/me/sign-in/mpx_sin_...' }) url: string;
  @ApiProperty() expiresAt: string;
}

export class SignedInDto {
  @ApiProperty({ enum: ['signed_in'] }) status: 'signed_in';
  @ApiProperty({ type: 'object', properties: { id: { type: 'string' }, displayName: { type: 'string' } } }) user: { id: string; displayName: string };
}
