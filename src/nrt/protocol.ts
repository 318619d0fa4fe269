/**
 * What a near-real-time request is on its way through Temporal: the request (small JSON; the rows travel
 * beside it as one Arrow IPC payload, see rows.ts), the result, and the audit row builder. Imported by
 * workflow code, so: types and pure functions only.
 */
import type { PinnedModel, RunAudit, RunStatus } from '../types';

/** One long-lived workflow per pipeline answers the `score` update (docs/nrt.md says why). */
export const NRT_WORKFLOW = 'scorelineNrt';
export const NRT_UPDATE = 'score';

/**
 * What the workflow's update validator says while it drains before continuing as new: the client
 * retries the request, and the retry reaches the new run (rejected updates never enter history).
 */
export const NRT_ROLLING_OVER = 'scoreline-nrt: rolling over to a new run, retry the request';

export function nrtWorkflowId(pipeline: string): string {
  return `scoreline-nrt/${pipeline}`;
}

export interface NrtRequest {
  /** UUID chosen by the caller: the audit row's run_id and the update id (a retried request is deduplicated). */
  requestId: string;
  pipeline: string;
  /** Inline, already-parsed pipeline file (as for batch runs), so caller and worker agree on it. */
  config?: unknown;
  overrides?: Record<string, string>;
  /** Wall-clock time the request arrived (API or CLI), for the audit row's latency. */
  receivedAtMs: number;
  rows: number;
  /** sha256 of the rows (their Arrow IPC bytes), echoed in the result: a request id reused with other rows is refused. */
  rowsSha256?: string;
}

export interface NrtResult {
  requestId: string;
  model: Pick<PinnedModel, 'name' | 'version' | 'sha256' | 'ref'>;
  rowsIn: number;
  rowsOut: number;
  rowsRejected: number;
  rowsImputed: number;
  /** Prediction columns in input order; null where the NULL policy `skip` dropped the row, or for a NaN prediction. */
  predictions: Record<string, (number | null)[]>;
  /** Rows the NULL policy `skip` dropped, by index (absent in results of older workers: then a null first prediction says so). */
  skipped?: number[];
  /** Worker time from request received to predictions ready (config, model, tensor, inference). */
  scoreMs: number;
  finishedAtMs: number;
  /** The request's rowsSha256: what these predictions are of (a retried update id returns the first request's result). */
  rowsSha256?: string;
}

/** What the scoring step hands back: the result for the caller and the audit row the workflow records. */
export interface NrtScored {
  result: NrtResult;
  audit: RunAudit;
}

/** Audit rows of one pipeline document, written together (the config is not repeated per row). */
export interface NrtAuditGroup {
  pipeline: string;
  config?: unknown;
  overrides?: Record<string, string>;
  rows: RunAudit[];
}

/** The audit row of one request: trigger `nrt`, row counts, latency from arrival to predictions. */
export function nrtAuditRow(
  req: NrtRequest,
  workflowId: string,
  status: Exclude<RunStatus, 'running'>,
  f: { model?: Pick<PinnedModel, 'name' | 'version' | 'sha256'>; finishedAtMs: number; result?: NrtResult; error?: string },
): RunAudit {
  const r = f.result;
  return {
    run_id: req.requestId,
    workflow_id: workflowId,
    pipeline: req.pipeline,
    trigger: 'nrt',
    logical_date: new Date(req.receivedAtMs).toISOString().slice(0, 10),
    model_name: f.model?.name ?? null,
    model_version: f.model?.version ?? null,
    model_sha256: f.model?.sha256 ?? null,
    status,
    rows_in: r?.rowsIn ?? req.rows,
    rows_out: r?.rowsOut ?? 0,
    rows_rejected: r?.rowsRejected ?? 0,
    rows_imputed: r?.rowsImputed ?? 0,
    chunks: r ? 1 : 0,
    started_at: new Date(req.receivedAtMs).toISOString(),
    finished_at: new Date(f.finishedAtMs).toISOString(),
    duration_ms: Math.max(0, Math.round(f.finishedAtMs - req.receivedAtMs)),
    output: null,
    error: f.error ?? null,
    alerts: null,
    shadow_model: null,
    shadow_model_sha256: null,
    shadow_output: null,
    shadow_agreement: null,
    input_fingerprint: null,
    rows_quarantined: null,
  };
}

/** Group audit rows by the pipeline document they were scored with (deterministic: workflow code uses it). */
export function groupAudits(entries: { req: NrtRequest; row: RunAudit }[]): NrtAuditGroup[] {
  const groups = new Map<string, NrtAuditGroup>();
  for (const { req, row } of entries) {
    const key = JSON.stringify([req.pipeline, req.config ?? null, req.overrides ?? null]);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { pipeline: req.pipeline, config: req.config, overrides: req.overrides, rows: [] }));
    g.rows.push(row);
  }
  return [...groups.values()];
}
