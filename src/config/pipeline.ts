/**
 * The pipeline file: schema, parsing, overrides and error messages that name the file, the field and
 * what was expected. Pure (no I/O except in `loadPipelineFile`), so workflows may import the types.
 */
import { readFileSync } from 'node:fs';
import { parseDocument, parse as parseYamlScalar } from 'yaml';
import { z } from 'zod';
import { alertsSchema } from '../alerts/config';
import { DURATION_HINT, parseDuration } from '../alerts/duration';
import { ConfigError } from '../errors';
import { scheduleSchema } from '../schedules/config';

/** Names that end up in SQL identifiers, file names and workflow ids. */
export const NAME_PATTERN = /^[a-z][a-z0-9_-]{0,62}$/;
/** Column names: a strict identifier pattern, so nothing from a pipeline file reaches SQL unchecked. */
export const COLUMN_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** `name@alias`, `name:version`, or bare `name` (= `name@champion`). */
export const MODEL_REF_PATTERN = /^[a-z][a-z0-9_-]{0,62}([@:][A-Za-z0-9._-]{1,64})?$/;

const columnName = z.string().regex(COLUMN_PATTERN, 'a column name (letters, digits, _; not starting with a digit)');

const parquetSource = z.strictObject({
  kind: z.literal('parquet'),
  /** File, directory or glob; `{{ ds }}` is replaced by the logical date. */
  path: z.string().min(1),
  /** Columns copied to the output to identify each row. */
  key: z.array(columnName).min(1),
  /** A missing or empty partition fails the run (default) or succeeds with 0 rows. */
  on_empty: z.enum(['fail', 'succeed']).default('fail'),
  /**
   * `strict` (default): duplicate or NULL keys in the date's input fail the run at plan time, before
   * anything is scored; `allow`: no check, every input row is scored once (duplicates stay duplicates).
   */
  key_check: z.enum(['strict', 'allow']).default('strict'),
});

const parquetSink = z.strictObject({
  kind: z.literal('parquet'),
  /** Output table directory; partitions are written below it as `ds=YYYY-MM-DD/`. */
  path: z.string().min(1),
  mode: z.enum(['replace-partition', 'append']).default('replace-partition'),
});

/**
 * Warehouse table names: `TABLE`, `SCHEMA.TABLE` or `DB.SCHEMA.TABLE` (Snowflake), `DATASET.TABLE` or
 * `PROJECT.DATASET.TABLE` (BigQuery; project ids may hold hyphens). Checked here and quoted by the
 * connector, so nothing from a pipeline file reaches SQL unchecked.
 */
export const TABLE_NAME_PATTERN = /^(?:[A-Za-z][A-Za-z0-9_-]{0,62}\.)?(?:[A-Za-z_][A-Za-z0-9_]{0,254}\.)?[A-Za-z_][A-Za-z0-9_]{0,254}$/;
/** A schema (Snowflake `[DB.]SCHEMA`) or dataset (BigQuery `[PROJECT.]DATASET`). */
export const SCHEMA_NAME_PATTERN = /^(?:[A-Za-z][A-Za-z0-9_-]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,254}$/;

const tableName = z.string().regex(TABLE_NAME_PATTERN, 'a table name such as FEATURES, SCHEMA.FEATURES or project.dataset.features (letters, digits, _)');
const connectionName = z.string().regex(NAME_PATTERN, 'a connection name from the connections file (lower-case letters, digits, - and _)');

function warehouseSource<K extends 'snowflake' | 'bigquery'>(kind: K) {
  return z
    .strictObject({
      kind: z.literal(kind),
      /** Named connection (connections file or SCORELINE_CONNECTION_<NAME>); credentials stay in the worker's env. */
      connection: connectionName.default('default'),
      /** Table to read; `where` filters it. Exactly one of `table` and `query`. */
      table: tableName.optional(),
      /** SQL predicate on `table`; `{{ ds }}` and friends become bound parameters. */
      where: z.string().min(1).optional(),
      /** A SELECT to read instead of a table; `{{ ds }}` and friends become bound parameters. */
      query: z.string().min(1).optional(),
      key: z.array(columnName).min(1),
      on_empty: z.enum(['fail', 'succeed']).default('fail'),
      key_check: z.enum(['strict', 'allow']).default('strict'),
    })
    .refine((s) => (s.table === undefined) !== (s.query === undefined), {
      message: 'exactly one of "table" and "query" is required',
    })
    .refine((s) => s.where === undefined || s.table !== undefined, {
      message: '"where" filters a "table"; put the condition into the query instead',
      path: ['where'],
    });
}

function warehouseSink<K extends 'snowflake' | 'bigquery'>(kind: K) {
  return z.strictObject({
    kind: z.literal(kind),
    connection: connectionName.default('default'),
    /** Output table; created with the output contract if missing. */
    table: tableName,
    mode: z.enum(['replace-partition', 'append']).default('replace-partition'),
  });
}

function warehouseAudit<K extends 'snowflake' | 'bigquery'>(kind: K) {
  return z.strictObject({
    kind: z.literal(kind),
    connection: connectionName.default('default'),
    /** Schema / dataset holding scoreline_runs and scoreline_run_chunks; default: the connection's. */
    schema: z.string().regex(SCHEMA_NAME_PATTERN, 'a schema or dataset name such as SCORELINE or project.dataset').optional(),
  });
}

const parquetAudit = z.strictObject({
  kind: z.literal('parquet'),
  /** Directory that holds `scoreline_runs/` and `scoreline_run_chunks/`. */
  path: z.string().min(1),
});

const featurePolicy = z.strictObject({
  /** What a NULL feature does: fail the chunk (default), drop the row, or use `impute_values`. */
  nulls: z.enum(['error', 'skip', 'impute']).default('error'),
  impute_values: z.record(columnName, z.number()).default({}),
  /** `strict` (default): a cast that would change a value (int beyond float precision, overflow) is an error. */
  cast: z.enum(['strict', 'lenient']).default('strict'),
});

const driftSchema = z.strictObject({
  /** Compare each run with the previous successful run's profile, or with the baseline registered with the model. */
  reference: z.enum(['previous', 'baseline']).default('previous'),
  /** PSI at or above this marks a column as drifted (0.1–0.25 is a moderate shift, > 0.25 a large one). */
  psi: z.number().positive().default(0.2),
  /** Optional: a mean that moved this many reference standard deviations marks a column as drifted. */
  mean_shift: z.number().positive().optional(),
  /** Only these feature or prediction columns are checked (default: all). */
  columns: z.array(columnName).min(1).optional(),
});

const MAX_REJECTED_HINT = 'expected a row count (e.g. 100) or a share of the planned rows from 0% to 100% (e.g. "0.1%")';

export const pipelineSchema = z.strictObject({
  name: z.string().regex(NAME_PATTERN, 'lower-case letters, digits, - and _ (at most 63), starting with a letter'),
  description: z.string().optional(),
  source: z.discriminatedUnion('kind', [parquetSource, warehouseSource('snowflake'), warehouseSource('bigquery')]),
  model: z.string().regex(MODEL_REF_PATTERN, 'a model reference such as churn@champion or churn:3'),
  /**
   * A challenger scored beside the model on every chunk (same read, its own session): its predictions
   * go to a shadow table with the same contract (the sink's table or path + `_shadow`), agreement
   * stats to the audit row (docs/models.md "Shadow scoring").
   */
  shadow: z.string().regex(MODEL_REF_PATTERN, 'a model reference such as churn@challenger or churn:4').optional(),
  /** Model store directory; default: the worker's SCORELINE_MODELS_DIR, else ./models. */
  models_dir: z.string().min(1).optional(),
  sink: z.discriminatedUnion('kind', [parquetSink, warehouseSink('snowflake'), warehouseSink('bigquery')]),
  /**
   * Where audit rows go; default: beside a Parquet sink (its parent directory), or the warehouse
   * connection's default schema / dataset of a warehouse sink.
   */
  audit: z.discriminatedUnion('kind', [parquetAudit, warehouseAudit('snowflake'), warehouseAudit('bigquery')]).optional(),
  /** Rows per chunk (one activity each), or `auto`: ~32 MiB of float32 features per chunk (see chunkRowsFor). */
  chunk_rows: z.union([z.literal('auto'), z.number().int().min(1).max(10_000_000)], { error: 'expected a row count (1 to 10,000,000) or "auto"' }).default('auto'),
  parallelism: z.number().int().min(1).max(256).default(4),
  /**
   * How long one attempt at a chunk may take (the chunk activity's start-to-close timeout; default 30m).
   * An attempt that runs out is retried like any failed chunk attempt (4 attempts in all); the last one
   * fails the run, naming the chunk.
   */
  chunk_timeout: z
    .string()
    .refine((s) => parseDuration(s) !== undefined, { error: (iss) => `expected ${DURATION_HINT}, got ${JSON.stringify(iss.input)}` })
    .optional(),
  /**
   * How long a step of a run (plan, chunk, commit, finish) may go without a heartbeat before Temporal
   * gives that attempt up and retries it, on any worker (default 2m). Every step heartbeats on its own
   * every third of this while it runs, so this is how soon the work of a killed worker moves on
   * (docs/reliability.md).
   */
  heartbeat_timeout: z
    .string()
    .refine((s) => (parseDuration(s) ?? 0) >= 1000, { error: (iss) => `expected ${DURATION_HINT} of at least 1s, got ${JSON.stringify(iss.input)}` })
    .optional(),
  /**
   * How long a run that failed while scoring chunks (a chunk timed out, its worker died for good) keeps
   * what it staged, so `run --resume` can reuse it (default 24h; 0 cleans at once, as a failed input
   * check always does). Staging older than this is removed when the sink is next planned for.
   */
  keep_failed_staging: z
    .string()
    .refine((s) => keepFailedStagingMs(s) !== undefined, { error: (iss) => `expected 0 or ${DURATION_HINT}, got ${JSON.stringify(iss.input)}` })
    .default('24h'),
  features: featurePolicy.default({ nulls: 'error', impute_values: {}, cast: 'strict' }),
  /**
   * The error budget: how many rows that cannot be scored (a NULL under `features.nulls: error`, a value
   * the strict cast refuses) a run may set aside in the quarantine table (the sink's table or path +
   * `_quarantine`) and still succeed — a row count, or a share of the planned rows (`0.1%`). Over it the
   * run fails and nothing is committed. 0 (default): the first such row fails the run, as without a budget.
   */
  max_rejected: z
    .union([z.number(), z.string()], { error: MAX_REJECTED_HINT })
    .refine((v) => (typeof v === 'number' ? Number.isInteger(v) && v >= 0 : /^\d+(\.\d+)?%$/.test(v) && Number.parseFloat(v) <= 100), {
      error: (iss) => `${MAX_REJECTED_HINT}, got ${JSON.stringify(iss.input)}`,
    })
    .default(0),
  /** Who hears about failed, slow and recovered runs, and how (docs/alerts.md); none by default. */
  alerts: alertsSchema.optional(),
  /** When Temporal Schedules run the pipeline (docs/schedules.md); applied with `scoreline schedule apply`. */
  schedule: scheduleSchema.optional(),
  /**
   * Late-arriving data: each scheduled run also re-checks the previous N days (`3d`) and rescores those
   * whose input fingerprint or model sha256 changed since their last succeeded run (docs/schedules.md).
   */
  rescore_window: z.string().regex(/^([1-9]|[12]\d|3[01])d$/, 'expected a number of days from 1d to 31d, e.g. 3d').optional(),
  /** Profile every run's features and predictions into `scoreline_run_profiles` (docs/drift.md). */
  profile: z.boolean().default(true),
  /** What counts as drift, against which reference (docs/drift.md); a `drift` alert needs `alerts.on: [drift]`. */
  drift: driftSchema.default({ reference: 'previous', psi: 0.2 }),
});

export type PipelineConfig = z.output<typeof pipelineSchema>;

/** `keep_failed_staging` in ms: 0 for `0` (or `0s`, `0m`, …), else the duration; undefined if neither. */
export function keepFailedStagingMs(text: string | undefined): number | undefined {
  if (text === undefined) return 0;
  return /^\s*0+\s*[a-z]*\s*$/i.test(text) ? 0 : parseDuration(text);
}

/** Feature bytes a chunk holds under `chunk_rows: auto` (as float32): the tensor one activity builds. */
export const AUTO_CHUNK_BYTES = 32 * 1024 * 1024;

/**
 * `chunk_rows`, with `auto` resolved for a model that reads `features` columns: ~32 MiB of float32
 * features per chunk (32 features → 262,144 rows), a multiple of 4,096 between 4,096 and 1,048,576.
 * Chunks that large keep per-chunk costs (an activity round trip, a query, a staged file) small next to
 * inference (measured in README "Performance"), while a chunk's memory stays bounded for wide models.
 */
export function chunkRowsFor(config: Pick<PipelineConfig, 'chunk_rows'>, features: number): number {
  if (config.chunk_rows !== 'auto') return config.chunk_rows;
  const rows = Math.floor(AUTO_CHUNK_BYTES / (4 * Math.max(1, features)) / 4096) * 4096;
  return Math.min(1_048_576, Math.max(4096, rows));
}
export type PipelineInput = z.input<typeof pipelineSchema>;
export type FeaturePolicy = PipelineConfig['features'];
export type SourceConfig = PipelineConfig['source'];
export type SinkConfig = PipelineConfig['sink'];
export type AuditConfig = NonNullable<PipelineConfig['audit']>;
export type DriftConfig = PipelineConfig['drift'];
export type WarehouseSourceConfig = Extract<SourceConfig, { kind: 'snowflake' | 'bigquery' }>;
export type WarehouseSinkConfig = Extract<SinkConfig, { kind: 'snowflake' | 'bigquery' }>;

/** Validate an already-parsed object. `origin` names the file (or "request") in error messages. */
export function parsePipeline(raw: unknown, origin: string, overrides: Record<string, string> = {}): PipelineConfig {
  // Near-real-time requests carry the same document every time: validating it once per process (not
  // once per request) takes ~1 ms off each. The cached config is frozen, so nobody can change it.
  const key = JSON.stringify([origin, raw, overrides]);
  const cached = parsed.get(key);
  if (cached) return cached;
  const config = deepFreeze(validatePipeline(raw, origin, overrides));
  if (parsed.size >= PARSED_CACHE_SIZE) parsed.delete(parsed.keys().next().value!);
  parsed.set(key, config);
  return config;
}

const PARSED_CACHE_SIZE = 256;
const parsed = new Map<string, PipelineConfig>();

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function validatePipeline(raw: unknown, origin: string, overrides: Record<string, string>): PipelineConfig {
  const withOverrides = applyOverrides(raw, overrides, origin);
  const result = pipelineSchema.safeParse(withOverrides, { reportInput: true });
  if (!result.success) throw new ConfigError(formatIssues(origin, result.error.issues));
  const config = result.data;
  const imputeMissing = Object.keys(config.features.impute_values).length === 0 && config.features.nulls === 'impute';
  if (imputeMissing) {
    throw new ConfigError(`${origin}: features.impute_values: required when features.nulls is "impute" (e.g. { f00: 0 })`);
  }
  return config;
}

export function loadPipelineFile(path: string, overrides: Record<string, string> = {}): PipelineConfig {
  return parsePipeline(readPipelineYaml(path), path, overrides);
}

/** Reads YAML with errors that carry the line and column. */
export function readPipelineYaml(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${path}: cannot read pipeline file (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(`${path}: invalid YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
  }
  return doc.toJS();
}

/**
 * `--set chunk_rows=1000 --set source.path=x.parquet`: dotted paths into the raw document; values are
 * read as YAML scalars so numbers stay numbers. Applied before validation, so an override is checked
 * exactly like the file.
 */
export function applyOverrides(raw: unknown, overrides: Record<string, string>, origin: string): unknown {
  const entries = Object.entries(overrides);
  if (entries.length === 0) return raw;
  if (typeof raw !== 'object' || raw === null) return raw;
  const copy = structuredClone(raw) as Record<string, unknown>;
  for (const [path, value] of entries) {
    const parts = path.split('.');
    if (parts.some((p) => p === '' || p === '__proto__' || p === 'constructor' || p === 'prototype')) {
      throw new ConfigError(`${origin}: override "${path}": not a valid dotted field path`);
    }
    let node: Record<string, unknown> = copy;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (next === undefined) node[part] = {};
      else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
        throw new ConfigError(`${origin}: override "${path}": ${part} is not a section`);
      }
      node = node[part] as Record<string, unknown>;
    }
    node[parts[parts.length - 1]] = parseYamlScalar(value);
  }
  return copy;
}

export function parseOverrideFlags(flags: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set ${flag}: expected key=value, e.g. --set chunk_rows=1000`);
    out[flag.slice(0, eq)] = flag.slice(eq + 1);
  }
  return out;
}

function formatIssues(origin: string, issues: z.core.$ZodIssue[]): string {
  const lines = issues.map((issue) => {
    const field = issue.path.length ? issue.path.join('.') : '(top level)';
    return `${origin}: ${field}: ${describeIssue(issue)}`;
  });
  return lines.join('\n');
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined ? `required (expected ${issue.expected})` : `expected ${issue.expected}, got ${describeValue(issue.input)}`;
    case 'unrecognized_keys':
      return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"${didYouMean(k)}`).join(', ')}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(issue.input)}`;
    case 'invalid_union':
      return `${issue.message}`;
    case 'invalid_format':
      return `expected ${issue.message.replace(/^Invalid string: /, '')}, got ${describeValue(issue.input)}`;
    default:
      return issue.message;
  }
}

/** ` (did you mean "chunk_rows"?)` for a field name one or two typos away from a field the pipeline file has. */
function didYouMean(key: string): string {
  const max = key.length < 5 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of pipelineFieldNames()) {
    const d = editDistance(key.toLowerCase(), name);
    if (d > 0 && d <= max && d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best ? ` (did you mean "${best}"?)` : '';
}

let fieldNames: Set<string> | undefined;
/** Every field name anywhere in the pipeline schema (objects inside optionals, unions, lists, records). */
function pipelineFieldNames(): Set<string> {
  if (fieldNames) return fieldNames;
  fieldNames = new Set();
  const seen = new Set<unknown>();
  const walk = (schema: unknown): void => {
    if (!schema || seen.has(schema)) return;
    seen.add(schema);
    const def = (schema as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
    if (!def) return;
    if (def.shape && typeof def.shape === 'object') {
      for (const [name, child] of Object.entries(def.shape as Record<string, unknown>)) {
        fieldNames!.add(name);
        walk(child);
      }
    }
    for (const key of ['innerType', 'element', 'valueType', 'in', 'out']) walk(def[key]);
    if (Array.isArray(def.options)) def.options.forEach(walk);
  };
  walk(pipelineSchema);
  return fieldNames;
}

/** Edits (insert, delete, replace, swap two adjacent letters) from a to b; 3 stands for "3 or more". */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], before[j - 2] + 1);
    }
    [before, prev] = [prev, row];
  }
  return prev[b.length];
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return `${typeof v} ${String(v)}`;
}

/** `{{ ds }}` templating for paths (and later, warehouse binds). Unknown variables are errors. */
export function renderTemplate(template: string, vars: Record<string, string>, origin: string): string {
  return template.replace(/\{\{\s*([a-z_]+)\s*\}\}/g, (_, name: string) => {
    const value = vars[name];
    if (value === undefined) {
      throw new ConfigError(`${origin}: unknown template variable {{ ${name} }} (known: ${Object.keys(vars).join(', ')})`);
    }
    return value;
  });
}

export interface BoundSql {
  sql: string;
  /** Positional (`?`, Snowflake): an array in order; named (`@ds`, BigQuery): an object. */
  binds: string[] | Record<string, string>;
}

/**
 * Warehouse SQL from a pipeline file: every `{{ var }}` becomes a bound parameter, never text in the
 * statement, so a value can't change the SQL. Positional style repeats the value per occurrence.
 * Values are strings (`ds` = 'YYYY-MM-DD'); compare with a DATE column as `ds = {{ ds }}` works on both
 * warehouses because each casts a string literal parameter to DATE in a comparison; write
 * `CAST({{ ds }} AS DATE)` to be explicit.
 */
export function bindTemplate(sql: string, vars: Record<string, string>, style: 'positional' | 'named', origin: string): BoundSql {
  const positional: string[] = [];
  const named: Record<string, string> = {};
  const text = sql.replace(/\{\{\s*([a-z_]+)\s*\}\}/g, (_, name: string) => {
    const value = vars[name];
    if (value === undefined) {
      throw new ConfigError(`${origin}: unknown template variable {{ ${name} }} (known: ${Object.keys(vars).join(', ')})`);
    }
    if (style === 'positional') {
      positional.push(value);
      return '?';
    }
    named[name] = value;
    return `@${name}`;
  });
  return { sql: text, binds: style === 'positional' ? positional : named };
}

export function templateVars(logicalDate: string, pipeline: string): Record<string, string> {
  return { ds: logicalDate, ds_nodash: logicalDate.replaceAll('-', ''), pipeline };
}

export const DATE_PATTERN = /^\d{4}-\d{2}-\d{2}$/;

/** YYYY-MM-DD naming a day that exists (not 2026-02-30 or 2026-11-45). */
export function isCalendarDate(date: string): boolean {
  return DATE_PATTERN.test(date) && !Number.isNaN(Date.parse(`${date}T00:00:00Z`)) && new Date(`${date}T00:00:00Z`).toISOString().startsWith(date);
}

export function assertLogicalDate(date: string, origin: string): string {
  if (!isCalendarDate(date)) throw new ConfigError(`${origin}: date "${date}": expected a calendar date YYYY-MM-DD`);
  return date;
}
