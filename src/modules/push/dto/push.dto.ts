import { ApiProperty } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsDefined, IsNumber, IsObject, IsOptional, IsString, MaxLength, MinLength, ValidateNested } from 'class-validator';

export class PushSubscriptionKeysDto {
  @ApiProperty({ description: "The user agent's P-256 ECDH public key, uncompressed point (65 bytes), base64url (RFC 8291 §3.1)", example: 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM' })
  @IsString() @MinLength(1) @MaxLength(100)
  p256dh: string;

  @ApiProperty({ description: 'The 16-byte authentication secret, base64url (RFC 8291 §3.2)', example: 'tBHItJI5svbpez7KI4CCXg' })
  @IsString() @MinLength(1) @MaxLength(40)
  auth: string;
}

/** What `PushSubscription.toJSON()` gives in the browser (W3C Push API), minus `expirationTime`. */
export class CreatePushSubscriptionDto {
  @ApiProperty({ description: 'The push service URL of this subscription (https; http only when WEBHOOK_ALLOW_PRIVATE)', example: 'https://fcm.googleapis.com/fcm/send/c1KrmpTuRm...', maxLength: 2048 })
  @IsString() @MinLength(1) @MaxLength(2048)
  endpoint: string;

  @ApiProperty({ type: PushSubscriptionKeysDto })
  @IsDefined() @IsObject() @ValidateNested() @Type(() => PushSubscriptionKeysDto)
  keys: PushSubscriptionKeysDto;

  @ApiProperty({ required: false, nullable: true, type: Number, description: 'Ignored (the browser’s own expiry time, usually null)' })
  @IsOptional() @IsNumber({ allowNaN: false, allowInfinity: false })
  expirationTime?: number | null;
}

export class CreatedPushSubscriptionDto {
  @ApiProperty({ example: 'psb_...' }) id: string;
}

export class VapidPublicKeyDto {
  @ApiProperty({ description: "The VAPID public key (RFC 8292 §3.2), base64url: the browser's `applicationServerKey`", example: 'BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U' })
  publicKey: string;
}
