/**
 * Types that cross the Temporal boundary (workflow input/output, activity arguments and results).
 * Everything here is small JSON: references and stats, never data rows.
 * Workflow code imports this file, so it must stay free of runtime imports.
 */
import type { PipelineConfig } from './config/pipeline';
import type { Agreement, AgreementSummary } from './profile/agreement';
import type { ColumnDrift, Profile } from './profile/sketch';

export type Trigger = 'cli' | 'api' | 'schedule' | 'ui' | 'nrt' | 'demo' | 'bench' | 'test';

/** Workflow input. Small enough to type into the Web UI's "Start Workflow" form. */
export interface RunInput {
  /** Pipeline name, resolved by the worker in its pipelines directory, unless `config` is given. */
  pipeline: string;
  /** Inline, already-parsed pipeline file (the CLI and API send it so worker and caller agree). */
  config?: unknown;
  /** Logical date YYYY-MM-DD. Default: the schedule's nominal time's date in `timezone`, else today there. */
  date?: string;
  /** IANA zone in which a run without `date` reads its nominal time as a date (the schedule's; default UTC). */
  timezone?: string;
  /** Dotted-path overrides applied to the pipeline file before validation, e.g. {"chunk_rows": "1000"}. */
  overrides?: Record<string, string>;
  trigger?: Trigger;
  /**
   * `run --only-quarantined RUN_ID`: score only the rows that run set aside in the quarantine table (and
   * the output does not hold yet), append them to the date's output, and replace the date's quarantine
   * rows with those that still cannot be scored.
   */
  onlyQuarantined?: string;
  /**
   * `run --resume RUN_ID`: resume that failed (or terminated) run of the same pipeline and date under its
   * run id: re-plan, check the input and model are unchanged, reuse its staged chunks, score the rest.
   */
  resume?: string;
}

export interface PinnedModel {
  name: string;
  version: string;
  sha256: string;
  /** The reference the pipeline used (`churn@champion`), kept for the audit trail. */
  ref: string;
  /** Model store root the worker resolved it in. */
  store: string;
}

/** Which rows of the source one activity scores. Interpreted only by the source connector. */
export type ChunkLocator =
  | { kind: 'parquet'; file: string; rowStart: number; rowEnd: number }
  | { kind: 'table'; table: string; rowStart: number; rowEnd: number };

export interface Chunk {
  index: number;
  /** Rows the planner expects in this chunk. */
  rows: number;
  locator: ChunkLocator;
}

export interface RunRef {
  runId: string;
  workflowId: string;
  pipeline: string;
  logicalDate: string;
  trigger: Trigger;
}

export interface RunPlan {
  run: RunRef;
  config: PipelineConfig;
  model: PinnedModel;
  /** The pinned challenger of `shadow:`, scored beside the model. */
  shadow?: PinnedModel;
  /** Feature and prediction columns a chunk profile holds (sizes how many chunks are profiled). */
  profileColumns?: number;
  /** More chunks than this are scored in child workflows of this many each (workflows/chunks.ts); 0 = never. */
  chunksPerChild?: number;
  /** The key check runs beside the chunks (checkRunKeys); the commit waits for it. */
  keyCheckDeferred?: boolean;
  /** Asked for by a run started without Scoreline's search attributes (the Web UI): they are registered, so it may set them. */
  searchAttributes?: boolean;
  chunks: Chunk[];
  rowsPlanned: number;
  /** Input files / tables the plan read, for the audit trail. */
  inputs: string[];
  /** The source's input fingerprint (SourcePlan.fingerprint), recorded in the audit row; absent when the source cannot give one. */
  fingerprint?: string;
  startedAt: string;
  /** A rescore of this run's quarantined rows (RunInput.onlyQuarantined): chunks score only those rows. */
  rescoreOf?: string;
  /** `run --resume`: chunks the failed run had staged, taken over as they are (`chunks` holds only the rest). */
  reused?: { staged: StagedChunk[]; totals: RunTotals };
}

export interface ChunkStats {
  index: number;
  rowsIn: number;
  rowsOut: number;
  /** Rows dropped by the NULL policy `skip`. */
  rowsRejected: number;
  /** Rows with at least one value filled in by the NULL policy `impute`. */
  rowsImputed: number;
  readMs: number;
  convertMs: number;
  inferMs: number;
  writeMs: number;
  /** File name of the staged output (in the sink's staging area for the run). */
  stagedFile: string;
  bytesWritten: number;
  worker: string;
  attempt: number;
  /** Profile of the chunk's features and predictions (src/profile); absent when `profile: false`. */
  profile?: Profile;
  profileMs?: number;
  /** The challenger's staged output and its agreement with the model, when the pipeline has `shadow:`. */
  shadow?: { stagedFile: string; rowsOut: number; agreement: Agreement };
  /**
   * Rows set aside under the error budget (`max_rejected`): their staged quarantine file, how many, and
   * the first one in words (`column "f03" row 17 (key 1017): NULL …`) for the run's error if over budget.
   */
  quarantine?: { stagedFile: string; rows: number; first: string };
}

export interface CommitStats {
  output: string;
  rowsOut: number;
  files: number;
  /** Rows that the committed partition replaced (0 for a new partition). */
  rowsReplaced: number;
}

/** What the last step needs of the plan: everything but the chunk list (which can be large). */
export type PlanSummary = Omit<RunPlan, 'chunks'> & { chunks: number };

/** What the commit needs of each chunk: small, so thousands of chunks fit one activity payload. */
export interface StagedChunk {
  index: number;
  rows: number;
  file: string;
}

/** Run totals, summed by the workflow as chunks finish (no per-chunk list travels to the last step). */
export interface RunTotals {
  chunksDone: number;
  rowsIn: number;
  rowsOut: number;
  rowsRejected: number;
  rowsImputed: number;
  /** Rows set aside in the quarantine table under the error budget (absent in runs from before it existed). */
  rowsQuarantined?: number;
  stageMs: { read: number; convert: number; infer: number; write: number };
}

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface RunResult {
  runId: string;
  workflowId: string;
  pipeline: string;
  logicalDate: string;
  status: RunStatus;
  rowsIn: number;
  rowsOut: number;
  rowsRejected: number;
  /** Rows with at least one NULL feature filled in by the NULL policy `impute`. */
  rowsImputed: number;
  chunks: number;
  durationMs: number;
  output?: string;
  audit?: string;
  model?: PinnedModel;
  error?: string;
  /** Sum over chunks, for "where does the time go". */
  stageMs?: { read: number; convert: number; infer: number; write: number };
  /** The run's profile compared with its reference (docs/drift.md). */
  drift?: DriftSummary;
  /** Shadow scoring: the challenger, where its predictions went, and how well it agreed with the model. */
  shadow?: { model: PinnedModel; output?: string; agreement: AgreementSummary };
  /** Rows that could not be scored, set aside under the error budget (`max_rejected`). */
  rowsQuarantined?: number;
  /** Where the quarantined rows went (the sink + `_quarantine`), or why they could not be stored. */
  quarantine?: { output?: string; rows: number; error?: string };
  /** The run whose quarantined rows this run rescored (`--only-quarantined`). */
  rescoreOf?: string;
  /** `run --resume`: chunks taken over from the failed attempt's staging instead of scored again. */
  reusedChunks?: number;
  /** A failed run whose staged chunks are kept for `run --resume` until then (`keep_failed_staging`). */
  resumableUntil?: string;
}

/** What the profile step found: per-column drift against the reference, and which columns crossed a threshold. */
export interface DriftSummary {
  /** `run <id> (<date>)`, `baseline <model>:<version>`, or null for a first run (nothing to compare with). */
  reference: string | null;
  columns: ColumnDrift[];
  /** Columns over `drift.psi` or `drift.mean_shift`. */
  breached: ColumnDrift[];
  /** Set when the profile could not be stored or compared; the run itself is unaffected. */
  error?: string;
}

/** One row of `scoreline_run_profiles`: one column of one run. */
export interface ProfileAudit {
  run_id: string;
  pipeline: string;
  logical_date: string;
  model_name: string;
  model_version: string;
  model_sha256: string;
  column_name: string;
  role: 'feature' | 'prediction';
  value_count: number;
  null_count: number;
  min_value: number | null;
  max_value: number | null;
  mean: number | null;
  std: number | null;
  /** JSON array of the 33 quantiles at p = 0, 1/32, …, 1 (src/profile/sketch.ts). */
  quantiles: string | null;
  psi: number | null;
  mean_shift: number | null;
  /** What psi and mean_shift compare against (DriftSummary.reference). */
  reference: string | null;
  profiled_at: string;
}

export type RunPhase = 'planning' | 'scoring' | 'committing' | 'finishing' | RunStatus;

/** Answer of the `progress` workflow query: what the CLI's progress bar draws. */
export interface RunProgress {
  phase: RunPhase;
  runId: string;
  pipeline: string;
  logicalDate: string;
  chunksTotal: number;
  /** Chunks whose stats the run has (for a run scored in child workflows: as last reported, at most 5 s old). */
  chunksDone: number;
  /** Rows the plan counted in the input. */
  rowsPlanned: number;
  /** Input rows of the chunks in `chunksDone`: counted from their stats, never estimated. */
  rowsDone: number;
  rowsOut: number;
  startedAtMs: number;
  /** When the plan returned and chunks started. */
  scoringStartedAtMs?: number;
  updatedAtMs: number;
  /**
   * An estimate, not a fact: when scoring will end at the throughput since the first chunk finished
   * (src/alerts/eta.ts), as of the last chunk stats. Absent until two updates measured a rate.
   */
  estimate?: { finishAtMs: number; rowsPerSec: number; asOfMs: number };
  /** A failed run whose staged chunks are kept for `run --resume` until then (RunResult.resumableUntil). */
  resumableUntil?: string;
  model?: PinnedModel;
  error?: string;
}

export interface RunAudit {
  run_id: string;
  workflow_id: string;
  pipeline: string;
  trigger: Trigger;
  logical_date: string;
  model_name: string | null;
  model_version: string | null;
  model_sha256: string | null;
  status: RunStatus;
  rows_in: number;
  rows_out: number;
  rows_rejected: number;
  rows_imputed: number;
  chunks: number;
  started_at: string;
  finished_at: string | null;
  duration_ms: number | null;
  output: string | null;
  error: string | null;
  /** Alerts sent for the run, JSON: [{"event","channel","ok","error"?}]; NULL when none were due. */
  alerts: string | null;
  /** Shadow scoring: the challenger as name:version, its sha256, its output, and agreement stats (JSON, AgreementSummary). */
  shadow_model: string | null;
  shadow_model_sha256: string | null;
  shadow_output: string | null;
  shadow_agreement: string | null;
  /** What the run read, as the source fingerprints it (docs/output-schema.md); NULL for older rows and sources without one. */
  input_fingerprint: string | null;
  /** Rows set aside in the quarantine table under the error budget; NULL for older rows. */
  rows_quarantined: number | null;
}

export interface ChunkAudit {
  run_id: string;
  chunk_index: number;
  /** `reused`: staged by an earlier attempt of the run and taken over by `run --resume`. */
  status: 'succeeded' | 'failed' | 'reused';
  rows_in: number;
  rows_out: number;
  rows_rejected: number;
  rows_imputed: number;
  read_ms: number;
  convert_ms: number;
  infer_ms: number;
  write_ms: number;
  worker: string | null;
  attempt: number;
  error: string | null;
}
