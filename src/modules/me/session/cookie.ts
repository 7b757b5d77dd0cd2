/** The session cookie (API.md v1.1): its name and attributes, and reading it from a request. */

/** RFC 6265bis §4.1.3.2: `__Host-` requires Secure, Path=/ and no Domain, so only this origin can set it. */
export const cookieName = (secure: boolean) => (secure ? '__Host-mpx_session' : 'mpx_session');

/**
 * Set-Cookie for a new session: HttpOnly (no script reads it), SameSite=Strict (no cross-site
 * request carries it), Path=/, and under https Secure with the `__Host-` prefix. No Max-Age: a
 * browser-session cookie; the server ends it after 30 min idle or 12 h in any case.
 */
export function sessionCookie(value: string, secure: boolean): string {
  return [`${cookieName(secure)}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', ...(secure ? ['Secure'] : [])].join('; ');
}

/** Set-Cookie that removes the session cookie. */
export function clearedCookie(secure: boolean): string {
  return [`${cookieName(secure)}=`, 'Path=/', 'Max-Age=0', 'HttpOnly', 'SameSite=Strict', ...(secure ? ['Secure'] : [])].join('; ');
}

/** Session cookie values looked up per request at most (a stale or planted cookie beside the real one). */
export const MAX_SESSION_COOKIES = 5;

/**
 * The values of the session cookie in a Cookie header (RFC 6265 §5.4), in order: every one, since a
 * browser may send a stale or planted one (another path, a sibling domain) before the real one.
 * Bounded: the first MAX_SESSION_COOKIES values, each non-empty and never more than 256 characters.
 */
export function readSessionCookies(header: string | string[] | undefined, secure: boolean): string[] {
  const raw = Array.isArray(header) ? header.join('; ') : header;
  if (!raw || raw.length > 8192) return [];
  const name = cookieName(secure);
  const values: string[] = [];
  for (const part of raw.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    if (values.length === MAX_SESSION_COOKIES) break;
    const value = part.slice(eq + 1).trim();
    values.push(value);
  }
  return values.filter((v) => v.length > 0 && v.length <= 256);
}
