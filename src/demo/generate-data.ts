/**
 * Demo / benchmark data: hive-partitioned Parquet `<dir>/ds=<YYYY-MM-DD>/part-0.parquet`, one file per date.
 *
 * Columns: `customer_id BIGINT`, `f00..fNN FLOAT` (float32, standard normal), and two columns the model does
 * not use — `segment VARCHAR` and `signup_date DATE` — so pipelines are exercised on projecting features
 * out of a wider table. Snappy, fixed-size row groups.
 *
 * Generated entirely inside DuckDB (`COPY (SELECT … FROM range(n)) TO …`), so 1M rows × 32 features takes a
 * couple of seconds. Values are a pure function of (seed, customer_id, column): every feature is
 * Box–Muller over uniforms taken from DuckDB's `hash()` of (customer_id, column, seed), so the output does not
 * depend on thread count or scheduling (unlike `setseed()` + `random()`, whose sequence is per thread).
 * It is deterministic for a given DuckDB version (DuckDB does not promise `hash()` is stable across
 * versions).
 *
 * customer_id = days_since_epoch(ds) * 1e9 + row: unique across dates (for rowsPerDate < 1e9) whichever
 * subset of dates is generated, and still exactly representable as a JS number.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { sqlString } from '../io/duckdb';

export interface GenerateDemoDataOptions {
  /** Root directory; partitions are created beneath it. */
  dir: string;
  /** Partition dates, `YYYY-MM-DD`. */
  dates: string[];
  rowsPerDate: number;
  /** Number of feature columns f00…; default 32. */
  features?: number;
  /** Rows per Parquet row group; default 65536. */
  rowGroupSize?: number;
  /** Default 42. */
  seed?: number;
  /**
   * Default true: every file is (re)written. `false` keeps a partition file that already exists (it is still
   * listed in `files`; its contents are not checked against the other options).
   */
  overwrite?: boolean;
  log?: (message: string) => void;
}

export interface GenerateDemoDataResult {
  /** Every partition file, written or already present, in `dates` order. */
  files: string[];
  /** Total rows across `files` (rowsPerDate × dates). */
  rows: number;
}

const SEGMENTS = ['consumer', 'smb', 'mid_market', 'enterprise'];
const ID_STRIDE = 1_000_000_000;

export function featureName(i: number): string {
  return `f${String(i).padStart(2, '0')}`;
}

/**
 * The SELECT producing one partition's rows from `source`, a relation with a `customer_id BIGINT` column
 * (exported for tests and the benchmark).
 */
export function demoDataSql(opts: { date: string; source: string; features: number; seed: number }): string {
  const { date, source, features, seed } = opts;
  const pairs = Math.ceil(features / 2);
  const mix = seedMix(seed);
  // Uniform in (0, 1) from the top 53 bits of DuckDB's 64-bit integer hash (a murmur-style finaliser) of a
  // per-(row, k) counter, centred in its bucket so ln() never sees 0. A single-argument hash: the
  // multi-argument hash(a, b, c) combines weakly and gave features correlated at |r| ≈ 0.3–0.85.
  const uniform = (k: number) => `((hash(xor(customer_id * 128 + ${k}, ${mix}::BIGINT)) >> 11)::DOUBLE + 0.5) / 9007199254740992.0`;
  const inner: string[] = [];
  for (let p = 0; p < pairs; p++) {
    inner.push(`sqrt(-2.0 * ln(${uniform(2 * p)})) AS r${p}`, `2.0 * pi() * ${uniform(2 * p + 1)} AS t${p}`);
  }
  const outer: string[] = [];
  for (let i = 0; i < features; i++) {
    const p = i >> 1;
    outer.push(`(r${p} * ${i % 2 === 0 ? 'cos' : 'sin'}(t${p}))::FLOAT AS ${featureName(i)}`);
  }
  const hashOf = (k: number) => `hash(xor(customer_id * 128 + ${k}, ${mix}::BIGINT))`;
  const segments = `[${SEGMENTS.map((s) => `'${s}'`).join(', ')}]`;
  return `
    SELECT customer_id,
           ${outer.join(',\n           ')},
           ${segments}[1 + (${hashOf(126)} % ${SEGMENTS.length})::INTEGER] AS segment,
           -- signup somewhere in the ~10 years before the partition date
           (DATE '${date}' - 1 - (${hashOf(127)} % 3650)::INTEGER) AS signup_date
    FROM (
      SELECT customer_id,
             ${inner.join(',\n             ')}
      FROM ${source}
    )`;
}

/** splitmix64 of the seed, as a non-negative BIGINT literal. */
function seedMix(seed: number): string {
  const M = (1n << 64n) - 1n;
  let z = (BigInt(seed) + 0x9e3779b97f4a7c15n) & M;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
  z ^= z >> 31n;
  return String(z >> 2n);
}

export async function generateDemoData(opts: GenerateDemoDataOptions): Promise<GenerateDemoDataResult> {
  const features = opts.features ?? 32;
  const rowGroupSize = opts.rowGroupSize ?? 65_536;
  const seed = opts.seed ?? 42;
  const log = opts.log ?? (() => {});
  if (!Number.isInteger(opts.rowsPerDate) || opts.rowsPerDate < 0 || opts.rowsPerDate >= ID_STRIDE) {
    throw new RangeError(`rowsPerDate must be an integer in [0, ${ID_STRIDE})`);
  }
  if (!Number.isInteger(features) || features < 1 || features > 100) throw new RangeError('features must be an integer in [1, 100]');
  if (!Number.isInteger(rowGroupSize) || rowGroupSize < 1) throw new RangeError('rowGroupSize must be a positive integer');
  if (!Number.isSafeInteger(seed)) throw new RangeError('seed must be a safe integer');
  if (new Set(opts.dates).size !== opts.dates.length) throw new Error('dates must be distinct');
  for (const d of opts.dates) daysSinceEpoch(d); // validate all before writing anything

  const files: string[] = [];
  let instance: DuckDBInstance | undefined;
  try {
    for (const date of opts.dates) {
      const partDir = join(opts.dir, `ds=${date}`);
      const file = join(partDir, 'part-0.parquet');
      files.push(file);
      if (opts.overwrite === false && (await exists(file))) {
        log(`keep ${file} (exists)`);
        continue;
      }
      // Lazily: a call that only finds existing files never starts DuckDB.
      instance ??= await DuckDBInstance.create(':memory:');
      const con = await instance.connect();
      await fs.mkdir(partDir, { recursive: true });
      const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
      const started = Date.now();
      try {
        // range() is a single-threaded source, and so would be everything downstream of it in the same
        // pipeline; materialising the ids first lets the (transcendental-heavy) projection run in parallel.
        await con.run(
          `CREATE OR REPLACE TEMP TABLE scoreline_demo_ids AS ` +
            `SELECT (${daysSinceEpoch(date)}::BIGINT * ${ID_STRIDE} + range)::BIGINT AS customer_id FROM range(${opts.rowsPerDate})`,
        );
        // DICTIONARY_SIZE_LIMIT: the float columns are all-distinct, and trying (then abandoning) a dictionary
        // for each of them roughly doubles the write time; `segment` still gets its dictionary.
        await con.run(
          `COPY (${demoDataSql({ date, source: 'scoreline_demo_ids', features, seed })}) TO ${sqlString(tmp)} ` +
            `(FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE ${rowGroupSize}, DICTIONARY_SIZE_LIMIT 1024)`,
        );
        await con.run('DROP TABLE scoreline_demo_ids');
        await fs.rename(tmp, file);
      } catch (err) {
        await fs.rm(tmp, { force: true });
        throw err;
      } finally {
        con.closeSync();
      }
      log(`wrote ${file}: ${opts.rowsPerDate} rows × ${features} features in ${((Date.now() - started) / 1000).toFixed(2)}s`);
    }
  } finally {
    instance?.closeSync();
  }
  return { files, rows: opts.rowsPerDate * opts.dates.length };
}

function daysSinceEpoch(date: string): number {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) throw new Error(`date must be YYYY-MM-DD, got ${JSON.stringify(date)}`);
  const ms = Date.parse(`${date}T00:00:00Z`);
  if (!Number.isFinite(ms) || new Date(ms).toISOString().slice(0, 10) !== date) throw new Error(`invalid date ${date}`);
  const days = ms / 86_400_000;
  if (days < 0) throw new Error(`dates before 1970 are not supported: ${date}`);
  return days;
}


async function exists(path: string): Promise<boolean> {
  try {
    await fs.access(path);
    return true;
  } catch {
    return false;
  }
}

/** Loading the demo customers into a warehouse table (src/dev/bq-seed.ts, src/dev/snowflake-seed.ts). */
export interface WarehouseSeedOptions<Connection> {
  connection: Connection;
  /** Table name as the warehouse takes it; replaced if it exists. */
  table: string;
  dates: string[];
  rowsPerDate: number;
  /** Feature columns f00…; default 32. */
  features?: number;
  /** Default 7 (the tests' seed). */
  seed?: number;
  /**
   * Where the generated Parquet partitions go (`<dir>/ds=YYYY-MM-DD/part-0.parquet`), e.g. for scoring
   * the same rows directly as a reference; default: a temporary directory, removed afterwards.
   */
  dir?: string;
  log?: (msg: string) => void;
}

export interface WarehouseSeedResult {
  /** The table as the warehouse resolves it. */
  table: string;
  rows: number;
  /** The generated partitions, if `dir` was given. */
  files: string[];
}
