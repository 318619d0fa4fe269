/**
 * The connector interface: every backend (Parquet, Snowflake, BigQuery, …) implements these three small
 * roles in one file, and `connectors/index.ts` picks one by the pipeline's `kind`.
 */
import type * as arrow from 'apache-arrow';
import type { PipelineConfig } from '../src/config/pipeline';
import type { OutputBatch } from '../src/run/batch';
import type { Chunk, ChunkAudit, CommitStats, ProfileAudit, RunAudit, RunRef, StagedChunk } from '../src/types';

export interface PlanRequest {
  config: PipelineConfig;
  run: RunRef;
  /** Feature columns the model needs plus the key columns; nothing else is read. */
  columns: string[];
  chunkRows: number;
}

export interface SourcePlan {
  chunks: Chunk[];
  rows: number;
  /** Files or tables read, for the audit trail and error messages. */
  inputs: string[];
  /** The columns asked for: the backend's type name, and whether it can feed a numeric tensor. */
  schema: Record<string, { type: string; numeric: boolean }>;
  /**
   * What the planned input is, cheaply (docs/output-schema.md, input_fingerprint): equal fingerprints
   * mean the input is taken as unchanged, so a backfill with --skip-unchanged does not rescore it.
   * Absent when the source cannot tell (the date is then always rescored).
   */
  fingerprint?: string;
}

/** What `Source.checkKeys` found: the key columns' duplicates and NULLs in the planned input. */
export interface KeyCheck {
  /** The input as the error names it: the Parquet glob, `snowflake://…/DB.SCHEMA.T`, `bigquery://p.d.t`. */
  input: string;
  /** Distinct key values (every key column non-NULL) that occur on more than one row. */
  duplicateKeys: number;
  /** The rows those duplicate keys occur on. */
  duplicateRows: number;
  /** Rows where at least one key column is NULL. */
  nullKeyRows: number;
  /** Up to MAX_KEY_EXAMPLES duplicate keys, most repeated first: each key column's value as text (as the output would hold it), and its rows. */
  examples: Array<{ values: string[]; rows: number }>;
  /** The input as SQL the user can query to find them (`read_parquet('…')`, `DB.SCHEMA.T WHERE (…)`): the run's own snapshot is dropped when it ends. */
  from: string;
}

export const MAX_KEY_EXAMPLES = 3;

export interface Source {
  /** Check the input exists and has the columns, and split it into chunks (descriptors, not data). */
  plan(req: PlanRequest): Promise<SourcePlan>;
  /**
   * Duplicate and NULL keys (`config.source.key`) in what `plan` planned: one GROUP BY over the key
   * columns, run where the data is (DuckDB over the planned files, the warehouse over the run's
   * snapshot), never in JS. Called by the planner for a non-empty input under `source.key_check: strict`.
   */
  checkKeys(req: PlanRequest, plan: SourcePlan): Promise<KeyCheck>;
  /**
   * The chunk's rows, only the given columns, as one Arrow record batch (a chunk is bounded by
   * chunk_rows). `keys` (a subset of `columns`) must come back with their values exactly as stored.
   */
  read(chunk: Chunk, columns: string[], keys: string[]): Promise<arrow.RecordBatch>;
  /** Drop what `plan` created for the run (a warehouse snapshot table); idempotent, called once the run ends. */
  cleanup?(config: PipelineConfig, run: RunRef): Promise<void>;
}

export interface StagedFile {
  path: string;
  bytes: number;
}

export interface Sink {
  /** Write one chunk's predictions to staging; idempotent per (run, chunk): a retry overwrites. */
  stage(run: RunRef, chunkIndex: number, output: OutputBatch): Promise<StagedFile>;
  /** Make the run's output visible in one atomic, idempotent step. */
  commit(run: RunRef, staged: StagedChunk[]): Promise<CommitStats>;
  /** Remove everything the run staged; idempotent. */
  abort(run: RunRef): Promise<void>;
  /**
   * `run --only-quarantined`: the keys of the rows run `of` set aside in `quarantine` (the sink of this
   * table's quarantine table, same backend: src/run/shadow.ts) for the run's date that this table's
   * partition does not hold yet, each key column's value as text. Empty when there are none or the
   * quarantine table is missing.
   */
  pendingQuarantined(run: RunRef, quarantine: Sink, of: string, keys: string[]): Promise<string[][]>;
  /** Where the output lands, for summaries. */
  location(run: RunRef): string;
  /** Throws what would fail every commit, so a run fails at its plan (optional; sync, no I/O beyond a stat). */
  check?(): void;
  /**
   * `run --resume`: what the run has staged, by chunk index (file name and rows), read from the staging
   * area itself. Optional: sinks without it cannot resume.
   */
  stagedChunks?(run: RunRef): Promise<Map<number, StagedChunk>>;
  /** Remove the staging of runs that left it behind (failed, terminated) longer ago than `olderThanMs`, except `current`'s; best effort. */
  sweepStaging?(olderThanMs: number, current: RunRef): Promise<string[]>;
}

export interface AuditStore {
  recordRun(row: RunAudit): Promise<void>;
  /** Several run rows in one write (near-real-time requests are audited in batches). */
  recordRuns(rows: RunAudit[]): Promise<void>;
  /** One row per scored chunk, written as the chunk finishes; a retried chunk replaces its row. */
  recordChunk(row: ChunkAudit): Promise<void>;
  location(): string;
  /**
   * The latest other run of the same pipeline and logical date that succeeded or failed (its final
   * row), or undefined if there is none. Optional: the `recovered` alert needs it (src/alerts).
   */
  previousRun?(run: RunRef): Promise<Pick<RunAudit, 'run_id' | 'status' | 'finished_at'> | undefined>;
  /** The latest succeeded run of a pipeline and logical date (its final row), for `scoreline models compare`. */
  lastSucceededRun(pipeline: string, logicalDate: string): Promise<RunAudit | undefined>;
  /** Replace the run's rows in `scoreline_run_profiles` (one per profiled column; none removes them); idempotent. */
  recordProfile(runId: string, rows: ProfileAudit[]): Promise<void>;
  /** Runs with a stored profile: newest logical date first, then the newest profile of a date. */
  profiledRuns(q: ProfiledRunsQuery): Promise<ProfiledRun[]>;
  /** The stored profile rows of one run (empty if none). */
  readProfile(runId: string): Promise<ProfileAudit[]>;
  /** `run --resume`: the run's latest row and its chunk rows. Optional: stores without it cannot resume. */
  runWithChunks?(runId: string): Promise<{ run: RunAudit; chunks: ChunkAudit[] } | undefined>;
}

export interface ProfiledRunsQuery {
  pipeline: string;
  /** Only logical dates strictly before this one (the `previous` drift reference). */
  beforeDate?: string;
  limit: number;
}

export interface ProfiledRun {
  run_id: string;
  logical_date: string;
  profiled_at: string;
}

export interface Connectors {
  source(config: PipelineConfig): Source;
  sink(config: PipelineConfig): Sink;
  audit(config: PipelineConfig): AuditStore;
  /** Close pooled warehouse sessions (worker shutdown). */
  close?(): Promise<void>;
}
