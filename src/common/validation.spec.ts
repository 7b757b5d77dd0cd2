import 'reflect-metadata';
import { BadRequestException, ValidationPipe } from '@nestjs/common';
import { IsObject, IsOptional, IsString } from 'class-validator';
import { describe, expect, it } from 'vitest';
import { CreateAgentDto } from '../modules/agents/dto/agent.dto.js';
import { CreateStepUpDto } from '../modules/step-ups/dto/step-up.dto.js';
import { CreateTaskDto } from '../modules/tasks/dto/task.dto.js';
import { VerifyMfaProxyTokenDto } from '../modules/mfa-proxy-tokens/dto/verify.dto.js';
import { AppError } from './errors/app-error.js';
import { AsParsed, ExactValidationPipe, NoControlChars } from './validation.js';

class NoteDto {
  @IsString() @NoControlChars()
  title: string;

  @IsOptional() @IsString({ each: true }) @NoControlChars({ each: true })
  tags?: string[];

  @IsOptional() @AsParsed() @IsObject()
  details?: Record<string, unknown>;
}

class SignedNoteDto extends NoteDto {
  @IsOptional() @AsParsed() @IsObject()
  proof?: Record<string, unknown>;
}

/** Tricky keys for a plain ValidationPipe: deleted in place, skipped as prototype members, or taken for a class. */
const tricky = () => ({
  amount: 1,
  constructor: { a: 1 },
  prototype: 'p',
  toString: 'x',
  valueOf: '9999',
  nested: { hasOwnProperty: true, constructor: 'a string', deeper: [{ isPrototypeOf: null, __lookupGetter__: 2 }] },
});

const sut = new ExactValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true, transformOptions: { enableImplicitConversion: false } });
const body = (metatype: unknown) => ({ type: 'body' as const, metatype: metatype as new () => unknown, data: '' });

describe(ExactValidationPipe.name, () => {
  describe('transform', () => {
    it('passes an @AsParsed() value exactly as parsed, keys named like Object.prototype members included', async () => {
      const input = { title: 'n', details: tricky() };
      const dto = (await sut.transform(JSON.parse(JSON.stringify(input)), body(NoteDto))) as NoteDto;
      expect(dto).toBeInstanceOf(NoteDto);
      expect(JSON.stringify(dto.details)).toBe(JSON.stringify(tricky()));
    });

    it('does the same for inherited @AsParsed() properties and those of the subclass', async () => {
      const dto = (await sut.transform({ title: 'n', details: tricky(), proof: tricky() }, body(SignedNoteDto))) as SignedNoteDto;
      expect(JSON.stringify(dto.details)).toBe(JSON.stringify(tricky()));
      expect(JSON.stringify(dto.proof)).toBe(JSON.stringify(tricky()));
    });

    it('does not change the request body it was given', async () => {
      const input = { title: 'n', details: tricky() };
      await sut.transform(input, body(NoteDto));
      expect(input).toEqual({ title: 'n', details: tricky() });
    });

    it('hands an untyped body (`unknown`: the /oauth forms) through as it came, the same reference, as the plain ValidationPipe does', async () => {
      const plain = new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true, transformOptions: { enableImplicitConversion: false } });
      for (const input of [tricky(), { grant_type: 'client_credentials', extra: 'x' }, 'text', null, undefined, [1, 2]]) {
        expect(await sut.transform(input, body(Object))).toBe(input);
        expect(await plain.transform(input, body(Object))).toBe(input);
      }
    });

    it('still validates an @AsParsed() value: a string where an object belongs is 400', async () => {
      await expect(sut.transform({ title: 'n', details: 'x' }, body(NoteDto))).rejects.toBeInstanceOf(BadRequestException);
      await expect(sut.transform({ title: 'n', details: [1] }, body(NoteDto))).rejects.toBeInstanceOf(BadRequestException);
    });

    it('keeps the free-form fields of the real DTOs exact: step-up details, a worker JWK, a JWKS', async () => {
      const stepUp = (await sut.transform({ action: 'files:delete', details: tricky() }, body(CreateStepUpDto))) as CreateStepUpDto;
      expect(JSON.stringify(stepUp.details)).toBe(JSON.stringify(tricky()));
      const jwk = { kty: 'OKP', crv: 'Ed25519', x: 'abc', valueOf: 'v', constructor: 'c' };
      const task = (await sut.transform({ taskId: 't-1', scopes: ['files:read'], workerJwk: { ...jwk } }, body(CreateTaskDto))) as CreateTaskDto;
      expect(task.workerJwk).toEqual(jwk);
      const agent = (await sut.transform({ userId: 'usr_x', name: 'a', model: 'm', permissionBoundaries: [], jwks: { keys: [{ ...jwk }], toString: 't' } }, body(CreateAgentDto))) as CreateAgentDto;
      expect(JSON.stringify(agent.jwks)).toBe(JSON.stringify({ keys: [jwk], toString: 't' }));
    });
  });
});

describe(NoControlChars.name, () => {
  const refused = async (value: Record<string, unknown>) => {
    const err = await sut.transform(value, body(NoteDto)).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestException);
    return ((err as BadRequestException).getResponse() as { message: string[] }).message;
  };

  it('refuses NUL, every other C0 control character and DEL', async () => {
    for (let code = 0; code <= 0x1f; code++) {
      expect(await refused({ title: `a${String.fromCharCode(code)}b` })).toEqual(['title must not contain control characters']);
    }
    expect(await refused({ title: '\u007f' })).toEqual(['title must not contain control characters']);
  });

  it('applies to each item of an array with { each: true }', async () => {
    expect(await refused({ title: 'ok', tags: ['fine', 'bad\u0000'] })).toEqual(['each value in tags must not contain control characters']);
  });

  it('lets other text through, C1 controls and format characters included (they are shown visibly, not refused)', async () => {
    const dto = (await sut.transform({ title: 'Ada Lovelace é 😀 \u0080 \u202e', tags: ['x'] }, body(NoteDto))) as NoteDto;
    expect(dto.title).toBe('Ada Lovelace é 😀 \u0080 \u202e');
  });

  it('leaves non-strings to @IsString()', async () => {
    expect(await refused({ title: 5 })).toEqual(['title must be a string']);
  });
});

describe('compiled body schemas accept exactly what their decorators accept', () => {
  const options = { whitelist: true, forbidNonWhitelisted: true, transform: true, transformOptions: { enableImplicitConversion: false }, stopAtFirstError: false };
  const compiled = new ExactValidationPipe(options);
  const decorated = new ExactValidationPipe(options, { compiled: false });
  const verdict = async (pipe: ExactValidationPipe, value: unknown) => {
    try {
      const out = (await pipe.transform(value, body(VerifyMfaProxyTokenDto))) as Record<string, unknown>;
      return { ok: true, out: { ...out } };
    } catch (err) {
      expect(err instanceof BadRequestException || (err instanceof AppError && err.code === 'validation_failed')).toBe(true);
      return { ok: false };
    }
  };
  const token = 'eyJ.x.y';
  const cases: [string, unknown][] = [
    ['minimal', { token, action: 'files:delete' }],
    ['every field', { token, action: 'files:delete', resource: 'drive://q3.pdf', details: { size: 42, nested: [1, { a: null }] }, agentId: 'agt_x' }],
    ['null optional fields', { token, action: 'files:delete', resource: null, details: null, agentId: null }],
    ['empty resource', { token, action: 'files:delete', resource: '' }],
    ['missing token', { action: 'files:delete' }],
    ['empty token', { token: '', action: 'files:delete' }],
    ['token too long', { token: 'a'.repeat(8193), action: 'files:delete' }],
    ['token at the limit', { token: 'a'.repeat(8192), action: 'files:delete' }],
    ['token not a string', { token: 42, action: 'files:delete' }],
    ['missing action', { token }],
    ['empty action', { token, action: '' }],
    ['action of 64', { token, action: 'a'.repeat(64) }],
    ['action of 65', { token, action: 'a'.repeat(65) }],
    ['NUL in action', { token, action: 'files:\u0000delete' }],
    ['DEL in resource', { token, action: 'files:delete', resource: 'a\u007fb' }],
    ['tab in agentId', { token, action: 'files:delete', agentId: 'agt\tx' }],
    ['resource of 513', { token, action: 'files:delete', resource: 'r'.repeat(513) }],
    ['agentId of 65', { token, action: 'files:delete', agentId: 'a'.repeat(65) }],
    ['details an array', { token, action: 'files:delete', details: [1, 2] }],
    ['details a string', { token, action: 'files:delete', details: '{}' }],
    ['details a number', { token, action: 'files:delete', details: 7 }],
    ['unknown key', { token, action: 'files:delete', extra: 1 }],
    ['resource a number', { token, action: 'files:delete', resource: 5 }],
    ['unicode text', { token, action: 'fichiers:supprimer', resource: 'drive://q3-été.pdf' }],
    // class-validator counts a surrogate pair as one character and a presentation selector as none.
    ['64 emoji (128 code units)', { token, action: '😀'.repeat(64) }],
    ['65 emoji', { token, action: '😀'.repeat(65) }],
    ['40 selector sequences (80 code units)', { token, action: 'a\uFE0F'.repeat(40) }],
    ['lone surrogate text', { token, action: 'a\uD800b' }],
    ['not an object', 'token'],
    ['null body', null],
    ['an array body', [{ token, action: 'files:delete' }]],
  ];
  it.each(cases)('%s', async (_name, value) => {
    const [a, b] = [await verdict(compiled, value), await verdict(decorated, value)];
    expect(a.ok).toBe(b.ok);
    if (a.ok && b.ok) expect(a.out).toEqual(b.out);
  });

  it('refuses prototype-named keys as unknown (the ValidationPipe drops them silently instead)', async () => {
    for (const key of ['constructor', 'prototype']) {
      await expect(compiled.transform({ token, action: 'files:delete', [key]: 1 }, body(VerifyMfaProxyTokenDto))).rejects.toMatchObject({ code: 'validation_failed' });
    }
  });

  it('passes details by reference, exactly as parsed', async () => {
    const details = tricky();
    const out = (await compiled.transform({ token, action: 'files:delete', details }, body(VerifyMfaProxyTokenDto))) as { details: unknown };
    expect(out.details).toBe(details);
  });
});
