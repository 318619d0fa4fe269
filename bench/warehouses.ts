/**
 * Warehouse I/O through the local emulators, next to the Parquet path on the same rows in the same run:
 * rows/s for reading chunks (plan/snapshot + paged reads of the key and 32 features) and for writing
 * predictions (stage every chunk + the one commit). Emulators are not the real services (bqemulator and
 * fakesnow are DuckDB behind Python HTTP facades), so these figures are reported, never targeted; what
 * they do show is that no path makes a round trip per row.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as arrow from 'apache-arrow';
import { BigQuerySink, BigQuerySource } from '../connectors/bigquery';
import { ParquetSink } from '../connectors/parquet-sink';
import { closeSnowflakeConnections, SnowflakeSink, SnowflakeSource } from '../connectors/snowflake';
import { ParquetSource } from '../connectors/parquet-source';
import type { Sink, Source } from '../connectors/types';
import { parsePipeline, type PipelineConfig } from '../src/config/pipeline';
import { seedBigQueryTable } from '../src/dev/bq-seed';
import { startBqEmulator } from '../src/dev/bqemulator';
import { startFakesnow } from '../src/dev/fakesnow';
import { seedSnowflakeTable } from '../src/dev/snowflake-seed';
import { featureName } from '../src/demo/generate-data';
import type { OutputBatch } from '../src/run/batch';
import type { Chunk, RunRef, StagedChunk } from '../src/types';

type Row = Record<string, string | number | null>;

const DATE = '2026-11-01';
const KEY = 'customer_id';
const COLUMNS = [KEY, ...Array.from({ length: 32 }, (_, i) => featureName(i))];

export interface WarehouseBenchOptions {
  rows: number;
  chunkRows: number;
  /** Where the emulators are installed (`<toolsDir>/.scoreline/…`). */
  toolsDir: string;
  kinds: string[];
  log: (msg: string) => void;
}

/** One backend under test: a source and sink over the same seeded rows, and how to tear it down. */
interface Backend {
  name: string;
  source: Source;
  sink: Sink;
  config: PipelineConfig;
  stop(): Promise<void>;
}

export async function benchWarehouses(opts: WarehouseBenchOptions): Promise<Row[]> {
  const scratch = mkdtempSync(join(tmpdir(), 'scoreline-bench-wh-'));
  const results: Row[] = [];
  try {
    for (const kind of opts.kinds) {
      const start = BACKENDS[kind];
      if (!start) throw new Error(`--warehouses: unknown backend "${kind}" (known: ${Object.keys(BACKENDS).join(', ')})`);
      const { backend, parquet } = await start(opts, join(scratch, kind));
      try {
        const reference = await measure(parquet, opts.rows, opts.chunkRows);
        const measured = await measure(backend, opts.rows, opts.chunkRows);
        for (const [op, key] of [['read', 'readRowsPerS'], ['write', 'writeRowsPerS']] as const) {
          results.push({
            case: 'warehouse',
            backend: backend.name,
            op,
            rows: opts.rows,
            rows_per_s: Math.round(measured[key]),
            parquet_rows_per_s: Math.round(reference[key]),
            vs_parquet: Math.round((measured[key] / reference[key]) * 1000) / 1000,
          });
        }
      } finally {
        await backend.stop();
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return results;
}

type StartBackends = (opts: WarehouseBenchOptions, scratch: string) => Promise<{ backend: Backend; parquet: Backend }>;

async function bigQueryBackends(opts: WarehouseBenchOptions, scratch: string): Promise<{ backend: Backend; parquet: Backend }> {
  const emulator = await startBqEmulator({ projectDir: opts.toolsDir, name: 'bench', log: opts.log });
  try {
    const dir = join(scratch, 'customers');
    opts.log(`  loading ${opts.rows.toLocaleString('en-US')} rows into the BigQuery emulator …`);
    await seedBigQueryTable({ connection: emulator.connection, table: 'customers', dates: [DATE], rowsPerDate: opts.rows, dir });
    const config = parsePipeline(
      {
        name: 'bench-bigquery',
        model: 'churn-gbt@champion',
        source: { kind: 'bigquery', connection: 'bench', table: 'customers', where: 'ds = {{ ds }}', key: [KEY] },
        sink: { kind: 'bigquery', connection: 'bench', table: 'bench_scores' },
      },
      'bench',
    );
    if (config.sink.kind !== 'bigquery') throw new Error('unreachable');
    const backend: Backend = {
      name: 'bigquery (bqemulator)',
      source: new BigQuerySource(emulator.connection),
      sink: new BigQuerySink(emulator.connection, config.sink, { keys: [KEY] }),
      config,
      stop: emulator.stop,
    };
    return { backend, parquet: parquetBackend(dir, join(scratch, 'out')) };
  } catch (err) {
    await emulator.stop();
    throw err;
  }
}

async function snowflakeBackends(opts: WarehouseBenchOptions, scratch: string): Promise<{ backend: Backend; parquet: Backend }> {
  const emulator = await startFakesnow({ projectDir: opts.toolsDir, name: 'bench', log: opts.log });
  try {
    const dir = join(scratch, 'customers');
    opts.log(`  loading ${opts.rows.toLocaleString('en-US')} rows into the Snowflake emulator …`);
    await seedSnowflakeTable({ connection: emulator.connection, table: 'customers', dates: [DATE], rowsPerDate: opts.rows, dir });
    const config = parsePipeline(
      {
        name: 'bench-snowflake',
        model: 'churn-gbt@champion',
        source: { kind: 'snowflake', connection: 'bench', table: 'customers', where: 'ds = {{ ds }}', key: [KEY] },
        sink: { kind: 'snowflake', connection: 'bench', table: 'bench_scores' },
      },
      'bench',
    );
    if (config.sink.kind !== 'snowflake') throw new Error('unreachable');
    const backend: Backend = {
      name: 'snowflake (fakesnow)',
      source: new SnowflakeSource(emulator.connection),
      sink: new SnowflakeSink(emulator.connection, config.sink),
      config,
      stop: async () => {
        await closeSnowflakeConnections();
        await emulator.stop();
      },
    };
    return { backend, parquet: parquetBackend(dir, join(scratch, 'out')) };
  } catch (err) {
    await emulator.stop();
    throw err;
  }
}

const BACKENDS: Record<string, StartBackends> = { bigquery: bigQueryBackends, snowflake: snowflakeBackends };

function parquetBackend(dataDir: string, outDir: string): Backend {
  const config = parsePipeline(
    {
      name: 'bench-parquet',
      model: 'churn-gbt@champion',
      source: { kind: 'parquet', path: join(dataDir, 'ds={{ ds }}', '*.parquet'), key: [KEY] },
      sink: { kind: 'parquet', path: join(outDir, 'scores') },
    },
    'bench',
  );
  if (config.sink.kind !== 'parquet') throw new Error('unreachable');
  return {
    name: 'parquet',
    source: new ParquetSource({ resolvePath: (p) => p }),
    sink: new ParquetSink(config.sink.path, config.sink.mode),
    config,
    stop: async () => undefined,
  };
}

/** Read every chunk (plan included: it is the snapshot), then stage and commit one prediction column per row. */
async function measure(b: Backend, rows: number, chunkRows: number): Promise<{ readRowsPerS: number; writeRowsPerS: number }> {
  const run: RunRef = { runId: `bench-${Date.now()}`, workflowId: `scoreline/${b.config.name}/${DATE}`, pipeline: b.config.name, logicalDate: DATE, trigger: 'bench' };
  let t = performance.now();
  const plan = await b.source.plan({ config: b.config, run, columns: COLUMNS, chunkRows });
  const batches: { chunk: Chunk; batch: arrow.RecordBatch }[] = [];
  for (const chunk of plan.chunks) batches.push({ chunk, batch: await b.source.read(chunk, COLUMNS, [KEY]) });
  const readSeconds = (performance.now() - t) / 1000;
  await b.source.cleanup?.(b.config, run);
  const read = batches.reduce((n, x) => n + x.batch.numRows, 0);
  if (read !== rows) throw new Error(`${b.name}: read ${read} rows, expected ${rows}`);

  t = performance.now();
  const staged: StagedChunk[] = [];
  for (const { chunk, batch } of batches) {
    const file = await b.sink.stage(run, chunk.index, predictions(batch, run));
    staged.push({ index: chunk.index, rows: batch.numRows, file: basename(file.path) }); // as scoreChunk reports it
  }
  const commit = await b.sink.commit(run, staged);
  const writeSeconds = (performance.now() - t) / 1000;
  if (commit.rowsOut !== rows) throw new Error(`${b.name}: committed ${commit.rowsOut} rows, expected ${rows}`);
  return { readRowsPerS: rows / readSeconds, writeRowsPerS: rows / writeSeconds };
}

/** The output contract with a stand-in prediction (writing costs the same whatever the value). */
function predictions(batch: arrow.RecordBatch, run: RunRef): OutputBatch {
  const f00 = batch.getChild('f00')!.toArray() as Float32Array | Float64Array;
  return {
    table: new arrow.Table({ [KEY]: batch.getChild(KEY)!, churn_probability: arrow.makeVector(Float32Array.from(f00)) }),
    constants: [
      { name: 'run_id', sqlType: 'VARCHAR', value: run.runId },
      { name: 'model_name', sqlType: 'VARCHAR', value: 'bench' },
      { name: 'model_version', sqlType: 'VARCHAR', value: '1' },
      { name: 'model_sha256', sqlType: 'VARCHAR', value: '0'.repeat(64) },
      { name: 'scored_at', sqlType: 'TIMESTAMPTZ', value: new Date().toISOString() },
      { name: 'ds', sqlType: 'DATE', value: DATE },
    ],
  };
}
