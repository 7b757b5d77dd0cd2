import 'reflect-metadata';
import { BadRequestException } from '@nestjs/common';
import { IsObject, IsOptional, IsString } from 'class-validator';
import { describe, expect, it } from 'vitest';
import { CreateAgentDto } from '../modules/agents/dto/agent.dto.js';
import { CreateStepUpDto } from '../modules/step-ups/dto/step-up.dto.js';
import { CreateTaskDto } from '../modules/tasks/dto/task.dto.js';
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
