/**
 * Finding and describing batch runs: what `scoreline status` / `runs list` and the HTTP API's
 * `GET /v1/runs[/{id}]` share, so the CLI and the API answer the same questions the same way.
 * Lists are Temporal visibility queries on Scoreline's search attributes (when the cluster has them
 * registered), so the Web UI's filter box takes the very same query.
 */
import { WorkflowFailedError, type WorkflowExecutionInfo } from '@temporalio/client';
import type { ScorelineClient } from './client';
import { isCalendarDate, NAME_PATTERN } from './config/pipeline';
import { ConfigError, ScorelineError } from './errors';
import { BATCH_WORKFLOW } from './search-attributes';
import type { RunProgress, RunResult, Trigger } from './types';

/** Temporal's execution status, in the words runs use. */
export const RUN_STATES = ['running', 'succeeded', 'failed', 'cancelled', 'terminated', 'timed_out'] as const;
export type RunState = (typeof RUN_STATES)[number];

const EXECUTION_STATUS: Record<RunState, string> = {
  running: 'Running',
  succeeded: 'Completed',
  failed: 'Failed',
  cancelled: 'Canceled',
  terminated: 'Terminated',
  timed_out: 'TimedOut',
};

const STATE_OF: Record<string, RunState> = {
  RUNNING: 'running',
  COMPLETED: 'succeeded',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  TERMINATED: 'terminated',
  TIMED_OUT: 'timed_out',
  CONTINUED_AS_NEW: 'running',
};

export interface RunFilter {
  pipeline?: string;
  status?: RunState;
  /** One logical date, or a range (inclusive). */
  date?: string;
  from?: string;
  to?: string;
  trigger?: Trigger;
  limit?: number;
}

/**
 * The visibility query for a filter. Every value is checked against a strict pattern first, so nothing
 * a caller sends is pasted into the query unchecked.
 */
export function runListQuery(f: RunFilter, searchAttributes: boolean): string {
  const parts = [`WorkflowType = "${BATCH_WORKFLOW}"`];
  if (f.pipeline !== undefined) {
    if (!NAME_PATTERN.test(f.pipeline)) throw new ConfigError(`pipeline: "${f.pipeline}" is not a pipeline name`);
    parts.push(searchAttributes ? `ScorelinePipeline = "${f.pipeline}"` : `WorkflowId STARTS_WITH "scoreline/${f.pipeline}/"`);
  }
  if (f.status !== undefined) {
    if (!(f.status in EXECUTION_STATUS)) throw new ConfigError(`status: expected one of ${RUN_STATES.join(', ')}, got "${f.status}"`);
    parts.push(`ExecutionStatus = "${EXECUTION_STATUS[f.status]}"`);
  }
  const dates = { date: f.date, from: f.from, to: f.to };
  for (const [field, value] of Object.entries(dates)) {
    if (value !== undefined && !isCalendarDate(value)) throw new ConfigError(`${field}: expected a calendar date YYYY-MM-DD, got "${value}"`);
  }
  if (f.date !== undefined && (f.from !== undefined || f.to !== undefined)) throw new ConfigError('date: give one date, or a range with from/to, not both');
  if (f.from !== undefined && f.to !== undefined && f.from > f.to) throw new ConfigError(`from ${f.from} is after to ${f.to}: nothing could match`);
  if ((f.date || f.from || f.to || f.trigger) && !searchAttributes) {
    throw new ConfigError('filtering by date or trigger needs the Scoreline search attributes on the Temporal cluster (scoreline dev registers them; README "Temporal Web UI")');
  }
  // Half-open day ranges rather than equality: stores keep Datetime values at different precisions.
  const from = f.date ?? f.from;
  const to = f.date ?? f.to;
  if (from) parts.push(`ScorelineLogicalDate >= "${from}T00:00:00Z"`);
  if (to) parts.push(`ScorelineLogicalDate < "${nextDay(to)}T00:00:00Z"`);
  if (f.trigger) {
    if (!/^[a-z]+$/.test(f.trigger)) throw new ConfigError(`trigger: "${f.trigger}" is not a trigger name`);
    parts.push(`ScorelineTrigger = "${f.trigger}"`);
  }
  return parts.join(' AND ');
}

function nextDay(date: string): string {
  return new Date(Date.parse(`${date}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
}

export interface RunSummary {
  workflow_id: string;
  run_id: string;
  pipeline: string;
  logical_date: string;
  status: RunState;
  trigger: string | null;
  started_at: string;
  closed_at: string | null;
  duration_ms: number | null;
  /** Rows read and written: from the memo a succeeded run sets when it finishes; null before, and for failed runs. */
  rows_in: number | null;
  rows_out: number | null;
  /** The pinned model once the plan ran (search attributes ScorelineModel/ScorelineModelVersion, else the final memo). */
  model: { name: string; version: string } | null;
}

export async function listRuns(client: ScorelineClient, f: RunFilter): Promise<RunSummary[]> {
  const query = runListQuery(f, await client.hasSearchAttributes());
  const limit = f.limit ?? 20;
  const out: RunSummary[] = [];
  for await (const wf of client.client.workflow.list({ query, pageSize: Math.min(limit, 1000) })) {
    out.push(summarize(wf));
    if (out.length >= limit) break;
  }
  return out;
}

function summarize(wf: Omit<WorkflowExecutionInfo, 'raw'>): RunSummary {
  // From the search attributes when the run has them (a run started in the Web UI may have any workflow
  // id), else from the workflow id scoreline/<pipeline>/<date>.
  const [, idPipeline = '', idDate = ''] = wf.workflowId.split('/');
  const attr = (name: string) => (wf.searchAttributes?.[name] as unknown[] | undefined)?.[0];
  const pipeline = attr('ScorelinePipeline');
  const date = attr('ScorelineLogicalDate');
  const trigger = attr('ScorelineTrigger');
  const memo = wf.memo ?? {};
  return {
    workflow_id: wf.workflowId,
    run_id: wf.runId,
    pipeline: typeof pipeline === 'string' ? pipeline : idPipeline,
    logical_date: date instanceof Date ? date.toISOString().slice(0, 10) : typeof date === 'string' ? date.slice(0, 10) : idDate,
    status: STATE_OF[wf.status.name] ?? 'running',
    trigger: typeof trigger === 'string' ? trigger : null,
    started_at: wf.startTime.toISOString(),
    closed_at: wf.closeTime?.toISOString() ?? null,
    duration_ms: wf.closeTime ? wf.closeTime.getTime() - wf.startTime.getTime() : null,
    rows_in: typeof memo.rows_in === 'number' ? memo.rows_in : null,
    rows_out: typeof memo.rows_out === 'number' ? memo.rows_out : null,
    model: pinnedModel(wf),
  };
}

/**
 * The run's model as name and version. The plan sets the search attributes (when the cluster has them);
 * a succeeded run's final memo says `name:version`. The memo set at start holds the unresolved reference
 * (`churn@champion`), which is not a version and is not shown.
 */
function pinnedModel(wf: Omit<WorkflowExecutionInfo, 'raw'>): RunSummary['model'] {
  const first = (key: string) => {
    const v = (wf.searchAttributes?.[key] as unknown[] | undefined)?.[0];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const name = first('ScorelineModel');
  const version = first('ScorelineModelVersion');
  if (name && version) return { name, version };
  const memo = wf.memo?.model;
  const m = typeof memo === 'string' ? /^([^:@]+):([^:@]+)$/.exec(memo) : null;
  return m ? { name: m[1], version: m[2] } : null;
}

export interface RunDetails extends RunSummary {
  /** The workflow's phase (planning, scoring, committing, …), from the `progress` query. */
  phase: string | null;
  progress: {
    chunks_done: number;
    chunks_total: number;
    /** Counted from finished chunks' stats. */
    rows_done: number;
    rows_planned: number;
    rows_out: number;
    /** An estimate, never a fact: when scoring ends at the throughput so far (null until measurable, and after scoring). */
    estimate: { finish_at: string; rows_per_s: number; as_of: string } | null;
  } | null;
  counts: { rows_in: number; rows_out: number; rows_rejected: number; rows_imputed: number; rows_quarantined: number; chunks: number } | null;
  model: { name: string; version: string; sha256: string; ref: string } | null;
  output: string | null;
  drift: ReturnType<typeof driftJson>;
  shadow: ReturnType<typeof shadowJson>;
  error: string | null;
}

/**
 * The logical date a run starts for: that of the run it rescores (`--only-quarantined`) or resumes
 * (`--resume`), else the given date, else today (UTC). The CLI and the API start runs alike.
 */
export function startDate(client: ScorelineClient, pipeline: string, o: { date?: string; onlyQuarantined?: string; resume?: string }): Promise<string> {
  if (o.onlyQuarantined) return rescoreDate(client, pipeline, o.onlyQuarantined, o.date);
  if (o.resume) return resumeDate(client, pipeline, o.resume, o.date);
  return Promise.resolve(o.date ?? new Date().toISOString().slice(0, 10));
}

/** The date of a run whose quarantined rows are to be rescored (`run --only-quarantined`): a succeeded one. */
export function rescoreDate(client: ScorelineClient, pipeline: string, runId: string, date?: string): Promise<string> {
  return dateOfRun(client, pipeline, runId, date, (s) => (s === 'succeeded' ? undefined : `has not succeeded (${s}); only a succeeded run's quarantined rows can be rescored`));
}

/** The date of a run to resume (`run --resume`): one that ended without succeeding. */
export function resumeDate(client: ScorelineClient, pipeline: string, runId: string, date?: string): Promise<string> {
  return dateOfRun(client, pipeline, runId, date, (s) => (s === 'succeeded' ? 'succeeded: there is nothing to resume' : s === 'running' ? 'is still running' : undefined));
}

/**
 * The logical date of run `runId` of `pipeline`, asked of Temporal, if `refuse` has nothing against its
 * state; `date`, when given, must agree (and is used alone once the run is past retention).
 */
async function dateOfRun(client: ScorelineClient, pipeline: string, runId: string, date: string | undefined, refuse: (state: RunState) => string | undefined): Promise<string> {
  let run: RunDetails;
  try {
    run = await describeRun(client, runId);
  } catch (err) {
    if (date && err instanceof ScorelineError && err.code === 'NOT_FOUND') return date; // past Temporal's retention: the audit and quarantine tables still know the run
    if (err instanceof ScorelineError && err.code === 'NOT_FOUND') throw new ConfigError(`${err.message}; give its logical date too (--date / "date") if it is past Temporal's retention`);
    throw err;
  }
  const problem =
    run.pipeline !== pipeline ? `is a run of pipeline ${run.pipeline}, not ${pipeline}` :
    date && run.logical_date !== date ? `scored ${run.logical_date}, not ${date}` :
    refuse(run.status);
  if (problem) throw new ConfigError(`run ${runId} ${problem}`);
  return run.logical_date;
}

/** One run by run id (UUID) or workflow id: Temporal's status, live progress, and the result once finished. */
export async function describeRun(client: ScorelineClient, id: string): Promise<RunDetails> {
  const handle = await client.handleFor(id);
  const desc = await handle.describe();
  const p: RunProgress | undefined = await client.progress(handle);
  let result: RunResult | undefined;
  let error = p?.error ?? null;
  if (desc.status.name === 'COMPLETED') result = (await handle.result()) as RunResult;
  else if (desc.status.name !== 'RUNNING' && !error) {
    error = await handle.result().then(
      () => null,
      (err) => (err instanceof WorkflowFailedError ? (err.cause?.message ?? err.message) : String(err)),
    );
  }
  const model = result?.model ?? p?.model;
  const summary = summarize(desc);
  return {
    ...summary,
    pipeline: p?.pipeline || summary.pipeline,
    logical_date: p?.logicalDate || summary.logical_date,
    phase: p?.phase ?? null,
    progress: p
      ? {
          chunks_done: p.chunksDone,
          chunks_total: p.chunksTotal,
          rows_done: p.rowsDone,
          rows_planned: p.rowsPlanned,
          rows_out: p.rowsOut,
          estimate:
            p.phase === 'scoring' && p.estimate
              ? { finish_at: new Date(p.estimate.finishAtMs).toISOString(), rows_per_s: p.estimate.rowsPerSec, as_of: new Date(p.estimate.asOfMs).toISOString() }
              : null,
        }
      : null,
    counts: result ? { rows_in: result.rowsIn, rows_out: result.rowsOut, rows_rejected: result.rowsRejected, rows_imputed: result.rowsImputed, rows_quarantined: result.rowsQuarantined ?? 0, chunks: result.chunks } : null,
    model: model ? { name: model.name, version: model.version, sha256: model.sha256, ref: model.ref } : null,
    output: result?.output ?? null,
    drift: result ? driftJson(result) : null,
    shadow: result ? shadowJson(result) : null,
    error,
  };
}

/** A finished run's drift against its reference (docs/drift.md), as `run --json` and GET /v1/runs/{id} show it. */
export function driftJson(r: RunResult) {
  const d = r.drift;
  return d ? { reference: d.reference, breached: d.breached.map((c) => c.column), columns: d.columns, ...(d.error && { error: d.error }) } : null;
}

/** A finished run's challenger (`shadow:`): model, its table, and the agreement with the model. */
export function shadowJson(r: RunResult) {
  const s = r.shadow;
  return s ? { model: `${s.model.name}:${s.model.version}`, output: s.output ?? null, agreement: s.agreement } : null;
}
