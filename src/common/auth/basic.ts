/** Thrown for `Authorization: Basic` credentials that cannot be decoded. */
export class MalformedBasicError extends Error {
  constructor() {
    super('malformed Basic credentials');
    this.name = 'MalformedBasicError';
  }
}

/**
 * `Authorization: Basic` client credentials (RFC 6749 §2.3.1: id and secret are
 * form-urlencoded before base64, so `+` is a space and `%XX` an escape). Null when the header
 * is absent or another scheme; MalformedBasicError when it is Basic but undecodable.
 */
export function parseBasic(header: string | undefined): { id: string; secret: string } | null {
  if (!header || !/^basic /i.test(header)) return null;
  const encoded = header.slice(6).trim();
  if (encoded.length > 8192) throw new MalformedBasicError();
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw new MalformedBasicError();
  const form = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
  try {
    return { id: form(decoded.slice(0, colon)), secret: form(decoded.slice(colon + 1)) };
  } catch {
    throw new MalformedBasicError();
  }
}
