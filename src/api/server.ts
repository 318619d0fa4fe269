/**
 * `scoreline api`: the HTTP API server (docs/api.md). node:http with a route table, no framework:
 * zod (already a dependency) gives validation and the OpenAPI document, and the API is a thin layer
 * over the same functions the CLI calls.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import type { PayloadCodec } from '@temporalio/common';
import type { ScorelineClient } from '../client';
import { ConfigError } from '../errors';
import { NrtClient, type NrtDesign } from '../nrt/client';
import { logger } from '../obs/log';
import { METRICS_PATH, serveMetrics } from '../obs/metrics';
import * as schedules from '../schedules';
import { CODEC_ENV } from '../security/codec';
import { CODEC_PATH, codecRoutes, DEFAULT_CODEC_CORS_ORIGINS, handleCodecCors, isLoopback, type CodecAuth } from './codec';
import { DEFAULT_API_PORT, DEFAULT_MAX_BODY_BYTES } from './defaults';
import { createHandler, type Route } from './http';
import { openApiDocument } from './openapi';
import { apiRoutes, type ApiContext } from './routes';


export interface ApiOptions {
  client: ScorelineClient;
  /** Bearer token (SCORELINE_API_TOKEN); required. */
  token: string;
  host?: string;
  /** 0 = a free port. */
  port?: number;
  maxBodyBytes?: number;
  projectDir: string;
  pipelinesDir?: string;
  modelsDir?: string;
  nrtDesign?: NrtDesign;
  /**
   * Serve this payload codec at POST /codec/encode and /codec/decode (docs/security.md). Default: the
   * client's codec (SCORELINE_CODEC_KEYS); null = no codec endpoint.
   */
  codec?: PayloadCodec | null;
  /** Auth of the codec endpoint: `token` (default, the bearer token) or `none` (refused unless `host` is loopback). */
  codecAuth?: CodecAuth;
  /** Browser origins (the Web UI's) allowed to call the codec endpoint; default http://localhost:8233 and http://127.0.0.1:8233. */
  codecCorsOrigins?: string[];
  /** One entry per request (and the details of every 500); default: the process logger (src/obs/log.ts). */
  log?: (entry: Record<string, unknown>) => void;
}

export interface ApiServer {
  server: Server;
  url: string;
  port: number;
  routes: Route[];
  close(): Promise<void>;
}

export async function startApiServer(opts: ApiOptions): Promise<ApiServer> {
  if (!opts.token) throw new ConfigError('the API needs a bearer token: set SCORELINE_API_TOKEN (e.g. export SCORELINE_API_TOKEN=$(openssl rand -hex 24))');
  const projectDir = resolve(opts.projectDir);
  const ctx: ApiContext = {
    client: opts.client,
    nrt: new NrtClient(opts.client, opts.nrtDesign),
    projectDir,
    pipelinesDir: opts.pipelinesDir ?? join(projectDir, 'pipelines'),
    modelsDir: opts.modelsDir ?? join(projectDir, 'models'),
    schedules,
  };
  const routes = apiRoutes(ctx);
  const codec = opts.codec === undefined ? opts.client.codec : (opts.codec ?? undefined);
  const codecCors = opts.codecCorsOrigins ?? DEFAULT_CODEC_CORS_ORIGINS;
  if (codec) {
    if (opts.codecAuth === 'none' && !isLoopback(opts.host ?? '127.0.0.1')) {
      throw new ConfigError(`${CODEC_ENV.auth}=none serves decrypted payloads to anyone who reaches the port: only with a loopback --host (127.0.0.1), not ${opts.host}`);
    }
    routes.push(...codecRoutes({ codec, auth: opts.codecAuth, corsOrigins: codecCors }));
  }
  let openapi: Record<string, unknown> | undefined;
  routes.push({
    method: 'GET',
    path: '/openapi.json',
    operationId: 'openapi',
    summary: 'This document (no auth)',
    tag: 'health',
    auth: false,
    responses: { 200: { description: 'OpenAPI 3.1 document' } },
    handler: async () => ({ status: 200, body: (openapi ??= openApiDocument(routes)) }),
  });
  const log = opts.log ?? ((entry) => (Number(entry.status) >= 500 ? logger.error(entry, 'request failed') : logger.info(entry, 'request')));
  const handler = createHandler(routes, { token: opts.token, maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, log });
  // Prometheus scrapes GET /metrics without the bearer token (the token may start runs; a scraper needs
  // no such power) and without a log line per scrape. docs/observability.md.
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === METRICS_PATH) {
      req.resume();
      void serveMetrics(res);
      return;
    }
    // The Web UI calls the codec from the browser: CORS headers, and preflights answered without auth.
    if (codec && path.startsWith(`${CODEC_PATH}/`) && handleCodecCors(req, res, codecCors)) return;
    handler(req, res);
  });
  server.keepAliveTimeout = 65_000; // longer than common load balancers' idle timeout
  await new Promise<void>((ok, fail) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      fail(err.code === 'EADDRINUSE' ? new ConfigError(`port ${opts.port} on ${opts.host ?? '127.0.0.1'} is in use; pick another (scoreline api --port, scoreline dev --api-port)`) : err),
    );
    server.listen(opts.port ?? DEFAULT_API_PORT, opts.host ?? '127.0.0.1', () => ok());
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    server,
    url: `http://${host}:${port}`,
    port,
    routes,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
