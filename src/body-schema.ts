/**
 * Checks the plugin API's request bodies against their schemas: the small part of JSON Schema those
 * schemas use (`type`, one or several, `null` included; `properties`; `required`; `minLength`;
 * `items`; `additionalProperties` as a schema for maps), with Ajv's wording, so fastify reports
 * `body/Info/ContainerID must be string` as it did with Ajv.
 *
 * Why not Ajv, which fastify uses by default: shiplog validates three small bodies from dockerd, and
 * Ajv with fastify's compilers (fast-json-stringify comes with them) kept 5.5–7 MiB resident in every
 * shiplog process (measured: a fastify app with three such routes, 65–68 → 59–61 MiB), against a
 * budget of 100 MiB with 20 containers logging (BENCHMARKS.md). Nothing is coerced: dockerd sends
 * JSON with the right types, and a body that is not is refused, not repaired.
 */

export type BodyType = 'object' | 'array' | 'string' | 'integer' | 'boolean' | 'null';

export interface BodySchema {
  readonly type?: BodyType | readonly BodyType[];
  readonly properties?: Readonly<Record<string, BodySchema>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: BodySchema;
  readonly items?: BodySchema;
  readonly minLength?: number;
}

/** One problem, in the shape fastify's error formatter reads (Ajv's). */
export interface BodySchemaError {
  readonly instancePath: string;
  readonly schemaPath: string;
  readonly keyword: string;
  readonly params: Record<string, unknown>;
  readonly message: string;
}

/** A validator as fastify calls it: true or false, the problem in `errors`. */
export interface BodyValidator {
  (data: unknown): boolean;
  errors: BodySchemaError[] | null;
}

/** The first problem of `value` against `schema` (undefined: none). Stops at the first, as fastify's Ajv does. */
export function findBodyError(schema: BodySchema, value: unknown, instancePath = '', schemaPath = '#'): BodySchemaError | undefined {
  const types = schema.type === undefined ? undefined : typeof schema.type === 'string' ? [schema.type] : schema.type;
  if (types !== undefined && !types.some((t) => hasType(value, t))) {
    return { instancePath, schemaPath: `${schemaPath}/type`, keyword: 'type', params: { type: types.join(',') }, message: `must be ${types.join(',')}` };
  }
  if (typeof value === 'string' && schema.minLength !== undefined && [...value].length < schema.minLength) {
    return {
      instancePath, schemaPath: `${schemaPath}/minLength`, keyword: 'minLength', params: { limit: schema.minLength },
      message: `must NOT have fewer than ${schema.minLength} characters`,
    };
  }
  if (Array.isArray(value)) {
    if (schema.items === undefined) return undefined;
    for (let i = 0; i < value.length; i++) {
      const e = findBodyError(schema.items, value[i], `${instancePath}/${i}`, `${schemaPath}/items`);
      if (e !== undefined) return e;
    }
    return undefined;
  }
  if (!isObject(value)) return undefined;
  for (const name of schema.required ?? []) {
    if (!Object.hasOwn(value, name)) {
      return { instancePath, schemaPath: `${schemaPath}/required`, keyword: 'required', params: { missingProperty: name }, message: `must have required property '${name}'` };
    }
  }
  for (const [name, item] of Object.entries(value)) {
    const own = schema.properties !== undefined && Object.hasOwn(schema.properties, name) ? schema.properties[name] : undefined;
    const sub = own ?? schema.additionalProperties;
    if (sub === undefined) continue;
    const where = own !== undefined ? `${schemaPath}/properties/${escapePointer(name)}` : `${schemaPath}/additionalProperties`;
    const e = findBodyError(sub, item, `${instancePath}/${escapePointer(name)}`, where);
    if (e !== undefined) return e;
  }
  return undefined;
}

/** A fastify validator for `schema` (see BodyValidator). */
export function bodyValidator(schema: BodySchema): BodyValidator {
  const validate = ((data: unknown): boolean => {
    const error = findBodyError(schema, data);
    validate.errors = error === undefined ? null : [error];
    return error === undefined;
  }) as BodyValidator;
  validate.errors = null;
  return validate;
}

function hasType(value: unknown, type: BodyType): boolean {
  switch (type) {
    case 'object': return isObject(value);
    case 'array': return Array.isArray(value);
    case 'string': return typeof value === 'string';
    case 'integer': return Number.isInteger(value);
    case 'boolean': return typeof value === 'boolean';
    case 'null': return value === null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** JSON Pointer escaping (RFC 6901), as Ajv writes instance paths. */
function escapePointer(name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}
