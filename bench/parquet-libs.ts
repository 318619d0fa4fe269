/**
 * Parquet library benchmark: which library should read feature chunks into the ONNX input tensor and
 * write predictions.
 *
 *   npx tsx bench/parquet-libs.ts                 # generates bench/.data/demo-1000000/…, prints a table
 *   npx tsx bench/parquet-libs.ts --json          # one JSON object per result line
 *   node dist/bench/parquet-libs.js               # same, compiled
 *   options: --rows N  --file PATH  --cases SUBSTR[,SUBSTR]  --repeats 3  --full  --in-process
 *
 * Every case runs once to warm up and is then timed `repeats` times; the best time is reported (the median
 * is in the notes). By default each case runs in its own child process so that peak RSS is per case and one
 * library's heap does not slow the next; `--in-process` runs everything in this process (no RSS column).
 * parquetjs-lite is ~100× slower than the rest, so its cases use the first 4 row groups unless `--full`.
 *
 * Every read is checked against DuckDB (sampled rows, all 32 features + key); every written file is read
 * back with DuckDB and its types and sampled values checked. A wrong value fails the case (reported, and
 * the process exits non-zero).
 */
import { spawn } from 'node:child_process';
import { promises as fs, openAsBlob } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import * as arrow from 'apache-arrow';
import * as pw from 'parquet-wasm/node';
import * as duck from '@duckdb/node-bindings';
import {
  BIGINT,
  DuckDBConnection,
  DuckDBDataChunk,
  DuckDBInstance,
  DuckDBTimestampTZValue,
  FLOAT,
  TIMESTAMPTZ,
  VARCHAR,
} from '@duckdb/node-api';
import { generateDemoData } from '../src/demo/generate-data';

// ───────────────────────────────────────────── public API ─────────────────────────────────────────────

export interface ParquetBenchResult {
  case: string;
  lib: string;
  op: 'read' | 'write';
  rows: number;
  seconds: number;
  rows_per_s: number;
  notes?: string;
  /** Peak RSS of the process that ran the case (isolated mode only), MiB. */
  peak_rss_mb?: number;
  /** RSS before the case started (after module load), MiB (isolated mode only). */
  base_rss_mb?: number;
  /** seconds / fastest seconds within the same `case`. */
  ratio?: number;
  error?: string;
}

export interface ParquetBenchOptions {
  /** The 1M × 32 feature file (customer_id, f00..f31, …) with fixed-size row groups. */
  file: string;
  /** Rows in `file`. */
  rows: number;
  log?: (message: string) => void;
  /** Keep only cases whose id contains one of these substrings (ids: `bench … --list`). */
  cases?: string[];
  /** Timed repetitions after one warm-up run; default 3. */
  repeats?: number;
  /** Run parquetjs-lite on the whole file too (≈1 minute per repetition). */
  full?: boolean;
  /** Where written files go; default `<dir of file>/out`. */
  outDir?: string;
  /** Run each case in a child process (accurate peak RSS); default false. */
  isolate?: boolean;
}

export async function benchParquetLibs(opts: ParquetBenchOptions): Promise<ParquetBenchResult[]> {
  const log = opts.log ?? (() => {});
  const selected = CASES.filter((c) => !opts.cases?.length || opts.cases.some((s) => c.id.includes(s)));
  const results: ParquetBenchResult[] = [];
  for (const c of selected) {
    log(`running ${c.id}`);
    const r = opts.isolate ? await runIsolated(c.id, opts) : await runCase(c, opts);
    log(`  ${r.error ? `FAILED: ${r.error}` : `${fmtRate(r.rows_per_s)} rows/s (${r.seconds.toFixed(3)} s)`}`);
    results.push(r);
  }
  await closeDuck();
  addRatios(results);
  addRangeNotes(results);
  return results;
}

// ───────────────────────────────────────────── cases ─────────────────────────────────────────────

interface Ctx {
  file: string;
  rows: number;
  features: string[];
  /** Row groups of `file`: [start, end) rows. */
  groups: Array<[number, number]>;
  /** The range case: row groups 5..6 (or the middle two for small files). */
  range: GroupRange;
  /** The last two full row groups (13..14 of 16): shows whether a method's cost grows with the offset. */
  lateRange: GroupRange;
  outDir: string;
  full: boolean;
  /** Inputs for the write cases (built outside the timed section). */
  writeInput: WriteInput;
}

interface GroupRange {
  firstGroup: number;
  lastGroup: number;
  start: number;
  end: number;
}

interface WriteInput {
  keys: BigInt64Array;
  probs: Float32Array;
  runId: string;
  modelSha256: string;
  scoredAt: Date;
}

interface ReadOut {
  x: Float32Array;
  keys: BigInt64Array;
  /** First file row held in x / keys. */
  rowStart: number;
  rows: number;
}

interface CaseDef {
  id: string;
  case: string;
  lib: string;
  op: 'read' | 'write';
  /** Rows this case processes (for rows/s) and a note about it. */
  rows(ctx: Ctx): { rows: number; note?: string };
  setup?(ctx: Ctx): Promise<unknown>;
  run(ctx: Ctx, state: unknown): Promise<ReadOut | string>;
  notes?: string;
}

const F32_SAMPLE_EVERY = 1009;
const SLOW_CAP_GROUPS = 4;

const CASES: CaseDef[] = [
  // ── full file → row-major Float32Array [N × 32] + BigInt64Array keys ──
  {
    id: 'read-full/duckdb/stream-vectors',
    case: 'read file → f32[N×32]',
    lib: 'duckdb stream, column vectors + JS transpose',
    op: 'read',
    rows: (c) => ({ rows: c.rows }),
    run: (c) => duckReadColumns(c, `SELECT customer_id, ${c.features.join(', ')} FROM read_parquet(${sq(c.file)})`, 0, c.rows, 'stream'),
  },
  {
    id: 'read-full/duckdb/stream-array-cast',
    case: 'read file → f32[N×32]',
    lib: 'duckdb stream, [f00..f31]::FLOAT[32] (row-major in C++)',
    op: 'read',
    rows: (c) => ({ rows: c.rows }),
    run: (c) => duckReadArray(c, `SELECT customer_id, [${c.features.join(', ')}]::FLOAT[${c.features.length}] FROM read_parquet(${sq(c.file)})`, 0, c.rows),
  },
  {
    id: 'read-full/duckdb/materialized-vectors',
    case: 'read file → f32[N×32]',
    lib: 'duckdb run (materialized), column vectors',
    op: 'read',
    rows: (c) => ({ rows: c.rows }),
    run: (c) => duckReadColumns(c, `SELECT customer_id, ${c.features.join(', ')} FROM read_parquet(${sq(c.file)})`, 0, c.rows, 'run'),
  },
  {
    id: 'read-full/duckdb/getColumnsJS',
    case: 'read file → f32[N×32]',
    lib: 'duckdb runAndReadAll().getColumnsJS() (convenience API)',
    op: 'read',
    rows: (c) => ({ rows: c.rows }),
    run: async (c) => {
      const con = await duckCon();
      const reader = await con.runAndReadAll(`SELECT customer_id, ${c.features.join(', ')} FROM read_parquet(${sq(c.file)})`);
      const cols = reader.getColumnsJS();
      const n = reader.currentRowCount;
      const F = c.features.length;
      const x = new Float32Array(n * F);
      const keys = new BigInt64Array(n);
      const k = cols[0] as bigint[];
      for (let i = 0; i < n; i++) keys[i] = k[i];
      for (let f = 0; f < F; f++) {
        const col = cols[f + 1] as number[];
        for (let i = 0, o = f; i < n; i++, o += F) x[o] = col[i];
      }
      return { x, keys, rowStart: 0, rows: n };
    },
  },
  {
    id: 'read-full/parquet-wasm',
    case: 'read file → f32[N×32]',
    lib: 'parquet-wasm readParquet({batchSize: 65536}) → IPC → apache-arrow',
    op: 'read',
    rows: (c) => ({ rows: c.rows }),
    run: async (c) => {
      const bytes = await fs.readFile(c.file);
      return wasmRead(c, bytes, false, 0, c.rows);
    },
  },
  {
    id: 'read-full/parquet-wasm/default-batch',
    case: 'read file → f32[N×32]',
    lib: 'parquet-wasm as above, default batchSize (1024)',
    op: 'read',
    rows: (c) => ({ rows: c.rows }),
    run: async (c) => {
      const bytes = await fs.readFile(c.file);
      return wasmTableToOut(c, pw.readParquet(bytes, { columns: ['customer_id', ...c.features] }), 0, c.rows);
    },
  },
  {
    id: 'read-full/hyparquet',
    case: 'read file → f32[N×32]',
    lib: 'hyparquet parquetRead onChunk (column arrays)',
    op: 'read',
    rows: (c) => ({ rows: c.rows }),
    run: (c) => hyparquetRead(c, 0, c.rows),
  },
  {
    id: 'read-full/parquetjs-lite',
    case: 'read file → f32[N×32]',
    lib: 'parquetjs-lite cursor',
    op: 'read',
    rows: (c) => slowRows(c),
    run: (c) => parquetjsRead(c, 0, c.full ? c.groups.length : Math.min(SLOW_CAP_GROUPS, c.groups.length)),
  },

  // ── one chunk: a row-group range ──
  ...(['range', 'lateRange'] as const).flatMap((which): CaseDef[] => {
    const label = which === 'range' ? 'read row groups 5..6' : 'read row groups 13..14';
    const suffix = which === 'range' ? '' : '-late';
    return [
      {
        id: `read-range/duckdb/file_row_number${suffix}`,
        case: label,
        lib: 'duckdb WHERE file_row_number BETWEEN a AND b',
        op: 'read',
        rows: (c) => ({ rows: c[which].end - c[which].start }),
        run: (c) =>
          duckReadColumns(
            c,
            `SELECT customer_id, ${c.features.join(', ')} FROM read_parquet(${sq(c.file)}, file_row_number = true) ` +
              `WHERE file_row_number BETWEEN ${c[which].start} AND ${c[which].end - 1}`,
            c[which].start,
            c[which].end - c[which].start,
            'stream',
          ),
      },
      {
        id: `read-range/duckdb/limit-offset${suffix}`,
        case: label,
        lib: 'duckdb LIMIT n OFFSET a',
        op: 'read',
        rows: (c) => ({ rows: c[which].end - c[which].start }),
        run: (c) =>
          duckReadColumns(
            c,
            `SELECT customer_id, ${c.features.join(', ')} FROM read_parquet(${sq(c.file)}) LIMIT ${c[which].end - c[which].start} OFFSET ${c[which].start}`,
            c[which].start,
            c[which].end - c[which].start,
            'stream',
          ),
      },
    ];
  }),
  {
    id: 'read-range/duckdb/full-scan-filter',
    case: 'read row groups 5..6',
    lib: 'duckdb WHERE customer_id BETWEEN (value filter, for contrast)',
    op: 'read',
    rows: (c) => ({ rows: c.range.end - c.range.start }),
    setup: async (c) => {
      const con = await duckCon();
      const r = await con.runAndReadAll(
        `SELECT min(customer_id), max(customer_id) FROM read_parquet(${sq(c.file)}, file_row_number = true) ` +
          `WHERE file_row_number BETWEEN ${c.range.start} AND ${c.range.end - 1}`,
      );
      return r.getRows()[0] as [bigint, bigint];
    },
    run: (c, s) => {
      const [lo, hi] = s as [bigint, bigint];
      return duckReadColumns(
        c,
        `SELECT customer_id, ${c.features.join(', ')} FROM read_parquet(${sq(c.file)}) WHERE customer_id BETWEEN ${lo} AND ${hi}`,
        c.range.start,
        c.range.end - c.range.start,
        'stream',
      );
    },
  },
  {
    id: 'read-range/parquet-wasm/bytes',
    case: 'read row groups 5..6',
    lib: 'parquet-wasm readFile + readParquet({rowGroups})',
    op: 'read',
    rows: (c) => ({ rows: c.range.end - c.range.start }),
    run: async (c) => {
      const bytes = await fs.readFile(c.file);
      return wasmRead(c, bytes, true, c.range.start, c.range.end - c.range.start);
    },
    notes: 'reads the whole file into memory first',
  },
  {
    id: 'read-range/parquet-wasm/blob',
    case: 'read row groups 5..6',
    lib: 'parquet-wasm ParquetFile.fromFile(fs.openAsBlob) .read({rowGroups})',
    op: 'read',
    rows: (c) => ({ rows: c.range.end - c.range.start }),
    run: async (c) => {
      const blob = await openAsBlob(c.file);
      const pf = await pw.ParquetFile.fromFile(blob);
      try {
        const table = await pf.read({ rowGroups: rangeGroups(c), columns: ['customer_id', ...c.features], batchSize: 65_536 });
        return wasmTableToOut(c, table, c.range.start, c.range.end - c.range.start);
      } finally {
        pf.free();
      }
    },
  },
  {
    id: 'read-range/hyparquet',
    case: 'read row groups 5..6',
    lib: 'hyparquet parquetRead({rowStart,rowEnd})',
    op: 'read',
    rows: (c) => ({ rows: c.range.end - c.range.start }),
    run: (c) => hyparquetRead(c, c.range.start, c.range.end),
  },
  {
    id: 'read-range/parquetjs-lite',
    case: 'read row groups 5..6',
    lib: 'parquetjs-lite cursor positioned at row group 5',
    op: 'read',
    rows: (c) => ({ rows: c.range.end - c.range.start }),
    run: (c) => parquetjsRead(c, c.range.firstGroup, c.range.lastGroup + 1),
  },

  // ── write predictions ──
  {
    id: 'write/parquet-wasm',
    case: 'write predictions',
    lib: 'parquet-wasm (arrow Table from typed arrays → IPC → writeParquet)',
    op: 'write',
    rows: (c) => ({ rows: c.writeInput.keys.length }),
    run: (c) => writeParquetWasm(c.writeInput, join(c.outDir, 'parquet-wasm.parquet'), false),
    notes: 'default writer properties; run_id/model_sha256 as dictionary<int32, utf8>',
  },
  {
    id: 'write/parquet-wasm/no-numeric-dict',
    case: 'write predictions',
    lib: 'parquet-wasm, dictionary off for customer_id/churn_probability',
    op: 'write',
    rows: (c) => ({ rows: c.writeInput.keys.length }),
    run: (c) => writeParquetWasm(c.writeInput, join(c.outDir, 'parquet-wasm-nodict.parquet'), true),
    notes: 'setColumnDictionaryEnabled(col, false) for the all-distinct columns',
  },
  {
    id: 'write/duckdb/chunks+sql-constants',
    case: 'write predictions',
    lib: 'duckdb appendDataChunk(key, prob) + COPY with constant columns in SQL',
    op: 'write',
    rows: (c) => ({ rows: c.writeInput.keys.length }),
    run: (c) => writeDuckChunks(c.writeInput, join(c.outDir, 'duckdb-chunks.parquet'), false),
  },
  {
    id: 'write/duckdb/chunks+enum-constants',
    case: 'write predictions',
    lib: 'duckdb as above, the text constants as one-value ENUMs (what src/io/parquet-write.ts does)',
    op: 'write',
    rows: (c) => ({ rows: c.writeInput.keys.length }),
    run: (c) => writeDuckChunks(c.writeInput, join(c.outDir, 'duckdb-chunks-enum.parquet'), false, '', true),
    notes: 'the same Parquet string columns, written from the enum index instead of hashing each row',
  },
  {
    id: 'write/duckdb/chunks+sql-constants+dict-limit',
    case: 'write predictions',
    lib: 'duckdb as above + COPY (…, DICTIONARY_SIZE_LIMIT 1024)',
    op: 'write',
    rows: (c) => ({ rows: c.writeInput.keys.length }),
    run: (c) => writeDuckChunks(c.writeInput, join(c.outDir, 'duckdb-chunks-dictlimit.parquet'), false, ', DICTIONARY_SIZE_LIMIT 1024'),
    notes: 'no dictionary attempt on the all-distinct columns; no consistent gain measured',
  },
  {
    id: 'write/duckdb/chunks-all-columns',
    case: 'write predictions',
    lib: 'duckdb appendDataChunk(all 5 columns) + COPY',
    op: 'write',
    rows: (c) => ({ rows: c.writeInput.keys.length }),
    run: (c) => writeDuckChunks(c.writeInput, join(c.outDir, 'duckdb-chunks-all.parquet'), true, ''),
    notes: 'strings set per row with vector_assign_string_element',
  },
  {
    id: 'write/duckdb/appender-rows',
    case: 'write predictions',
    lib: 'duckdb appender row by row + COPY',
    op: 'write',
    rows: (c) => ({ rows: c.writeInput.keys.length }),
    run: (c) => writeDuckRows(c.writeInput, join(c.outDir, 'duckdb-rows.parquet')),
  },
  {
    id: 'write/parquetjs-lite',
    case: 'write predictions',
    lib: 'parquetjs-lite ParquetWriter.appendRow',
    op: 'write',
    rows: (c) => slowRows(c),
    run: (c) => writeParquetjs(c, join(c.outDir, 'parquetjs-lite.parquet')),
  },
];

export const PARQUET_BENCH_CASE_IDS: readonly string[] = CASES.map((c) => c.id);

function slowRows(c: Ctx): { rows: number; note?: string } {
  if (c.full) return { rows: c.rows };
  const groups = Math.min(SLOW_CAP_GROUPS, c.groups.length);
  const rows = c.groups[groups - 1][1];
  return rows < c.rows ? { rows, note: `first ${rows} rows only (--full for all)` } : { rows };
}

function rangeGroups(c: Ctx): number[] {
  const g: number[] = [];
  for (let i = c.range.firstGroup; i <= c.range.lastGroup; i++) g.push(i);
  return g;
}

// ───────────────────────────────────────────── DuckDB ─────────────────────────────────────────────

let duckInstance: Promise<DuckDBInstance> | undefined;
let duckConnection: Promise<DuckDBConnection> | undefined;

function duckCon(): Promise<DuckDBConnection> {
  duckInstance ??= DuckDBInstance.create(':memory:');
  duckConnection ??= duckInstance.then((db) => db.connect());
  return duckConnection;
}

async function closeDuck(): Promise<void> {
  if (duckConnection) (await duckConnection).closeSync();
  if (duckInstance) (await duckInstance).closeSync();
  duckConnection = duckInstance = undefined;
}

/** The chunk's column `col` as a typed array (a copy: vector_get_data copies out of DuckDB's vector). */
function vectorBytes(chunk: DuckDBDataChunk, col: number, byteCount: number): Uint8Array {
  const vector = duck.data_chunk_get_vector(chunk.chunk, col);
  // null when every row is valid (DuckDB allocates the mask lazily, on the first NULL).
  const validity = duck.vector_get_validity(vector, Math.ceil(chunk.rowCount / 64) * 8);
  if (validity && hasInvalid(validity, chunk.rowCount)) throw new Error(`NULL in column ${col}`);
  return duck.vector_get_data(vector, byteCount);
}

function hasInvalid(mask: Uint8Array, n: number): boolean {
  const full = n >> 3;
  for (let i = 0; i < full; i++) if (mask[i] !== 0xff) return true;
  const rest = n & 7;
  return rest !== 0 && (mask[full] & ((1 << rest) - 1)) !== (1 << rest) - 1;
}

function int32View(bytes: Uint8Array, n: number): Int32Array {
  return new Int32Array(bytes.buffer, bytes.byteOffset, n);
}

/**
 * The fast read: stream the result, and per 2048-row chunk copy each column vector's raw data out as a
 * typed array and scatter it into the row-major output. No per-value JS objects. fetchChunk calls must not
 * overlap on one result (two in flight returned chunks out of order in testing).
 */
async function duckReadColumns(c: Ctx, sql: string, rowStart: number, expectRows: number, mode: 'stream' | 'run'): Promise<ReadOut> {
  const con = await duckCon();
  const F = c.features.length;
  const result = mode === 'stream' ? await con.stream(sql) : await con.run(sql);
  const x = new Float32Array(expectRows * F);
  const xi = new Int32Array(x.buffer);
  const keys = new BigInt64Array(expectRows);
  let row = 0;
  for (;;) {
    const chunk = await result.fetchChunk();
    const n = chunk?.rowCount ?? 0;
    if (!chunk || n === 0) break;
    if (row + n > expectRows) throw new Error(`more rows than expected (${expectRows})`);
    const k = vectorBytes(chunk, 0, n * 8);
    keys.set(new BigInt64Array(k.buffer, k.byteOffset, n), row);
    const cols: Int32Array[] = new Array(F);
    for (let f = 0; f < F; f++) cols[f] = int32View(vectorBytes(chunk, f + 1, n * 4), n);
    scatterColumns(xi, row, F, cols, n);
    row += n;
  }
  if (row !== expectRows) throw new Error(`got ${row} rows, expected ${expectRows}`);
  return { x, keys, rowStart, rows: row };
}

/** FLOAT[32] array column: its child vector already holds the chunk's rows row-major → one copy per chunk. */
async function duckReadArray(c: Ctx, sql: string, rowStart: number, expectRows: number): Promise<ReadOut> {
  const con = await duckCon();
  const F = c.features.length;
  const result = await con.stream(sql);
  const x = new Float32Array(expectRows * F);
  const keys = new BigInt64Array(expectRows);
  let row = 0;
  for (;;) {
    const chunk = await result.fetchChunk();
    const n = chunk?.rowCount ?? 0;
    if (!chunk || n === 0) break;
    const k = vectorBytes(chunk, 0, n * 8);
    keys.set(new BigInt64Array(k.buffer, k.byteOffset, n), row);
    const arrayVector = duck.data_chunk_get_vector(chunk.chunk, 1);
    const child = duck.array_vector_get_child(arrayVector);
    // A NULL inside the array shows in the child's mask, a NULL array in the parent's.
    for (const [v, count] of [[arrayVector, n], [child, n * F]] as const) {
      const m = duck.vector_get_validity(v, Math.ceil(count / 64) * 8);
      if (m && hasInvalid(m, count)) throw new Error('NULL feature');
    }
    const d = duck.vector_get_data(child, n * F * 4);
    x.set(new Float32Array(d.buffer, d.byteOffset, n * F), row * F);
    row += n;
  }
  if (row !== expectRows) throw new Error(`got ${row} rows, expected ${expectRows}`);
  return { x, keys, rowStart, rows: row };
}

async function writeDuckChunks(input: WriteInput, path: string, allColumns: boolean, copyOptions = '', enumConstants = false): Promise<string> {
  const con = await duckCon();
  const n = input.keys.length;
  const table = allColumns ? 'bench_pred_all' : 'bench_pred';
  await con.run(
    allColumns
      ? `CREATE OR REPLACE TEMP TABLE ${table} (customer_id BIGINT, churn_probability FLOAT, run_id VARCHAR, model_sha256 VARCHAR, scored_at TIMESTAMPTZ)`
      : `CREATE OR REPLACE TEMP TABLE ${table} (customer_id BIGINT, churn_probability FLOAT)`,
  );
  const appender = await con.createAppender(table);
  const types = allColumns ? [BIGINT, FLOAT, VARCHAR, VARCHAR, TIMESTAMPTZ] : [BIGINT, FLOAT];
  const chunk = DuckDBDataChunk.create(types);
  const V = duck.vector_size();
  const ts = allColumns ? new BigInt64Array(V).fill(BigInt(input.scoredAt.getTime()) * 1000n) : undefined;
  try {
    for (let row = 0; row < n; row += V) {
      const m = Math.min(V, n - row);
      chunk.reset();
      chunk.rowCount = m;
      const raw = chunk.chunk;
      duck.copy_data_to_vector(duck.data_chunk_get_vector(raw, 0), 0, input.keys.buffer as ArrayBuffer, input.keys.byteOffset + row * 8, m * 8);
      duck.copy_data_to_vector(duck.data_chunk_get_vector(raw, 1), 0, input.probs.buffer as ArrayBuffer, input.probs.byteOffset + row * 4, m * 4);
      if (allColumns && ts) {
        const runVec = duck.data_chunk_get_vector(raw, 2);
        const shaVec = duck.data_chunk_get_vector(raw, 3);
        for (let i = 0; i < m; i++) {
          duck.vector_assign_string_element(runVec, i, input.runId);
          duck.vector_assign_string_element(shaVec, i, input.modelSha256);
        }
        duck.copy_data_to_vector(duck.data_chunk_get_vector(raw, 4), 0, ts.buffer, 0, m * 8);
      }
      appender.appendDataChunk(chunk);
    }
    appender.closeSync();
  } catch (err) {
    try {
      appender.closeSync();
    } catch {
      /* already failing */
    }
    throw err;
  }
  const text = (v: string) => (enumConstants ? `${sq(v)}::ENUM(${sq(v)})` : sq(v));
  const select = allColumns
    ? `SELECT * FROM ${table}`
    : `SELECT customer_id, churn_probability, ${text(input.runId)} AS run_id, ${text(input.modelSha256)} AS model_sha256, ` +
      `${sq(input.scoredAt.toISOString())}::TIMESTAMPTZ AS scored_at FROM ${table}`;
  await con.run(`COPY (${select}) TO ${sq(path)} (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 65536${copyOptions})`);
  await con.run(`DROP TABLE ${table}`);
  return path;
}

async function writeDuckRows(input: WriteInput, path: string): Promise<string> {
  const con = await duckCon();
  await con.run(
    `CREATE OR REPLACE TEMP TABLE bench_pred_rows (customer_id BIGINT, churn_probability FLOAT, run_id VARCHAR, model_sha256 VARCHAR, scored_at TIMESTAMPTZ)`,
  );
  const appender = await con.createAppender('bench_pred_rows');
  const ts = new DuckDBTimestampTZValue(BigInt(input.scoredAt.getTime()) * 1000n);
  const { keys, probs, runId, modelSha256 } = input;
  for (let i = 0; i < keys.length; i++) {
    appender.appendBigInt(keys[i]);
    appender.appendFloat(probs[i]);
    appender.appendVarchar(runId);
    appender.appendVarchar(modelSha256);
    appender.appendTimestampTZ(ts);
    appender.endRow();
  }
  appender.closeSync();
  await con.run(`COPY bench_pred_rows TO ${sq(path)} (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 65536)`);
  await con.run('DROP TABLE bench_pred_rows');
  return path;
}

// ───────────────────────────────────────────── parquet-wasm ─────────────────────────────────────────────

function wasmRead(c: Ctx, bytes: Uint8Array, onlyRange: boolean, rowStart: number, rows: number): ReadOut {
  const groups = onlyRange ? rangeGroups(c) : undefined;
  const table = pw.readParquet(bytes, { columns: ['customer_id', ...c.features], batchSize: 65_536, ...(groups ? { rowGroups: groups } : {}) });
  return wasmTableToOut(c, table, rowStart, rows);
}

/** parquet-wasm Table (in WASM memory) → IPC bytes (one copy) → apache-arrow Table (views) → row-major. */
function wasmTableToOut(c: Ctx, wasmTable: pw.Table, rowStart: number, rows: number): ReadOut {
  const ipc = wasmTable.intoIPCStream(); // consumes (frees) the wasm table
  const table = arrow.tableFromIPC(ipc);
  if (table.numRows !== rows) throw new Error(`got ${table.numRows} rows, expected ${rows}`);
  const F = c.features.length;
  const x = new Float32Array(rows * F);
  const xi = new Int32Array(x.buffer);
  const keys = new BigInt64Array(rows);
  let row = 0;
  for (const batch of table.batches) {
    const n = batch.numRows;
    const kd = batch.getChildAt(0)!.data[0];
    if (kd.nullCount) throw new Error('NULL key');
    keys.set((kd.values as BigInt64Array).subarray(kd.offset, kd.offset + n), row);
    const cols: Int32Array[] = new Array(F);
    for (let f = 0; f < F; f++) {
      const d = batch.getChildAt(f + 1)!.data[0];
      if (d.nullCount) throw new Error(`NULL in ${c.features[f]}`);
      const v = d.values as Float32Array;
      cols[f] = new Int32Array(v.buffer, v.byteOffset + d.offset * 4, n);
    }
    scatterColumns(xi, row, F, cols, n);
    row += n;
  }
  return { x, keys, rowStart, rows };
}

async function writeParquetWasm(input: WriteInput, path: string, noNumericDictionary: boolean): Promise<string> {
  const n = input.keys.length;
  const table = new arrow.Table({
    customer_id: arrow.makeVector(arrow.makeData({ type: new arrow.Int64(), length: n, nullCount: 0, data: input.keys })),
    churn_probability: arrow.makeVector(arrow.makeData({ type: new arrow.Float32(), length: n, nullCount: 0, data: input.probs })),
    run_id: constantUtf8(input.runId, n),
    model_sha256: constantUtf8(input.modelSha256, n),
    scored_at: arrow.makeVector(
      arrow.makeData({ type: new arrow.TimestampMicrosecond('UTC'), length: n, nullCount: 0, data: new BigInt64Array(n).fill(BigInt(input.scoredAt.getTime()) * 1000n) }),
    ),
  });
  const ipc = arrow.tableToIPC(table, 'stream');
  const wasmTable = pw.Table.fromIPCStream(ipc);
  // writeParquet consumes (frees) both the table and the properties.
  let builder = new pw.WriterPropertiesBuilder().setCompression(pw.Compression.SNAPPY).setMaxRowGroupSize(65_536);
  if (noNumericDictionary) builder = builder.setColumnDictionaryEnabled('customer_id', false).setColumnDictionaryEnabled('churn_probability', false);
  const props = builder.build();
  const bytes = pw.writeParquet(wasmTable, props);
  await fs.writeFile(path, bytes);
  return path;
}

function constantUtf8(value: string, n: number): arrow.Vector {
  const dictionary = arrow.vectorFromArray([value], new arrow.Utf8());
  const type = new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32());
  return arrow.makeVector(arrow.makeData({ type, length: n, nullCount: 0, data: new Int32Array(n), dictionary }));
}

// ───────────────────────────────────────────── hyparquet (ESM-only) ─────────────────────────────────────────────

type Hyparquet = typeof import('hyparquet', { with: { 'resolution-mode': 'import' } });
let hyparquetModule: Promise<Hyparquet> | undefined;

/**
 * hyparquet is ESM-only. A plain `import()` is right here: with `"module": "node16"` tsc keeps dynamic
 * import() as a real import() in its CommonJS output (it only rewrites it to require() under
 * `"module": "commonjs"`), tsx keeps it too, and vitest routes it through its own loader. The usual
 * workaround, `new Function('s', 'return import(s)')`, is worse: it fails under vitest ("A dynamic import
 * callback was not specified", vitest evaluates modules in a vm context).
 */
export function loadHyparquet(): Promise<Hyparquet> {
  hyparquetModule ??= import('hyparquet');
  return hyparquetModule;
}

async function hyparquetRead(c: Ctx, rowStart: number, rowEnd: number): Promise<ReadOut> {
  const hp = await loadHyparquet();
  const file = await hp.asyncBufferFromFile(c.file);
  const metadata = await hp.parquetMetadataAsync(file);
  const F = c.features.length;
  const rows = rowEnd - rowStart;
  const x = new Float32Array(rows * F);
  const xi = new Int32Array(x.buffer);
  const keys = new BigInt64Array(rows);
  const featureIndex = new Map(c.features.map((name, i) => [name, i]));
  let filled = 0;
  await hp.parquetRead({
    file,
    metadata,
    columns: ['customer_id', ...c.features],
    rowStart,
    rowEnd,
    onChunk: ({ columnName, columnData, rowStart: chunkStart }) => {
      // A chunk is a whole column chunk (row group) and may extend outside [rowStart, rowEnd): clip it.
      const from = Math.max(chunkStart, rowStart);
      const to = Math.min(chunkStart + columnData.length, rowEnd);
      if (to <= from) return;
      const off = from - chunkStart;
      const n = to - from;
      if (columnName === 'customer_id') {
        if (columnData instanceof BigInt64Array) keys.set(columnData.subarray(off, off + n), from - rowStart);
        else for (let i = 0; i < n; i++) keys[from - rowStart + i] = BigInt(columnData[off + i] as bigint);
        return;
      }
      const f = featureIndex.get(columnName);
      if (f === undefined) return;
      filled += n;
      if (columnData instanceof Float32Array) {
        const col = new Int32Array(columnData.buffer, columnData.byteOffset + off * 4, n);
        scatterColumn(xi, from - rowStart, F, f, col, n);
      } else {
        for (let i = 0, o = (from - rowStart) * F + f; i < n; i++, o += F) x[o] = Number(columnData[off + i]);
      }
    },
  });
  if (filled !== rows * F) throw new Error(`hyparquet filled ${filled} of ${rows * F} values`);
  return { x, keys, rowStart, rows };
}

// ───────────────────────────────────────────── parquetjs-lite (untyped CommonJS) ─────────────────────────────────────────────

interface PqlCursor {
  rowGroupIndex: number;
  nextRowGroup(): Promise<Array<Record<string, unknown>> | null>;
}
interface PqlReader {
  getCursor(columns?: string[]): PqlCursor;
  close(): Promise<void>;
}
interface PqlWriter {
  appendRow(row: Record<string, unknown>): Promise<void>;
  close(): Promise<void>;
}
interface Pql {
  ParquetReader: { openFile(path: string): Promise<PqlReader> };
  ParquetWriter: { openFile(schema: unknown, path: string, opts?: { rowGroupSize?: number }): Promise<PqlWriter> };
  ParquetSchema: new (fields: Record<string, { type: string; compression?: string }>) => unknown;
}
// No type declarations ship with parquetjs-lite; a typed require keeps `strict` happy without a .d.ts.
const pql = (): Pql => require('parquetjs-lite') as Pql;

async function parquetjsRead(c: Ctx, firstGroup: number, endGroup: number): Promise<ReadOut> {
  const reader = await pql().ParquetReader.openFile(c.file);
  try {
    const F = c.features.length;
    const rowStart = c.groups[firstGroup][0];
    const rows = c.groups[endGroup - 1][1] - rowStart;
    const x = new Float32Array(rows * F);
    const keys = new BigInt64Array(rows);
    const cursor = reader.getCursor(['customer_id', ...c.features]);
    cursor.rowGroupIndex = firstGroup; // skip row groups without reading them
    let row = 0;
    for (let g = firstGroup; g < endGroup; g++) {
      const records = await cursor.nextRowGroup();
      if (!records) throw new Error('parquetjs-lite: ran out of row groups');
      for (const rec of records) {
        keys[row] = BigInt(rec.customer_id as bigint | number);
        const o = row * F;
        for (let f = 0; f < F; f++) x[o + f] = rec[c.features[f]] as number;
        row++;
      }
    }
    if (row !== rows) throw new Error(`got ${row} rows, expected ${rows}`);
    return { x, keys, rowStart, rows };
  } finally {
    await reader.close();
  }
}

async function writeParquetjs(c: Ctx, path: string): Promise<string> {
  const { rows } = slowRows(c);
  const lib = pql();
  const schema = new lib.ParquetSchema({
    customer_id: { type: 'INT64', compression: 'SNAPPY' },
    churn_probability: { type: 'FLOAT', compression: 'SNAPPY' },
    run_id: { type: 'UTF8', compression: 'SNAPPY' },
    model_sha256: { type: 'UTF8', compression: 'SNAPPY' },
    scored_at: { type: 'TIMESTAMP_MICROS', compression: 'SNAPPY' },
  });
  const writer = await lib.ParquetWriter.openFile(schema, path, { rowGroupSize: 65_536 });
  const { keys, probs, runId, modelSha256, scoredAt } = c.writeInput;
  for (let i = 0; i < rows; i++) {
    // INT64 goes through parseInt(String(v)) inside parquetjs-lite: exact only below 2^53.
    await writer.appendRow({ customer_id: keys[i], churn_probability: probs[i], run_id: runId, model_sha256: modelSha256, scored_at: scoredAt });
  }
  await writer.close();
  return path;
}

// ───────────────────────────────────────────── transpose ─────────────────────────────────────────────

/** Column arrays (n values each) → rows [rowBase, rowBase+n) of the row-major [N×F] output, as int32 bit copies. */
export function scatterColumns(out: Int32Array, rowBase: number, F: number, cols: Int32Array[], n: number): void {
  let f = 0;
  for (; f + 8 <= F; f += 8) scatter8(out, rowBase * F + f, F, cols[f], cols[f + 1], cols[f + 2], cols[f + 3], cols[f + 4], cols[f + 5], cols[f + 6], cols[f + 7], n);
  for (; f < F; f++) scatterColumn(out, rowBase, F, f, cols[f], n);
}

// Eight columns per pass: 8 sequential reads + one 32-byte run of writes per row beat one strided pass per
// column by ~2× (and Int32 copies skip float32→float64→float32 round trips).
function scatter8(
  out: Int32Array, start: number, F: number,
  c0: Int32Array, c1: Int32Array, c2: Int32Array, c3: Int32Array, c4: Int32Array, c5: Int32Array, c6: Int32Array, c7: Int32Array,
  n: number,
): void {
  for (let i = 0, o = start; i < n; i++, o += F) {
    out[o] = c0[i];
    out[o + 1] = c1[i];
    out[o + 2] = c2[i];
    out[o + 3] = c3[i];
    out[o + 4] = c4[i];
    out[o + 5] = c5[i];
    out[o + 6] = c6[i];
    out[o + 7] = c7[i];
  }
}

function scatterColumn(out: Int32Array, rowBase: number, F: number, f: number, col: Int32Array, n: number): void {
  for (let i = 0, o = rowBase * F + f; i < n; i++, o += F) out[o] = col[i];
}

// ───────────────────────────────────────────── harness ─────────────────────────────────────────────

async function makeCtx(opts: ParquetBenchOptions): Promise<Ctx> {
  const con = await duckCon();
  const meta = await con.runAndReadAll(
    `SELECT row_group_id, any_value(row_group_num_rows) FROM parquet_metadata(${sq(opts.file)}) GROUP BY ALL ORDER BY 1`,
  );
  const groups: Array<[number, number]> = [];
  let at = 0;
  for (const [, n] of meta.getRows() as Array<[bigint, bigint]>) {
    groups.push([at, at + Number(n)]);
    at += Number(n);
  }
  if (at !== opts.rows) throw new Error(`${opts.file} has ${at} rows, expected ${opts.rows}`);
  const cols = await con.runAndReadAll(`SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet(${sq(opts.file)}))`);
  const features = (cols.getRows() as Array<[string]>).map(([name]) => name).filter((name) => /^f\d+$/.test(name));
  const firstGroup = groups.length >= 8 ? 5 : Math.max(0, Math.floor(groups.length / 2) - 1);
  const lastGroup = Math.min(firstGroup + 1, groups.length - 1);
  const lateFirst = Math.max(0, groups.length - 3);
  const lateLast = Math.min(lateFirst + 1, groups.length - 1);
  const outDir = opts.outDir ?? join(resolve(opts.file, '..'), 'out');
  await fs.mkdir(outDir, { recursive: true });
  const n = opts.rows;
  const keys = new BigInt64Array(n);
  const probs = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    keys[i] = 1_000_000_000_000n + BigInt(i) * 7n; // > 2^32, exact in float64 too
    s = (Math.imul(s, 1664525) + 1013904223) | 0;
    probs[i] = (s >>> 8) / 16777216;
  }
  return {
    file: opts.file,
    rows: opts.rows,
    features,
    groups,
    range: { firstGroup, lastGroup, start: groups[firstGroup][0], end: groups[lastGroup][1] },
    lateRange: { firstGroup: lateFirst, lastGroup: lateLast, start: groups[lateFirst][0], end: groups[lateLast][1] },
    outDir,
    full: !!opts.full,
    writeInput: {
      keys,
      probs,
      runId: 'run-2024-06-01T12-00-00Z-7f3a',
      modelSha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      scoredAt: new Date('2024-06-01T12:34:56.789Z'),
    },
  };
}

let ctxCache: { key: string; ctx: Promise<Ctx> } | undefined;

async function runCase(c: CaseDef, opts: ParquetBenchOptions): Promise<ParquetBenchResult> {
  const key = JSON.stringify([opts.file, opts.rows, opts.full, opts.outDir]);
  if (ctxCache?.key !== key) ctxCache = { key, ctx: makeCtx(opts) };
  const ctx = await ctxCache.ctx;
  const { rows, note } = c.rows(ctx);
  const base: ParquetBenchResult = { case: c.case, lib: c.lib, op: c.op, rows, seconds: NaN, rows_per_s: NaN };
  const notes = [c.notes, note].filter(Boolean) as string[];
  try {
    const state = c.setup ? await c.setup(ctx) : undefined;
    const repeats = Math.max(1, opts.repeats ?? 3);
    // Warm-up, whose output is the one verified (then dropped before timing).
    notes.push(await verify(ctx, c.op, await c.run(ctx, state), rows));
    const times: number[] = [];
    for (let i = 0; i < repeats; i++) {
      global.gc?.();
      const t0 = process.hrtime.bigint();
      await c.run(ctx, state);
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    times.sort((a, b) => a - b);
    const best = times[0];
    if (repeats > 1) notes.push(`median ${times[times.length >> 1].toFixed(3)}s`);
    return { ...base, seconds: best, rows_per_s: rows / best, notes: notes.join('; ') || undefined };
  } catch (err) {
    return { ...base, notes: notes.join('; ') || undefined, error: err instanceof Error ? err.message : String(err) };
  }
}

function verify(ctx: Ctx, op: 'read' | 'write', out: ReadOut | string, rows: number): Promise<string> {
  if (op === 'read' && typeof out !== 'string') return verifyRead(ctx, out);
  if (op === 'write' && typeof out === 'string') return verifyWrite(ctx, out, rows);
  throw new Error('case returned the wrong kind of output');
}

/** Compare every 1009th row (all features + key) with what DuckDB reads. */
async function verifyRead(ctx: Ctx, out: ReadOut): Promise<string> {
  const con = await duckCon();
  const F = ctx.features.length;
  if (out.x.length !== out.rows * F || out.keys.length !== out.rows) throw new Error('output has the wrong shape');
  const end = out.rowStart + out.rows;
  const sample = await con.runAndReadAll(
    `SELECT file_row_number, customer_id, ${ctx.features.join(', ')} FROM read_parquet(${sq(ctx.file)}, file_row_number = true) ` +
      `WHERE file_row_number >= ${out.rowStart} AND file_row_number < ${end} AND (file_row_number % ${F32_SAMPLE_EVERY} = 0 OR file_row_number = ${end - 1}) ORDER BY 1`,
  );
  let checked = 0;
  for (const r of sample.getRows()) {
    const i = Number(r[0] as bigint) - out.rowStart;
    if (out.keys[i] !== (r[1] as bigint)) throw new Error(`wrong key at row ${i + out.rowStart}: ${out.keys[i]} ≠ ${r[1]}`);
    for (let f = 0; f < F; f++) {
      const want = r[f + 2] as number;
      if (out.x[i * F + f] !== want) throw new Error(`wrong ${ctx.features[f]} at row ${i + out.rowStart}: ${out.x[i * F + f]} ≠ ${want}`);
    }
    checked++;
  }
  if (checked === 0) throw new Error('nothing to verify');
  return `verified ${checked} rows`;
}

/** Read a written file back with DuckDB: column types, row count, key sum, and every 997th row. */
async function verifyWrite(ctx: Ctx, path: string, rows: number): Promise<string> {
  const con = await duckCon();
  const { keys, probs, runId, modelSha256, scoredAt } = ctx.writeInput;
  const types = new Map(
    ((await con.runAndReadAll(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(${sq(path)}))`)).getRows() as Array<[string, string]>),
  );
  if (types.get('customer_id') !== 'BIGINT') throw new Error(`customer_id is ${types.get('customer_id')}`);
  if (types.get('churn_probability') !== 'FLOAT') throw new Error(`churn_probability is ${types.get('churn_probability')}`);
  const tsType = types.get('scored_at') ?? 'missing';
  if (!tsType.startsWith('TIMESTAMP')) throw new Error(`scored_at is ${tsType}`);
  let keySum = 0n;
  for (let i = 0; i < rows; i++) keySum += keys[i];
  const agg = (
    await con.runAndReadAll(
      `SELECT count(*), sum(customer_id)::HUGEINT, count(DISTINCT run_id), min(run_id), min(model_sha256), min(epoch_us(scored_at)), max(epoch_us(scored_at)) ` +
        `FROM read_parquet(${sq(path)})`,
    )
  ).getRows()[0];
  const wantUs = BigInt(scoredAt.getTime()) * 1000n;
  if (Number(agg[0] as bigint) !== rows) throw new Error(`${agg[0]} rows, expected ${rows}`);
  if ((agg[1] as bigint) !== keySum) throw new Error(`sum(customer_id) ${agg[1]} ≠ ${keySum}`);
  if (agg[2] !== 1n || agg[3] !== runId || agg[4] !== modelSha256) throw new Error('run_id/model_sha256 wrong');
  if (agg[5] !== wantUs || agg[6] !== wantUs) throw new Error(`scored_at ${agg[5]}..${agg[6]} µs ≠ ${wantUs}`);
  const sample = await con.runAndReadAll(
    `SELECT file_row_number, customer_id, churn_probability FROM read_parquet(${sq(path)}, file_row_number = true) WHERE file_row_number % 997 = 0`,
  );
  for (const r of sample.getRows()) {
    const i = Number(r[0] as bigint);
    if (r[1] !== keys[i] || r[2] !== probs[i]) throw new Error(`row ${i}: (${r[1]}, ${r[2]}) ≠ (${keys[i]}, ${probs[i]})`);
  }
  const rg = (await con.runAndReadAll(`SELECT count(DISTINCT row_group_id), max(row_group_num_rows) FROM parquet_metadata(${sq(path)})`)).getRows()[0];
  const { size } = await fs.stat(path);
  return `verified: scored_at ${tsType}, ${rg[0]} row groups ≤ ${rg[1]} rows, ${(size / 2 ** 20).toFixed(1)} MiB`;
}

function addRatios(results: ParquetBenchResult[]): void {
  // Compare rates, not times: the capped (parquetjs-lite) cases process fewer rows.
  const bestRate = new Map<string, number>();
  for (const r of results) if (!r.error) bestRate.set(r.case, Math.max(bestRate.get(r.case) ?? 0, r.rows_per_s));
  for (const r of results) if (!r.error) r.ratio = (bestRate.get(r.case) ?? r.rows_per_s) / r.rows_per_s;
}

/** For range reads: time relative to the same library's full read scaled to the range's share of rows. */
function addRangeNotes(results: ParquetBenchResult[]): void {
  const libKey = (r: ParquetBenchResult) => r.lib.split(' ')[0];
  for (const r of results) {
    if (r.error || !r.case.startsWith('read row groups')) continue;
    const full = results
      .filter((f) => !f.error && f.case.startsWith('read file') && libKey(f) === libKey(r))
      .sort((a, b) => b.rows_per_s - a.rows_per_s)[0];
    if (!full) continue;
    const share = r.rows / full.rows_per_s;
    const note = `${(r.seconds / share).toFixed(1)}× the full read's per-row cost`;
    r.notes = r.notes ? `${note}; ${r.notes}` : note;
  }
}

// ───────────────────────────────────────────── isolation (child per case) ─────────────────────────────────────────────

async function runIsolated(id: string, opts: ParquetBenchOptions): Promise<ParquetBenchResult> {
  const args = [...process.execArgv, '--expose-gc', __filename, '--child', id, '--file', opts.file, '--rows', String(opts.rows), '--repeats', String(opts.repeats ?? 3)];
  if (opts.full) args.push('--full');
  if (opts.outDir) args.push('--out-dir', opts.outDir);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  const code = await new Promise<number | null>((ok) => child.on('close', ok));
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  const c = CASES.find((k) => k.id === id)!;
  if (!line) return { case: c.case, lib: c.lib, op: c.op, rows: 0, seconds: NaN, rows_per_s: NaN, error: `child exited ${code} without a result` };
  return JSON.parse(line) as ParquetBenchResult;
}

// ───────────────────────────────────────────── CLI ─────────────────────────────────────────────

function sq(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function fmtRate(r: number): string {
  if (!Number.isFinite(r)) return '-';
  return r >= 1e6 ? `${(r / 1e6).toFixed(2)}M` : `${(r / 1e3).toFixed(1)}k`;
}

export function formatParquetBenchTable(results: ParquetBenchResult[]): string {
  const rows = results.map((r) => [
    r.case,
    r.lib,
    r.op,
    String(r.rows),
    r.error ? 'ERROR' : r.seconds.toFixed(3),
    r.error ? '-' : fmtRate(r.rows_per_s),
    r.error || r.ratio === undefined ? '-' : `${r.ratio.toFixed(r.ratio < 10 ? 2 : 0)}×`,
    r.peak_rss_mb === undefined ? '-' : `${r.peak_rss_mb.toFixed(0)}${r.base_rss_mb === undefined ? '' : ` (${r.base_rss_mb.toFixed(0)})`}`,
    r.error ? `${r.error}${r.notes ? `; ${r.notes}` : ''}` : (r.notes ?? ''),
  ]);
  const head = ['case', 'lib / method', 'op', 'rows', 'seconds', 'rows/s', '×slower', 'peak RSS MiB (base)', 'notes'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const right = new Set([3, 4, 5, 6, 7]);
  const fmt = (cells: string[]) => cells.map((cell, i) => (i === cells.length - 1 ? cell : right.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ');
  return [fmt(head), widths.map((w, i) => (i === widths.length - 1 ? '-----' : '-'.repeat(w))).join('  '), ...rows.map(fmt)].join('\n');
}

/** Nearest directory above this file with a package.json (works from bench/ and from dist/bench/). */
async function packageRoot(): Promise<string> {
  for (let dir = __dirname; ; dir = resolve(dir, '..')) {
    try {
      await fs.access(join(dir, 'package.json'));
      return dir;
    } catch {
      if (resolve(dir, '..') === dir) return process.cwd();
    }
  }
}

function argValue(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const repeats = Number(argValue(argv, '--repeats') ?? 3);
  const full = argv.includes('--full');
  const outDir = argValue(argv, '--out-dir');

  const childId = argValue(argv, '--child');
  if (childId) {
    const c = CASES.find((k) => k.id === childId);
    if (!c) throw new Error(`unknown case ${childId}`);
    const file = argValue(argv, '--file')!;
    const rows = Number(argValue(argv, '--rows'));
    await duckCon(); // load DuckDB before the baseline so base RSS is comparable across cases
    const base = process.memoryUsage().rss / 2 ** 20;
    const r = await runCase(c, { file, rows, repeats, full, outDir });
    r.peak_rss_mb = process.resourceUsage().maxRSS / 1024;
    r.base_rss_mb = base;
    await closeDuck();
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return 0;
  }

  if (argv.includes('--list')) {
    for (const id of PARQUET_BENCH_CASE_IDS) console.log(id);
    return 0;
  }

  const rows = Number(argValue(argv, '--rows') ?? 1_000_000);
  let file = argValue(argv, '--file');
  const log = (m: string) => process.stderr.write(`${m}\n`);
  if (!file) {
    const dir = join(await packageRoot(), 'bench', '.data', `demo-${rows}`);
    const gen = await generateDemoData({ dir, dates: ['2024-01-01'], rowsPerDate: rows, overwrite: false, log });
    file = gen.files[0];
  }
  const cases = argValue(argv, '--cases')?.split(',').filter(Boolean);
  const started = Date.now();
  const results = await benchParquetLibs({ file, rows, log, cases, repeats, full, outDir, isolate: !argv.includes('--in-process') });
  if (json) {
    for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`);
  } else {
    const [l1, l5] = loadavg();
    console.log(
      `\n${rows} rows × ${results.length ? '32' : '?'} FLOAT features, ${file}\n` +
        `node ${process.version}, ${availableParallelism()} CPUs, load avg ${l1.toFixed(2)}/${l5.toFixed(2)} (1/5 min); ` +
        `best of ${repeats} after 1 warm-up; ${((Date.now() - started) / 1000).toFixed(0)} s total\n`,
    );
    console.log(formatParquetBenchTable(results));
  }
  return results.some((r) => r.error) ? 1 : 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
