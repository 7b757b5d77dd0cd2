import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** C0 controls but tab, LF and CR; DEL; C1 controls. */
const CONTROLS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/g;

/**
 * Characters a reader cannot see, shown as `[U+XXXX]`: every format character (general category Cf:
 * bidi controls, zero-width characters, word joiner, soft hyphen, tags…) and every default-ignorable
 * code point (what renderers draw as nothing: the combining grapheme joiner, Mongolian and Khmer
 * invisible letters, Hangul fillers, the whole tag block U+E0000–E0FFF, variation selectors…), plus
 * the line and paragraph separators. One exception: a variation selector U+FE00–FE0F right after an
 * emoji picks its presentation (as in ❤️) and stays; elsewhere it is a known way to hide data.
 */
const INVISIBLE = /(?![\uFE00-\uFE0F])[\p{Cf}\p{Default_Ignorable_Code_Point}\u2028\u2029]|(?<!\p{Emoji})[\uFE00-\uFE0F]/gu;

const codePointLabel = (c: string) => `[U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}]`;

/**
 * Escapes text for HTML element content and quoted attributes. Invisible characters are made
 * visible, so text written by an agent cannot hide, reorder or smuggle what the human reads.
 */
export function escapeHtml(value: unknown): string {
  return String(value ?? '')
    .replace(/[&<>"'`]/g, (c) => ESCAPES[c])
    .replace(CONTROLS, '\uFFFD')
    .replace(INVISIBLE, codePointLabel);
}

/** Headers of every human-facing page: strict CSP (no inline script or style), no framing, no referrer. */
export const PAGE_HEADERS: Record<string, string> = {
  'Content-Type': 'text/html; charset=utf-8',
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  'Cache-Control': 'no-store',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
};

/** A page: `attrs` go on <body>; `styles` are extra same-origin stylesheets after page.css. */
export function layout(title: string, body: string, attrs = '', styles: string[] = []): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/page.css">
${styles.map((href) => `<link rel="stylesheet" href="${escapeHtml(href)}">\n`).join('')}</head>
<body${attrs}>
<main>
${body}
</main>
</body>
</html>`;
}

/** The project root (where package.json is), from src/ under vitest or dist/src/ when built. */
export function projectRoot(): string {
  let dir = import.meta.dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found');
    dir = up;
  }
  return dir;
}

export function readAsset(relative: string): string {
  return readFileSync(join(projectRoot(), relative), 'utf8');
}

/** Sends a page with PAGE_HEADERS; a `not_found` while rendering becomes the "link not valid" page. */
export async function sendPage(reply: { headers(h: Record<string, string>): unknown; status(n: number): { send(body: string): unknown } }, render: () => Promise<string>): Promise<void> {
  reply.headers(PAGE_HEADERS);
  try {
    reply.status(200).send(await render());
  } catch (err) {
    if ((err as { code?: string }).code !== 'not_found') throw err;
    reply.status(404).send(layout('Link not valid', `<h1>This link is not valid</h1><p>It may have expired or been used up. Ask the app that sent it for a new one.</p>`));
  }
}
