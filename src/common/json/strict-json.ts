/**
 * Strict JSON for request bodies (API.md v1.1, Conventions; RFC 8259 with the I-JSON rules of
 * RFC 7493 §2.1–2.3): what a human approves is hashed as RFC 8785 canonical JSON, so the text must
 * mean one thing only.
 *
 * - no lone surrogates, escaped (`"\ud800"`) or raw, in strings or keys (RFC 7493 §2.1);
 * - every number a finite IEEE-754 double (`1e400` would become Infinity; RFC 7493 §2.2);
 * - no key twice in one object, however it is spelled (`"a"` and `"\u0061"`; RFC 7493 §2.3);
 * - at most `maxDepth` arrays and objects open at once, checked without recursion;
 * - no `__proto__` key and no `constructor.prototype`, as Fastify's secure-json-parse refuses.
 *
 * One linear pass over the text validates it; `JSON.parse` then builds the value, which by then
 * cannot nest deeper than `maxDepth` nor hold a duplicate or a prototype key. No npm package does
 * these checks together without recursion (secure-json-parse and bourne check prototype keys only;
 * lossless-json refuses duplicates but recurses), so this is written here, small and tested.
 */

export type StrictJsonFault = 'syntax' | 'too_deep' | 'duplicate_key' | 'lone_surrogate' | 'non_finite_number' | 'forbidden_key';

export class StrictJsonError extends Error {
  constructor(
    readonly fault: StrictJsonFault,
    /** Offset in the text, for logs; never sent back (the input is not echoed). */
    readonly position: number,
  ) {
    super(`${fault} at offset ${position}`);
    this.name = 'StrictJsonError';
  }
}

export interface StrictJsonOptions {
  /** The most arrays/objects open at once: `{}` is 1 deep, `{"a":[]}` 2. */
  maxDepth: number;
}

/** Parses `text` as strict JSON (see the module comment) or throws a `StrictJsonError`. */
export function parseStrictJson(text: string, options: StrictJsonOptions): unknown {
  new Scanner(text, options.maxDepth).scan();
  try {
    return JSON.parse(text);
  } catch {
    // The scanner follows RFC 8259's grammar, so this is not expected; refuse rather than guess.
    throw new StrictJsonError('syntax', 0);
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const MINUS = 0x2d;

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHighSurrogate = (u: number) => u >= 0xd800 && u <= 0xdbff;
const isLowSurrogate = (u: number) => u >= 0xdc00 && u <= 0xdfff;
/** The longest run of digits that is always a finite double without an exponent (MAX_VALUE has 309). */
const ALWAYS_FINITE_DIGITS = 308;

/** One open array (`keys` null) or object (the decoded keys seen so far, and the key it is the value of). */
interface Frame {
  keys: Set<string> | null;
  underKey: string | null;
}

class Scanner {
  private i = 0;
  private readonly stack: Frame[] = [];

  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  scan(): void {
    // The key whose value comes next (null in arrays and at the top).
    let key: string | null = null;
    for (;;) {
      // A value.
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.i);
      if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        if (this.stack.length >= this.maxDepth) this.fail('too_deep');
        const frame: Frame = { keys: c === OPEN_OBJECT ? new Set() : null, underKey: key };
        this.stack.push(frame);
        this.i++;
        this.skipWhitespace();
        if (this.text.charCodeAt(this.i) !== (frame.keys ? CLOSE_OBJECT : CLOSE_ARRAY)) {
          key = frame.keys ? this.member(frame) : null;
          continue;
        }
        this.stack.pop();
        this.i++;
      } else if (c === QUOTE) {
        this.string();
      } else if (c === MINUS || isDigit(c)) {
        this.number();
      } else {
        this.literal();
      }

      // After a value: close what ends here, then the next element or member, or the end.
      for (;;) {
        this.skipWhitespace();
        const top = this.stack[this.stack.length - 1];
        if (!top) {
          if (this.i !== this.text.length) this.fail('syntax');
          return;
        }
        const d = this.text.charCodeAt(this.i);
        if (d === COMMA) {
          this.i++;
          key = top.keys ? this.member(top) : null;
          break;
        }
        if (d !== (top.keys ? CLOSE_OBJECT : CLOSE_ARRAY)) this.fail('syntax');
        this.stack.pop();
        this.i++;
      }
    }
  }

  /** `"key" :` of an object member; returns the decoded key after checking it. */
  private member(frame: Frame): string {
    this.skipWhitespace();
    if (this.text.charCodeAt(this.i) !== QUOTE) this.fail('syntax');
    const start = this.i;
    const escaped = this.string();
    const key = escaped ? (JSON.parse(this.text.slice(start, this.i)) as string) : this.text.slice(start + 1, this.i - 1);
    // Prototype pollution guards, as secure-json-parse (protoAction/constructorAction 'error').
    if (key === '__proto__' || (key === 'prototype' && frame.underKey === 'constructor')) this.fail('forbidden_key', start);
    // RFC 7493 §2.3: member names are unique (compared decoded, so "a" equals "\u0061").
    if (frame.keys!.has(key)) this.fail('duplicate_key', start);
    frame.keys!.add(key);
    this.skipWhitespace();
    if (this.text.charCodeAt(this.i) !== COLON) this.fail('syntax');
    this.i++;
    return key;
  }

  /**
   * A string token from its opening quote; leaves `i` after the closing one. Returns whether it
   * had escapes. Checks the decoded UTF-16 code units: every surrogate is half of a pair.
   */
  private string(): boolean {
    const text = this.text;
    const start = this.i;
    let escaped = false;
    let awaitingLow = false;
    this.i++;
    for (;;) {
      if (this.i >= text.length) this.fail('syntax');
      const c = text.charCodeAt(this.i);
      let unit: number;
      if (c === QUOTE) {
        if (awaitingLow) this.fail('lone_surrogate', start);
        this.i++;
        return escaped;
      }
      if (c < 0x20) this.fail('syntax'); // RFC 8259 §7: control characters must be escaped
      if (c === BACKSLASH) {
        escaped = true;
        const e = text.charCodeAt(this.i + 1);
        if (e === 0x75 /* u */) {
          unit = this.hex4(this.i + 2);
          this.i += 6;
        } else {
          // \" \\ \/ \b \f \n \r \t
          if (e !== QUOTE && e !== BACKSLASH && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e && e !== 0x72 && e !== 0x74) this.fail('syntax');
          unit = e;
          this.i += 2;
        }
      } else {
        unit = c;
        this.i++;
      }
      if (awaitingLow) {
        if (!isLowSurrogate(unit)) this.fail('lone_surrogate', start);
        awaitingLow = false;
      } else if (isHighSurrogate(unit)) {
        awaitingLow = true;
      } else if (isLowSurrogate(unit)) {
        this.fail('lone_surrogate', start);
      }
    }
  }

  private hex4(at: number): number {
    let value = 0;
    for (let k = at; k < at + 4; k++) {
      const h = this.text.charCodeAt(k);
      const digit = isDigit(h) ? h - 0x30 : h >= 0x61 && h <= 0x66 ? h - 0x57 : h >= 0x41 && h <= 0x46 ? h - 0x37 : -1;
      if (digit < 0) this.fail('syntax');
      value = value * 16 + digit;
    }
    return value;
  }

  /** RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, and finite as a double. */
  private number(): void {
    const text = this.text;
    const start = this.i;
    if (text.charCodeAt(this.i) === MINUS) this.i++;
    if (text.charCodeAt(this.i) === 0x30) {
      this.i++;
    } else if (isDigit(text.charCodeAt(this.i))) {
      while (isDigit(text.charCodeAt(this.i))) this.i++;
    } else {
      this.fail('syntax');
    }
    const integerDigits = this.i - start;
    if (text.charCodeAt(this.i) === 0x2e /* . */) {
      this.i++;
      if (!isDigit(text.charCodeAt(this.i))) this.fail('syntax');
      while (isDigit(text.charCodeAt(this.i))) this.i++;
    }
    let exponent = false;
    const e = text.charCodeAt(this.i);
    if (e === 0x65 || e === 0x45) {
      exponent = true;
      this.i++;
      const sign = text.charCodeAt(this.i);
      if (sign === 0x2b || sign === MINUS) this.i++;
      if (!isDigit(text.charCodeAt(this.i))) this.fail('syntax');
      while (isDigit(text.charCodeAt(this.i))) this.i++;
    }
    // Only an exponent or a very long integer part can overflow: parse just those.
    if ((exponent || integerDigits > ALWAYS_FINITE_DIGITS) && !Number.isFinite(Number(text.slice(start, this.i)))) {
      this.fail('non_finite_number', start);
    }
  }

  private literal(): void {
    for (const word of ['true', 'false', 'null']) {
      if (this.text.startsWith(word, this.i)) {
        this.i += word.length;
        return;
      }
    }
    this.fail('syntax');
  }

  private skipWhitespace(): void {
    const text = this.text;
    for (;;) {
      const c = text.charCodeAt(this.i);
      // RFC 8259 §2: space, tab, line feed, carriage return.
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.i++;
    }
  }

  private fail(fault: StrictJsonFault, position = this.i): never {
    throw new StrictJsonError(fault, position);
  }
}
