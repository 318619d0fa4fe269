/**
 * BigQuery source, sink and audit store on the official `@google-cloud/bigquery` SDK, unchanged, so the
 * same code runs against the real service and the local emulator (src/dev/bqemulator.ts).
 *
 * Identifiers from the pipeline file are checked against strict patterns and backtick-quoted; values
 * (the logical date, run ids, audit fields) are always query parameters. Every statement is listed
 * with its cost in the comments of the phase that runs it:
 *
 * - plan:   one query job `CREATE OR REPLACE TABLE <snapshot> AS SELECT <needed columns>,
 *           ROW_NUMBER() OVER (ORDER BY <keys>) - 1 AS _scoreline_row FROM <table> [WHERE …]`
 *           (billed: the needed columns of the source, once per plan attempt), then table metadata
 *           (free) for the row count and types. Chunks are row-number ranges of that snapshot, so
 *           every chunk and every retry reads the same rows even if the source changes meanwhile.
 *           Unless `source.key_check: allow`, one more query job groups the snapshot by its keys to
 *           find duplicate and NULL keys (billed: the snapshot's key columns).
 * - read:   tabledata.list on the snapshot (`startIndex`, `selectedFields`, paged): free, no bytes
 *           billed. The row numbers are read too and checked; if the service ever returned rows in an
 *           order other than the snapshot's, the chunk is read with a range query instead (billed).
 * - stage:  the chunk's predictions as a local Parquet file, then one load job (free) into a
 *           per-chunk staging table with WRITE_TRUNCATE, so a retried chunk overwrites its own table.
 *           No streaming inserts: streamed rows can't be deleted for a while on the real service.
 * - commit: one MERGE (atomic): `ON FALSE`, delete the logical date's rows (append: this run's rows),
 *           insert the staged rows. Billed: the staging tables plus the target partition's rows that
 *           are rewritten. Then the staging tables are dropped (free).
 * - audit:  DML INSERT … VALUES per run status change (no bytes scanned); a retried chunk's row is
 *           replaced with a MERGE.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BigQuery, Job, Query, TableField } from '@google-cloud/bigquery';
import * as arrow from 'apache-arrow';
import { bindTemplate, COLUMN_PATTERN, renderTemplate, templateVars, type PipelineConfig, type WarehouseSinkConfig } from '../src/config/pipeline';
import type { BigQueryConnection } from '../src/connections';
import { ConfigError, InputError, ScorelineError, SinkError } from '../src/errors';
import { buffers } from '../src/io/buffers';
import { writeParquetFile } from '../src/io/parquet-write';
import type { OutputBatch } from '../src/run/batch';
import type { Chunk, ChunkAudit, CommitStats, ProfileAudit, RunAudit, RunRef, StagedChunk } from '../src/types';
import { profileAuditRow } from '../src/profile/rows';
import { keyCheckSql, readKeyCheck } from './key-check';
import type { AuditStore, KeyCheck, PlanRequest, ProfiledRun, ProfiledRunsQuery, Sink, Source, SourcePlan, StagedFile } from './types';

/** Row number column of a snapshot: 0-based, dense, ordered by the source keys. */
export const ROW_COLUMN = '_scoreline_row';
/** Snapshot and staging tables expire on their own if a run never gets to clean up (crash, lost worker). */
const SCRATCH_TTL_HOURS = 72;
const SCRATCH_TTL_MS = SCRATCH_TTL_HOURS * 3_600_000;
/** One MERGE reads at most this many staging tables directly (BigQuery allows 1,000 per query). */
const DEFAULT_UNION_LIMIT = 200;
/** tabledata.list pages: the service caps a page at ~10 MB anyway and says where to continue. */
const READ_PAGE_ROWS = 50_000;
const DROP_CONCURRENCY = 8;

// ---------------------------------------------------------------------------------------------------
// Names, quoting, clients, errors

const PROJECT_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;
const DATASET_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,1023}$/;
const TABLE_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,1023}$/;

export interface TableRef {
  project: string;
  dataset: string;
  table: string;
}

/** `[PROJECT.][DATASET.]TABLE`, defaulting to the connection's project and dataset; checked part by part. */
export function parseTableRef(name: string, conn: BigQueryConnection, origin: string): TableRef {
  const parts = name.split('.');
  if (parts.length > 3) throw new ConfigError(`${origin}: "${name}" is not a table name ([PROJECT.][DATASET.]TABLE)`);
  const table = parts.pop()!;
  const dataset = parts.pop() ?? conn.dataset;
  const project = parts.pop() ?? conn.project;
  if (!dataset) {
    throw new ConfigError(`${origin}: "${name}" names no dataset and connection "${conn.name}" has no default dataset; write DATASET.${table} or set "dataset" on the connection`);
  }
  return checkRef({ project, dataset, table }, origin);
}

/** `[PROJECT.]DATASET`, defaulting to the connection's. */
export function parseDatasetRef(name: string | undefined, conn: BigQueryConnection, origin: string): { project: string; dataset: string } {
  const parts = name ? name.split('.') : [];
  if (parts.length > 2) throw new ConfigError(`${origin}: "${name}" is not a dataset name ([PROJECT.]DATASET)`);
  const dataset = parts.pop() ?? conn.dataset;
  const project = parts.pop() ?? conn.project;
  if (!dataset) throw new ConfigError(`${origin}: no dataset given and connection "${conn.name}" has no default dataset; set "dataset" on the connection`);
  const { project: p, dataset: d } = checkRef({ project, dataset, table: 'x' }, origin);
  return { project: p, dataset: d };
}

function checkRef(ref: TableRef, origin: string): TableRef {
  const bad = (what: string, value: string, pattern: RegExp) =>
    new ConfigError(`${origin}: ${what} ${JSON.stringify(value)} is not allowed (expected ${pattern.source}: letters, digits, _${what === 'project' ? ', -' : ''})`);
  if (!PROJECT_PATTERN.test(ref.project)) throw bad('project', ref.project, PROJECT_PATTERN);
  if (!DATASET_PATTERN.test(ref.dataset)) throw bad('dataset', ref.dataset, DATASET_PATTERN);
  if (!TABLE_PATTERN.test(ref.table)) throw bad('table', ref.table, TABLE_PATTERN);
  return ref;
}

export function tableId(ref: TableRef): string {
  return `${ref.project}.${ref.dataset}.${ref.table}`;
}

/** Safe because every part matched its pattern (no backtick, dot or whitespace can get in). */
function quoteTable(ref: TableRef): string {
  return `\`${tableId(ref)}\``;
}

function quoteColumn(name: string): string {
  if (!COLUMN_PATTERN.test(name)) throw new ConfigError(`column name ${JSON.stringify(name)} is not allowed (letters, digits, _)`);
  return `\`${name}\``;
}

/** Temporal run ids are UUIDs; table names take letters, digits and underscores. */
function runKey(run: RunRef): string {
  return run.runId.replace(/[^A-Za-z0-9]/g, '');
}

/** Scratch table names must stay short and valid whatever the user's table is called. */
function scratchName(prefix: string, base: string, run: RunRef, suffix = ''): string {
  const short = base.length <= 64 ? base : `${base.slice(0, 48)}_${createHash('sha256').update(base).digest('hex').slice(0, 12)}`;
  return `${prefix}_${short.replace(/[^A-Za-z0-9_]/g, '_')}_${runKey(run)}${suffix}`;
}

const clients = new Map<string, BigQuery>();

/**
 * One SDK client per connection per worker process (it keeps its auth state and HTTP agent). Keyed by
 * what selects the endpoint and identity; the key never holds a secret.
 */
export function bigQueryClient(conn: BigQueryConnection): BigQuery {
  const o = conn.options;
  const key = [conn.name, o.projectId, o.apiEndpoint ?? '', o.keyFilename ?? '', o.location ?? ''].join('\0');
  let client = clients.get(key);
  if (!client) {
    // Loaded on first use: the SDK is ~12 MB of heap that Parquet-only workers and most CLI commands never need.
    const { BigQuery } = require('@google-cloud/bigquery') as typeof import('@google-cloud/bigquery');
    client = new BigQuery(o);
    clients.set(key, client);
  }
  return client;
}

interface SdkError {
  code?: number;
  message?: string;
  errors?: Array<{ reason?: string; message?: string }>;
}

/** The service's own message, first line only: SDK errors carry request details we never want to echo. */
export function sdkMessage(err: unknown): string {
  const e = err as SdkError;
  const msg = e?.errors?.[0]?.message ?? e?.message ?? String(err);
  const first = msg.split('\n')[0];
  // "Invalid Credentials" alone does not say whose: point at the connection's credentials.
  return isAuthError(err) ? `${first} (HTTP 401: BigQuery refused the credentials; check the connection's credentials in the worker's environment)` : first;
}

/** The service refused the credentials (the SDK has already refreshed what it could): a retry gets the same answer. */
function isAuthError(err: unknown): boolean {
  return (err as SdkError)?.code === 401 || reason(err) === 'authError';
}

function reason(err: unknown): string | undefined {
  return (err as SdkError)?.errors?.[0]?.reason;
}

export function isNotFound(err: unknown): boolean {
  return (err as SdkError)?.code === 404 || reason(err) === 'notFound';
}

/** Reasons BigQuery gives for a request that may succeed later (its troubleshooting guide: retry with backoff). */
const TRANSIENT_REASONS = new Set(['resourceInUse', 'rateLimitExceeded', 'backendError', 'internalError', 'jobBackendError', 'jobInternalError']);

/** Errors that a retry cannot fix: bad SQL, bad names, missing objects, bad requests. */
export function isPermanent(err: unknown): boolean {
  const r = reason(err);
  const code = (err as SdkError)?.code;
  // Busy, not wrong: retried. Two DML statements on one table at once: the loser fails with a 400
  // invalidQuery "Could not serialize access to table … due to concurrent update" (a chunk's audit row
  // retried beside another's, two appends of a date); rate limits are a 403. bqemulator's engine answers
  // two concurrent queries (a chunk read beside the key check) with a 400 "Resource In Use Error: connection is busy".
  if ((r && TRANSIENT_REASONS.has(r)) || /resource in use|connection is busy|concurrent update|serialize access/i.test(sdkMessage(err))) return false;
  return isNotFound(err) || isAuthError(err) || r === 'invalidQuery' || r === 'invalid' || r === 'accessDenied' || code === 400 || code === 403;
}

/** BigQuery reports legacy type names (INTEGER, FLOAT, BOOLEAN) from REST; compare on the standard ones. */
export function standardType(type: string | undefined): string {
  const t = (type ?? 'STRING').toUpperCase();
  return { INTEGER: 'INT64', FLOAT: 'FLOAT64', BOOLEAN: 'BOOL', RECORD: 'STRUCT' }[t] ?? t;
}

const NUMERIC_TYPES = new Set(['INT64', 'FLOAT64', 'NUMERIC', 'BIGNUMERIC', 'BOOL']);

async function runQuery(client: BigQuery, conn: BigQueryConnection, query: Query): Promise<Job> {
  const [job] = await client.createQueryJob({ location: conn.location, useLegacySql: false, ...query });
  await job.promise();
  return job;
}

async function mapLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]);
  });
  await Promise.all(workers);
}

async function dropTable(client: BigQuery, ref: TableRef): Promise<void> {
  await client.dataset(ref.dataset, { projectId: ref.project }).table(ref.table).delete({ ignoreNotFound: true });
}

// ---------------------------------------------------------------------------------------------------
// Source

/** Snapshot schemas, by table id: every chunk of a run needs them, and a snapshot never changes. */
const snapshotFields = new Map<string, Promise<TableField[]>>();

export class BigQuerySource implements Source {
  private readonly client: BigQuery;

  constructor(private readonly conn: BigQueryConnection) {
    this.client = bigQueryClient(conn);
  }

  /**
   * The run's snapshot table: deterministic, so a retried plan replaces it and `cleanup` finds it. It
   * lives in the connection's dataset (which Scoreline may write), else beside the source table.
   */
  snapshotRef(config: PipelineConfig, run: RunRef): TableRef {
    const src = sourceConfig(config);
    const origin = `pipeline ${config.name}: source`;
    let dataset = this.conn.dataset;
    let project = this.conn.project;
    if (!dataset && src.table) ({ project, dataset } = parseTableRef(src.table, this.conn, `${origin}.table`));
    if (!dataset) {
      throw new ConfigError(`${origin}.query: connection "${this.conn.name}" has no default dataset to hold the run's snapshot table; set "dataset" on the connection`);
    }
    return checkRef({ project, dataset, table: scratchName('_scoreline_snapshot', config.name, run) }, origin);
  }

  async plan(req: PlanRequest): Promise<SourcePlan> {
    const { config, run } = req;
    const src = sourceConfig(config);
    const origin = `pipeline ${config.name}: source`;
    const vars = templateVars(run.logicalDate, config.name);
    let from: string;
    let input: string;
    let params: Record<string, string> = {};
    if (src.table) {
      const ref = parseTableRef(src.table, this.conn, `${origin}.table`);
      input = `bigquery://${tableId(ref)}`;
      // Checked first (metadata only, free) so a missing table or column gets a precise message.
      requireColumns(input, await this.tableFields(ref, input), req.columns);
      from = quoteTable(ref);
      if (src.where) {
        const bound = bindTemplate(src.where, vars, 'named', `${origin}.where`);
        from = `(SELECT * FROM ${from} WHERE ${bound.sql})`;
        params = bound.binds as Record<string, string>;
      }
    } else {
      const bound = bindTemplate(src.query!, vars, 'named', `${origin}.query`);
      input = `bigquery query of pipeline ${config.name}`;
      from = `(${bound.sql})`;
      params = bound.binds as Record<string, string>;
    }
    const snapshot = this.snapshotRef(config, run);
    const keys = src.key.map(quoteColumn).join(', ');
    const sql =
      `CREATE OR REPLACE TABLE ${quoteTable(snapshot)} ` +
      `OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL ${SCRATCH_TTL_HOURS} HOUR)) AS ` +
      `SELECT ${req.columns.map(quoteColumn).join(', ')}, ROW_NUMBER() OVER (ORDER BY ${keys}) - 1 AS ${ROW_COLUMN} ` +
      `FROM ${from} AS scoreline_source ORDER BY ${ROW_COLUMN}`;
    try {
      // `ds` and friends are STRING parameters: BigQuery coerces a STRING parameter where a DATE is
      // expected (`ds = @ds` on a DATE column), and a STRING column compares as is.
      await runQuery(this.client, this.conn, { query: sql, params: Object.keys(params).length ? params : undefined });
    } catch (err) {
      if (isPermanent(err)) throw new InputError(`${input}: cannot snapshot the input: ${sdkMessage(err)} (columns needed: ${req.columns.join(', ')})`);
      throw new Error(`${input}: snapshot query failed: ${sdkMessage(err)}`, { cause: err });
    }
    const table = this.client.dataset(snapshot.dataset, { projectId: snapshot.project }).table(snapshot.table);
    const [meta] = await table.getMetadata();
    const fields: TableField[] = meta.schema?.fields ?? [];
    snapshotFields.set(tableId(snapshot), Promise.resolve(fields));
    const schema = requireColumns(input, fields, req.columns);
    const rows = Number(meta.numRows ?? 0);
    if (rows === 0) await this.dropSnapshot(snapshot); // nothing to read; don't leave it behind
    const chunks: Chunk[] = [];
    for (let start = 0; start < rows; start += req.chunkRows) {
      const end = Math.min(rows, start + req.chunkRows);
      chunks.push({ index: chunks.length, rows: end - start, locator: { kind: 'table', table: tableId(snapshot), rowStart: start, rowEnd: end } });
    }
    const fingerprint = rows === 0 ? 'bigquery:v1:0' : await this.snapshotFingerprint(tableId(snapshot), quoteTable(snapshot), req.columns, rows);
    return { chunks, rows, inputs: [input], schema, ...(fingerprint && { fingerprint }) };
  }

  /**
   * `bigquery:v1:<rows>:<h>`, h = BIT_XOR of FARM_FINGERPRINT of each snapshot row's needed columns as
   * JSON: order-independent, covers every value the run reads. One query job over the snapshot (billed:
   * its needed columns, like the key check). Undefined when the query fails: the date then counts as changed.
   */
  private async snapshotFingerprint(id: string, table: string, columns: string[], rows: number): Promise<string | undefined> {
    try {
      const sql = `SELECT CAST(BIT_XOR(FARM_FINGERPRINT(TO_JSON_STRING(STRUCT(${columns.map(quoteColumn).join(', ')})))) AS STRING) AS h FROM ${table}`;
      const job = await runQuery(this.client, this.conn, { query: sql });
      const [result] = (await job.getQueryResults({ skipParsing: true })) as unknown as [RawRow[]];
      const h = result?.[0]?.f?.[0]?.v;
      return h === undefined || h === null ? undefined : `bigquery:v1:${rows}:${String(h)}`;
    } catch {
      return undefined; // the planner then reports the fingerprint as unavailable and rescores the date
    }
  }

  /**
   * One query job over the snapshot: a GROUP BY on its key columns (billed: the snapshot's key
   * columns), so it checks exactly the rows the chunks will read. Examples come back as the REST API's
   * text and are spelled as the output will hold them.
   */
  async checkKeys(req: PlanRequest, plan: SourcePlan): Promise<KeyCheck> {
    const { config, run } = req;
    const src = sourceConfig(config);
    const snapshot = this.snapshotRef(config, run);
    const sql = keyCheckSql(quoteTable(snapshot), src.key.map(quoteColumn), { alias: (name) => `\`${name}\`` });
    let rows: RawRow[];
    try {
      const job = await runQuery(this.client, this.conn, { query: sql });
      [rows] = (await job.getQueryResults({ skipParsing: true })) as unknown as [RawRow[]];
    } catch (err) {
      if (isNotFound(err)) throw new InputError(`bigquery://${tableId(snapshot)}: the run's snapshot table is gone (dropped, or expired after ${SCRATCH_TTL_HOURS} h); rerun the date`);
      if (isPermanent(err)) throw new InputError(`${plan.inputs[0]}: key check on the snapshot failed: ${sdkMessage(err)}`);
      throw new Error(`${plan.inputs[0]}: key check on the snapshot failed: ${sdkMessage(err)}`, { cause: err });
    }
    const types = src.key.map((k) => plan.schema[k]?.type);
    return readKeyCheck(
      (rows ?? []).map((r) => r.f.map((c) => c.v)),
      src.key.length,
      { input: plan.inputs[0], from: this.describeFrom(config, run) },
      (v, i) => (types[i] === 'TIMESTAMP' ? microsToIso(String(v)) : typeof v === 'string' ? v : JSON.stringify(v)),
    );
  }

  /** The source as SQL to query by hand: the table with its `where` (parameters filled in), or the query. */
  private describeFrom(config: PipelineConfig, run: RunRef): string {
    const src = sourceConfig(config);
    const origin = `pipeline ${config.name}: source`;
    const vars = Object.fromEntries(Object.entries(templateVars(run.logicalDate, config.name)).map(([k, v]) => [k, `'${v}'`]));
    if (!src.table) return `(${renderTemplate(src.query!, vars, `${origin}.query`)})`;
    const table = quoteTable(parseTableRef(src.table, this.conn, `${origin}.table`));
    return src.where ? `${table} WHERE ${renderTemplate(src.where, vars, `${origin}.where`)}` : table;
  }

  async read(chunk: Chunk, columns: string[], keys: string[] = []): Promise<arrow.RecordBatch> {
    const loc = chunk.locator;
    if (loc.kind !== 'table') throw new Error('internal: BigQuerySource got a non-table chunk');
    const ref = checkRef(splitTableId(loc.table), `chunk ${chunk.index}`);
    const where = `bigquery://${loc.table} rows ${loc.rowStart}..${loc.rowEnd - 1}`;
    const fields = await this.snapshotSchema(ref, where);
    const types = requireColumns(`bigquery://${loc.table}`, fields, columns);
    // Rows come back in the table's column order whatever order selectedFields names them in, so ask in that order.
    const order = fields.map((f) => f.name ?? '').filter((n) => columns.includes(n) || n === ROW_COLUMN);
    const n = loc.rowEnd - loc.rowStart;
    try {
      const rows = await this.listRows(ref, fields, order, loc.rowStart, n);
      // The service returned rows in another order than the snapshot's row numbers: read by range instead.
      const got = rows ?? (await this.queryRows(ref, order, loc.rowStart, loc.rowEnd));
      // Retried (a short read once came back empty from the emulator under load); a snapshot that really
      // changed reads short on every attempt and fails the chunk with this message.
      if (got.length !== n) throw new ScorelineError('INPUT', `${where}: expected ${n} rows but read ${got.length}; was the run's snapshot table changed?`, true);
      return toRecordBatch(got, order, columns, keys, types, loc.rowStart, where);
    } catch (err) {
      if (err instanceof ScorelineError) throw err;
      if (isNotFound(err)) throw new InputError(`${where}: the run's snapshot table is gone (dropped, or expired after ${SCRATCH_TTL_HOURS} h); rerun the date`);
      throw new Error(`${where}: read failed: ${sdkMessage(err)}`, { cause: err });
    }
  }

  /** Drop the run's snapshot table; idempotent. */
  async cleanup(config: PipelineConfig, run: RunRef): Promise<void> {
    const snapshot = this.snapshotRef(config, run);
    snapshotFields.delete(tableId(snapshot));
    await this.dropSnapshot(snapshot);
  }

  private async dropSnapshot(ref: TableRef): Promise<void> {
    try {
      await dropTable(this.client, ref);
    } catch (err) {
      throw new Error(`bigquery://${tableId(ref)}: cannot drop the run's snapshot table: ${sdkMessage(err)}`, { cause: err });
    }
  }

  private async tableFields(ref: TableRef, input: string): Promise<TableField[]> {
    try {
      const [meta] = await this.client.dataset(ref.dataset, { projectId: ref.project }).table(ref.table).getMetadata();
      return meta.schema?.fields ?? [];
    } catch (err) {
      if (isNotFound(err)) throw new InputError(`${input}: table not found (${sdkMessage(err)})`);
      if (isPermanent(err)) throw new InputError(`${input}: cannot read the table's schema: ${sdkMessage(err)}`);
      throw new Error(`${input}: cannot read the table's schema: ${sdkMessage(err)}`, { cause: err });
    }
  }

  private snapshotSchema(ref: TableRef, where: string): Promise<TableField[]> {
    const id = tableId(ref);
    let fields = snapshotFields.get(id);
    if (!fields) {
      fields = this.tableFields(ref, where);
      snapshotFields.set(id, fields);
      fields.catch(() => snapshotFields.delete(id));
    }
    return fields;
  }

  /** tabledata.list (free); undefined if the rows are not the snapshot's rows `start..start+n-1` in order. */
  private async listRows(ref: TableRef, schema: TableField[], fields: string[], start: number, n: number): Promise<RawRow[] | undefined> {
    const table = this.client.dataset(ref.dataset, { projectId: ref.project }).table(ref.table);
    // Known already: without it the SDK fetches the table's metadata again for every page.
    table.metadata = { ...table.metadata, schema: { fields: schema } };
    const rowIndex = fields.indexOf(ROW_COLUMN);
    const out: RawRow[] = [];
    let pageToken: string | undefined;
    while (out.length < n) {
      const page = { selectedFields: fields.join(','), maxResults: Math.min(READ_PAGE_ROWS, n - out.length), skipParsing: true, autoPaginate: false };
      const [rows, , resp] = await table.getRows(pageToken ? { ...page, pageToken } : { ...page, startIndex: String(start + out.length) });
      const got = (rows ?? []) as RawRow[];
      if (got.length === 0) break;
      for (const row of got) {
        if (Number(row.f[rowIndex].v) !== start + out.length) return undefined;
        out.push(row);
        if (out.length === n) break;
      }
      pageToken = (resp as { pageToken?: string } | undefined)?.pageToken;
      if (!pageToken) break;
    }
    return out;
  }

  /** The fallback: a range query on the row number (billed: the snapshot's needed columns). */
  private async queryRows(ref: TableRef, fields: string[], start: number, end: number): Promise<RawRow[]> {
    const sql = `SELECT ${fields.map(quoteColumn).join(', ')} FROM ${quoteTable(ref)} WHERE ${ROW_COLUMN} >= @row_start AND ${ROW_COLUMN} < @row_end ORDER BY ${ROW_COLUMN}`;
    const job = await runQuery(this.client, this.conn, { query: sql, params: { row_start: start, row_end: end } });
    const out: RawRow[] = [];
    let pageToken: string | undefined;
    do {
      const [rows, , resp] = await job.getQueryResults({ skipParsing: true, autoPaginate: false, maxResults: READ_PAGE_ROWS, ...(pageToken ? { pageToken } : {}) });
      out.push(...((rows ?? []) as RawRow[]));
      pageToken = (resp as { pageToken?: string } | undefined)?.pageToken;
    } while (pageToken);
    return out;
  }
}

function sourceConfig(config: PipelineConfig): Extract<PipelineConfig['source'], { kind: 'bigquery' }> {
  if (config.source.kind !== 'bigquery') throw new Error('internal: BigQuerySource got a non-bigquery source');
  return config.source;
}

function splitTableId(id: string): TableRef {
  const [project, dataset, table, ...rest] = id.split('.');
  if (!project || !dataset || !table || rest.length) throw new Error(`internal: bad snapshot table id ${id}`);
  return { project, dataset, table };
}

function requireColumns(input: string, fields: TableField[], columns: string[]): SourcePlan['schema'] {
  const types = new Map(fields.map((f) => [f.name ?? '', f]));
  const missing = columns.filter((c) => !types.has(c));
  if (missing.length > 0) {
    throw new InputError(`${input}: missing column(s) ${missing.map((c) => `"${c}"`).join(', ')} needed by the model or key (table has: ${[...types.keys()].join(', ')})`);
  }
  return Object.fromEntries(
    columns.map((c) => {
      const f = types.get(c)!;
      const type = f.mode === 'REPEATED' ? `ARRAY<${standardType(f.type)}>` : standardType(f.type);
      return [c, { type, numeric: NUMERIC_TYPES.has(type) }];
    }),
  );
}

/** A row of tabledata.list / getQueryResults as the REST API sends it: `{ f: [{ v }, …] }`. */
interface RawRow {
  f: Array<{ v: unknown }>;
}

/**
 * REST rows → one Arrow record batch, column by column into typed arrays. Features: INT64 stays Int64
 * (so the cast policy can see integers beyond 2^24), FLOAT64 / NUMERIC become Float64, BOOL 0/1 Int8.
 * Keys come back exactly: INT64 as Int64, everything else as its text (STRING as is, NUMERIC digits,
 * DATE `YYYY-MM-DD`, TIMESTAMP ISO 8601 with microseconds).
 */
function toRecordBatch(rows: RawRow[], order: string[], columns: string[], keys: string[], types: SourcePlan['schema'], rowStart: number, where: string): arrow.RecordBatch {
  const n = rows.length;
  const rowIndex = order.indexOf(ROW_COLUMN);
  rows.forEach((row, i) => {
    if (Number(row.f[rowIndex].v) !== rowStart + i) throw new InputError(`${where}: row ${rowStart + i} is missing from the snapshot (got row ${String(row.f[rowIndex].v)})`);
  });
  const children: Record<string, arrow.Data> = {};
  for (const column of columns) {
    const at = order.indexOf(column);
    children[column] = buildColumn(rows, at, types[column].type, keys.includes(column));
  }
  const expected = Object.values(children)[0]?.length ?? n;
  if (expected !== n) throw new Error('internal: column lengths differ');
  return new arrow.RecordBatch(children);
}

function buildColumn(rows: RawRow[], at: number, type: string, isKey: boolean): arrow.Data {
  const n = rows.length;
  let nullCount = 0;
  const validity = new Uint8Array(Math.ceil(n / 8)).fill(0xff);
  const isNull = (i: number, v: unknown) => {
    if (v !== null && v !== undefined) return false;
    validity[i >> 3] &= ~(1 << (i & 7));
    nullCount++;
    return true;
  };
  const fixed = <T extends arrow.DataType>(arrowType: T, values: { [i: number]: number | bigint }, parse: (v: string) => number | bigint, zero: number | bigint) => {
    rows.forEach((row, i) => {
      const v = row.f[at].v;
      values[i] = isNull(i, v) ? zero : parse(String(v));
    });
    return arrow.makeData({ type: arrowType as unknown as arrow.Float64, length: n, nullCount, nullBitmap: nullCount ? validity : undefined, data: values as Float64Array });
  };
  // Feature columns go back to the recycler once the tensor is built (src/run/batch.ts); keys stay.
  const take = (bytesPerValue: number) => (isKey ? new ArrayBuffer(n * bytesPerValue) : buffers.take(n * bytesPerValue));
  if (type === 'INT64') return fixed(new arrow.Int64(), new BigInt64Array(take(8)), (v) => BigInt(v), 0n);
  if (!isKey) {
    if (type === 'FLOAT64' || type === 'NUMERIC' || type === 'BIGNUMERIC') return fixed(new arrow.Float64(), new Float64Array(take(8)), Number, 0);
    if (type === 'BOOL') return fixed(new arrow.Int8(), new Int8Array(take(1)), (v) => (v === 'true' ? 1 : 0), 0);
  }
  // Keys (and non-numeric columns the planner has already refused as features): their text, exactly.
  const text = rows.map((row, i) => {
    const v = row.f[at].v;
    if (isNull(i, v)) return null;
    if (type === 'TIMESTAMP') return microsToIso(String(v));
    return typeof v === 'string' ? v : JSON.stringify(v);
  });
  return arrow.vectorFromArray(text, new arrow.Utf8()).data[0];
}

/** TIMESTAMP values arrive as integer microseconds (formatOptions.useInt64Timestamp). */
function microsToIso(micros: string): string {
  const us = BigInt(micros);
  const ms = us / 1000n - (us % 1000n < 0n ? 1n : 0n);
  const rest = Number(us - ms * 1000n);
  const iso = new Date(Number(ms)).toISOString(); // …SS.mmmZ
  return `${iso.slice(0, -1)}${String(rest).padStart(3, '0')}Z`;
}

// ---------------------------------------------------------------------------------------------------
// Sink

/** Output contract columns besides keys and predictions (docs/output-schema.md), as BigQuery types. */
const CONSTANT_TYPES = { VARCHAR: 'STRING', DATE: 'DATE', TIMESTAMPTZ: 'TIMESTAMP' } as const;

export interface BigQuerySinkOptions {
  /** The pipeline's `source.key`: a new output table is clustered by them (at most 4, BigQuery's limit). */
  keys?: string[];
  /** Staging tables one MERGE reads directly; more are first gathered into one table. */
  unionLimit?: number;
}

export class BigQuerySink implements Sink {
  private readonly client: BigQuery;
  readonly target: TableRef;
  private readonly mode: 'replace-partition' | 'append';
  private readonly unionLimit: number;
  private readonly keys: string[];

  constructor(
    private readonly conn: BigQueryConnection,
    sink: Pick<WarehouseSinkConfig, 'table' | 'mode'>,
    opts: BigQuerySinkOptions = {},
  ) {
    this.client = bigQueryClient(conn);
    this.target = parseTableRef(sink.table, conn, 'sink.table');
    this.mode = sink.mode;
    this.unionLimit = opts.unionLimit ?? DEFAULT_UNION_LIMIT;
    this.keys = opts.keys ?? [];
  }

  location(run: RunRef): string {
    return `bigquery://${tableId(this.target)} (ds=${run.logicalDate})`;
  }

  /** Staging tables sit beside the output (same dataset, so the same location and grants). */
  private stagingRef(run: RunRef, chunkIndex: number | 'all'): TableRef {
    const suffix = chunkIndex === 'all' ? '_all' : `_c${String(chunkIndex).padStart(5, '0')}`;
    return { ...this.target, table: scratchName('_scoreline_stage', this.target.table, run, suffix) };
  }

  private table(ref: TableRef) {
    return this.client.dataset(ref.dataset, { projectId: ref.project }).table(ref.table);
  }

  async stage(run: RunRef, chunkIndex: number, output: OutputBatch): Promise<StagedFile> {
    const staging = this.stagingRef(run, chunkIndex);
    const schema = outputSchema(output);
    const file = join(tmpdir(), 'scoreline-bigquery', runKey(run), `${staging.table}-${process.pid}-${Math.random().toString(36).slice(2, 8)}.parquet`);
    try {
      const bytes = await writeParquetFile(file, output.table, output.constants);
      // A load job is free and atomic; WRITE_TRUNCATE makes a retried chunk replace its own rows.
      await this.table(staging).load(file, { sourceFormat: 'PARQUET', writeDisposition: 'WRITE_TRUNCATE', createDisposition: 'CREATE_IF_NEEDED', schema: { fields: schema } });
      await this.table(staging).setMetadata({ expirationTime: String(Date.now() + SCRATCH_TTL_MS) });
      return { path: tableId(staging), bytes };
    } catch (err) {
      throw new SinkError(`bigquery://${tableId(staging)}: staging chunk ${chunkIndex} failed: ${sdkMessage(err)}`, !isPermanent(err), { cause: err });
    } finally {
      await fs.rm(file, { force: true });
    }
  }

  async commit(run: RunRef, staged: StagedChunk[]): Promise<CommitStats> {
    const out = `bigquery://${tableId(this.target)}`;
    const rowsOut = staged.reduce((n, s) => n + s.rows, 0);
    const stats = (rowsReplaced: number): CommitStats => ({ output: this.location(run), rowsOut, files: staged.length, rowsReplaced });
    const chunkTables = staged.map((s) => this.stagingRef(run, s.index));
    try {
      const expected = staged.length ? await this.stagedSchema(chunkTables[0]) : undefined;
      const exists = await this.ensureOutputTable(expected);
      if (!exists) return stats(0); // nothing staged and no table: an empty run has nothing to replace
      const columns = (expected ?? (await this.targetFields())).map((f) => f.name!);
      const cols = columns.map(quoteColumn).join(', ');
      const source = await this.mergeSource(run, chunkTables, cols);
      const scope = this.mode === 'append' ? 'T.ds = @ds AND T.run_id = @run_id' : 'T.ds = @ds';
      const sql =
        `MERGE ${quoteTable(this.target)} AS T USING (${source}) AS S ON FALSE ` +
        `WHEN NOT MATCHED BY SOURCE AND ${scope} THEN DELETE ` +
        `WHEN NOT MATCHED THEN INSERT (${cols}) VALUES (${cols})`;
      let job: Job;
      try {
        job = await runQuery(this.client, this.conn, { query: sql, params: this.runParams(run) });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        // Staging gone: an earlier attempt may have committed and died while dropping it.
        if ((await this.committedRows(run)) === rowsOut) {
          await this.dropStaging(run, staged);
          return stats(0);
        }
        throw new SinkError(`${out}: commit of run ${run.runId}: staged table(s) missing (${sdkMessage(err)})`, false, { cause: err });
      }
      const [meta] = await job.getMetadata();
      const affected = Number(meta.statistics?.query?.numDmlAffectedRows ?? rowsOut);
      await this.dropStaging(run, staged);
      return stats(Math.max(0, affected - rowsOut));
    } catch (err) {
      if (err instanceof SinkError) throw err;
      // A staging table gone before the MERGE (e.g. while gathering many of them): an earlier attempt
      // may have committed and died while dropping staging. Its rows are then all there.
      if (isNotFound(err) && (await this.committedRows(run)) === rowsOut) {
        await this.dropStaging(run, staged);
        return stats(0);
      }
      throw new SinkError(`${out}: commit of run ${run.runId} failed: ${sdkMessage(err)}`, !isPermanent(err), { cause: err });
    }
  }

  /** Remove everything the run staged; idempotent. The output table is never touched before the MERGE. */
  async abort(run: RunRef): Promise<void> {
    const prefix = this.stagingRef(run, 'all').table.slice(0, -'_all'.length);
    try {
      const [tables] = await this.client.dataset(this.target.dataset, { projectId: this.target.project }).getTables();
      const mine = tables.map((t) => t.id!).filter((id) => id.startsWith(`${prefix}_`));
      await mapLimited(mine, DROP_CONCURRENCY, (id) => dropTable(this.client, { ...this.target, table: id }));
    } catch (err) {
      throw new SinkError(`bigquery://${tableId(this.target)}: removing the staging tables of run ${run.runId} failed: ${sdkMessage(err)}`, true, { cause: err });
    }
  }

  private async dropStaging(run: RunRef, staged: StagedChunk[]): Promise<void> {
    const refs = [...staged.map((s) => this.stagingRef(run, s.index)), this.stagingRef(run, 'all')];
    await mapLimited(refs, DROP_CONCURRENCY, (ref) => dropTable(this.client, ref));
  }

  private async stagedSchema(ref: TableRef): Promise<TableField[]> {
    try {
      const [meta] = await this.table(ref).getMetadata();
      return (meta.schema?.fields ?? []) as TableField[];
    } catch (err) {
      if (isNotFound(err)) return this.targetFields(); // already committed and dropped; the target has the columns
      throw err;
    }
  }

  private async targetFields(): Promise<TableField[]> {
    const [meta] = await this.table(this.target).getMetadata();
    return (meta.schema?.fields ?? []) as TableField[];
  }

  /**
   * Creates the output table with the contract (partitioned by ds, clustered by the keys) if missing;
   * checks an existing one against it. Returns whether the table exists now.
   */
  private async ensureOutputTable(expected: TableField[] | undefined): Promise<boolean> {
    let fields: TableField[];
    try {
      fields = await this.targetFields();
    } catch (err) {
      if (!isNotFound(err)) throw err;
      if (!expected) return false;
      const keys = this.keys.filter((k) => expected.some((f) => f.name === k));
      try {
        await this.client.dataset(this.target.dataset, { projectId: this.target.project }).createTable(this.target.table, {
          schema: { fields: expected.map((f) => ({ name: f.name, type: f.type, mode: 'NULLABLE' })) },
          timePartitioning: { type: 'DAY', field: 'ds' },
          ...(keys.length ? { clustering: { fields: keys.slice(0, 4) } } : {}),
          description: 'Scoreline predictions (docs/output-schema.md)',
        });
      } catch (createErr) {
        if ((createErr as SdkError).code !== 409) throw createErr; // 409: another attempt created it meanwhile
      }
      fields = await this.targetFields();
    }
    if (expected) checkOutputSchema(`bigquery://${tableId(this.target)}`, fields, expected);
    return true;
  }

  /** SQL for the MERGE's source: the staging tables, gathered into one first if there are many. */
  private async mergeSource(run: RunRef, tables: TableRef[], cols: string): Promise<string> {
    const select = (refs: TableRef[]) => refs.map((r) => `SELECT ${cols} FROM ${quoteTable(r)}`).join(' UNION ALL ');
    if (tables.length === 0) return `SELECT ${cols} FROM ${quoteTable(this.target)} WHERE FALSE`;
    if (tables.length <= this.unionLimit) return select(tables);
    // Restartable as a whole: it begins with CREATE OR REPLACE, so a retried commit starts over.
    const all = this.stagingRef(run, 'all');
    for (let i = 0; i < tables.length; i += this.unionLimit) {
      const batch = select(tables.slice(i, i + this.unionLimit));
      const sql =
        i === 0
          ? `CREATE OR REPLACE TABLE ${quoteTable(all)} OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL ${SCRATCH_TTL_HOURS} HOUR)) AS ${batch}`
          : `INSERT INTO ${quoteTable(all)} (${cols}) ${batch}`;
      await runQuery(this.client, this.conn, { query: sql });
    }
    return `SELECT ${cols} FROM ${quoteTable(all)}`;
  }

  /** `ds` as a DATE parameter (the SDK sends a plain string as STRING, and a typed string not at all). */
  private runParams(run: RunRef): Record<string, unknown> {
    return { ds: this.client.date(run.logicalDate), run_id: run.runId };
  }

  async pendingQuarantined(run: RunRef, quarantine: Sink, of: string, keys: string[]): Promise<string[][]> {
    if (!(quarantine instanceof BigQuerySink)) throw new Error('internal: a bigquery sink with a quarantine table elsewhere');
    const table = quarantine.target;
    const exists = async (ref: TableRef) => (await this.table(ref).exists())[0];
    try {
      if (!(await exists(table))) return [];
      const k = keys.map(quoteColumn);
      const notScored = (await exists(this.target))
        ? // o.ds against the parameter, not q.ds: only a constant or parameter prunes the output's partitions (and satisfies require_partition_filter)
          ` AND NOT EXISTS (SELECT 1 FROM ${quoteTable(this.target)} o WHERE o.ds = @ds AND ${k.map((c) => `o.${c} = q.${c}`).join(' AND ')})`
        : '';
      const sql = `SELECT ${k.map((c, i) => `CAST(q.${c} AS STRING) AS k${i}`).join(', ')} FROM ${quoteTable(table)} q WHERE q.ds = @ds AND q.run_id = @run_id${notScored}`;
      const [rows] = await this.client.query({ query: sql, params: { ds: this.client.date(run.logicalDate), run_id: of }, location: this.conn.location });
      return (rows as Record<string, unknown>[]).map((r) => keys.map((_, i) => String(r[`k${i}`])));
    } catch (err) {
      throw new SinkError(`bigquery://${tableId(table)}: reading the quarantined rows of run ${of} failed: ${sdkMessage(err)}`, !isPermanent(err), { cause: err });
    }
  }

  /** Rows of this run in the partition (only asked when a retried commit finds its staging gone). */
  private async committedRows(run: RunRef): Promise<number> {
    const sql = `SELECT COUNT(*) AS n FROM ${quoteTable(this.target)} WHERE ds = @ds AND run_id = @run_id`;
    const [rows] = await this.client.query({ query: sql, params: this.runParams(run), location: this.conn.location });
    return Number((rows[0] as { n: number }).n);
  }
}

/** BigQuery schema of a staged chunk: keys and predictions from their Arrow types, then the contract columns. */
function outputSchema(output: OutputBatch): TableField[] {
  const fields: TableField[] = output.table.schema.fields.map((f) => ({ name: f.name, type: bigQueryType(f.type, f.name), mode: 'NULLABLE' }));
  for (const c of output.constants) fields.push({ name: c.name, type: CONSTANT_TYPES[c.sqlType], mode: 'NULLABLE' });
  return fields;
}

function bigQueryType(type: arrow.DataType, column: string): string {
  if (arrow.DataType.isInt(type)) return 'INT64';
  if (arrow.DataType.isFloat(type)) return 'FLOAT64';
  if (arrow.DataType.isBool(type)) return 'BOOL';
  if (arrow.DataType.isUtf8(type) || arrow.DataType.isDictionary(type)) return 'STRING';
  if (arrow.DataType.isDate(type)) return 'DATE';
  if (arrow.DataType.isTimestamp(type)) return 'TIMESTAMP';
  throw new SinkError(`output column "${column}" has Arrow type ${type}, which the BigQuery sink cannot write`, false);
}

/** An existing output table must have every contract column with the same type; extra columns must be NULLABLE. */
function checkOutputSchema(table: string, existing: TableField[], expected: TableField[]): void {
  const have = new Map(existing.map((f) => [f.name!, f]));
  const problems: string[] = [];
  for (const want of expected) {
    const got = have.get(want.name!);
    if (!got) problems.push(`column "${want.name}" is missing (expected ${standardType(want.type)})`);
    else if (standardType(got.type) !== standardType(want.type) || got.mode === 'REPEATED') {
      problems.push(`column "${want.name}" is ${got.mode === 'REPEATED' ? 'ARRAY<' : ''}${standardType(got.type)}${got.mode === 'REPEATED' ? '>' : ''}, expected ${standardType(want.type)}`);
    }
  }
  const wanted = new Set(expected.map((f) => f.name));
  for (const f of existing) if (!wanted.has(f.name) && f.mode === 'REQUIRED') problems.push(`column "${f.name}" is REQUIRED but Scoreline does not write it`);
  if (problems.length > 0) {
    throw new SinkError(
      `${table}: the existing table does not match the columns Scoreline writes (docs/output-schema.md): ${problems.join('; ')}. ` +
        'Point sink.table at another table, or drop or migrate this one.',
      false,
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// Audit store

type AuditType = 'STRING' | 'INT64' | 'FLOAT64' | 'TIMESTAMP';

/** Same columns as the Parquet audit tables (connectors/parquet-audit.ts), in BigQuery types. */
const RUN_COLUMNS: Record<keyof RunAudit, AuditType> = {
  run_id: 'STRING',
  workflow_id: 'STRING',
  pipeline: 'STRING',
  trigger: 'STRING',
  logical_date: 'STRING',
  model_name: 'STRING',
  model_version: 'STRING',
  model_sha256: 'STRING',
  status: 'STRING',
  rows_in: 'INT64',
  rows_out: 'INT64',
  rows_rejected: 'INT64',
  rows_imputed: 'INT64',
  chunks: 'INT64',
  started_at: 'TIMESTAMP',
  finished_at: 'TIMESTAMP',
  duration_ms: 'INT64',
  output: 'STRING',
  error: 'STRING',
  alerts: 'STRING',
  shadow_model: 'STRING',
  shadow_model_sha256: 'STRING',
  shadow_output: 'STRING',
  shadow_agreement: 'STRING',
  input_fingerprint: 'STRING',
  rows_quarantined: 'INT64',
};
/** Run columns added after the first release of the audit contract: existing tables get them by ALTER. */
const ADDED_RUN_COLUMNS = new Set<string>(['alerts', 'shadow_model', 'shadow_model_sha256', 'shadow_output', 'shadow_agreement', 'input_fingerprint', 'rows_quarantined']);
const RUN_TABLE_COLUMNS: Record<string, AuditType> = { ...RUN_COLUMNS, updated_at: 'TIMESTAMP' };

const CHUNK_COLUMNS: Record<keyof ChunkAudit, AuditType> = {
  run_id: 'STRING',
  chunk_index: 'INT64',
  status: 'STRING',
  rows_in: 'INT64',
  rows_out: 'INT64',
  rows_rejected: 'INT64',
  rows_imputed: 'INT64',
  read_ms: 'FLOAT64',
  convert_ms: 'FLOAT64',
  infer_ms: 'FLOAT64',
  write_ms: 'FLOAT64',
  worker: 'STRING',
  attempt: 'INT64',
  error: 'STRING',
};

const PROFILE_COLUMNS: Record<keyof ProfileAudit, AuditType> = {
  run_id: 'STRING',
  pipeline: 'STRING',
  logical_date: 'STRING',
  model_name: 'STRING',
  model_version: 'STRING',
  model_sha256: 'STRING',
  column_name: 'STRING',
  role: 'STRING',
  value_count: 'INT64',
  null_count: 'INT64',
  min_value: 'FLOAT64',
  max_value: 'FLOAT64',
  mean: 'FLOAT64',
  std: 'FLOAT64',
  quantiles: 'STRING',
  psi: 'FLOAT64',
  mean_shift: 'FLOAT64',
  reference: 'STRING',
  profiled_at: 'TIMESTAMP',
};

export const RUNS_TABLE = 'scoreline_runs';
export const CHUNKS_TABLE = 'scoreline_run_chunks';
export const PROFILES_TABLE = 'scoreline_run_profiles';
/** Under BigQuery's 10,000 parameters per query, with room to spare. */
const MAX_QUERY_PARAMETERS = 9_000;

/** Audit tables already created or checked, by dataset: once per worker process, not per row. */
const auditTablesReady = new Map<string, Promise<void>>();

export class BigQueryAuditStore implements AuditStore {
  private readonly client: BigQuery;
  private readonly dataset: { project: string; dataset: string };

  constructor(
    private readonly conn: BigQueryConnection,
    auditDataset?: string,
  ) {
    this.client = bigQueryClient(conn);
    this.dataset = parseDatasetRef(auditDataset, conn, 'audit.schema');
  }

  location(): string {
    return `bigquery://${this.dataset.project}.${this.dataset.dataset} (${RUNS_TABLE}, ${CHUNKS_TABLE}, ${PROFILES_TABLE})`;
  }

  private ref(table: string): TableRef {
    return { ...this.dataset, table };
  }

  /** A run row per status change: INSERT only, so concurrent runs never conflict on the table. */
  async recordRun(row: RunAudit): Promise<void> {
    await this.recordRuns([row]);
  }

  async recordRuns(rows: RunAudit[]): Promise<void> {
    if (rows.length === 0) return;
    await this.ready();
    const updatedAt = new Date().toISOString();
    const what = rows.length === 1 ? `run ${rows[0].run_id} (${rows[0].status})` : `${rows.length} runs`;
    await this.insertRows(RUNS_TABLE, RUN_TABLE_COLUMNS, rows.map((r) => ({ ...r, updated_at: updatedAt })), what);
  }

  /**
   * A chunk's first attempt INSERTs (no conflicts between parallel chunks); a retried attempt MERGEs,
   * replacing the row an earlier attempt may have written.
   */
  async recordChunk(row: ChunkAudit): Promise<void> {
    await this.ready();
    if (row.attempt <= 1) {
      await this.insert(CHUNKS_TABLE, CHUNK_COLUMNS, row, `run ${row.run_id} chunk ${row.chunk_index}`);
      return;
    }
    const cols = Object.keys(CHUNK_COLUMNS);
    const sql =
      `MERGE ${quoteTable(this.ref(CHUNKS_TABLE))} AS T USING (SELECT ${cols.map((c) => `@${c} AS ${quoteColumn(c)}`).join(', ')}) AS S ` +
      'ON T.run_id = S.run_id AND T.chunk_index = S.chunk_index ' +
      `WHEN MATCHED THEN UPDATE SET ${cols.map((c) => `${quoteColumn(c)} = S.${quoteColumn(c)}`).join(', ')} ` +
      `WHEN NOT MATCHED THEN INSERT (${cols.map(quoteColumn).join(', ')}) VALUES (${cols.map((c) => `S.${quoteColumn(c)}`).join(', ')})`;
    await this.dml(sql, CHUNK_COLUMNS, row, `run ${row.run_id} chunk ${row.chunk_index}`);
  }

  /** The latest other finished (succeeded or failed) run of the same pipeline and date: `recovered` alerts. */
  async previousRun(run: RunRef): Promise<Pick<RunAudit, 'run_id' | 'status' | 'finished_at'> | undefined> {
    const sql =
      `SELECT run_id, status, finished_at FROM ${quoteTable(this.ref(RUNS_TABLE))} ` +
      "WHERE pipeline = @pipeline AND logical_date = @date AND run_id <> @run_id AND status IN ('succeeded', 'failed') " +
      'ORDER BY finished_at DESC, updated_at DESC LIMIT 1';
    const [row] = await this.select(sql, { pipeline: run.pipeline, date: run.logicalDate, run_id: run.runId }, `the previous run of ${run.pipeline} ${run.logicalDate}`);
    return row && { run_id: String(row.run_id), status: row.status as RunAudit['status'], finished_at: timestampOf(row.finished_at) };
  }

  async lastSucceededRun(pipeline: string, logicalDate: string): Promise<RunAudit | undefined> {
    const sql =
      `SELECT * FROM ${quoteTable(this.ref(RUNS_TABLE))} WHERE pipeline = @pipeline AND logical_date = @date AND status = 'succeeded' ` +
      'ORDER BY finished_at DESC, updated_at DESC LIMIT 1';
    const [row] = await this.select(sql, { pipeline, date: logicalDate }, `the last run of ${pipeline} ${logicalDate}`);
    return row && ({ ...row, started_at: timestampOf(row.started_at), finished_at: timestampOf(row.finished_at) } as unknown as RunAudit);
  }

  /** DELETE the run's rows, then one multi-row INSERT: a retry replaces what an earlier attempt wrote. */
  async recordProfile(runId: string, rows: ProfileAudit[]): Promise<void> {
    await this.ready();
    const table = quoteTable(this.ref(PROFILES_TABLE));
    const what = `the profile of run ${runId}`;
    await this.dml(`DELETE FROM ${table} WHERE run_id = @run_id`, { run_id: 'STRING' }, { run_id: runId }, what);
    await this.insertRows(PROFILES_TABLE, PROFILE_COLUMNS, rows, what);
  }

  /** One multi-row INSERT … VALUES (…), (…), every value a typed query parameter. */
  private async insertRows(table: string, columns: Record<string, AuditType>, rows: object[], what: string): Promise<void> {
    if (rows.length === 0) return;
    const cols = Object.keys(columns);
    // BigQuery takes at most 10,000 query parameters: a wide model's profile goes in several statements.
    const perStatement = Math.max(1, Math.floor(MAX_QUERY_PARAMETERS / cols.length));
    if (rows.length > perStatement) {
      for (let start = 0; start < rows.length; start += perStatement) await this.insertRows(table, columns, rows.slice(start, start + perStatement), what);
      return;
    }
    const types: Record<string, AuditType> = {};
    const values: Record<string, unknown> = {};
    const tuples = rows.map((row, i) => {
      const names = cols.map((c) => {
        types[`p${i}_${c}`] = columns[c];
        values[`p${i}_${c}`] = (row as Record<string, unknown>)[c];
        return `@p${i}_${c}`;
      });
      return `(${names.join(', ')})`;
    });
    await this.dml(`INSERT INTO ${quoteTable(this.ref(table))} (${cols.map(quoteColumn).join(', ')}) VALUES ${tuples.join(', ')}`, types, values, what);
  }

  async profiledRuns(q: ProfiledRunsQuery): Promise<ProfiledRun[]> {
    const sql =
      `SELECT run_id, logical_date, MAX(profiled_at) AS profiled_at FROM ${quoteTable(this.ref(PROFILES_TABLE))} ` +
      `WHERE pipeline = @pipeline${q.beforeDate ? ' AND logical_date < @before' : ''} GROUP BY run_id, logical_date ` +
      `ORDER BY logical_date DESC, profiled_at DESC LIMIT ${Math.max(1, Math.floor(q.limit))}`;
    const rows = await this.select(sql, { pipeline: q.pipeline, ...(q.beforeDate && { before: q.beforeDate }) }, `profiled runs of ${q.pipeline}`);
    return rows.map((r) => ({ run_id: String(r.run_id), logical_date: String(r.logical_date), profiled_at: timestampOf(r.profiled_at)! }));
  }

  async readProfile(runId: string): Promise<ProfileAudit[]> {
    const rows = await this.select(`SELECT * FROM ${quoteTable(this.ref(PROFILES_TABLE))} WHERE run_id = @run_id`, { run_id: runId }, `the profile of run ${runId}`);
    return rows.map((r) => profileAuditRow(r, timestampOf(r.profiled_at)));
  }

  private async select(sql: string, params: Record<string, string>, what: string): Promise<Record<string, unknown>[]> {
    await this.ready();
    try {
      const job = await runQuery(this.client, this.conn, { query: sql, params });
      const [rows] = await job.getQueryResults();
      return rows as Record<string, unknown>[];
    } catch (err) {
      throw new SinkError(`${this.location()}: reading ${what} failed: ${sdkMessage(err)}`, !isPermanent(err), { cause: err });
    }
  }

  private async insert(table: string, columns: Record<string, AuditType>, row: object, what: string): Promise<void> {
    const cols = Object.keys(columns);
    const sql = `INSERT INTO ${quoteTable(this.ref(table))} (${cols.map(quoteColumn).join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`;
    await this.dml(sql, columns, row, what);
  }

  private async dml(sql: string, columns: Record<string, AuditType>, row: object, what: string): Promise<void> {
    const values = row as Record<string, unknown>;
    const params: Record<string, unknown> = {};
    for (const [c, type] of Object.entries(columns)) {
      const v = values[c];
      if (v === null || v === undefined) params[c] = null;
      else if (type === 'TIMESTAMP') params[c] = this.client.timestamp(String(v));
      else if (type === 'INT64') params[c] = Math.round(Number(v));
      else if (type === 'FLOAT64') params[c] = Number(v);
      else params[c] = String(v);
    }
    try {
      await runQuery(this.client, this.conn, { query: sql, params, types: columns });
    } catch (err) {
      throw new SinkError(`${this.location()}: audit row for ${what} failed: ${sdkMessage(err)}`, !isPermanent(err), { cause: err });
    }
  }

  private ready(): Promise<void> {
    const key = `${this.conn.name}\0${this.conn.options.apiEndpoint ?? ''}\0${this.location()}`;
    let ready = auditTablesReady.get(key);
    if (!ready) {
      ready = Promise.all([this.ensureTable(RUNS_TABLE, RUN_TABLE_COLUMNS), this.ensureTable(CHUNKS_TABLE, CHUNK_COLUMNS), this.ensureTable(PROFILES_TABLE, PROFILE_COLUMNS)]).then(() => undefined);
      auditTablesReady.set(key, ready);
      ready.catch(() => auditTablesReady.delete(key));
    }
    return ready;
  }

  private async ensureTable(name: string, columns: Record<string, AuditType>): Promise<void> {
    const where = `bigquery://${tableId(this.ref(name))}`;
    const expected: TableField[] = Object.entries(columns).map(([c, type]) => ({ name: c, type, mode: 'NULLABLE' }));
    const dataset = this.client.dataset(this.dataset.dataset, { projectId: this.dataset.project });
    try {
      let fields: TableField[];
      try {
        const [meta] = await dataset.table(name).getMetadata();
        fields = meta.schema?.fields ?? [];
      } catch (err) {
        if (!isNotFound(err)) throw err;
        try {
          await dataset.createTable(name, { schema: { fields: expected }, clustering: { fields: ['run_id'] }, description: 'Scoreline audit (docs/output-schema.md)' });
        } catch (createErr) {
          if ((createErr as SdkError).code !== 409) throw createErr;
        }
        return;
      }
      const missing = expected.filter((f) => ADDED_RUN_COLUMNS.has(f.name!) && !fields.some((g) => g.name === f.name));
      for (const f of missing) {
        await runQuery(this.client, this.conn, { query: `ALTER TABLE ${quoteTable(this.ref(name))} ADD COLUMN IF NOT EXISTS ${quoteColumn(f.name!)} ${f.type}` });
        fields.push(f);
      }
      checkOutputSchema(where, fields, expected);
    } catch (err) {
      if (err instanceof SinkError) throw err;
      throw new SinkError(`${where}: cannot create or check the audit table: ${sdkMessage(err)}`, !isPermanent(err), { cause: err });
    }
  }
}

/** A TIMESTAMP as the SDK returns it ({ value }) → ISO 8601. */
function timestampOf(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  return new Date(typeof v === 'object' && 'value' in v ? String((v as { value: unknown }).value) : String(v)).toISOString();
}
