import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsEmail, IsOptional, IsString, MaxLength, MinLength } from 'class-validator';
import { NoControlChars } from '../../../common/validation.js';

export class CreateUserDto {
  @ApiProperty({ description: "The app's own id for this person (unique within the app).", example: 'u-1842', maxLength: 200 })
  @IsString() @NoControlChars() @MinLength(1) @MaxLength(200)
  externalId: string;

  @ApiProperty({ example: 'Ada Lovelace', maxLength: 200 })
  @IsString() @NoControlChars() @MinLength(1) @MaxLength(200)
  displayName: string;

  @ApiPropertyOptional({ example: 'ada@example.com' })
  @IsOptional() @IsString() @NoControlChars() @MaxLength(320) @IsEmail()
  email?: string;
}

export class FactorSummaryDto {
  @ApiProperty({ example: 'fac_...' }) id: string;
  @ApiProperty({ enum: ['webauthn', 'totp'] }) type: 'webauthn' | 'totp';
  @ApiProperty({ nullable: true, type: String }) name: string | null;
  @ApiProperty() createdAt: string;
  @ApiProperty({ nullable: true, type: String }) lastUsedAt: string | null;
}

export class UserDto {
  @ApiProperty({ example: 'usr_...' }) id: string;
  @ApiProperty() externalId: string;
  @ApiProperty() displayName: string;
  @ApiPropertyOptional({ nullable: true, type: String }) email?: string | null;
  @ApiProperty() createdAt: string;
}

export class UserWithFactorsDto extends UserDto {
  @ApiProperty({ type: [FactorSummaryDto], description: 'Active factors only.' }) factors: FactorSummaryDto[];
}
