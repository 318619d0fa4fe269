/**
 * Demo and test data in Snowflake: the same synthetic customers as the Parquet demo
 * (src/demo/generate-data.ts), with a `ds DATE` column, bulk-loaded with array-bound INSERTs of
 * many rows each (no per-row round trips) through the same pooled sessions the connectors use.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSnowflakeName, quoteIdent, runSnowflake } from '../../connectors/snowflake';
import type { SnowflakeConnection } from '../connections';
import { featureName, generateDemoData, type WarehouseSeedOptions, type WarehouseSeedResult } from '../demo/generate-data';
import { sqlString, withConnection } from '../io/duckdb';

export type SnowflakeSeedOptions = WarehouseSeedOptions<SnowflakeConnection>;

/** Rows per INSERT statement: ~35 binds a row keeps one request at a few MB. */
const ROWS_PER_INSERT = 10_000;

export async function seedSnowflakeTable(opts: SnowflakeSeedOptions): Promise<WarehouseSeedResult> {
  const features = opts.features ?? 32;
  const name = parseSnowflakeName(opts.table, 'seed table');
  const table = [name.database, name.schema, name.name].filter(Boolean).map((p) => quoteIdent(p!)).join('.');
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'scoreline-sf-seed-')));
  try {
    const generated = await generateDemoData({ dir, dates: opts.dates, rowsPerDate: opts.rowsPerDate, features, seed: opts.seed ?? 7, log: opts.log });
    const featureCols = Array.from({ length: features }, (_, i) => featureName(i));
    const columns: Array<[string, string]> = [['CUSTOMER_ID', 'NUMBER(38,0)'], ...featureCols.map((f) => [f.toUpperCase(), 'FLOAT'] as [string, string]), ['SEGMENT', 'VARCHAR'], ['SIGNUP_DATE', 'DATE'], ['DS', 'DATE']];
    await runSnowflake(opts.connection, `CREATE OR REPLACE TABLE ${table} (${columns.map(([c, t]) => `${quoteIdent(c)} ${t}`).join(', ')})`);
    const insert = `INSERT INTO ${table} (${columns.map(([c]) => quoteIdent(c)).join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`;
    let rows = 0;
    for (const [i, file] of generated.files.entries()) {
      const date = opts.dates[i];
      // Text binds: exact decimal forms of the float32 values, which Snowflake parses back exactly.
      const values = await withConnection(async (con) =>
        (
          await con.runAndReadAll(
            `SELECT customer_id::VARCHAR, ${featureCols.map((f) => `${f}::DOUBLE`).join(', ')}, segment, signup_date::VARCHAR FROM read_parquet(${sqlString(file)}) ORDER BY customer_id`,
          )
        ).getRows(),
      );
      for (let start = 0; start < values.length; start += ROWS_PER_INSERT) {
        const batch = values.slice(start, start + ROWS_PER_INSERT).map((r) => [...r.map((v) => (v === null ? null : String(v))), date]);
        await runSnowflake(opts.connection, insert, batch);
      }
      rows += values.length;
      opts.log?.(`loaded ${values.length} rows for ${date} into ${opts.table}`);
    }
    return { table: [name.database, name.schema, name.name].filter(Boolean).join('.'), rows, files: opts.dir ? generated.files : [] };
  } finally {
    if (!opts.dir) await rm(dir, { recursive: true, force: true });
  }
}
