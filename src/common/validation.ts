import { ValidationPipe, type ArgumentMetadata } from '@nestjs/common';
import { Transform } from 'class-transformer';
import { buildMessage, ValidateBy, type ValidationOptions } from 'class-validator';

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

/**
 * The global ValidationPipe, which carries each `@AsParsed()` property of a body past the
 * transformation in a `ParsedJson` box (on a shallow copy: the request's body is not changed).
 */
export class ExactValidationPipe extends ValidationPipe {
  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    const fields = parsedFieldsOf(metadata.metatype);
    if (fields.length === 0 || !isPlainRecord(value)) return super.transform(value, metadata);
    const shielded: Record<string, unknown> = { ...value };
    for (const field of fields) {
      if (Object.hasOwn(shielded, field)) shielded[field] = new ParsedJson(shielded[field]);
    }
    return super.transform(shielded, metadata);
  }
}
