/**
 * Request and response shapes of the HTTP API, declared once: the server validates with them and
 * `/openapi.json` is generated from them (zod → JSON Schema 2020-12, which OpenAPI 3.1 uses as is).
 */
import { z } from 'zod';
import { DATE_PATTERN, isCalendarDate, NAME_PATTERN } from '../config/pipeline';
import { MAX_ROWS_PER_REQUEST } from '../nrt/rows';
import { RUN_STATES } from '../runs';
import { BACKFILL_OVERLAP_POLICIES } from '../schedules/config';

// The second check only speaks for a well-formed date: 2026-02-30 is refused as a day that does not exist.
const date = z
  .string()
  .regex(DATE_PATTERN, 'a date YYYY-MM-DD')
  .refine((d) => !DATE_PATTERN.test(d) || isCalendarDate(d), 'a calendar date YYYY-MM-DD (that day does not exist)');
const TRIGGERS = ['cli', 'api', 'schedule', 'ui', 'nrt', 'demo', 'bench', 'test'] as const;

export const pipelineName = z.string().regex(NAME_PATTERN, 'a pipeline name (lower-case letters, digits, - and _)');

/** Like `--set k=v`: dotted field paths; values are read as YAML scalars after String(), so 1000 and "1000" agree. */
const overrides = z
  .record(z.string().min(1), z.union([z.string(), z.number(), z.boolean()]))
  .describe('Pipeline fields to override by dotted path, like the CLI\'s --set, e.g. {"chunk_rows": 1000, "sink.mode": "append"}');

export const PipelineParams = z.strictObject({ name: pipelineName });
export const RunParams = z.strictObject({ runId: z.string().min(1).max(300).describe('Temporal run id (UUID) or workflow id scoreline/<pipeline>/<date> (URL-encoded)') });
export const ScheduleParams = z.strictObject({ name: z.string().min(1).max(300).describe('pipeline name or schedule id scoreline/<pipeline>') });

export const StartRunBody = z
  .strictObject({
    date: date.optional().describe('logical date to score; default: today (UTC), or with only_quarantined the date of that run'),
    overrides: overrides.optional(),
    only_quarantined: z
      .string()
      .regex(/^[0-9a-f-]{36}$/i, 'a run id (UUID)')
      .optional()
      .describe("rescore only the rows this run (id) set aside in the quarantine table, appending them to its date's output (like the CLI's --only-quarantined)"),
    resume: z
      .string()
      .regex(/^[0-9a-f-]{36}$/i, 'a run id (UUID)')
      .optional()
      .describe('resume this failed or terminated run (id) of the pipeline: reuse the chunks it staged, score the rest (like the CLI\'s --resume)'),
  })
  .meta({ id: 'StartRunRequest' });

export const StartRunResponse = z
  .object({
    workflow_id: z.string(),
    run_id: z.string(),
    status: z.literal('running'),
    pipeline: z.string(),
    logical_date: z.string(),
  })
  .meta({ id: 'StartRunResponse' });

const runState = z.enum(RUN_STATES);

export const RunSummary = z
  .object({
    workflow_id: z.string(),
    run_id: z.string(),
    pipeline: z.string(),
    logical_date: z.string(),
    status: runState,
    trigger: z.string().nullable(),
    started_at: z.string(),
    closed_at: z.string().nullable(),
    duration_ms: z.number().nullable(),
    rows_in: z.number().nullable().describe('set when a run succeeded (workflow memo); null while running and for failed runs'),
    rows_out: z.number().nullable().describe('set when a run succeeded (workflow memo); null while running and for failed runs'),
    model: z.object({ name: z.string(), version: z.string() }).nullable().describe('the pinned model version, once the plan ran'),
  })
  .meta({ id: 'RunSummary' });

export const RunDetails = RunSummary.extend({
  phase: z.string().nullable().describe('planning, scoring, committing, succeeded, failed, cancelled (the `progress` query)'),
  progress: z
    .object({
      chunks_done: z.number(),
      chunks_total: z.number(),
      rows_done: z.number().describe('input rows of the finished chunks, counted from their stats'),
      rows_planned: z.number(),
      rows_out: z.number(),
      estimate: z
        .object({ finish_at: z.string(), rows_per_s: z.number(), as_of: z.string() })
        .nullable()
        .describe('an estimate, not a measurement: when scoring ends at the throughput since the first chunk finished, as of the last chunk stats; null until two updates measured a rate, and once scoring is over'),
    })
    .nullable(),
  counts: z
    .object({
      rows_in: z.number(),
      rows_out: z.number(),
      rows_rejected: z.number(),
      rows_imputed: z.number(),
      rows_quarantined: z.number().describe('rows that could not be scored, set aside in the quarantine table under the error budget (max_rejected)'),
      chunks: z.number(),
    })
    .nullable(),
  model: z.object({ name: z.string(), version: z.string(), sha256: z.string(), ref: z.string() }).nullable(),
  drift: z
    .object({ reference: z.string().nullable(), breached: z.array(z.string()), columns: z.array(z.record(z.string(), z.unknown())), error: z.string().optional() })
    .nullable()
    .describe('a finished run: its profile against the reference (docs/drift.md); null without profiles'),
  shadow: z
    .object({ model: z.string(), output: z.string().nullable(), agreement: z.record(z.string(), z.unknown()) })
    .nullable()
    .describe('a finished run with `shadow:`: the challenger, its table and its agreement with the model'),
  output: z.string().nullable(),
  error: z.string().nullable(),
}).meta({ id: 'RunDetails' });

export const ListRunsQuery = z.strictObject({
  pipeline: pipelineName.optional(),
  status: runState.optional(),
  date: date.optional().describe('one logical date'),
  from: date.optional().describe('logical dates from (inclusive)'),
  to: date.optional().describe('logical dates to (inclusive)'),
  trigger: z.enum(TRIGGERS).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(20),
});

export const ListRunsResponse = z.object({ runs: z.array(RunSummary), query: z.string().describe('the Temporal visibility query used (paste it into the Web UI)') }).meta({ id: 'ListRunsResponse' });

export const CancelResponse = z.object({ workflow_id: z.string(), run_id: z.string(), status: z.literal('cancel_requested') }).meta({ id: 'CancelResponse' });

const cell = z.union([z.number(), z.boolean(), z.string(), z.null()]);

/**
 * A row object, checked for shape only (the row decoder types and checks every cell, naming row and
 * column): a per-cell zod record costs ~4 µs a row, which a 1,000-row request feels.
 */
const row = z
  .custom<Record<string, unknown>>((v) => v !== null && typeof v === 'object' && !Array.isArray(v), { message: 'expected a row object ({"column": value, …})' })
  .meta({ type: 'object', additionalProperties: {} });

export const ScoreBody = z
  .strictObject({
    // Cells are typed by the row decoder (src/nrt/rows.ts), whose messages name row and column.
    rows: z
      .array(row)
      .min(1)
      .describe(`row objects, feature column → number, boolean or null (key columns, if sent, are echoed back); at most ${MAX_ROWS_PER_REQUEST} rows and 1.5 MB as Arrow per request`),
    overrides: overrides.optional(),
    request_id: z.uuid().optional().describe('idempotency key: a retried request with the same id and rows is answered once (the first answer again); the same id with other rows is a 409'),
  })
  .meta({ id: 'ScoreRequest' });

export const ScoreResponse = z
  .object({
    request_id: z.string(),
    pipeline: z.string(),
    model: z.object({ name: z.string(), version: z.string(), sha256: z.string(), ref: z.string() }),
    rows_in: z.number(),
    rows_out: z.number(),
    rows_rejected: z.number(),
    rows_imputed: z.number(),
    predictions: z
      .array(z.record(z.string(), cell).nullable())
      .describe('one per input row, in input order: the key columns sent, then the prediction columns; null where features.nulls: skip dropped the row'),
    latency_ms: z.number().describe('from request received to predictions ready, server side'),
  })
  .meta({ id: 'ScoreResponse' });

export const HealthResponse = z
  .object({
    status: z.enum(['ok', 'degraded']),
    temporal: z.object({ ok: z.boolean(), address: z.string(), error: z.string().optional() }),
    models: z.array(z.object({ pipeline: z.string(), model: z.string().nullable(), ok: z.boolean(), version: z.string().optional(), sha256: z.string().optional(), error: z.string().optional() })),
  })
  .meta({ id: 'Health' });

export const ErrorResponse = z
  .object({
    error: z.object({
      code: z.string().describe('bad_request, unauthorized, forbidden, not_found, conflict, payload_too_large, unsupported_media_type, model_unavailable, unavailable, internal'),
      message: z.string(),
      request_id: z.string(),
    }),
  })
  .meta({ id: 'Error' });

// Schedules: shapes are src/schedules' own (documented there); the API passes them through.
export const ScheduleNote = z.strictObject({ note: z.string().max(500).optional() });
export const BackfillBody = z.strictObject({
  from: date,
  to: date,
  overlap: z.enum(BACKFILL_OVERLAP_POLICIES).optional().describe('buffer_all (default): one date after another; allow_all: all at once'),
  skip_unchanged: z.boolean().optional().describe('default true: run only dates whose input fingerprint or model sha256 changed since their last succeeded run'),
  force: z.boolean().optional().describe('run every date even when unchanged (the plan still says which are)'),
  dry_run: z.boolean().optional().describe('return the plan and the runs it would start; start nothing'),
});
export const ScheduleObject = z.record(z.string(), z.unknown()).meta({ id: 'Schedule' });
export const ScheduleList = z.object({ schedules: z.array(ScheduleObject) }).meta({ id: 'ScheduleList' });
