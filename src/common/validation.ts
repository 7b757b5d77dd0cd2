import { ValidationPipe, type ArgumentMetadata } from '@nestjs/common';
import { Transform } from 'class-transformer';
import { buildMessage, length, ValidateBy, type ValidationOptions } from 'class-validator';
import { z } from 'zod';
import { AppError } from './errors/app-error.js';

/** C0 control characters (U+0000–U+001F) and DEL (U+007F). */
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/**
 * API.md (v1.1): NUL and the other C0 control characters are 400 in identifiers, names, `action`,
 * `resource`, `bindingMessage` and scopes (they would reach logs, pages and PostgreSQL `text`,
 * which refuses NUL). Non-strings pass here and are left to `@IsString()`.
 */
export function NoControlChars(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'noControlChars',
      validator: {
        validate: (value: unknown) => typeof value !== 'string' || !CONTROL_CHARACTERS.test(value),
        defaultMessage: buildMessage((each) => `${each}$property must not contain control characters`, options),
      },
    },
    options,
  );
}

/**
 * A free-form value carried through the ValidationPipe untouched: it has no enumerable property,
 * so neither Nest's prototype-key stripping nor class-transformer's copy looks inside.
 */
class ParsedJson {
  readonly #value: unknown;

  constructor(value?: unknown) {
    this.#value = value;
  }

  static unwrap(value: unknown): unknown {
    return value instanceof ParsedJson ? value.#value : value;
  }
}

const PARSED_FIELDS = Symbol('mfa-proxy:as-parsed-fields');

/** The `@AsParsed()` properties of a DTO class, inherited ones included. */
function parsedFieldsOf(metatype: unknown): readonly string[] {
  if (typeof metatype !== 'function') return [];
  return (Reflect.getMetadata(PARSED_FIELDS, metatype.prototype as object) as string[] | undefined) ?? [];
}

/**
 * Keeps a free-form JSON value (`details`, a JWK or JWKS, a WebAuthn response) exactly as parsed.
 * API.md (v1.1): `details` is hashed and stored exactly as parsed, keys such as `constructor`,
 * `toString` or `valueOf` included. Through a plain `ValidationPipe({ transform: true })` they
 * are lost: Nest deletes every `constructor` and `prototype` key in place, and class-transformer's
 * copy skips keys named like `Object.prototype` members (and takes a nested `constructor` for a
 * class). With `ExactValidationPipe` below, the value arrives boxed and this puts the original back.
 * The strict JSON body parser has already refused `__proto__` and `constructor.prototype`.
 */
export function AsParsed(): PropertyDecorator {
  const restore = Transform(({ obj, key }) => ParsedJson.unwrap((obj as Record<string, unknown>)[key]), { toClassOnly: true });
  return (target, propertyKey) => {
    const fields = parsedFieldsOf(target.constructor);
    Reflect.defineMetadata(PARSED_FIELDS, [...fields, String(propertyKey)], target);
    restore(target, propertyKey);
  };
}

const isPlainRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const COMPILED_SCHEMA = Symbol('mfa-proxy:compiled-schema');

/**
 * The body of a hot endpoint, checked by a zod schema instead of class-validator and
 * class-transformer (about 150 µs per verify body, more than the rest of the request). The DTO
 * class stays for the OpenAPI document and the types; the schema must accept exactly what its
 * decorators accept (validation.spec.ts runs both over the same bodies). Unknown keys are refused
 * (as `forbidNonWhitelisted`), `constructor` and `prototype` too, which the ValidationPipe strips
 * silently instead; objects pass by reference, exactly as parsed (as `@AsParsed()`).
 */
export function CompiledSchema(schema: z.ZodType): ClassDecorator {
  return (target) => Reflect.defineMetadata(COMPILED_SCHEMA, schema, target);
}

/** Zod's counterparts of the decorators used on compiled bodies. */
export const schemas = {
  /** `@IsString() @MinLength(min) @MaxLength(max)`, lengths counted as class-validator counts them. */
  string: (min: number, max: number) => z.string('must be a string').refine((v) => length(v, min, max), `must be between ${min} and ${max} characters long`),
  /** The same, and `@NoControlChars()`. */
  text: (min: number, max: number) => schemas.string(min, max).refine((v) => !CONTROL_CHARACTERS.test(v), 'must not contain control characters'),
  /** `@AsParsed() @IsObject()`: a JSON object, the same reference as parsed. */
  parsedObject: () => z.custom<Record<string, unknown>>(isPlainRecord, 'must be an object'),
};

function compiledSchemaOf(metatype: unknown): z.ZodType | undefined {
  return typeof metatype === 'function' ? (Reflect.getMetadata(COMPILED_SCHEMA, metatype) as z.ZodType | undefined) : undefined;
}

/** `validation_failed`, naming each offending property as class-validator would (never its value). */
function schemaError(error: z.ZodError): AppError {
  const messages = error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') return i.keys.map((k) => `property ${k} should not exist`).join('; ');
    const path = i.path.join('.');
    return path ? `${path} ${i.message}` : i.message;
  });
  return new AppError('validation_failed', messages.join('; '));
}

/**
 * The global ValidationPipe, which carries each `@AsParsed()` property of a body past the
 * transformation in a `ParsedJson` box (on a shallow copy: the request's body is not changed).
 */
export class ExactValidationPipe extends ValidationPipe {
  /** `compiled: false` checks every body with its decorators (the spec compares both ways). */
  constructor(
    options: ConstructorParameters<typeof ValidationPipe>[0],
    private readonly compiled: { compiled: boolean } = { compiled: true },
  ) {
    super(options);
  }

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    // A body typed `unknown` or `object` (the /oauth forms): nothing to validate (as ValidationPipe would conclude, later).
    if (metadata.type === 'body' && metadata.metatype === Object) return value;
    const schema = this.compiled.compiled && metadata.type === 'body' ? compiledSchemaOf(metadata.metatype) : undefined;
    if (schema) {
      const result = schema.safeParse(value);
      if (!result.success) throw schemaError(result.error);
      return result.data;
    }
    const fields = parsedFieldsOf(metadata.metatype);
    if (fields.length === 0 || !isPlainRecord(value)) return super.transform(value, metadata);
    const shielded: Record<string, unknown> = { ...value };
    for (const field of fields) {
      if (Object.hasOwn(shielded, field)) shielded[field] = new ParsedJson(shielded[field]);
    }
    return super.transform(shielded, metadata);
  }
}
