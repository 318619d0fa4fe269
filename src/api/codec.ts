/**
 * The payload codec over HTTP for the Temporal Web UI and CLI (Temporal's remote codec protocol,
 * docs/security.md): `POST /codec/encode` and `POST /codec/decode` take and return
 * `{"payloads": [{"metadata": {"<key>": "<base64>"}, "data": "<base64>"}]}` (Payloads as protobuf JSON).
 * The UI calls them from the browser, so they answer CORS preflights for the configured origins.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { z } from 'zod';
import { ConfigError } from '../errors';
import { CODEC_ENV } from '../security/codec';
import type { Route } from './http';
import { ErrorResponse } from './schemas';

export const CODEC_PATH = '/codec';
/** The Web UI of a local dev server, under either name a browser may use for it. */
export const DEFAULT_CODEC_CORS_ORIGINS = ['http://localhost:8233', 'http://127.0.0.1:8233'];

export type CodecAuth = 'token' | 'none';

export interface CodecEndpointOptions {
  codec: PayloadCodec;
  /** `token` (default): the API's bearer token, like every other route; `none`: no auth (loopback binds only). */
  auth?: CodecAuth;
  /** Browser origins allowed to call the endpoint (the Web UI's). */
  corsOrigins?: string[];
}

const base64 = z.string().regex(/^[A-Za-z0-9+/_-]*={0,2}$/, 'base64');
const JsonPayload = z.looseObject({
  metadata: z.record(z.string(), base64).nullish(),
  data: base64.nullish(),
});
const PayloadsBody = z.looseObject({ payloads: z.array(JsonPayload) });
type JsonPayloadT = z.infer<typeof JsonPayload>;

function fromJson(p: JsonPayloadT): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(p.data ?? '', 'base64'),
  };
}

function toJson(p: Payload): { metadata: Record<string, string>; data: string } {
  // Buffer.from copies any array-like: protobufjs decodes empty bytes (a `binary/null` payload's data) as [].
  const b64 = (bytes: Uint8Array | null | undefined) => (bytes ? Buffer.from(bytes).toString('base64') : '');
  return { metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, b64(v)])), data: b64(p.data) };
}

/** `token` | `none` from SCORELINE_CODEC_AUTH (default token). */
export function parseCodecAuth(value: string | undefined): CodecAuth {
  const v = (value ?? '').trim().toLowerCase();
  if (v === '' || v === 'token') return 'token';
  if (v === 'none') return 'none';
  throw new ConfigError(`${CODEC_ENV.auth}: "${value}" is not token or none`);
}

/** Comma-separated origins from SCORELINE_CODEC_CORS_ORIGIN (default: the local Web UI on 8233). */
export function parseCorsOrigins(value: string | undefined): string[] {
  if (value === undefined || value.trim() === '') return DEFAULT_CODEC_CORS_ORIGINS;
  return value.split(',').map((o) => {
    const origin = o.trim().replace(/\/$/, '');
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== origin) {
      throw new ConfigError(`${CODEC_ENV.corsOrigin}: "${o.trim()}" is not an origin such as https://temporal-ui.example.com or http://localhost:8233`);
    }
    return origin;
  });
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function codecRoutes(opts: CodecEndpointOptions): Route[] {
  const auth = (opts.auth ?? 'token') === 'token';
  const ERR = { description: 'error', schema: ErrorResponse };
  const route = (op: 'encode' | 'decode'): Route => ({
    method: 'POST',
    path: `${CODEC_PATH}/${op}`,
    operationId: `codec${op[0].toUpperCase()}${op.slice(1)}`,
    summary: `Temporal remote codec: ${op} payloads with this deployment's payload codec (for the Web UI and \`temporal --codec-endpoint\`)`,
    description:
      'Body and response: `{"payloads": [{"metadata": {"encoding": "<base64>", …}, "data": "<base64>"}]}` (Temporal Payloads as protobuf JSON). ' +
      (op === 'decode' ? 'Payloads that are not encrypted come back unchanged; one encrypted with a key id this server does not hold is a 400 naming the id.' : 'Every payload is encrypted with the current key.'),
    tag: 'codec',
    auth,
    body: PayloadsBody,
    responses: { 200: { description: `${op}d payloads`, schema: PayloadsBody }, 400: { ...ERR, description: 'malformed body, or a payload that does not decode (the message says why)' }, 401: { ...ERR, description: 'no bearer token' }, 403: { ...ERR, description: 'wrong bearer token' } },
    async handler({ body }) {
      const payloads = body.payloads.map(fromJson);
      const out = op === 'encode' ? await opts.codec.encode(payloads) : await opts.codec.decode(payloads);
      return { status: 200, body: { payloads: out.map(toJson) } };
    },
  });
  return [route('encode'), route('decode')];
}

/**
 * CORS for /codec/*: the allowed origin is echoed (with credentials allowed, for the UI's "include
 * cross-origin credentials"), and a preflight is answered here. True when the request was answered.
 */
export function handleCodecCors(req: IncomingMessage, res: ServerResponse, origins: string[]): boolean {
  const origin = req.headers.origin;
  res.setHeader('vary', 'Origin');
  if (origin && origins.includes(origin)) {
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('access-control-allow-credentials', 'true');
  }
  if (req.method !== 'OPTIONS') return false;
  req.resume();
  res.writeHead(204, {
    'access-control-allow-methods': 'POST, OPTIONS',
    'access-control-allow-headers': 'authorization, content-type, x-namespace',
    'access-control-max-age': '600',
  });
  res.end();
  return true;
}
