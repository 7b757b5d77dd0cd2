/**
 * API.md v1.1 / issue 13 part 5: `/openapi.json` is a valid OpenAPI document in which every
 * operation declares its 2xx response schema and its error schema (problem+json on /v1 and the
 * pages, the RFC 6749 error object on /oauth), with truthful security schemes.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type TestApp } from './support/app.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let t: TestApp;
let doc: Json;
beforeAll(async () => {
  t = await startApp();
  doc = (await t.http.get('/openapi.json').expect(200)).body;
});
afterAll(async () => {
  await t?.close();
});

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

function operations(): Array<{ path: string; method: string; op: Json }> {
  return Object.entries(doc.paths as Json).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((method) => ({ path, method, op: item[method] as Json })));
}

/** A response object's schema, resolving one `$ref` to components.responses. */
function schemaOf(response: Json | undefined): Json | undefined {
  if (!response) return undefined;
  const resolved = response.$ref ? doc.components.responses[String(response.$ref).split('/').pop()!] : response;
  const content = resolved?.content as Record<string, { schema?: Json }> | undefined;
  return content ? Object.values(content).find((c) => c.schema)?.schema : undefined;
}

/** A schema that describes something (a type, a reference, members or alternatives), not only an example. */
function describes(schema: Json | undefined): boolean {
  return !!schema && ['type', '$ref', 'properties', 'items', 'oneOf', 'anyOf', 'allOf'].some((k) => k in schema);
}

/** Follows `$ref` to components.schemas. */
function deref(schema: Json): Json {
  return schema.$ref ? doc.components.schemas[String(schema.$ref).split('/').pop()!] : schema;
}

describe('GET /openapi.json', () => {
  it('validates as OpenAPI with a standard validator', async () => {
    const result = await new Validator().validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('every operation has a 2xx response with a schema and at least one 4xx response with a schema', () => {
    const missing: string[] = [];
    for (const { path, method, op } of operations()) {
      const responses = (op.responses ?? {}) as Record<string, Json>;
      const ok = Object.entries(responses).some(([code, r]) => /^2\d\d$/.test(code) && (describes(schemaOf(r)) || code === '204'));
      const err = Object.entries(responses).some(([code, r]) => /^4\d\d$/.test(code) && describes(schemaOf(r)));
      if (!ok) missing.push(`${method.toUpperCase()} ${path}: no 2xx schema`);
      if (!err) missing.push(`${method.toUpperCase()} ${path}: no 4xx schema`);
    }
    expect(missing).toEqual([]);
  });

  it('errors are problem+json on /v1 and the pages, RFC 6749 error objects on /oauth', () => {
    const wrong: string[] = [];
    const checkedOps = new Set<string>();
    for (const { path, method, op } of operations()) {
      for (const [code, response] of Object.entries((op.responses ?? {}) as Record<string, Json>)) {
        if (!/^4\d\d$/.test(code)) continue;
        const resolved = response.$ref ? doc.components.responses[String(response.$ref).split('/').pop()!] : response;
        const types = Object.keys(resolved?.content ?? {});
        const schema = schemaOf(response);
        if (!schema) continue;
        checkedOps.add(`${method} ${path}`);
        const props = Object.keys(deref(schema).properties ?? {});
        const oauth = path.startsWith('/oauth/');
        const ok = oauth
          ? types.includes('application/json') && props.includes('error') && props.includes('error_description')
          : types.includes('application/problem+json') && ['type', 'title', 'status', 'detail', 'code'].every((p) => props.includes(p));
        if (!ok) wrong.push(`${method.toUpperCase()} ${path} ${code}: ${types.join(',')} {${props.join(',')}}`);
      }
    }
    expect(wrong).toEqual([]);
    // Not vacuous: every operation has at least one error schema, and each was checked.
    expect(checkedOps.size).toBe(operations().length);
  });

  it('security schemes: API keys and the admin token are not JWTs; agent tokens may be; DPoP is described', () => {
    const schemes = doc.components.securitySchemes as Record<string, Json>;
    expect(schemes.adminToken).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(schemes.adminToken.bearerFormat).toBeUndefined();
    expect(schemes.appKey).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(schemes.appKey.bearerFormat).toBeUndefined();
    expect(schemes.appClient).toMatchObject({ type: 'http', scheme: 'basic' });
    expect(schemes.agentToken).toMatchObject({ type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
    expect(schemes.dpop).toMatchObject({ type: 'apiKey', in: 'header', name: 'DPoP', description: expect.stringContaining('RFC 9449') });
    // Every scheme an operation names exists.
    for (const { path, method, op } of operations()) {
      for (const requirement of (op.security ?? []) as Json[]) {
        for (const name of Object.keys(requirement)) expect(schemes[name], `${method} ${path} names ${name}`).toBeDefined();
      }
    }
  });
});
