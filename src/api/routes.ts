/**
 * The API's routes: each declares its schemas (validation + OpenAPI) and calls the same functions as
 * the CLI — client.startRun, runs.ts, NrtClient, src/schedules — so both can do the same things.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as arrow from 'apache-arrow';
import type { ScorelineClient } from '../client';
import { loadPipelineFile, readPipelineYaml, type PipelineConfig } from '../config/pipeline';
import { ConfigError, errorMessage, ScorelineError } from '../errors';
import type { NrtClient } from '../nrt/client';
import { predictionRows } from '../nrt/response';
import { rowsFromArrow, rowsFromObjects } from '../nrt/rows';
import { liveModels } from '../nrt/score';
import { modelStoreFor, resolvePipeline, withRunContext, type RunContext } from '../run/context';
import { describeRun, listRuns, runListQuery, startDate } from '../runs';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { ApiError, type Route } from './http';
import * as S from './schemas';
import type * as Schedules from '../schedules';

export interface ApiContext {
  client: ScorelineClient;
  nrt: NrtClient;
  /** Pipelines by name, as for the CLI (SCORELINE_PIPELINES_DIR). */
  pipelinesDir: string;
  modelsDir: string;
  projectDir: string;
  /** The schedule endpoints' implementation (src/schedules); without it they are not served. */
  schedules?: typeof Schedules;
}

const ERR = { description: 'error', schema: S.ErrorResponse };
const COMMON = { 400: { ...ERR, description: 'invalid request; the message names the field' }, 401: { ...ERR, description: 'no bearer token' }, 403: { ...ERR, description: 'wrong bearer token' } };

export function apiRoutes(ctx: ApiContext): Route[] {
  const pipeline = (name: string, overrides: Record<string, string> = {}): PipelineConfig => {
    try {
      return resolvePipeline(pipelineContext(ctx), name, undefined, overrides);
    } catch (err) {
      if (err instanceof ConfigError && / not found in /.test(err.message)) throw new ApiError(404, 'not_found', `pipeline "${name}" not found in this server's pipelines directory (SCORELINE_PIPELINES_DIR)`);
      if (err instanceof ConfigError) throw new ConfigError(pipelineErrorForCaller(name, err.message, overrides));
      throw err;
    }
  };

  const routes: Route[] = [
    {
      method: 'POST',
      path: '/v1/pipelines/{name}/runs',
      operationId: 'startRun',
      summary: 'Start a batch run for one logical date (like `scoreline run --no-wait`)',
      tag: 'runs',
      auth: true,
      params: S.PipelineParams,
      body: S.StartRunBody,
      responses: { 202: { description: 'started', schema: S.StartRunResponse }, ...COMMON, 404: { ...ERR, description: 'no such pipeline' }, 409: { ...ERR, description: 'that date is already running' } },
      async handler({ params, body }) {
        const overrides = stringOverrides(body.overrides);
        const config = pipeline(params.name, overrides);
        try {
          const { only_quarantined: onlyQuarantined, resume } = body;
          const date = await startDate(ctx.client, config.name, { date: body.date, onlyQuarantined, resume });
          if (onlyQuarantined) await withPlanningContext(ctx, (run) => import('../run/batch.js').then((b) => b.assertRescoreHasRows(run, config, date, onlyQuarantined)));
          const handle = await ctx.client.startRun({ config, raw: config, date, overrides, trigger: 'api', onlyQuarantined, resume });
          return { status: 202, body: { workflow_id: handle.workflowId, run_id: handle.firstExecutionRunId, status: 'running', pipeline: config.name, logical_date: date } };
        } catch (err) {
          if (err instanceof ScorelineError && err.cause instanceof WorkflowExecutionAlreadyStartedError) throw new ApiError(409, 'conflict', err.message);
          throw err;
        }
      },
    },
    {
      method: 'GET',
      path: '/v1/runs',
      operationId: 'listRuns',
      summary: 'Runs, newest first, filtered through Temporal visibility (search attributes)',
      tag: 'runs',
      auth: true,
      query: S.ListRunsQuery,
      responses: { 200: { description: 'runs', schema: S.ListRunsResponse }, ...COMMON },
      async handler({ query }) {
        return { status: 200, body: { runs: await listRuns(ctx.client, query), query: runListQuery(query, await ctx.client.hasSearchAttributes()) } };
      },
    },
    {
      method: 'GET',
      path: '/v1/runs/{runId}',
      operationId: 'getRun',
      summary: 'One run: status, phase and progress, counts, model version, output, error',
      tag: 'runs',
      auth: true,
      params: S.RunParams,
      responses: { 200: { description: 'the run', schema: S.RunDetails }, ...COMMON, 404: { ...ERR, description: 'no such run' } },
      async handler({ params }) {
        return { status: 200, body: await describeRun(ctx.client, params.runId).catch(notFound(params.runId)) };
      },
    },
    {
      method: 'POST',
      path: '/v1/runs/{runId}/cancel',
      operationId: 'cancelRun',
      summary: 'Cancel a run: in-flight chunks stop, staged files are removed, the audit row says "cancelled"',
      tag: 'runs',
      auth: true,
      params: S.RunParams,
      responses: { 202: { description: 'cancellation requested', schema: S.CancelResponse }, ...COMMON, 404: { ...ERR, description: 'no such run' }, 409: { ...ERR, description: 'the run already ended' } },
      async handler({ params }) {
        const { workflowId, runId } = await ctx.client.cancelRun(params.runId).catch(notFound(params.runId));
        return { status: 202, body: { workflow_id: workflowId, run_id: runId, status: 'cancel_requested' } };
      },
    },
    {
      method: 'POST',
      path: '/v1/pipelines/{name}/score',
      operationId: 'score',
      summary: 'Near-real-time scoring: rows in, predictions in input order out (through Temporal, audited with trigger "nrt")',
      description:
        'JSON body `{"rows": [...]}`, or an Arrow IPC stream with content-type application/vnd.apache.arrow.stream (overrides then as ' +
        'query parameters are not supported; use JSON). Rows travel through Temporal as one payload under its 2 MiB limit: larger requests get 413 with the row count that fits.',
      tag: 'scoring',
      auth: true,
      params: S.PipelineParams,
      body: S.ScoreBody,
      arrowBody: true,
      responses: {
        200: { description: 'predictions', schema: S.ScoreResponse },
        ...COMMON,
        404: { ...ERR, description: 'no such pipeline' },
        413: { ...ERR, description: 'body or rows too large' },
        415: { ...ERR, description: 'unsupported content type' },
        503: { ...ERR, description: "the pipeline's model cannot be loaded" },
      },
      async handler({ params, body, arrow: ipc, receivedAtMs }) {
        const overrides = stringOverrides(body?.overrides);
        const config = pipeline(params.name, overrides);
        const rows = ipc ? rowsFromArrow(ipc, 'body') : rowsFromObjects(body.rows, 'body.rows');
        const result = await ctx.nrt.score({ config, overrides, rows, requestId: body?.request_id, receivedAtMs });
        return { status: 200, body: scoreResponse(config, result, rows.table, receivedAtMs) };
      },
    },
    {
      method: 'GET',
      path: '/healthz',
      operationId: 'health',
      summary: 'Temporal reachable and every pipeline\'s model loadable (no auth); 503 when degraded',
      tag: 'health',
      auth: false,
      responses: { 200: { description: 'healthy', schema: S.HealthResponse }, 503: { description: 'degraded', schema: S.HealthResponse } },
      async handler() {
        const [temporal, models] = await Promise.all([temporalHealth(ctx), modelHealth(ctx)]);
        const ok = temporal.ok && models.every((m) => m.ok);
        return { status: ok ? 200 : 503, body: { status: ok ? 'ok' : 'degraded', temporal, models } };
      },
    },
  ];
  if (ctx.schedules) routes.push(...scheduleRoutes(ctx, ctx.schedules));
  return routes;
}

function scheduleRoutes(ctx: ApiContext, schedules: NonNullable<ApiContext['schedules']>): Route[] {
  const ok = (description: string) => ({ 200: { description, schema: S.ScheduleObject }, ...COMMON, 404: { ...ERR, description: 'no such schedule' } });
  const one = (
    method: 'GET' | 'POST',
    suffix: string,
    operationId: string,
    summary: string,
    run: (name: string, body: any) => Promise<unknown>,
    body?: Route['body'],
  ): Route => ({
    method,
    path: `/v1/schedules/{name}${suffix}`,
    operationId,
    summary,
    tag: 'schedules',
    auth: true,
    params: S.ScheduleParams,
    body,
    responses: ok(summary),
    async handler({ params, body: b }) {
      return { status: 200, body: await run(params.name, b).catch(notFound(params.name)) };
    },
  });
  return [
    {
      method: 'GET',
      path: '/v1/schedules',
      operationId: 'listSchedules',
      summary: 'Schedules of all pipelines, with next and last run',
      tag: 'schedules',
      auth: true,
      responses: { 200: { description: 'schedules', schema: S.ScheduleList }, ...COMMON },
      async handler() {
        return { status: 200, body: { schedules: await schedules.listSchedules(ctx.client) } };
      },
    },
    one('GET', '', 'describeSchedule', 'A schedule: spec, next run times and their logical dates, recent runs with outcome', (name) => schedules.describeSchedule(ctx.client, name)),
    one('POST', '/pause', 'pauseSchedule', 'Pause a schedule', (name, b) => schedules.pauseSchedule(ctx.client, name, b?.note), S.ScheduleNote),
    one('POST', '/unpause', 'unpauseSchedule', 'Unpause a schedule', (name, b) => schedules.unpauseSchedule(ctx.client, name, b?.note), S.ScheduleNote),
    one('POST', '/trigger', 'triggerSchedule', 'Start the scheduled run now (logical date = now in the schedule\'s timezone)', (name) => schedules.triggerSchedule(ctx.client, name)),
    one(
      'POST',
      '/backfill',
      'backfillSchedule',
      'Run each logical date in [from, to] once, skipping dates whose input and model are unchanged unless force (a date already running is not started twice); like `scoreline schedule backfill`',
      async (name, b) => {
        // Loaded on first use: the planner is not needed by any other route.
        const { planAndBackfillSchedule } = await import('../run/backfill.js');
        const flags = { overlap: b.overlap, skipUnchanged: b.skip_unchanged, force: b.force, dryRun: b.dry_run };
        const r = await planAndBackfillSchedule(ctx.client, name, { from: b.from, to: b.to }, flags, () => planningContext(ctx));
        return { ...r.backfill, ...(r.plan && { plan: r.plan }), started: r.started, dry_run: Boolean(b.dry_run) };
      },
      S.BackfillBody,
    ),
  ];
}

/** A Temporal "not found" (unknown id, schedule) as a 404 with our message. */
function notFound(id: string) {
  return (err: unknown): never => {
    const e = err as { name?: string; code?: unknown; message?: string };
    if (e?.name === 'WorkflowNotFoundError' || e?.name === 'ScheduleNotFoundError' || (err instanceof ScorelineError && err.code === 'NOT_FOUND')) {
      throw new ApiError(404, 'not_found', `"${id}" not found: ${errorMessage(err)}`);
    }
    throw err;
  };
}

/**
 * Fields an API caller may override. Not where data comes from or goes (source.*, sink.table/path,
 * audit.*, models_dir, alerts): a bearer token must not turn into arbitrary SQL run with the worker's
 * warehouse credentials, or into writes to any path. The CLI's --set (a local user) has no such limit.
 */
const API_OVERRIDABLE = /^(model|chunk_rows|parallelism|max_rejected|sink\.mode|features\.(nulls|cast|impute_values\.[A-Za-z_][A-Za-z0-9_]*))$/;

function stringOverrides(o: Record<string, string | number | boolean> | undefined): Record<string, string> {
  for (const key of Object.keys(o ?? {})) {
    if (!API_OVERRIDABLE.test(key)) {
      throw new ApiError(400, 'bad_request', `body.overrides.${key}: not overridable through the API (allowed: model, chunk_rows, parallelism, max_rejected, sink.mode, features.nulls, features.cast, features.impute_values.<column>)`);
    }
  }
  return Object.fromEntries(Object.entries(o ?? {}).map(([k, v]) => [k, String(v)]));
}

export function scoreResponse(config: PipelineConfig, result: Awaited<ReturnType<NrtClient['score']>>, rows: arrow.Table, receivedAtMs: number) {
  return {
    request_id: result.requestId,
    pipeline: config.name,
    model: result.model,
    rows_in: result.rowsIn,
    rows_out: result.rowsOut,
    rows_rejected: result.rowsRejected,
    rows_imputed: result.rowsImputed,
    predictions: predictionRows(result, rows, config.source.key),
    latency_ms: Date.now() - receivedAtMs,
  };
}

/**
 * A pipeline that does not validate, in the caller's terms: an override's problem names the request
 * field (`body.overrides.chunk_rows: …`), anything else names the pipeline; never the server's file path.
 */
export function pipelineErrorForCaller(name: string, message: string, overrides: Record<string, string>): string {
  const rest = message.replace(/^.*?\.ya?ml: /, '');
  for (const key of Object.keys(overrides)) {
    if (rest.startsWith(`${key}: `)) return `body.overrides.${key}: ${rest.slice(key.length + 2)}`;
    if (rest.includes(`unknown field "${key.split('.').at(-1)}"`)) return `body.overrides.${key}: not a pipeline field`;
  }
  return `pipeline ${name}: ${rest}`;
}

/** A run context for planning on this server (backfill plans, rescore checks): its connectors, no inference threads. Loaded on first use. */
async function planningContext(ctx: ApiContext): Promise<RunContext> {
  const { runContextFor } = await import('../worker.js');
  return runContextFor({ address: ctx.client.config.address, projectDir: ctx.projectDir, pipelinesDir: ctx.pipelinesDir, modelsDir: ctx.modelsDir, inferenceThreads: 0 });
}

function withPlanningContext<T>(ctx: ApiContext, fn: (run: RunContext) => Promise<T>): Promise<T> {
  return withRunContext(() => planningContext(ctx), fn);
}

function pipelineContext(ctx: ApiContext): RunContext {
  return { pipelinesDir: ctx.pipelinesDir, projectDir: ctx.projectDir, modelsDir: ctx.modelsDir } as RunContext;
}

async function temporalHealth(ctx: ApiContext): Promise<{ ok: boolean; address: string; error?: string }> {
  const address = ctx.client.config.address;
  try {
    await ctx.client.client.connection.withDeadline(Date.now() + 2000, () => ctx.client.client.workflowService.getSystemInfo({}));
    return { ok: true, address };
  } catch (err) {
    return { ok: false, address, error: `Temporal not reachable: ${errorMessage(err)}` };
  }
}

/**
 * Each pipeline's model resolves in the store (alias → version), its manifest parses and its file
 * matches the sha256 (checked once per version, see LiveModels). ONNX sessions load in the worker.
 */
async function modelHealth(ctx: ApiContext) {
  const dir = ctx.pipelinesDir;
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort() : [];
  return Promise.all(
    files.map(async (file) => {
      let config: PipelineConfig;
      try {
        config = loadPipelineFile(join(dir, file));
      } catch (err) {
        const name = (readPipelineYamlSafe(join(dir, file)) as { name?: string } | undefined)?.name ?? file;
        return { pipeline: String(name), model: null, ok: false, error: errorMessage(err) };
      }
      try {
        const m = await liveModels.resolve(modelStoreFor(pipelineContext(ctx), config), config.model);
        return { pipeline: config.name, model: config.model, ok: true, version: m.pin.version, sha256: m.pin.sha256 };
      } catch (err) {
        return { pipeline: config.name, model: config.model, ok: false, error: errorMessage(err) };
      }
    }),
  );
}

function readPipelineYamlSafe(path: string): unknown {
  try {
    return readPipelineYaml(path);
  } catch {
    return undefined;
  }
}
