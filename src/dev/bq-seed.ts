/**
 * Demo and test data in BigQuery: the same synthetic customers as the Parquet demo
 * (src/demo/generate-data.ts), bulk-loaded with one load job into a table partitioned by `ds`.
 * A load job, not streaming inserts: free, atomic, and the rows are immediately readable and deletable.
 */
import { promises as fs } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TableField } from '@google-cloud/bigquery';
import { bigQueryClient, parseTableRef, tableId } from '../../connectors/bigquery';
import type { BigQueryConnection } from '../connections';
import { featureName, generateDemoData, type WarehouseSeedOptions, type WarehouseSeedResult } from '../demo/generate-data';
import { sqlString, withConnection } from '../io/duckdb';

export type SeedOptions = WarehouseSeedOptions<BigQueryConnection>;

export async function seedBigQueryTable(opts: SeedOptions): Promise<WarehouseSeedResult> {
  const ref = parseTableRef(opts.table, opts.connection, 'seed table');
  const features = opts.features ?? 32;
  const scratch = await mkdtemp(join(tmpdir(), 'scoreline-bq-seed-'));
  const dir = opts.dir ?? join(scratch, 'data');
  try {
    const generated = await generateDemoData({ dir, dates: opts.dates, rowsPerDate: opts.rowsPerDate, features, seed: opts.seed ?? 7, log: opts.log });
    // The Parquet demo keeps `ds` in the directory name; a warehouse table needs it as a column.
    const combined = join(scratch, 'seed.parquet');
    const parts = generated.files.map((f, i) => `SELECT *, DATE ${sqlString(opts.dates[i])} AS ds FROM read_parquet(${sqlString(f)}, hive_partitioning = false)`);
    await withConnection((con) => con.run(`COPY (${parts.join(' UNION ALL ')}) TO ${sqlString(combined)} (FORMAT parquet)`));
    const schema: TableField[] = [
      { name: 'customer_id', type: 'INT64', mode: 'REQUIRED' },
      ...Array.from({ length: features }, (_, i) => ({ name: featureName(i), type: 'FLOAT64' })),
      { name: 'segment', type: 'STRING' },
      { name: 'signup_date', type: 'DATE' },
      { name: 'ds', type: 'DATE' },
    ];
    const table = bigQueryClient(opts.connection).dataset(ref.dataset, { projectId: ref.project }).table(ref.table);
    const [exists] = await table.exists();
    if (exists) await table.delete();
    await table.load(combined, {
      sourceFormat: 'PARQUET',
      writeDisposition: 'WRITE_TRUNCATE',
      createDisposition: 'CREATE_IF_NEEDED',
      schema: { fields: schema },
      timePartitioning: { type: 'DAY', field: 'ds' },
    });
    opts.log?.(`loaded ${generated.rows} rows into ${tableId(ref)}`);
    return { table: tableId(ref), rows: generated.rows, files: opts.dir ? generated.files : [] };
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
}
