/**
 * The OpenAPI 3.1 document, generated from the route table: the schemas the server validates with are
 * the schemas the document shows (zod → JSON Schema 2020-12, the dialect OpenAPI 3.1 uses).
 */
import { z } from 'zod';
import { packageVersion } from '../paths';
import { ARROW_STREAM, type Route } from './http';

export function openApiDocument(routes: Route[]): Record<string, unknown> {
  const schemas: Record<string, unknown> = {};
  /** A schema with an id (`.meta({ id })`) goes to components and is referenced; others are inlined. */
  const ref = (schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> => {
    const generated = JSON.stringify(z.toJSONSchema(schema, { io, unrepresentable: 'any' }));
    const json = JSON.parse(generated.replaceAll('"#/$defs/', '"#/components/schemas/')) as Record<string, unknown>;
    const { $schema: _drop, $defs, ...rest } = json as { $schema?: string; $defs?: Record<string, unknown> };
    Object.assign(schemas, $defs ?? {});
    return rest;
  };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const parameters = [
      ...objectFields(r.params, ref).map(([name, schema]) => ({ name, in: 'path', required: true, schema })),
      ...objectFields(r.query, ref, true).map(([name, schema, required]) => ({ name, in: 'query', required, schema })),
    ];
    const op: Record<string, unknown> = {
      operationId: r.operationId,
      summary: r.summary,
      ...(r.description ? { description: r.description } : {}),
      tags: [r.tag],
      ...(r.auth ? {} : { security: [] }),
      ...(parameters.length ? { parameters } : {}),
      responses: Object.fromEntries(
        Object.entries(r.responses).map(([status, res]) => [
          status,
          { description: res.description, ...(res.schema ? { content: { 'application/json': { schema: ref(res.schema, 'output') } } } : {}) },
        ]),
      ),
    };
    if (r.body) {
      const content: Record<string, unknown> = { 'application/json': { schema: ref(r.body, 'input') } };
      if (r.arrowBody) content[ARROW_STREAM] = { schema: { type: 'string', contentMediaType: ARROW_STREAM, description: 'an Arrow IPC stream of the rows (feature columns, optionally key columns)' } };
      op.requestBody = { required: r.method === 'POST' && !r.path.endsWith('/pause') && !r.path.endsWith('/unpause') && !r.path.endsWith('/trigger'), content };
    }
    (paths[r.path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Scoreline API',
      version: packageVersion(),
      description: 'Batch runs, schedules and near-real-time scoring on Temporal. Every route but /healthz and /openapi.json needs "Authorization: Bearer <token>" (SCORELINE_API_TOKEN). docs/api.md has examples.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths,
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }, schemas },
  };
}

/** The fields of an object schema as parameters: [name, schema, required]. */
function objectFields(schema: z.ZodType | undefined, ref: (s: z.ZodType, io: 'input' | 'output') => Record<string, unknown>, input = false): [string, unknown, boolean][] {
  if (!schema) return [];
  const json = ref(schema, input ? 'input' : 'output') as { properties?: Record<string, unknown>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, s]) => [name, s, (json.required ?? []).includes(name)]);
}
