/**
 * `scoreline api` (the HTTP API server) and `scoreline score` (near-real-time scoring from the command
 * line), plus the API inside `scoreline dev`. Both commands call what the API's routes call.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_API_PORT, DEFAULT_MAX_BODY_BYTES } from '../api/defaults';
import type { ApiServer } from '../api/server';
import { ScorelineClient, clientConfigFromEnv } from '../client';
import { parseOverrideFlags, type PipelineConfig } from '../config/pipeline';
import { ConfigError } from '../errors';
import { commandLogLevel, configureLogging, logger } from '../obs/log';
import type { EncodedRows } from '../nrt/rows';
import { printJson, waitForSignal } from './run-output';
import { port, positiveNumber } from './options';

/** The API server and the row codecs (Arrow) load when `api`, `score` or `dev` runs, not for every command. */
const load = {
  server: () => import('../api/server.js'),
  codec: () => import('../api/codec.js'),
  routes: () => import('../api/routes.js'),
  nrt: () => import('../nrt/client.js'),
  response: () => import('../nrt/response.js'),
  rows: () => import('../nrt/rows.js'),
};

type LoadPipeline = (arg: string, overrides: Record<string, string>) => { config: PipelineConfig; raw: unknown };

const collect = (value: string, previous: string[]) => [...previous, value];
const projectDir = () => resolve(process.env.SCORELINE_PROJECT_DIR ?? process.cwd());

function apiDirs() {
  const dir = projectDir();
  return {
    projectDir: dir,
    pipelinesDir: resolve(dir, process.env.SCORELINE_PIPELINES_DIR ?? 'pipelines'),
    modelsDir: resolve(dir, process.env.SCORELINE_MODELS_DIR ?? 'models'),
  };
}

export function registerApiCommands(program: Command, loadPipelineArg: LoadPipeline): void {
  program
    .command('api')
    .description('Serve the HTTP API (runs, schedules, near-real-time scoring; OpenAPI at /openapi.json) against TEMPORAL_ADDRESS until Ctrl-C.')
    .option('--port <port>', 'port to listen on', port('--port', true), Number(process.env.SCORELINE_API_PORT ?? DEFAULT_API_PORT))
    .option('--host <host>', 'address to bind (0.0.0.0 for all interfaces)', '127.0.0.1')
    .option('--max-body-mb <mb>', 'largest request body, in MB (413 beyond)', positiveNumber('--max-body-mb'), DEFAULT_MAX_BODY_BYTES / 1024 / 1024)
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent (default SCORELINE_LOG_LEVEL, else info)')
    .addHelpText(
      'after',
      `
Environment:
  SCORELINE_API_TOKEN      bearer token every route but /healthz, /openapi.json and /metrics requires (required)
  SCORELINE_API_PORT       default for --port (8080)
  SCORELINE_CODEC_KEYS     payload codec keys (id:base64key,…); when set, POST /codec/encode and /codec/decode
                           serve Temporal's remote codec protocol for the Web UI and CLI (docs/security.md)
  SCORELINE_CODEC_AUTH     token (default: the bearer token) or none (no auth; loopback --host only)
  SCORELINE_CODEC_CORS_ORIGIN  Web UI origins allowed to call /codec/* (default http://localhost:8233,http://127.0.0.1:8233)
  TEMPORAL_ADDRESS, SCORELINE_PIPELINES_DIR, SCORELINE_MODELS_DIR as for the other commands.
Pipelines are addressed by name (their file in the pipelines directory). docs/api.md has curl examples.
GET /metrics (no token) serves Prometheus metrics; one JSON log line per request on stderr (docs/observability.md).`,
    )
    .action(async (opts) => {
      configureLogging({ level: commandLogLevel(opts.logLevel) });
      const client = await ScorelineClient.connect(clientConfigFromEnv());
      try {
        const codec = await codecEndpointFromEnv();
        const api = await (await load.server()).startApiServer({ client, token: process.env.SCORELINE_API_TOKEN ?? '', host: opts.host, port: opts.port, maxBodyBytes: Math.round(opts.maxBodyMb * 1024 * 1024), ...apiDirs(), ...codec });
        logger.info(
          { url: api.url, openapi: `${api.url}/openapi.json`, metrics: `${api.url}/metrics`, temporal: client.config.address, codec: client.codec ? `${api.url}/codec (auth: ${codec.codecAuth})` : null },
          'API started (Ctrl-C to stop)',
        );
        await waitForSignal();
        await api.close();
      } finally {
        await client.close();
      }
    });

  program
    .command('score')
    .description('Score rows now, through Temporal (audited with trigger "nrt"): predictions in input order, with the model version and sha256.')
    .argument('<pipeline>', 'pipeline YAML file, or a pipeline name in the pipelines directory')
    .requiredOption('--rows <file>', 'rows: a JSON array of objects, JSON Lines, or an Arrow IPC file/stream; "-" reads stdin')
    .option('--set <key=value>', 'override a pipeline field (repeatable)', collect, [])
    .option('--json', 'one JSON object (the API\'s response) instead of one JSON line per row')
    .addHelpText(
      'after',
      `
Output: one JSON object per input row on stdout (key columns sent, then predictions; null for a row
features.nulls: skip dropped), and the model and timing on stderr. With --json: the API's response.
At most 10,000 rows and 1.5 MB of Arrow per request (Temporal's payload limit is 2 MiB).`,
    )
    .action(async (pipeline: string, opts) => {
      const overrides = parseOverrideFlags(opts.set);
      const { config, raw } = loadPipelineArg(pipeline, overrides);
      const receivedAtMs = Date.now();
      const rows = await readRows(opts.rows);
      const client = await ScorelineClient.connect(clientConfigFromEnv());
      try {
        const result = await new (await load.nrt()).NrtClient(client).score({ config, raw: raw ?? config, overrides, rows, receivedAtMs });
        if (opts.json) printJson((await load.routes()).scoreResponse(config, result, rows.table, receivedAtMs));
        else {
          process.stdout.write((await load.response()).predictionRows(result, rows.table, config.source.key).map((r) => JSON.stringify(r)).join('\n') + '\n');
          process.stderr.write(
            `scored ${result.rowsOut}/${result.rowsIn} rows with ${result.model.name}:${result.model.version} (sha256 ${result.model.sha256.slice(0, 12)}…) in ${Date.now() - receivedAtMs} ms; request ${result.requestId}\n`,
          );
        }
      } finally {
        await client.close();
      }
    });
}

async function readRows(path: string): Promise<EncodedRows> {
  let bytes: Buffer;
  try {
    bytes = path === '-' ? readFileSync(0) : readFileSync(path);
  } catch (err) {
    throw new ConfigError(`--rows ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  const where = path === '-' ? 'stdin' : path;
  // Arrow IPC: a file starts with "ARROW1", a stream with the 0xFFFFFFFF continuation marker.
  if (bytes.subarray(0, 6).toString('latin1') === 'ARROW1' || (bytes.length >= 4 && bytes.readUInt32LE(0) === 0xffffffff)) return (await load.rows()).rowsFromArrow(bytes, where);
  return (await load.rows()).rowsFromText(bytes.toString('utf8'), where);
}

/** The codec endpoint's settings from SCORELINE_CODEC_AUTH and SCORELINE_CODEC_CORS_ORIGIN (the codec itself is the client's). */
async function codecEndpointFromEnv(uiUrl?: string): Promise<{ codecAuth: 'token' | 'none'; codecCorsOrigins: string[] }> {
  const { parseCodecAuth, parseCorsOrigins } = await load.codec();
  const env = process.env;
  // `scoreline dev`: the UI is where this stack put it, unless the variable says otherwise.
  const devOrigins = uiUrl && !env.SCORELINE_CODEC_CORS_ORIGIN ? [uiUrl, uiUrl.replace('//127.0.0.1:', '//localhost:')] : undefined;
  return { codecAuth: parseCodecAuth(env.SCORELINE_CODEC_AUTH), codecCorsOrigins: devOrigins ?? parseCorsOrigins(env.SCORELINE_CODEC_CORS_ORIGIN) };
}

/**
 * The API inside `scoreline dev`. Without SCORELINE_API_TOKEN a random token is made up and printed,
 * so a dev stack is never open to anyone who can reach the port.
 */
export async function startDevApi(address: string, port: number, log: (m: string) => void, uiUrl?: string): Promise<{ api: ApiServer; stop(): Promise<void> }> {
  const client = await ScorelineClient.connect({ ...clientConfigFromEnv(), address });
  const token = process.env.SCORELINE_API_TOKEN || randomBytes(18).toString('hex');
  const codec = await codecEndpointFromEnv(uiUrl).catch(async (err) => {
    await client.close();
    throw err;
  });
  const api = await (await load.server()).startApiServer({ client, token, port, ...apiDirs(), ...codec }).catch(async (err) => {
    await client.close();
    throw err;
  });
  log(`API on ${api.url} (OpenAPI ${api.url}/openapi.json)${process.env.SCORELINE_API_TOKEN ? '' : `  SCORELINE_API_TOKEN=${token}`}`);
  if (client.codec) {
    log(
      `payload codec on: the Web UI decodes through ${api.url}/codec` +
        (codec.codecAuth === 'token' ? ' only with SCORELINE_CODEC_AUTH=none (the UI cannot send the bearer token; docs/security.md)' : ' (no auth: SCORELINE_CODEC_AUTH=none)'),
    );
  }
  return {
    api,
    stop: async () => {
      await api.close();
      await client.close();
    },
  };
}
