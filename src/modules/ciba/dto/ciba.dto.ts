import { ApiProperty } from '@nestjs/swagger';

/** CIBA Core §7.3: the acknowledgement of a backchannel authentication request. */
export class BcAuthorizeResponseDto {
  @ApiProperty({ description: 'The handle to poll /oauth/token with (grant_type urn:openid:params:grant-type:ciba): single use, bound to this client' }) auth_req_id: string;
  @ApiProperty({ description: 'Seconds until the request expires' }) expires_in: number;
  @ApiProperty({ description: 'Minimum polling interval, seconds' }) interval: number;
}

/** The form parameters of `POST /oauth/bc-authorize` (OpenAPI only; parsed by CibaService). */
export const BC_AUTHORIZE_SCHEMA = {
  type: 'object',
  properties: {
    scope: { type: 'string', description: 'Space-separated; `openid` asks for an ID token; other scopes ask for a sudo grant (300 s)' },
    authorization_details: { type: 'string', description: 'JSON array of one { "type": "mfa_proxy_action", "action", "resource"?, "details"? } (RFC 9396)' },
    binding_message: { type: 'string', maxLength: 64 },
    login_hint: { type: 'string', description: "The agent's user id or its externalId" },
    requested_expiry: { type: 'string', description: 'Seconds, 60..900' },
    client_notification_token: { type: 'string', description: 'Ping mode: the bearer token of the notification to the agent’s cibaNotificationEndpoint' },
    client_id: { type: 'string' },
    client_secret: { type: 'string' },
    client_assertion_type: { type: 'string' },
    client_assertion: { type: 'string' },
  },
} as const;
