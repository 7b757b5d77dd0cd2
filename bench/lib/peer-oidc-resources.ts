/** The resource indicators (RFC 8707) of the oidc-provider peer: one issues JWTs, one opaque tokens. */
export const JWT_RESOURCE = 'urn:mpx-bench:jwt';
export const OPAQUE_RESOURCE = 'urn:mpx-bench:opaque';
export const PEER_SCOPE = 'files:read';
