/** One challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1): its scheme and auth-params. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/;

/**
 * Parses `WWW-Authenticate` into its challenges. Parameters are `name=token` or
 * `name="quoted string"`; a token68 (e.g. `Basic abc==`) is ignored.
 */
export function parseWwwAuthenticate(header: string | null | undefined): Challenge[] {
  const out: Challenge[] = [];
  let s = header ?? '';
  let current: Challenge | undefined;
  while (s.length) {
    s = s.replace(/^[\s,]+/, '');
    const name = TOKEN.exec(s)?.[0];
    if (!name) break;
    s = s.slice(name.length);
    const rest = s.replace(/^\s+/, '');
    if (rest.startsWith('=') && current) {
      s = rest.slice(1).replace(/^\s+/, '');
      let value: string;
      if (s.startsWith('"')) {
        let i = 1;
        value = '';
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i++];
        }
        s = s.slice(i + 1);
      } else {
        value = TOKEN.exec(s)?.[0] ?? '';
        s = s.slice(value.length);
      }
      current.params[name.toLowerCase()] = value;
    } else {
      current = { scheme: name, params: {} };
      out.push(current);
      // a token68 right after the scheme
      const t68 = /^\s+[A-Za-z0-9\-._~+/]+=*\s*(?=,|$)/.exec(s);
      if (t68 && !/=\s*[^=\s,]/.test(t68[0])) s = s.slice(t68[0].length);
    }
  }
  return out;
}

/** The first challenge carrying `error=<error>`. */
export function findChallenge(header: string | null, error: string): Challenge | undefined {
  return parseWwwAuthenticate(header).find((c) => c.params.error === error);
}
