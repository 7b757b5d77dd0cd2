import { describe, expect, it } from 'vitest';
import { parseStrictJson, StrictJsonError, type StrictJsonFault } from './strict-json.js';

const sut = (text: string, maxDepth = 33) => parseStrictJson(text, { maxDepth });

function faultOf(text: string, maxDepth = 33): StrictJsonFault | 'none' {
  try {
    sut(text, maxDepth);
    return 'none';
  } catch (err) {
    expect(err).toBeInstanceOf(StrictJsonError);
    return (err as StrictJsonError).fault;
  }
}

describe(parseStrictJson.name, () => {
  describe('valid JSON', () => {
    it('returns what JSON.parse returns, for every kind of value', () => {
      for (const text of [
        '{}', '[]', '0', '-0', '1.5e-3', '-12.25E+2', '"x"', 'true', 'false', 'null', ' \t\r\n{ "a" : [ 1 , { } , [ ] , "b" ] } \n',
        '{"a":{"b":{"c":[null,true,false,"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041"]}}}', '"\\ud83d\\ude00"', '"😀"', '{"\\u00e9":"é"}', '1e-400', '1.7976931348623157e308',
      ]) {
        expect(sut(text)).toEqual(JSON.parse(text));
      }
    });

    it('keeps keys named like Object.prototype members as own properties', () => {
      const value = sut('{"constructor":{"a":1},"toString":"x","valueOf":2,"hasOwnProperty":[{"isPrototypeOf":null}]}') as Record<string, unknown>;
      expect(Object.keys(value)).toEqual(['constructor', 'toString', 'valueOf', 'hasOwnProperty']);
      expect(value.constructor).toEqual({ a: 1 });
      expect(value.toString).toBe('x');
    });

    it('keeps control characters that are escaped in strings', () => {
      expect(sut('{"k\\u0001":"a\\u0000b\\u001f\\u007f"}')).toEqual({ 'k\u0001': 'a\u0000b\u001f\u007f' });
    });

    it('accepts the same key in sibling objects', () => {
      expect(faultOf('{"a":{"k":1},"b":{"k":1},"c":[{"k":1},{"k":1}]}')).toBe('none');
    });
  });

  describe('depth', () => {
    const objects = (n: number) => '{"a":'.repeat(n - 1) + '{}' + '}'.repeat(n - 1);
    const arrays = (n: number) => '['.repeat(n) + ']'.repeat(n);

    it('accepts exactly maxDepth nested containers and refuses one more', () => {
      expect(faultOf(objects(33))).toBe('none');
      expect(faultOf(arrays(33))).toBe('none');
      expect(faultOf(objects(34))).toBe('too_deep');
      expect(faultOf(arrays(34))).toBe('too_deep');
      expect(faultOf('[{"a":[{"b":[]}]}]', 4)).toBe('too_deep');
      expect(faultOf('[{"a":[{"b":1}]}]', 4)).toBe('none');
    });

    it('counts open containers, not containers seen: a long flat array is shallow', () => {
      expect(faultOf(`[${'[],'.repeat(10_000)}[]]`, 2)).toBe('none');
    });

    it('refuses 1,000,000 levels quickly, without recursion', () => {
      const started = performance.now();
      expect(faultOf('['.repeat(1_000_000) + ']'.repeat(1_000_000))).toBe('too_deep');
      expect(faultOf('{"a":'.repeat(1_000_000))).toBe('too_deep');
      expect(performance.now() - started).toBeLessThan(1_000);
    });
  });

  describe('numbers', () => {
    it('refuses numbers that are not finite IEEE-754 doubles', () => {
      for (const text of ['1e400', '-1e400', '1E+309', '[1,2e308]', '{"n":-123.5e99999}', '9'.repeat(400), `-${'9'.repeat(309)}.5`]) {
        expect(faultOf(text), text).toBe('non_finite_number');
      }
    });

    it('accepts the largest double and underflow to zero', () => {
      expect(sut('[1.7976931348623157e308, -1.7976931348623157e308, 1e-400, 0.0]')).toEqual([Number.MAX_VALUE, -Number.MAX_VALUE, 0, 0]);
      expect(faultOf('9'.repeat(308))).toBe('none');
    });

    it('refuses number syntax JSON does not allow', () => {
      for (const text of ['01', '+1', '.5', '1.', '1e', '1e+', '-', 'NaN', 'Infinity', '-Infinity', '0x10', '1_000']) {
        expect(faultOf(text), text).toBe('syntax');
      }
    });
  });

  describe('strings', () => {
    it('refuses lone surrogates, escaped or raw, in values and keys', () => {
      for (const text of [
        '"\\ud800"', '"\\udc00"', '"a\\ud800b"', '"\\ud800\\u0041"', '"\\ud800\\ud800"', '"\\ude00\\ud83d"', '"\\ud800\\n"',
        '{"\\ud83d":1}', '{"a\\udfff":1}', '"\ud800"', '"x\udc00"', '{"\ud800":1}',
      ]) {
        expect(faultOf(text), JSON.stringify(text)).toBe('lone_surrogate');
      }
    });

    it('accepts surrogate pairs, escaped or raw', () => {
      expect(sut('["\\ud83d\\ude00", "😀", "\\uD83D\\uDE00"]')).toEqual(['😀', '😀', '😀']);
      // A raw high surrogate and an escaped low one still make one well-formed pair.
      expect(sut('"\ud83d\\ude00"')).toBe('😀');
    });

    it('refuses raw control characters and bad escapes', () => {
      for (const text of ['"a\u0000"', '"\n"', '"\t"', '"\\x41"', '"\\u12"', '"\\u12G4"', '"\\', '"abc', '{"a\u0001":1}']) {
        expect(faultOf(text), JSON.stringify(text)).toBe('syntax');
      }
    });
  });

  describe('keys', () => {
    it('refuses a key repeated at one level, also when spelled with escapes', () => {
      for (const text of ['{"a":1,"a":1}', '{"a":1,"b":2,"a":3}', '{"x":{"a":1,"a":2}}', '[{"a":1,"\\u0061":1}]', '{"\\/":1,"/":2}', '{"é":1,"\\u00e9":2}', '{"":1,"":2}']) {
        expect(faultOf(text), text).toBe('duplicate_key');
      }
    });

    it('refuses __proto__, and constructor.prototype, as Fastify does by default', () => {
      for (const text of ['{"__proto__":{}}', '{"a":[{"__proto__":1}]}', '{"\\u005f_proto__":1}', '{"constructor":{"prototype":{}}}', '{"x":{"constructor":{"a":1,"prototype":1}}}']) {
        expect(faultOf(text), text).toBe('forbidden_key');
      }
      expect(faultOf('{"prototype":1,"constructor":1,"a":{"prototype":{}}}')).toBe('none');
      expect(faultOf('{"constructor":[{"prototype":1}]}')).toBe('none');
    });
  });

  describe('syntax', () => {
    it('refuses what JSON.parse refuses', () => {
      for (const text of ['', ' ', '{', '}', '[1,]', '{"a":1,}', '{"a" 1}', '{a:1}', "{'a':1}", '[1 2]', '{"a":1}{}', '{} x', 'tru', 'nul', 'True', '\ufeff{}', '[,1]', '{,}', '{"a"}', '{"a":}', '//x\n{}']) {
        expect(faultOf(text), JSON.stringify(text)).toBe('syntax');
      }
    });

    it('reports the first fault in the text', () => {
      expect(faultOf('{"a":1,"a":1e400}')).toBe('duplicate_key');
      expect(faultOf('{"n":1e400,"a":1,"a":2}')).toBe('non_finite_number');
      expect(faultOf('[1e400,' + '['.repeat(100))).toBe('non_finite_number');
      expect(faultOf('["a\u0001", 1e400]')).toBe('syntax');
    });
  });
});
