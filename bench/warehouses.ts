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
import { createConnectors } from '../connectors';
import { ParquetSink } from '../connectors/parquet-sink';
import { ParquetSource } from '../connectors/parquet-source';
import type { Sink, Source } from '../connectors/types';
import { parsePipeline, type PipelineConfig } from '../src/config/pipeline';
import { Connections } from '../src/connections';
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
      const { backend, parquet } = await warehouseBackends(kind, opts, join(scratch, kind));
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

/** The local emulators: how to start one, and how to load the demo customers into it. */
const EMULATORS = {
  bigquery: { label: 'bigquery (bqemulator)', start: (o: WarehouseBenchOptions) => startBqEmulator({ projectDir: o.toolsDir, name: 'bench', log: o.log }) },
  snowflake: { label: 'snowflake (fakesnow)', start: (o: WarehouseBenchOptions) => startFakesnow({ projectDir: o.toolsDir, name: 'bench', log: o.log }) },
};

/** The warehouse backend through the connector registry (as a worker builds it), and Parquet on the same rows. */
async function warehouseBackends(kind: string, opts: WarehouseBenchOptions, scratch: string): Promise<{ backend: Backend; parquet: Backend }> {
  if (kind !== 'bigquery' && kind !== 'snowflake') throw new Error(`--warehouses: unknown backend "${kind}" (known: ${Object.keys(EMULATORS).join(', ')})`);
  const emulator = await EMULATORS[kind].start(opts);
  const registry = createConnectors({ baseDir: scratch, connections: new Connections({ baseDir: scratch, given: { bench: emulator.connection } }) });
  const stop = async () => {
    await registry.close?.();
    await emulator.stop();
  };
  try {
    const dir = join(scratch, 'customers');
    opts.log(`  loading ${opts.rows.toLocaleString('en-US')} rows into the ${kind} emulator …`);
    const seed = { table: 'customers', dates: [DATE], rowsPerDate: opts.rows, dir };
    if (emulator.connection.kind === 'bigquery') await seedBigQueryTable({ ...seed, connection: emulator.connection });
    else await seedSnowflakeTable({ ...seed, connection: emulator.connection });
    const config = parsePipeline(
      {
        name: `bench-${kind}`,
        model: 'churn-gbt@champion',
        source: { kind, connection: 'bench', table: 'customers', where: 'ds = {{ ds }}', key: [KEY] },
        sink: { kind, connection: 'bench', table: 'bench_scores' },
      },
      'bench',
    );
    const backend: Backend = { name: EMULATORS[kind].label, source: registry.source(config), sink: registry.sink(config), config, stop };
    return { backend, parquet: parquetBackend(dir, join(scratch, 'out')) };
  } catch (err) {
    await stop();
    throw err;
  }
}

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
