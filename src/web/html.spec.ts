import { describe, expect, it } from 'vitest';
import { escapeHtml as sut } from './html.js';

const shown = (cp: number) => `[U+${cp.toString(16).toUpperCase().padStart(4, '0')}]`;
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe(sut.name, () => {
  describe('markup and controls', () => {
    it('escapes the HTML-significant characters', () => {
      expect(sut(`<a href="x" onclick='y'>\`&</a>`)).toBe('&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&#96;&amp;&lt;/a&gt;');
    });

    it('replaces C0 controls (but tab, LF, CR), DEL and C1 controls with U+FFFD', () => {
      for (const cp of [...range(0x00, 0x08), 0x0b, 0x0c, ...range(0x0e, 0x1f), 0x7f, ...range(0x80, 0x9f)]) {
        expect(sut(`a${String.fromCodePoint(cp)}b`), shown(cp)).toBe('a\uFFFDb');
      }
      expect(sut('a\tb\nc\rd')).toBe('a\tb\nc\rd');
    });

    it('prints null and undefined as nothing and other values as text', () => {
      expect(sut(null)).toBe('');
      expect(sut(undefined)).toBe('');
      expect(sut(42)).toBe('42');
    });
  });

  describe('invisible characters', () => {
    it('shows the ones named in the issue as [U+XXXX], astral ones with their full hex', () => {
      expect(sut('a\u{E0041}\u{E0000}\u{E007F}b')).toBe('a[U+E0041][U+E0000][U+E007F]b');
      expect(sut('pay\u2060pal')).toBe('pay[U+2060]pal');
      expect(sut('soft\u00ADhyphen')).toBe('soft[U+00AD]hyphen');
      expect(sut('report\u202Efdp.exe')).toBe('report[U+202E]fdp.exe');
    });

    it('shows every character of general category Cf', () => {
      const cf = /^\p{Cf}$/u;
      let count = 0;
      for (let cp = 0; cp <= 0x10ffff; cp++) {
        if (cp >= 0xd800 && cp <= 0xdfff) continue;
        const c = String.fromCodePoint(cp);
        if (!cf.test(c)) continue;
        count++;
        expect(sut(`x${c}y`), shown(cp)).toBe(`x${shown(cp)}y`);
      }
      // Unicode 15/16 has about 170 Cf code points; a regex that matched nothing would pass vacuously.
      expect(count).toBeGreaterThan(150);
    });

    it('shows the whole tag block (U+E0000–U+E007F), assigned or not', () => {
      for (const cp of range(0xe0000, 0xe007f)) expect(sut(String.fromCodePoint(cp)), shown(cp)).toBe(shown(cp));
    });

    it('shows bidi controls', () => {
      for (const cp of [0x061c, 0x200e, 0x200f, ...range(0x202a, 0x202e), ...range(0x2066, 0x2069)]) {
        expect(sut(String.fromCodePoint(cp)), shown(cp)).toBe(shown(cp));
      }
    });

    it('shows line/paragraph separators, Hangul fillers and supplementary variation selectors', () => {
      for (const cp of [0x2028, 0x2029, 0x115f, 0x1160, 0x3164, 0xffa0, 0xe0100, 0xe01ef]) {
        expect(sut(`a${String.fromCodePoint(cp)}b`), shown(cp)).toBe(`a${shown(cp)}b`);
      }
    });

    it('shows the default-ignorable code points outside Cf (review: U+034F, Khmer, Mongolian, the rest of the tag plane)', () => {
      for (const cp of [0x034f, 0x17b4, 0x17b5, 0x180b, 0x180c, 0x180d, 0x180f, 0xfff0, 0x1bca0, 0xe0080, 0xe0fff]) {
        expect(sut(`pay ali${String.fromCodePoint(cp)}ce`), shown(cp)).toBe(`pay ali${shown(cp)}ce`);
      }
    });

    it('shows a variation selector that does not follow an emoji (data hidden in selectors)', () => {
      expect(sut('a\uFE00\uFE0F')).toBe('a[U+FE00][U+FE0F]');
      // After an emoji, one selector picks its presentation; a second one hides data.
      expect(sut('\u2764\uFE0F\uFE0E')).toBe('\u2764\uFE0F[U+FE0E]');
    });
  });

  describe('ordinary text', () => {
    it('leaves letters with accents, other scripts, combining marks and emoji unchanged', () => {
      const text = 'Héllo wörld — café, naïve, Ångström, e\u0301, Ελληνικά, русский, 日本語, العربية, עברית, हिन्दी, 😀 👍🏽 ❤️ 1️⃣ 🇫🇷 €½ ‘quotes’';
      expect(sut(text)).toBe(text);
    });
  });
});
