/**
 * Snowflake source, sink and audit store on the official `snowflake-sdk`, used unchanged: the same code
 * runs against a real account and the local emulator (only the connection options differ).
 *
 * - Identifiers from a pipeline file are checked against Snowflake's unquoted-identifier pattern,
 *   upper-cased and double-quoted (so `features` finds FEATURES and a keyword is safe); values are
 *   always binds. `{{ ds }}` in `where` / `query` becomes a bind (`bindTemplate`), never text.
 * - Source: `plan` snapshots the input once into a run-scoped transient table with a row number, so
 *   every chunk and every retry reads the same rows; a chunk is a row-number range of that snapshot,
 *   read with one streamed SELECT of the needed columns into typed arrays.
 * - Sink: each chunk goes into a run-scoped staging table (DELETE its rows + one array-bound INSERT, in
 *   one transaction, so a retry overwrites); `commit` is one transaction (DELETE the date's rows, INSERT
 *   … SELECT from staging), then staging is dropped. A retried commit repeats the same transaction.
 * - Connections are pooled per process and per connection (credentials never leave `options`); every
 *   SDK error is rethrown saying which table and which step, never with connection options.
 */
import { createHash } from 'node:crypto';
import * as arrow from 'apache-arrow';
import type * as snowflake from 'snowflake-sdk';
import { bindTemplate, renderTemplate, templateVars, type PipelineConfig } from '../src/config/pipeline';
import type { SnowflakeConnection } from '../src/connections';
import { ConfigError, InputError, ScorelineError, SinkError } from '../src/errors';
import type { OutputBatch } from '../src/run/batch';
import type { Chunk, ChunkAudit, CommitStats, ProfileAudit, RunAudit, RunRef, StagedChunk } from '../src/types';
import { profileAuditRow } from '../src/profile/rows';
import { SIBLING_SUFFIXES } from '../src/run/shadow';
import { keyCheckColumns, keyCheckSql, readKeyCheck } from './key-check';
import type { AuditStore, KeyCheck, PlanRequest, ProfiledRun, ProfiledRunsQuery, Sink, Source, SourcePlan, StagedFile } from './types';

// ---------------------------------------------------------------------------------------------------
// Identifiers

/** One part of a Snowflake name as an unquoted identifier: letters, digits, _ and $, not starting with a digit. */
const IDENT_PART = /^[A-Za-z_][A-Za-z0-9_$]{0,254}$/;

/** A table (or schema) name split into its parts, each already checked and upper-cased. */
export interface SnowflakeName {
  database?: string;
  schema?: string;
  name: string;
}

/**
 * `[DB.][SCHEMA.]NAME` from a pipeline file → checked parts, upper-cased the way Snowflake resolves an
 * unquoted identifier. Anything else (quotes, spaces, `;`, hyphens) is a ConfigError naming the field.
 */
export function parseSnowflakeName(text: string, what: string, maxParts = 3): SnowflakeName {
  const parts = text.split('.');
  const bad = parts.length > maxParts || parts.some((p) => !IDENT_PART.test(p));
  if (bad) {
    const shape = maxParts === 3 ? '[DATABASE.][SCHEMA.]TABLE' : '[DATABASE.]SCHEMA';
    throw new ConfigError(`${what}: "${text}" is not a Snowflake name of the form ${shape} (each part letters, digits, _ or $, not starting with a digit)`);
  }
  const upper = parts.map((p) => p.toUpperCase());
  const name = upper.pop()!;
  const schema = upper.pop();
  const database = upper.pop();
  return { database, schema, name };
}

/** Double-quotes a part that was checked by IDENT_PART (or is a fixed name of ours). */
export function quoteIdent(part: string): string {
  if (!IDENT_PART.test(part)) throw new Error(`internal: unchecked Snowflake identifier ${JSON.stringify(part)}`);
  return `"${part}"`;
}

function quoteName(n: SnowflakeName): string {
  return [n.database, n.schema, n.name].filter((p): p is string => p !== undefined).map(quoteIdent).join('.');
}

function displayName(n: SnowflakeName): string {
  return [n.database, n.schema, n.name].filter((p) => p !== undefined).join('.');
}

/** A column name from the pipeline or manifest (COLUMN_PATTERN) as Snowflake stores it unquoted. */
function columnIdent(column: string): string {
  return quoteIdent(column.toUpperCase());
}

/** Run-scoped object names: deterministic, so a retried plan or stage replaces what its first try made. */
function runToken(run: RunRef): string {
  const plain = run.runId.replace(/[^A-Za-z0-9]/g, '').toUpperCase();
  return plain.length > 0 && plain.length <= 64 ? plain : createHash('sha256').update(run.runId).digest('hex').slice(0, 32).toUpperCase();
}

// ---------------------------------------------------------------------------------------------------
// Sessions: a small pool of connections per process and connection

type Bind = string | null;
type Row = Record<string, unknown>;

interface Executed {
  rows: Row[];
  columns: snowflake.Column[];
}

/** SDK errors carry a Snowflake error code (`002003`) and SQL state; connection failures carry none. */
interface SdkError extends Error {
  code?: string | number;
  sqlState?: string;
}

/** Errors where the statement itself is wrong for this account: retrying cannot help. */
const OBJECT_MISSING = 2003; // does not exist or not authorized
const NOT_RETRYABLE_CODES = new Set([904, 1003, 2003, 2043, 2140, 100038, 100071]);
const AUTH_CODES = new Set([390100, 390144, 390318, 390422, 394304, 390102]);

function errorCode(err: unknown): number | undefined {
  const code = (err as SdkError)?.code;
  const n = typeof code === 'string' ? Number.parseInt(code, 10) : code;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

function sdkMessage(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0];
}

/**
 * One place that turns SDK errors into Scoreline errors: which step on which object failed, what
 * Snowflake said, and whether a retry can help. Never includes connection options.
 */
function wrapError(err: unknown, what: string, kind: 'input' | 'sink' | 'audit'): Error {
  if (err instanceof ScorelineError) return err;
  const code = errorCode(err);
  const message = `${what}: ${sdkMessage(err)}`;
  if (code !== undefined && AUTH_CODES.has(code)) return new ConfigError(`${message} (check the connection's credentials in the worker's environment)`, { cause: err });
  const permanent = code !== undefined && NOT_RETRYABLE_CODES.has(code);
  if (kind === 'input') return permanent ? new InputError(message, { cause: err }) : new SinkError(message, true, { cause: err });
  return new SinkError(message, !permanent, { cause: err });
}

/**
 * The connections of one named connection in this worker process. Idle connections are reused; each
 * caller gets a connection to itself for its statements (transactions are per session), so concurrent
 * chunk activities never share one.
 */
class SnowflakeSessions {
  private readonly idle: snowflake.Connection[] = [];
  private current?: Promise<{ database?: string; schema?: string }>;

  constructor(readonly connection: SnowflakeConnection) {}

  get account(): string {
    return this.connection.options.account ?? '(account from the connection)';
  }

  async use<T>(fn: (session: Session) => Promise<T>): Promise<T> {
    const conn = this.idle.pop() ?? (await this.connect());
    let healthy = true;
    try {
      return await fn(new Session(conn));
    } catch (err) {
      healthy = errorCode(err) !== undefined; // a SQL error leaves the session usable; a network error may not
      throw err;
    } finally {
      if (healthy && conn.isUp()) this.idle.push(conn);
      else conn.destroy(() => undefined);
    }
  }

  /** BEGIN … COMMIT on one session; ROLLBACK on any error. Snowflake commits implicitly before DDL, so keep DDL outside. */
  transaction<T>(fn: (session: Session) => Promise<T>): Promise<T> {
    return this.use(async (s) => {
      await s.run('BEGIN');
      try {
        const result = await fn(s);
        await s.run('COMMIT');
        return result;
      } catch (err) {
        await s.run('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /** The session's default database and schema (from the options, else what the account defaults to). */
  defaults(): Promise<{ database?: string; schema?: string }> {
    this.current ??= (async () => {
      const { database, schema } = this.connection.options;
      if (database && schema) return { database: normalise(database), schema: normalise(schema) };
      const [row] = (await this.use((s) => s.run('SELECT CURRENT_DATABASE() AS "DB", CURRENT_SCHEMA() AS "SCHEMA"'))).rows;
      return { database: (row?.DB as string | null) ?? undefined, schema: (row?.SCHEMA as string | null) ?? undefined };
    })();
    this.current.catch(() => (this.current = undefined));
    return this.current;
  }

  /** A name with database and schema filled in from the session's defaults, for messages and scratch tables. */
  async qualify(n: SnowflakeName, what: string): Promise<Required<SnowflakeName>> {
    const d = await this.defaults();
    const database = n.database ?? d.database;
    const schema = n.schema ?? d.schema;
    if (!database || !schema) {
      throw new ConfigError(`${what}: ${displayName(n)} has no database or schema, and connection "${this.connection.name}" sets no default; qualify it as DATABASE.SCHEMA.${n.name} or set database and schema in the connection`);
    }
    return { database, schema, name: n.name };
  }

  async close(): Promise<void> {
    const all = this.idle.splice(0);
    await Promise.all(all.map((c) => new Promise<void>((resolve) => c.destroy(() => resolve()))));
  }

  private connect(): Promise<snowflake.Connection> {
    const conn = sdk().createConnection(this.connection.options);
    return new Promise((resolve, reject) =>
      conn.connect((err) => {
        if (!err) return resolve(conn);
        const code = errorCode(err);
        const where = `Snowflake account ${this.account} (connection "${this.connection.name}")`;
        const message = `cannot connect to ${where}: ${sdkMessage(err)}`;
        // Refused credentials will be refused again; a network problem may pass.
        reject(code !== undefined && AUTH_CODES.has(code) ? new ConfigError(`${message} (check the credentials in the worker's environment)`) : new Error(message));
      }),
    );
  }
}

let loadedSdk: typeof import('snowflake-sdk') | undefined;

/**
 * The SDK, loaded on first use: it is large (~22 MB of heap with its bundled AWS client), and a worker or
 * CLI that never talks to Snowflake should not carry it (a bigger heap makes every full GC dearer).
 */
function sdk(): typeof import('snowflake-sdk') {
  if (loadedSdk) return loadedSdk;
  // Its bundled S3 client warns on load, on any Node below 22, about AWS's own future releases;
  // Scoreline supports Node 20, so the notice would only confuse users.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  loadedSdk = require('snowflake-sdk') as typeof import('snowflake-sdk');
  // The SDK logs every connection at INFO to stdout; a worker wants warnings only (SNOWFLAKE_LOG_LEVEL overrides).
  loadedSdk.configure({ logLevel: (process.env.SNOWFLAKE_LOG_LEVEL as snowflake.ConfigureOptions['logLevel']) ?? 'WARN' });
  return loadedSdk;
}

/** Unquoted names in connection options resolve upper-cased, like any unquoted identifier. */
function normalise(name: string): string {
  return /^".*"$/.test(name) ? name.slice(1, -1) : name.toUpperCase();
}

/**
 * The SDK hands out a NULL fetched as string as the text "NULL" (its global `representNullAsStringNull`,
 * on by default). Numbers are fetched as strings here, so in a number column that text means NULL.
 */
const SDK_NULL_TEXT = 'NULL';

class Session {
  constructor(private readonly conn: snowflake.Connection) {}

  run(sqlText: string, binds: Bind[] | Bind[][] = []): Promise<Executed> {
    return new Promise((resolve, reject) => {
      this.conn.execute({
        sqlText,
        binds: binds as snowflake.Binds,
        fetchAsString: ['Number'],
        complete: (err, stmt, rows) => {
          if (err) return reject(err);
          const columns = stmt.getColumns() ?? [];
          const numeric = columns.filter((c) => c.isNumber()).map((c) => c.getName());
          for (const row of (rows ?? []) as Row[]) for (const name of numeric) if (row[name] === SDK_NULL_TEXT) row[name] = null;
          resolve({ rows: (rows ?? []) as Row[], columns });
        },
      });
    });
  }

  /** Streams the result row by row (arrays, numbers as text) instead of holding it as objects. */
  async stream(sqlText: string, binds: Bind[], onColumns: (columns: snowflake.Column[]) => (row: unknown[]) => void): Promise<void> {
    const stmt = await new Promise<snowflake.RowStatement>((resolve, reject) => {
      const s = this.conn.execute({
        sqlText,
        binds,
        streamResult: true,
        rowMode: 'array',
        fetchAsString: ['Number'],
        complete: (err) => (err ? reject(err) : resolve(s)),
      });
    });
    const onRow = onColumns(stmt.getColumns() ?? []);
    for await (const row of stmt.streamRows()) onRow(row as unknown[]);
  }
}

const sessionsByConnection = new Map<string, SnowflakeSessions>();

/**
 * One pool per connection name and options in this process; the key is a hash, so the options
 * (which hold credentials) are not kept as a string anywhere.
 */
function sessionsFor(connection: SnowflakeConnection): SnowflakeSessions {
  const key = createHash('sha256').update(connection.name).update('\0').update(JSON.stringify(connection.options)).digest('hex');
  let sessions = sessionsByConnection.get(key);
  if (!sessions) {
    sessions = new SnowflakeSessions(connection);
    sessionsByConnection.set(key, sessions);
  }
  return sessions;
}

/**
 * One statement on a pooled session of `connection` (seeding demo tables, tests, `scoreline` tools).
 * Binds are text (or arrays of rows of text for an array-bound INSERT); numbers come back as text.
 */
export async function runSnowflake(connection: SnowflakeConnection, sqlText: string, binds: Bind[] | Bind[][] = []): Promise<Row[]> {
  return (await sessionsFor(connection).use((s) => s.run(sqlText, binds))).rows;
}

/** Closes every pooled Snowflake connection of this process (worker shutdown, tests). */
export async function closeSnowflakeConnections(): Promise<void> {
  const all = [...sessionsByConnection.values()];
  sessionsByConnection.clear();
  await Promise.all(all.map((s) => s.close()));
}

// ---------------------------------------------------------------------------------------------------
// Types

/** Snowflake's type name for a result column, as shown in plans and errors (`NUMBER(38,0)`, `FLOAT`). */
function typeName(c: snowflake.Column): string {
  const t = c.getType().toLowerCase();
  if (t === 'fixed') return `NUMBER(${c.getPrecision() ?? 38},${c.getScale() ?? 0})`;
  if (t === 'real') return 'FLOAT';
  if (t === 'text') return 'VARCHAR';
  return t.toUpperCase();
}

function isNumericColumn(c: snowflake.Column): boolean {
  return ['fixed', 'real', 'boolean'].includes(c.getType().toLowerCase());
}

/**
 * Keys must come back exactly: integers and floats as such, everything else as its text. Dates, times
 * and timestamps by an explicit format: a plain cast uses the session's *_OUTPUT_FORMAT (by default
 * milliseconds for timestamps and whole seconds for times, so keys a microsecond apart became one) and a
 * zoned timestamp's text the session's TIMEZONE; these give every digit, zoned ones as the instant in UTC.
 */
export function keyExpr(c: Pick<snowflake.Column, 'getType' | 'getScale'>, ident: string): string {
  const t = c.getType().toLowerCase();
  if ((t === 'fixed' && (c.getScale() ?? 0) === 0) || t === 'real' || t === 'text') return ident;
  if (t === 'date') return `TO_VARCHAR(${ident}, 'YYYY-MM-DD')`;
  if (t === 'time') return `TO_VARCHAR(${ident}, 'HH24:MI:SS.FF9')`;
  if (t === 'timestamp_ntz') return `TO_VARCHAR(${ident}, 'YYYY-MM-DD HH24:MI:SS.FF9')`;
  if (t === 'timestamp_tz' || t === 'timestamp_ltz') return `TO_VARCHAR(CONVERT_TIMEZONE('UTC', ${ident}), 'YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM')`;
  return `CAST(${ident} AS VARCHAR)`;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Snowflake spells non-finite floats `inf`, `-inf`, `NaN`; Number() only knows the last. */
function parseFloatText(s: string): number {
  if (s === 'inf') return Infinity;
  if (s === '-inf') return -Infinity;
  return Number(s);
}

interface ColumnReader {
  set(row: number, value: unknown): void;
  finish(): arrow.Data;
}

/** Result column → Arrow column, filled row by row into a typed array (numbers arrive as text). */
function columnReader(c: snowflake.Column, name: string, n: number, where: string): ColumnReader {
  const t = c.getType().toLowerCase();
  let nullBitmap: Uint8Array | undefined;
  let nullCount = 0;
  const markNull = (row: number) => {
    nullBitmap ??= new Uint8Array(Math.ceil(n / 8)).fill(0xff);
    nullBitmap[row >> 3] &= ~(1 << (row & 7));
    nullCount++;
  };
  const typed = <T extends arrow.DataType>(type: T, values: { [i: number]: number | bigint }, parse: (v: unknown, row: number) => number | bigint): ColumnReader => ({
    set(row, v) {
      if (v === null || v === undefined || v === SDK_NULL_TEXT) markNull(row);
      else values[row] = parse(v, row);
    },
    finish: () => arrow.makeData({ type, length: n, nullCount, nullBitmap: nullCount ? nullBitmap : undefined, data: values as never } as never),
  });
  if (t === 'fixed' && (c.getScale() ?? 0) === 0) {
    return typed(new arrow.Int64(), new BigInt64Array(n), (v, row) => {
      const b = BigInt(v as string);
      if (b < INT64_MIN || b > INT64_MAX) throw new InputError(`${where}: column "${name}" row ${row}: value ${String(v)} does not fit a 64-bit integer; cast it in the source (e.g. to FLOAT or VARCHAR)`);
      return b;
    });
  }
  if (t === 'fixed' || t === 'real') return typed(new arrow.Float64(), new Float64Array(n), (v) => parseFloatText(String(v)));
  if (t === 'boolean') return typed(new arrow.Int8(), new Int8Array(n), (v) => (v === true || v === 'TRUE' || v === '1' ? 1 : 0));
  // Text (keys only; features of other types were refused at plan time).
  const strings: (string | null)[] = new Array(n).fill(null);
  return {
    set(row, v) {
      strings[row] = v === null || v === undefined ? null : String(v);
    },
    finish: () => arrow.vectorFromArray(strings, new arrow.Utf8()).data[0],
  };
}

/** Arrow column → (Snowflake column type, value as bind text). Floats print in shortest round-trip form. */
function bindColumn(type: arrow.DataType, name: string): { sqlType: string; text: (v: unknown) => Bind } {
  const text = (v: unknown): Bind => (v === null || v === undefined ? null : String(v));
  if (arrow.DataType.isInt(type)) return { sqlType: 'NUMBER(38,0)', text };
  if (arrow.DataType.isFloat(type)) {
    return { sqlType: 'FLOAT', text: (v) => (v === null || v === undefined ? null : Number.isNaN(v) ? 'NaN' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : String(v)) };
  }
  if (arrow.DataType.isUtf8(type) || arrow.DataType.isLargeUtf8(type)) return { sqlType: 'VARCHAR', text };
  if (arrow.DataType.isBool(type)) return { sqlType: 'BOOLEAN', text: (v) => (v === null || v === undefined ? null : v ? 'TRUE' : 'FALSE') };
  throw new SinkError(`output column "${name}" has Arrow type ${type}, which the Snowflake sink cannot write`, false);
}

/** Type families for comparing an existing table with what Scoreline would create. */
function family(type: string): string {
  const t = type.toUpperCase();
  if (t.startsWith('NUMBER') || t === 'FIXED') return t.endsWith(',0)') || t === 'FIXED' ? 'NUMBER' : t;
  if (['FLOAT', 'REAL', 'DOUBLE'].includes(t)) return 'FLOAT';
  if (['TEXT', 'VARCHAR', 'STRING'].includes(t)) return 'VARCHAR';
  if (t.startsWith('TIMESTAMP')) return 'TIMESTAMP';
  return t;
}

// ---------------------------------------------------------------------------------------------------
// Source

const ROW_COLUMN = 'SCORELINE_ROW';

type SnowflakeSourceConfig = Extract<PipelineConfig['source'], { kind: 'snowflake' }>;

export class SnowflakeSource implements Source {
  private readonly sessions: SnowflakeSessions;

  constructor(readonly connection: SnowflakeConnection) {
    this.sessions = sessionsFor(connection);
  }

  private sourceConfig(config: PipelineConfig): SnowflakeSourceConfig {
    if (config.source.kind !== 'snowflake') throw new Error('internal: SnowflakeSource got a non-snowflake source');
    return config.source;
  }

  /** The run's snapshot table: in the connection's default schema, else beside the source table. */
  private async snapshotName(config: PipelineConfig, run: RunRef): Promise<Required<SnowflakeName>> {
    const source = this.sourceConfig(config);
    const table = source.table ? parseSnowflakeName(source.table, `pipeline ${config.name}: source.table`) : undefined;
    const d = await this.sessions.defaults();
    const database = d.database ?? table?.database;
    const schema = d.schema ?? table?.schema;
    if (!database || !schema) {
      throw new ConfigError(`pipeline ${config.name}: connection "${this.connection.name}" sets no default database and schema, where the run's snapshot table would go; set them in the connection`);
    }
    return { database, schema, name: `SCORELINE_SNAPSHOT_${runToken(run)}` };
  }

  async plan(req: PlanRequest): Promise<SourcePlan> {
    const { config, run } = req;
    const source = this.sourceConfig(config);
    const origin = `pipeline ${config.name}`;
    const vars = templateVars(run.logicalDate, config.name);
    let from: string;
    let binds: string[];
    let what: string;
    if (source.table) {
      const table = parseSnowflakeName(source.table, `${origin}: source.table`);
      const where = source.where ? bindTemplate(source.where, vars, 'positional', `${origin}: source.where`) : undefined;
      from = `${quoteName(table)}${where ? ` WHERE (${where.sql})` : ''}`;
      binds = (where?.binds as string[] | undefined) ?? [];
      what = `snowflake table ${displayName(await this.sessions.qualify(table, `${origin}: source.table`))}`;
    } else {
      const query = bindTemplate(source.query!.trim().replace(/;\s*$/, ''), vars, 'positional', `${origin}: source.query`);
      from = `(${query.sql}) AS "SCORELINE_SOURCE"`;
      binds = query.binds as string[];
      what = `snowflake query of pipeline ${config.name} (source.query)`;
    }

    // 1. The source's columns, matched to the pipeline's names case-insensitively.
    const described = await this.sessions
      .use((s) => s.run(`SELECT * FROM ${from} LIMIT 0`, binds))
      .catch((err) => {
        if (errorCode(err) === OBJECT_MISSING) throw new InputError(`${what}: does not exist or is not readable with connection "${this.connection.name}" (${sdkMessage(err)})`);
        throw wrapError(err, `${what}: cannot read`, 'input');
      });
    const byName = matchColumns(described.columns, req.columns, what);

    // 2. The snapshot: needed columns only (keys normalised for exact reading) plus a row number.
    const snapshot = await this.snapshotName(config, run);
    const select = req.columns.map((c) => {
      const col = byName.get(c)!;
      const ident = quoteIdent(col.getName()); // the source's own spelling, checked by matchColumns
      return `${source.key.includes(c) ? keyExpr(col, ident) : ident} AS ${columnIdent(c)}`;
    });
    const order = source.key.map((k) => quoteIdent(byName.get(k)!.getName())).join(', ');
    const ctas =
      `CREATE OR REPLACE TRANSIENT TABLE ${quoteName(snapshot)} AS ` +
      `SELECT ${select.join(', ')}, ROW_NUMBER() OVER (ORDER BY ${order}) - 1 AS ${quoteIdent(ROW_COLUMN)} FROM ${from} ` +
      // Stored in row-number order, so each chunk's range read prunes to its own micro-partitions.
      `ORDER BY ${quoteIdent(ROW_COLUMN)}`;
    const rows = await this.sessions
      .use(async (s) => {
        await s.run(ctas, binds);
        const [count] = (await s.run(`SELECT COUNT(*) AS "N" FROM ${quoteName(snapshot)}`)).rows;
        return Number(count.N);
      })
      .catch((err) => {
        throw wrapError(err, `${what}: snapshot into ${displayName(snapshot)} failed`, 'input');
      });

    const table = displayName(snapshot);
    const chunks: Chunk[] = [];
    for (let start = 0; start < rows; start += req.chunkRows) {
      const end = Math.min(start + req.chunkRows, rows);
      chunks.push({ index: chunks.length, rows: end - start, locator: { kind: 'table', table, rowStart: start, rowEnd: end } });
    }
    const schema = Object.fromEntries(req.columns.map((c) => [c, { type: typeName(byName.get(c)!), numeric: isNumericColumn(byName.get(c)!) }]));
    const fingerprint = await this.snapshotFingerprint(snapshot, req.columns, rows);
    return { chunks, rows, inputs: [`snowflake://${this.sessions.account}/${what.replace(/^snowflake table /, '')}`], schema, ...(fingerprint && { fingerprint }) };
  }

  /**
   * `snowflake:v1:<rows>:<h>`, h = BITXOR_AGG of HASH of each snapshot row's needed columns:
   * order-independent, covers every value the run reads; one scan of the snapshot (billed warehouse
   * time). (Not HASH_AGG: the emulator lacks it, and one form everywhere keeps fingerprints comparable.)
   * Undefined when the query fails: the date then counts as changed.
   */
  private async snapshotFingerprint(snapshot: Required<SnowflakeName>, columns: string[], rows: number): Promise<string | undefined> {
    try {
      const [row] = (await this.sessions.use((s) => s.run(`SELECT TO_VARCHAR(BITXOR_AGG(HASH(${columns.map(columnIdent).join(', ')}))) AS "H" FROM ${quoteName(snapshot)}`))).rows;
      const h = row?.H;
      return h === undefined || h === null ? `snowflake:v1:${rows}` : `snowflake:v1:${rows}:${String(h)}`;
    } catch {
      return undefined; // the planner then reports the fingerprint as unavailable and rescores the date
    }
  }

  /**
   * One GROUP BY over the snapshot's key columns (already in the form the output will hold them), so
   * it checks exactly the rows the chunks will read: one scan of the key columns of the snapshot.
   */
  async checkKeys(req: PlanRequest, plan: SourcePlan): Promise<KeyCheck> {
    const { config, run } = req;
    const source = this.sourceConfig(config);
    const snapshot = await this.snapshotName(config, run);
    const sql = keyCheckSql(quoteName(snapshot), source.key.map(columnIdent), { alias: quoteIdent });
    const rows = await this.sessions.use((s) => s.run(sql)).catch((err) => {
      if (errorCode(err) === OBJECT_MISSING) throw new InputError(`snowflake snapshot ${displayName(snapshot)}: the snapshot table is gone (dropped by hand?); rerun the date`, { cause: err });
      throw wrapError(err, `${plan.inputs[0]}: key check on the snapshot ${displayName(snapshot)} failed`, 'input');
    });
    const columns = keyCheckColumns(source.key.length);
    return readKeyCheck(
      rows.rows.map((r) => columns.map((c) => r[c])),
      source.key.length,
      { input: plan.inputs[0], from: await this.describeFrom(config, run) },
    );
  }

  /** The source as SQL to query by hand: the table with its `where` (parameters filled in), or the query. */
  private async describeFrom(config: PipelineConfig, run: RunRef): Promise<string> {
    const source = this.sourceConfig(config);
    const vars = Object.fromEntries(Object.entries(templateVars(run.logicalDate, config.name)).map(([k, v]) => [k, `'${v}'`]));
    if (!source.table) return `(${renderTemplate(source.query!.trim().replace(/;\s*$/, ''), vars, `pipeline ${config.name}: source.query`)})`;
    const table = displayName(await this.sessions.qualify(parseSnowflakeName(source.table, `pipeline ${config.name}: source.table`), `pipeline ${config.name}: source.table`));
    return source.where ? `${table} WHERE (${renderTemplate(source.where, vars, `pipeline ${config.name}: source.where`)})` : table;
  }

  async read(chunk: Chunk, columns: string[], _keys: string[] = []): Promise<arrow.RecordBatch> {
    const loc = chunk.locator;
    if (loc.kind !== 'table') throw new Error('internal: SnowflakeSource got a non-table chunk');
    const table = parseSnowflakeName(loc.table, 'chunk locator');
    const n = loc.rowEnd - loc.rowStart;
    const where = `snowflake snapshot ${loc.table} rows ${loc.rowStart}..${loc.rowEnd - 1}`;
    const sql = `SELECT ${columns.map(columnIdent).join(', ')} FROM ${quoteName(table)} WHERE ${quoteIdent(ROW_COLUMN)} >= ? AND ${quoteIdent(ROW_COLUMN)} < ? ORDER BY ${quoteIdent(ROW_COLUMN)}`;
    let readers: ColumnReader[] = [];
    let row = 0;
    try {
      await this.sessions.use((s) =>
        s.stream(sql, [String(loc.rowStart), String(loc.rowEnd)], (cols) => {
          readers = cols.map((c, i) => columnReader(c, columns[i], n, where));
          return (values) => {
            if (row >= n) throw new InputError(`${where}: more rows than planned; was the snapshot table changed during the run?`);
            for (let i = 0; i < readers.length; i++) readers[i].set(row, values[i]);
            row++;
          };
        }),
      );
    } catch (err) {
      if (errorCode(err) === OBJECT_MISSING) throw new InputError(`${where}: the snapshot table is gone (dropped by the run's clean-up, or by hand?)`, { cause: err });
      throw wrapError(err, `${where}: read failed`, 'input');
    }
    if (row !== n) throw new InputError(`${where}: expected ${n} rows but read ${row}; was the snapshot table changed during the run?`);
    return new arrow.RecordBatch(Object.fromEntries(columns.map((c, i) => [c, readers[i].finish()])));
  }

  async cleanup(config: PipelineConfig, run: RunRef): Promise<void> {
    const snapshot = await this.snapshotName(config, run);
    await this.sessions.use((s) => s.run(`DROP TABLE IF EXISTS ${quoteName(snapshot)}`)).catch((err) => {
      throw wrapError(err, `snowflake snapshot ${displayName(snapshot)}: drop failed`, 'sink');
    });
  }
}

/** Pipeline column names → the source's columns, case-insensitively (an exact match wins a tie). */
function matchColumns(columns: snowflake.Column[], wanted: string[], what: string): Map<string, snowflake.Column> {
  const byName = new Map<string, snowflake.Column>();
  const missing: string[] = [];
  for (const w of wanted) {
    const candidates = columns.filter((c) => c.getName().toUpperCase() === w.toUpperCase());
    const exact = candidates.find((c) => c.getName() === w);
    if (candidates.length > 1 && !exact) {
      throw new InputError(`${what}: column "${w}" matches ${candidates.map((c) => `"${c.getName()}"`).join(' and ')}; rename one so the name is unambiguous`);
    }
    const found = exact ?? candidates[0];
    if (!found) missing.push(w);
    else if (!IDENT_PART.test(found.getName())) {
      throw new InputError(`${what}: column "${found.getName()}" is not a plain identifier; alias it in a source.query (e.g. SELECT "${found.getName()}" AS ${w.toUpperCase()} …)`);
    } else byName.set(w, found);
  }
  if (missing.length > 0) {
    throw new InputError(`${what}: missing column(s) ${missing.map((c) => `"${c}"`).join(', ')} needed by the model or key (it has: ${columns.map((c) => c.getName()).join(', ')})`);
  }
  return byName;
}

// ---------------------------------------------------------------------------------------------------
// Sink

/** Output contract columns besides keys and predictions (docs/output-schema.md), in order. */
const CONTRACT: Array<[string, string]> = [
  ['RUN_ID', 'VARCHAR'],
  ['MODEL_NAME', 'VARCHAR'],
  ['MODEL_VERSION', 'VARCHAR'],
  ['MODEL_SHA256', 'VARCHAR'],
  ['SCORED_AT', 'TIMESTAMP_TZ'],
  ['DS', 'DATE'],
];

/** Rows per array-bound INSERT: bounded request size; the SDK stages larger binds itself on a real account. */
const INSERT_BATCH_ROWS = 65_536;

export interface SnowflakeSinkConfig {
  table: string;
  mode: 'replace-partition' | 'append';
}

export class SnowflakeSink implements Sink {
  private readonly sessions: SnowflakeSessions;
  readonly table: SnowflakeName;
  /** Staging tables created by this process, per run (CREATE … IF NOT EXISTS once, not per chunk). */
  private static readonly staged = new Map<string, Promise<void>>();

  constructor(
    readonly connection: SnowflakeConnection,
    private readonly config: SnowflakeSinkConfig,
  ) {
    this.sessions = sessionsFor(connection);
    this.table = parseSnowflakeName(config.table, 'sink.table');
  }

  location(run: RunRef): string {
    const { database, schema } = this.connection.options;
    const shown = { database: this.table.database ?? (database ? normalise(database) : undefined), schema: this.table.schema ?? (schema ? normalise(schema) : undefined), name: this.table.name };
    return `snowflake://${this.connection.options.account}/${displayName(shown)} (ds=${run.logicalDate})`;
  }

  /**
   * Staging lives beside the output table: rows keyed by chunk, and one row per chunk for its constants.
   * Named by run; a shadow or quarantine table's (`…_SHADOW`, `…_QUARANTINE`) also by a hash of its name,
   * so one run can stage for the output and its siblings while the output's staging keeps the name earlier
   * releases used.
   */
  private staging(run: RunRef): { rows: SnowflakeName; chunks: SnowflakeName } {
    const sibling = SIBLING_SUFFIXES.some((s) => this.table.name.toUpperCase().endsWith(s.toUpperCase()));
    const suffix = sibling ? `_${createHash('sha256').update(this.table.name).digest('hex').slice(0, 8).toUpperCase()}` : '';
    const base = `SCORELINE_STAGE_${runToken(run)}${suffix}`;
    return { rows: { ...this.table, name: base }, chunks: { ...this.table, name: `${base}_CHUNKS` } };
  }

  async stage(run: RunRef, chunkIndex: number, output: OutputBatch): Promise<StagedFile> {
    const { rows: rowsTable, chunks: chunksTable } = this.staging(run);
    const what = `snowflake staging ${displayName(rowsTable)} chunk ${chunkIndex}`;
    const fields = output.table.schema.fields;
    const columns = fields.map((f) => ({ name: f.name, ident: columnIdent(f.name), ...bindColumn(f.type, f.name) }));
    const constant = (name: string) => output.constants.find((c) => c.name === name)?.value ?? null;
    try {
      await this.ensureStaging(run, columns);
      const n = output.table.numRows;
      const vectors = fields.map((f) => output.table.getChild(f.name)!);
      await this.sessions.transaction(async (s) => {
        await s.run(`DELETE FROM ${quoteName(rowsTable)} WHERE "CHUNK_INDEX" = ?`, [String(chunkIndex)]);
        await s.run(`DELETE FROM ${quoteName(chunksTable)} WHERE "CHUNK_INDEX" = ?`, [String(chunkIndex)]);
        const insert = `INSERT INTO ${quoteName(rowsTable)} ("CHUNK_INDEX", ${columns.map((c) => c.ident).join(', ')}) VALUES (?${', ?'.repeat(columns.length)})`;
        for (let start = 0; start < n; start += INSERT_BATCH_ROWS) {
          const end = Math.min(start + INSERT_BATCH_ROWS, n);
          const binds: Bind[][] = new Array(end - start);
          const index = String(chunkIndex);
          for (let r = start; r < end; r++) {
            const row: Bind[] = [index];
            for (let i = 0; i < columns.length; i++) row.push(columns[i].text(vectors[i].get(r)));
            binds[r - start] = row;
          }
          await s.run(insert, binds);
        }
        await s.run(
          `INSERT INTO ${quoteName(chunksTable)} ("CHUNK_INDEX", ${CONTRACT.map(([c]) => quoteIdent(c)).join(', ')}) ` +
            `VALUES (?, ?, ?, ?, ?, ${TIMESTAMP_TZ_PARAM}, ${DATE_PARAM})`,
          [String(chunkIndex), ...CONTRACT.map(([c, t]) => (t === 'TIMESTAMP_TZ' ? timestampText(constant('scored_at')) : constant(c.toLowerCase())))],
        );
      });
      return { path: `${displayName(rowsTable)}#chunk-${chunkIndex}`, bytes: 0 };
    } catch (err) {
      throw wrapError(err, `${what}: write failed`, 'sink');
    }
  }

  private ensureStaging(run: RunRef, columns: Array<{ ident: string; sqlType: string }>): Promise<void> {
    const { rows, chunks } = this.staging(run);
    const key = `${this.connection.name}\0${quoteName(rows)}`;
    let ready = SnowflakeSink.staged.get(key);
    if (!ready) {
      ready = this.sessions.use(async (s) => {
        await s.run(`CREATE TRANSIENT TABLE IF NOT EXISTS ${quoteName(rows)} ("CHUNK_INDEX" NUMBER(10,0), ${columns.map((c) => `${c.ident} ${c.sqlType}`).join(', ')})`);
        await s.run(`CREATE TRANSIENT TABLE IF NOT EXISTS ${quoteName(chunks)} ("CHUNK_INDEX" NUMBER(10,0), ${CONTRACT.map(([c, t]) => `${quoteIdent(c)} ${t}`).join(', ')})`);
      });
      SnowflakeSink.staged.set(key, ready);
      ready.catch(() => SnowflakeSink.staged.delete(key));
    }
    return ready;
  }

  async commit(run: RunRef, staged: StagedChunk[]): Promise<CommitStats> {
    const target = quoteName(this.table);
    const { rows: rowsTable, chunks: chunksTable } = this.staging(run);
    const output = this.location(run);
    const what = `snowflake commit of run ${run.runId} into ${displayName(this.table)}`;
    const rowsOut = staged.reduce((n, s) => n + s.rows, 0);
    const stats = (rowsReplaced: number): CommitStats => ({ output, rowsOut, files: staged.length, rowsReplaced });
    try {
      const stagedColumns = await this.describe(rowsTable);
      if (!stagedColumns) return stats(await this.commitWithoutStaging(run, staged, rowsOut, what));

      const wanted = [
        ...stagedColumns.filter((c) => c.getName() !== 'CHUNK_INDEX').map((c) => [c.getName(), typeName(c)] as [string, string]),
        ...CONTRACT,
      ];
      await this.ensureOutputTable(wanted, what);
      await this.checkStaged(rowsTable, chunksTable, staged, what);

      const cols = wanted.map(([c]) => quoteIdent(c));
      const fromStaging = wanted.map(([c]) => (CONTRACT.some(([k]) => k === c) ? `c.${quoteIdent(c)}` : `r.${quoteIdent(c)}`));
      const rowsReplaced = await this.sessions.transaction(async (s) => {
        const deleted = await s.run(this.deleteSql(target), this.deleteBinds(run));
        await s.run(
          `INSERT INTO ${target} (${cols.join(', ')}) SELECT ${fromStaging.join(', ')} ` +
            `FROM ${quoteName(rowsTable)} r JOIN ${quoteName(chunksTable)} c ON r."CHUNK_INDEX" = c."CHUNK_INDEX"`,
        );
        return this.config.mode === 'replace-partition' ? affected(deleted) : 0;
      });
      await this.dropStaging(run);
      return stats(rowsReplaced);
    } catch (err) {
      throw wrapError(err, `${what} failed`, 'sink');
    }
  }

  /** replace-partition: the date's rows; append: only this run's rows, so a retried commit replaces itself. */
  private deleteSql(target: string): string {
    return this.config.mode === 'replace-partition' ? `DELETE FROM ${target} WHERE "DS" = ${DATE_PARAM}` : `DELETE FROM ${target} WHERE "DS" = ${DATE_PARAM} AND "RUN_ID" = ?`;
  }

  private deleteBinds(run: RunRef): Bind[] {
    return this.config.mode === 'replace-partition' ? [run.logicalDate] : [run.logicalDate, run.runId];
  }

  /**
   * No staging table: either an empty run (nothing was staged), or a retry of a commit that went through
   * and dropped staging before its activity could report back. The output table tells which.
   */
  private async commitWithoutStaging(run: RunRef, staged: StagedChunk[], rowsOut: number, what: string): Promise<number> {
    const target = quoteName(this.table);
    const exists = await this.describe(this.table);
    if (rowsOut === 0 && staged.every((s) => s.rows === 0) && (staged.length === 0 || !exists)) {
      if (!exists) return 0; // nothing to replace, and no types to create the table with
      return this.sessions.transaction(async (s) => (this.config.mode === 'replace-partition' ? affected(await s.run(this.deleteSql(target), this.deleteBinds(run))) : 0));
    }
    if (exists) {
      const [row] = (await this.sessions.use((s) => s.run(`SELECT COUNT(*) AS "N" FROM ${target} WHERE "DS" = ${DATE_PARAM} AND "RUN_ID" = ?`, [run.logicalDate, run.runId]))).rows;
      if (Number(row.N) === rowsOut) return 0; // committed by an earlier attempt
    }
    throw new SinkError(`${what}: staging table ${displayName(this.staging(run).rows)} is missing and the output holds no complete commit of this run; was it dropped by hand? Rerun the date.`, false);
  }

  /** Every staged chunk is there with its row count; chunks staged but not in the list are dropped. */
  private async checkStaged(rowsTable: SnowflakeName, chunksTable: SnowflakeName, staged: StagedChunk[], what: string): Promise<void> {
    const counts = await this.sessions.use(async (s) => {
      const meta = (await s.run(`SELECT "CHUNK_INDEX" AS "I" FROM ${quoteName(chunksTable)}`)).rows.map((r) => Number(r.I));
      const rows = (await s.run(`SELECT "CHUNK_INDEX" AS "I", COUNT(*) AS "N" FROM ${quoteName(rowsTable)} GROUP BY 1`)).rows;
      return { meta: new Set(meta), rows: new Map(rows.map((r) => [Number(r.I), Number(r.N)])) };
    });
    const problems = staged.filter((c) => !counts.meta.has(c.index) || (counts.rows.get(c.index) ?? 0) !== c.rows);
    if (problems.length > 0) {
      const list = problems.slice(0, 5).map((c) => `chunk ${c.index} (expected ${c.rows} rows, staged ${counts.meta.has(c.index) ? (counts.rows.get(c.index) ?? 0) : 'none'})`);
      throw new SinkError(`${what}: staging ${displayName(rowsTable)} does not hold what the chunks reported: ${list.join(', ')}`, false);
    }
    const listed = new Set(staged.map((c) => c.index));
    const extra = [...counts.meta, ...counts.rows.keys()].filter((i) => !listed.has(i));
    for (const i of new Set(extra)) {
      await this.sessions.transaction(async (s) => {
        await s.run(`DELETE FROM ${quoteName(rowsTable)} WHERE "CHUNK_INDEX" = ?`, [String(i)]);
        await s.run(`DELETE FROM ${quoteName(chunksTable)} WHERE "CHUNK_INDEX" = ?`, [String(i)]);
      });
    }
  }

  /** Creates the output table with the contract if missing; an existing one must have compatible columns. */
  private async ensureOutputTable(wanted: Array<[string, string]>, what: string): Promise<void> {
    const target = quoteName(this.table);
    let existing = await this.describe(this.table);
    if (!existing) {
      // CLUSTER BY (DS): replace-partition deletes and readers filter by date.
      await this.sessions.use((s) => s.run(`CREATE TABLE IF NOT EXISTS ${target} (${wanted.map(([c, t]) => `${quoteIdent(c)} ${t}`).join(', ')}) CLUSTER BY ("DS")`));
      existing = (await this.describe(this.table)) ?? [];
    }
    const have = new Map(existing.map((c) => [c.getName().toUpperCase(), typeName(c)]));
    const conflicts = wanted.flatMap(([c, t]) => {
      const actual = have.get(c);
      if (actual === undefined) return [`column ${c} is missing (expected ${t})`];
      return family(actual) === family(t) ? [] : [`column ${c} is ${actual}, expected ${t}`];
    });
    if (conflicts.length > 0) {
      throw new SinkError(
        `${what}: the existing table does not match the output contract (docs/output-schema.md): ${conflicts.join('; ')}. ` +
          'Point sink.table at a new table, or alter/drop this one.',
        false,
      );
    }
  }

  /** The table's columns, or undefined if it does not exist. */
  private describe(name: SnowflakeName): Promise<snowflake.Column[] | undefined> {
    return this.sessions.use((s) => describeTable(s, name));
  }

  private async dropStaging(run: RunRef): Promise<void> {
    const { rows, chunks } = this.staging(run);
    await this.sessions.use(async (s) => {
      await s.run(`DROP TABLE IF EXISTS ${quoteName(rows)}`);
      await s.run(`DROP TABLE IF EXISTS ${quoteName(chunks)}`);
    });
    SnowflakeSink.staged.delete(`${this.connection.name}\0${quoteName(rows)}`);
  }

  async abort(run: RunRef): Promise<void> {
    await this.dropStaging(run).catch((err) => {
      throw wrapError(err, `snowflake staging of run ${run.runId}: drop failed`, 'sink');
    });
  }

  async pendingQuarantined(run: RunRef, quarantine: Sink, of: string, keys: string[]): Promise<string[][]> {
    if (!(quarantine instanceof SnowflakeSink)) throw new Error('internal: a snowflake sink with a quarantine table elsewhere');
    const table = quarantine.table;
    try {
      if (!(await this.describe(table))) return [];
      const k = keys.map(columnIdent);
      const notScored = (await this.describe(this.table))
        ? ` AND NOT EXISTS (SELECT 1 FROM ${quoteName(this.table)} o WHERE o."DS" = ${DATE_PARAM} AND ${k.map((c) => `o.${c} = q.${c}`).join(' AND ')})`
        : '';
      const sql = `SELECT ${k.map((c, i) => `TO_VARCHAR(q.${c}) AS "K${i}"`).join(', ')} FROM ${quoteName(table)} q WHERE q."DS" = ${DATE_PARAM} AND q."RUN_ID" = ?${notScored}`;
      const { rows } = await this.sessions.use((s) => s.run(sql, [run.logicalDate, of, ...(notScored ? [run.logicalDate] : [])]));
      return rows.map((r) => keys.map((_, i) => String(r[`K${i}`])));
    } catch (err) {
      throw wrapError(err, `${displayName(table)}: reading the quarantined rows of run ${of} failed`, 'sink');
    }
  }
}

/** A table's columns (a `LIMIT 0` query), or undefined if it does not exist. */
async function describeTable(s: Session, name: SnowflakeName): Promise<snowflake.Column[] | undefined> {
  try {
    return (await s.run(`SELECT * FROM ${quoteName(name)} LIMIT 0`)).columns;
  } catch (err) {
    if (errorCode(err) === OBJECT_MISSING) return undefined;
    throw err;
  }
}

/** "number of rows deleted" / "number of rows inserted" of a DML result. */
function affected(result: Executed): number {
  const row = result.rows[0];
  return row ? Number(Object.values(row)[0]) : 0;
}

// ---------------------------------------------------------------------------------------------------
// Audit store

const RUNS_TABLE = 'SCORELINE_RUNS';
const CHUNKS_TABLE = 'SCORELINE_RUN_CHUNKS';
const PROFILES_TABLE = 'SCORELINE_RUN_PROFILES';

const PROFILE_COLUMNS: Record<keyof ProfileAudit, string> = {
  run_id: 'VARCHAR',
  pipeline: 'VARCHAR',
  logical_date: 'VARCHAR',
  model_name: 'VARCHAR',
  model_version: 'VARCHAR',
  model_sha256: 'VARCHAR',
  column_name: 'VARCHAR',
  role: 'VARCHAR',
  value_count: 'NUMBER(38,0)',
  null_count: 'NUMBER(38,0)',
  min_value: 'FLOAT',
  max_value: 'FLOAT',
  mean: 'FLOAT',
  std: 'FLOAT',
  quantiles: 'VARCHAR',
  psi: 'FLOAT',
  mean_shift: 'FLOAT',
  reference: 'VARCHAR',
  profiled_at: 'TIMESTAMP_TZ',
};

/** Same columns as the Parquet audit tables (connectors/parquet-audit.ts), in Snowflake types. */
const RUN_COLUMNS: Record<keyof RunAudit, string> = {
  run_id: 'VARCHAR',
  workflow_id: 'VARCHAR',
  pipeline: 'VARCHAR',
  trigger: 'VARCHAR',
  logical_date: 'VARCHAR',
  model_name: 'VARCHAR',
  model_version: 'VARCHAR',
  model_sha256: 'VARCHAR',
  status: 'VARCHAR',
  rows_in: 'NUMBER(38,0)',
  rows_out: 'NUMBER(38,0)',
  rows_rejected: 'NUMBER(38,0)',
  rows_imputed: 'NUMBER(38,0)',
  chunks: 'NUMBER(10,0)',
  started_at: 'TIMESTAMP_TZ',
  finished_at: 'TIMESTAMP_TZ',
  duration_ms: 'NUMBER(38,0)',
  output: 'VARCHAR',
  error: 'VARCHAR',
  alerts: 'VARCHAR',
  shadow_model: 'VARCHAR',
  shadow_model_sha256: 'VARCHAR',
  shadow_output: 'VARCHAR',
  shadow_agreement: 'VARCHAR',
  input_fingerprint: 'VARCHAR',
  rows_quarantined: 'NUMBER(38,0)',
};

/** Run columns added after the first release of the audit contract: existing tables get them by ALTER. */
const ADDED_RUN_COLUMNS: (keyof RunAudit)[] = ['alerts', 'shadow_model', 'shadow_model_sha256', 'shadow_output', 'shadow_agreement', 'input_fingerprint', 'rows_quarantined'];

const CHUNK_COLUMNS: Record<keyof ChunkAudit, string> = {
  run_id: 'VARCHAR',
  chunk_index: 'NUMBER(10,0)',
  status: 'VARCHAR',
  rows_in: 'NUMBER(38,0)',
  rows_out: 'NUMBER(38,0)',
  rows_rejected: 'NUMBER(38,0)',
  rows_imputed: 'NUMBER(38,0)',
  read_ms: 'FLOAT',
  convert_ms: 'FLOAT',
  infer_ms: 'FLOAT',
  write_ms: 'FLOAT',
  worker: 'VARCHAR',
  attempt: 'NUMBER(10,0)',
  error: 'VARCHAR',
};

export class SnowflakeAuditStore implements AuditStore {
  private readonly sessions: SnowflakeSessions;
  private readonly schema?: { database?: string; schema: string };
  private ready?: Promise<void>;

  constructor(
    readonly connection: SnowflakeConnection,
    auditSchema?: string,
  ) {
    this.sessions = sessionsFor(connection);
    if (auditSchema) {
      const n = parseSnowflakeName(auditSchema, 'audit.schema', 2);
      this.schema = { database: n.schema, schema: n.name };
    }
  }

  private tableName(name: string): SnowflakeName {
    return { database: this.schema?.database, schema: this.schema?.schema, name };
  }

  location(): string {
    const { database, schema } = this.connection.options;
    const db = this.schema?.database ?? (database ? normalise(database) : undefined);
    const sc = this.schema?.schema ?? (schema ? normalise(schema) : undefined);
    return `snowflake://${this.connection.options.account}/${[db, sc].filter(Boolean).join('.')} (${RUNS_TABLE}, ${CHUNKS_TABLE}, ${PROFILES_TABLE})`;
  }

  /**
   * Creates the audit tables that are missing and adds the columns added to the contract since they were
   * created. Only what is missing: a role that may insert into tables an administrator created (no
   * CREATE TABLE on the schema, no ownership for ALTER) works as long as nothing is missing.
   */
  private ensureTables(): Promise<void> {
    this.ready ??= this.sessions.use(async (s) => {
      const columns = (spec: Record<string, string>) => Object.entries(spec).map(([c, t]) => `${columnIdent(c)} ${t}`).join(', ');
      const existing = async (table: SnowflakeName) => {
        const described = await describeTable(s, table);
        return described && new Set(described.map((c) => c.getName().toUpperCase()));
      };
      const tables: [string, string][] = [
        [RUNS_TABLE, `${columns(RUN_COLUMNS)}, "UPDATED_AT" TIMESTAMP_TZ`],
        [CHUNKS_TABLE, columns(CHUNK_COLUMNS)],
        [PROFILES_TABLE, columns(PROFILE_COLUMNS)],
      ];
      for (const [name, spec] of tables) {
        const table = this.tableName(name);
        const have = await existing(table);
        if (!have) {
          await s.run(`CREATE TABLE IF NOT EXISTS ${quoteName(table)} (${spec})`);
          continue;
        }
        // Columns added to the contract since the table was created (nullable, so old rows stay valid).
        if (name !== RUNS_TABLE) continue;
        for (const c of ADDED_RUN_COLUMNS) if (!have.has(c.toUpperCase())) await s.run(`ALTER TABLE ${quoteName(table)} ADD COLUMN IF NOT EXISTS ${columnIdent(c)} ${RUN_COLUMNS[c]}`);
      }
    });
    this.ready.catch(() => (this.ready = undefined));
    return this.ready;
  }

  /** One row per status change: an INSERT, never an UPDATE, like the Parquet audit's one file per change. */
  async recordRun(row: RunAudit): Promise<void> {
    await this.recordRuns([row]);
  }

  async recordRuns(rows: RunAudit[]): Promise<void> {
    if (rows.length === 0) return;
    const updatedAt = new Date().toISOString();
    const { sql, binds } = insertRows(this.tableName(RUNS_TABLE), { ...RUN_COLUMNS, updated_at: 'TIMESTAMP_TZ' }, rows.map((r) => ({ ...r, updated_at: updatedAt })));
    try {
      await this.ensureTables();
      await this.sessions.use((s) => s.run(sql, binds));
    } catch (err) {
      const what = rows.length === 1 ? `run ${rows[0].run_id} (${rows[0].status})` : `${rows.length} runs`;
      throw wrapError(err, `snowflake audit ${displayName(this.tableName(RUNS_TABLE))}: recording ${what} failed`, 'audit');
    }
  }

  /** The latest other finished (succeeded or failed) run of the same pipeline and date: `recovered` alerts. */
  async previousRun(run: RunRef): Promise<Pick<RunAudit, 'run_id' | 'status' | 'finished_at'> | undefined> {
    const table = this.tableName(RUNS_TABLE);
    try {
      await this.ensureTables();
      const [row] = (
        await this.sessions.use((s) =>
          s.run(
            `SELECT "RUN_ID", "STATUS", "FINISHED_AT" FROM ${quoteName(table)} WHERE "PIPELINE" = ? AND "LOGICAL_DATE" = ? AND "RUN_ID" <> ? ` +
              `AND "STATUS" IN ('succeeded', 'failed') ORDER BY "FINISHED_AT" DESC, "UPDATED_AT" DESC LIMIT 1`,
            [run.pipeline, run.logicalDate, run.runId],
          ),
        )
      ).rows;
      if (!row) return undefined;
      return { run_id: String(row.RUN_ID), status: row.STATUS as RunAudit['status'], finished_at: isoOrNull(row.FINISHED_AT) };
    } catch (err) {
      throw wrapError(err, `snowflake audit ${displayName(table)}: reading the previous run of ${run.pipeline} ${run.logicalDate} failed`, 'audit');
    }
  }

  async lastSucceededRun(pipeline: string, logicalDate: string): Promise<RunAudit | undefined> {
    const cols = Object.keys(RUN_COLUMNS).map(columnIdent).join(', ');
    const [row] = await this.select(
      `SELECT ${cols} FROM ${quoteName(this.tableName(RUNS_TABLE))} WHERE "PIPELINE" = ? AND "LOGICAL_DATE" = ? AND "STATUS" = 'succeeded' ORDER BY "FINISHED_AT" DESC, "UPDATED_AT" DESC LIMIT 1`,
      [pipeline, logicalDate],
      RUNS_TABLE,
      `the last run of ${pipeline} ${logicalDate}`,
    );
    return row && ({ ...row, started_at: isoOrNull(row.started_at), finished_at: isoOrNull(row.finished_at) } as unknown as RunAudit);
  }

  /** DELETE + one multi-row INSERT in a transaction: a retry replaces the run's rows. */
  async recordProfile(runId: string, rows: ProfileAudit[]): Promise<void> {
    const table = this.tableName(PROFILES_TABLE);
    try {
      await this.ensureTables();
      await this.sessions.transaction(async (s) => {
        await s.run(`DELETE FROM ${quoteName(table)} WHERE "RUN_ID" = ?`, [runId]);
        if (rows.length === 0) return;
        const { sql, binds } = insertRows(table, PROFILE_COLUMNS, rows);
        await s.run(sql, binds);
      });
    } catch (err) {
      throw wrapError(err, `snowflake audit ${displayName(table)}: recording the profile of run ${runId} failed`, 'audit');
    }
  }

  async profiledRuns(q: ProfiledRunsQuery): Promise<ProfiledRun[]> {
    const rows = await this.select(
      `SELECT "RUN_ID", "LOGICAL_DATE", MAX("PROFILED_AT") AS "PROFILED_AT" FROM ${quoteName(this.tableName(PROFILES_TABLE))} ` +
        `WHERE "PIPELINE" = ?${q.beforeDate ? ' AND "LOGICAL_DATE" < ?' : ''} GROUP BY "RUN_ID", "LOGICAL_DATE" ` +
        `ORDER BY "LOGICAL_DATE" DESC, "PROFILED_AT" DESC LIMIT ${Math.max(1, Math.floor(q.limit))}`,
      q.beforeDate ? [q.pipeline, q.beforeDate] : [q.pipeline],
      PROFILES_TABLE,
      `profiled runs of ${q.pipeline}`,
    );
    return rows.map((r) => ({ run_id: String(r.run_id), logical_date: String(r.logical_date), profiled_at: isoOrNull(r.profiled_at)! }));
  }

  async readProfile(runId: string): Promise<ProfileAudit[]> {
    const cols = Object.keys(PROFILE_COLUMNS).map(columnIdent).join(', ');
    const rows = await this.select(`SELECT ${cols} FROM ${quoteName(this.tableName(PROFILES_TABLE))} WHERE "RUN_ID" = ?`, [runId], PROFILES_TABLE, `the profile of run ${runId}`);
    return rows.map((r) => profileAuditRow(r, isoOrNull(r.profiled_at)));
  }

  /** Rows with lower-case keys, as in the other audit stores. */
  private async select(sql: string, binds: Bind[], table: string, what: string): Promise<Record<string, unknown>[]> {
    try {
      await this.ensureTables();
      const { rows } = await this.sessions.use((s) => s.run(sql, binds));
      return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k.toLowerCase(), v])));
    } catch (err) {
      throw wrapError(err, `snowflake audit ${displayName(this.tableName(table))}: reading ${what} failed`, 'audit');
    }
  }

  /** A retried chunk replaces its row: DELETE + INSERT in one transaction. */
  async recordChunk(row: ChunkAudit): Promise<void> {
    const table = this.tableName(CHUNKS_TABLE);
    const { sql, binds } = insertRows(table, CHUNK_COLUMNS, [row]);
    try {
      await this.ensureTables();
      await this.sessions.transaction(async (s) => {
        await s.run(`DELETE FROM ${quoteName(table)} WHERE "RUN_ID" = ? AND "CHUNK_INDEX" = ?`, [row.run_id, String(row.chunk_index)]);
        await s.run(sql, binds);
      });
    } catch (err) {
      throw wrapError(err, `snowflake audit ${displayName(table)}: recording chunk ${row.chunk_index} of run ${row.run_id} failed`, 'audit');
    }
  }
}

/**
 * Dates and timestamps are bound as text and parsed with an explicit format: a plain cast goes through
 * the session's DATE_INPUT_FORMAT / TIMESTAMP_INPUT_FORMAT, which an account may have set to something
 * other than AUTO.
 */
const DATE_PARAM = `TO_DATE(?, 'YYYY-MM-DD')`;
const TIMESTAMP_TZ_PARAM = `TO_TIMESTAMP_TZ(?, 'YYYY-MM-DD"T"HH24:MI:SS.FF3TZH:TZM')`;

/** An instant as TIMESTAMP_TZ_PARAM reads it: ISO 8601 with milliseconds and a +00:00 offset. */
function timestampText(v: unknown): string {
  return new Date(v as string).toISOString().replace(/Z$/, '+00:00');
}

/** A multi-row INSERT … VALUES (…), (…) with every value bound as text and cast to its column type. */
function insertRows(table: SnowflakeName, spec: Record<string, string>, rows: object[]): { sql: string; binds: Bind[] } {
  const entries = Object.entries(spec);
  const param = (t: string) => (t === 'VARCHAR' ? '?' : t === 'DATE' ? DATE_PARAM : t === 'TIMESTAMP_TZ' ? TIMESTAMP_TZ_PARAM : `CAST(? AS ${t})`);
  const tuple = `(${entries.map(([, t]) => param(t)).join(', ')})`;
  const binds = rows.flatMap((row) =>
    entries.map(([c, t]) => {
      const v = (row as Record<string, unknown>)[c];
      return v === null || v === undefined ? null : t === 'TIMESTAMP_TZ' ? timestampText(v) : String(v);
    }),
  );
  return { sql: `INSERT INTO ${quoteName(table)} (${entries.map(([c]) => columnIdent(c)).join(', ')}) VALUES ${rows.map(() => tuple).join(', ')}`, binds };
}

function isoOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : new Date(v as string).toISOString();
}
