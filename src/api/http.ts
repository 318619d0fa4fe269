/**
 * The HTTP plumbing under the API, on node:http: routing by a table of routes (routes.ts), bearer-token
 * auth, body size limits, validation with the routes' zod schemas, and errors that never carry a stack
 * trace (a 500 says only its request id; the details go to the log under the same id).
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { ScorelineError } from '../errors';
import { RowsError } from '../nrt/rows';

export const ARROW_STREAM = 'application/vnd.apache.arrow.stream';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ApiRequest<P = unknown, Q = unknown, B = unknown> {
  id: string;
  receivedAtMs: number;
  params: P;
  query: Q;
  body: B;
  /** The raw body when it came as Arrow IPC (routes with `arrowBody`). */
  arrow?: Uint8Array;
}

export interface ApiResult {
  status: number;
  body: unknown;
}

export interface Route<P = any, Q = any, B = any> {
  method: 'GET' | 'POST';
  /** OpenAPI-style template: `/v1/runs/{runId}`. */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** Everything but health and the OpenAPI document needs the bearer token. */
  auth: boolean;
  params?: z.ZodType<P>;
  query?: z.ZodType<Q>;
  body?: z.ZodType<B>;
  /** Also accepts an Arrow IPC stream body (`content-type: application/vnd.apache.arrow.stream`). */
  arrowBody?: boolean;
  responses: Record<number, { description: string; schema?: z.ZodType }>;
  handler(req: ApiRequest<P, Q, B>): Promise<ApiResult>;
}

export interface HttpOptions {
  /** Bearer token; compared in constant time. */
  token: string;
  /** Largest request body in bytes (413 beyond). */
  maxBodyBytes: number;
  log: (entry: Record<string, unknown>) => void;
}

interface CompiledRoute {
  route: Route;
  pattern: RegExp;
  names: string[];
}

export function compileRoutes(routes: Route[]): CompiledRoute[] {
  return routes.map((route) => {
    const names: string[] = [];
    const source = route.path.replace(/\{(\w+)\}/g, (_, name: string) => {
      names.push(name);
      return '([^/]+)';
    });
    return { route, pattern: new RegExp(`^${source}$`), names };
  });
}

/** The request handler node:http calls. */
export function createHandler(routes: Route[], opts: HttpOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const compiled = compileRoutes(routes);
  const tokenDigest = digest(opts.token);
  return (req, res) => {
    const id = randomUUID();
    const receivedAtMs = Date.now();
    const started = performance.now();
    res.setHeader('x-request-id', id);
    const finish = (status: number, body: unknown, err?: unknown) => {
      send(res, status, body);
      const entry: Record<string, unknown> = { request_id: id, method: req.method, path: req.url?.split('?')[0], status, ms: Math.round((performance.now() - started) * 10) / 10 };
      if (err && status >= 500) entry.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
      opts.log(entry);
    };
    handle(req, id, receivedAtMs).then(
      (result) => finish(result.status, result.body),
      (err) => {
        const e = toApiError(err);
        finish(e.status, { error: { code: e.code, message: e.message, request_id: id } }, err);
      },
    );
  };

  async function handle(req: IncomingMessage, id: string, receivedAtMs: number): Promise<ApiResult> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const matches = compiled.filter((c) => c.pattern.test(url.pathname));
    if (matches.length === 0) {
      // Drain the body so the client gets the 404 rather than a reset connection.
      req.resume();
      throw new ApiError(404, 'not_found', `no route ${url.pathname} (GET /openapi.json lists them)`);
    }
    const match = matches.find((c) => c.route.method === req.method);
    if (!match) {
      req.resume();
      throw new ApiError(405, 'method_not_allowed', `${req.method} is not allowed on ${url.pathname} (allowed: ${matches.map((m) => m.route.method).join(', ')})`);
    }
    const { route } = match;
    if (route.auth) authorize(req);
    const rawParams = Object.fromEntries(match.names.map((n, i) => [n, decodePathSegment(n, match.pattern.exec(url.pathname)![i + 1])]));
    const params = route.params ? validate(route.params, rawParams, 'path') : rawParams;
    const query = route.query ? validate(route.query, Object.fromEntries(url.searchParams), 'query') : {};
    let body: unknown;
    let arrow: Uint8Array | undefined;
    if (route.body) {
      const type = (req.headers['content-type'] ?? 'application/json').split(';')[0].trim().toLowerCase();
      const raw = await readBody(req, opts.maxBodyBytes);
      if (route.arrowBody && type === ARROW_STREAM) arrow = raw;
      else if (type === 'application/json' || (type === '' && raw.length === 0)) body = validate(route.body, parseJson(raw), 'body');
      else throw new ApiError(415, 'unsupported_media_type', `content-type ${type} is not accepted here; send application/json${route.arrowBody ? ` or ${ARROW_STREAM}` : ''}`);
    } else req.resume();
    return route.handler({ id, receivedAtMs, params, query, body, arrow });
  }

  function authorize(req: IncomingMessage): void {
    const header = req.headers.authorization;
    if (!header) throw new ApiError(401, 'unauthorized', 'missing bearer token: send "Authorization: Bearer <token>" (the server reads it from SCORELINE_API_TOKEN)');
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m) throw new ApiError(401, 'unauthorized', 'the Authorization header must be "Bearer <token>"');
    // Digests have equal length, so the comparison takes the same time whatever the token's length.
    if (!timingSafeEqual(digest(m[1].trim()), tokenDigest)) throw new ApiError(403, 'forbidden', 'the bearer token is not valid for this server');
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function parseJson(raw: Uint8Array): unknown {
  if (raw.length === 0) return {};
  try {
    return JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch (err) {
    throw new ApiError(400, 'bad_request', `body: not valid JSON (${(err as Error).message})`);
  }
}

/** Reads the whole body, refusing (413) as soon as it exceeds `limit` — by Content-Length before reading when given. */
export function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  const tooLarge = (n: number) =>
    new ApiError(413, 'payload_too_large', `body is ${n > limit ? `over ${limit}` : n} bytes; this server accepts at most ${limit} bytes per request (scoreline api --max-body-mb)`);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    return Promise.reject(tooLarge(declared));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(tooLarge(size));
        return; // keep draining so the response can still be read by the client
      }
      chunks.push(chunk);
    });
    req.on('end', () => failed || resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', (err) => failed || reject(err));
  });
}

/** Parse with a route schema; the 400 names the field (`body.rows.3.f05: …`). */
export function validate<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  // reportInput: without it zod reports a value of the wrong type like a missing one ("required").
  const parsed = schema.safeParse(value, { reportInput: true });
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.slice(0, 5).map((i) => `${[where, ...i.path.map(String)].join('.')}: ${issueMessage(i)}`);
  throw new ApiError(400, 'bad_request', issues.join('; '));
}

function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type' && issue.input === undefined) return `required (expected ${issue.expected})`;
  return issue.message.replace(/^Invalid input: /, '');
}

/** Scoreline's errors → HTTP. Anything unexpected is a 500 whose body says nothing but the request id. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof RowsError) return new ApiError(err.tooLarge ? 413 : 400, err.tooLarge ? 'payload_too_large' : 'bad_request', err.message);
  if (err instanceof ScorelineError) {
    switch (err.code) {
      case 'CONFIG':
      case 'INPUT':
        return new ApiError(400, 'bad_request', err.message);
      case 'NOT_FOUND':
        return new ApiError(404, 'not_found', err.message);
      case 'CONFLICT':
        return new ApiError(409, 'conflict', err.message);
      case 'MODEL':
        return new ApiError(503, 'model_unavailable', err.message);
      case 'UNAVAILABLE':
        return new ApiError(503, 'unavailable', err.message);
      default:
        break;
    }
  }
  return new ApiError(500, 'internal', 'internal error; the server log has the details under this request id');
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...(status === 401 ? { 'www-authenticate': 'Bearer' } : {}),
  });
  res.end(text);
}

/** A malformed escape (`%E0%A4%A`) is the caller's mistake: a 400 naming the parameter, not a 500. */
function decodePathSegment(name: string, raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ApiError(400, 'bad_request', `path.${name}: not a valid percent-encoded value`);
  }
}
