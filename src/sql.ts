/**
 * `scoreline sql`: DuckDB over the local output and audit tables, for analysts. Each output table
 * directory becomes a view named after it; `scoreline_runs` shows the latest status row per run.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { CHUNKS_TABLE, RUNS_TABLE } from '../connectors/parquet-audit';
import { ConfigError } from './errors';
import { sqlString } from './io/duckdb';

export interface AnalystView {
  name: string;
  path: string;
}

const VIEW_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

function hasParquet(dir: string, depth = 2): boolean {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return false;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.parquet')) return true;
    if (entry.isDirectory() && depth > 0 && !entry.name.startsWith('.') && hasParquet(join(dir, entry.name), depth - 1)) return true;
  }
  return false;
}

/**
 * Views for output tables (directories with `ds=*` partitions) and audit tables found in `dataDirs`
 * (each a directory holding tables, like `out/`) and in `tableDirs` (output tables named directly).
 */
export function discoverViews(dataDirs: string[], tableDirs: string[] = []): AnalystView[] {
  const views = new Map<string, AnalystView>();
  const add = (name: string, path: string) => {
    if (VIEW_NAME.test(name) && !views.has(name)) views.set(name, { name, path: resolve(path) });
  };
  for (const dir of tableDirs) if (hasParquet(dir)) add(basename(dir), dir);
  for (const dir of dataDirs) {
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      if (entry.name === RUNS_TABLE || entry.name === CHUNKS_TABLE) continue;
      if (hasParquet(join(dir, entry.name))) add(entry.name, join(dir, entry.name));
    }
  }
  return [...views.values()];
}

export function auditDirs(dataDirs: string[]): string[] {
  return dataDirs.filter((d) => hasParquet(join(d, RUNS_TABLE), 0)).map((d) => resolve(d));
}

export async function runAnalystQuery(sql: string, opts: { dataDirs: string[]; tableDirs?: string[] }): Promise<{ rows: Record<string, unknown>[]; views: string[] }> {
  const instance = await DuckDBInstance.create(':memory:');
  const con = await instance.connect();
  try {
    // Dates of timestamps (::DATE, hour(), date_trunc) in UTC, as the tables store them, not in this machine's zone.
    await con.run(`SET TimeZone = 'UTC'`);
    const views: string[] = [];
    for (const v of discoverViews(opts.dataDirs, opts.tableDirs)) {
      await con.run(`CREATE VIEW "${v.name}" AS SELECT * FROM read_parquet(${sqlString(join(v.path, '**', '*.parquet'))}, hive_partitioning = false, union_by_name = true)`);
      views.push(v.name);
    }
    const audits = auditDirs(opts.dataDirs);
    if (audits.length > 0) {
      const runFiles = `[${audits.map((d) => sqlString(join(d, RUNS_TABLE, '*.parquet'))).join(', ')}]`;
      await con.run(`CREATE VIEW scoreline_run_events AS SELECT * FROM read_parquet(${runFiles}, union_by_name = true)`);
      await con.run(
        `CREATE VIEW ${RUNS_TABLE} AS SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER (PARTITION BY run_id ORDER BY status <> 'running' DESC, updated_at DESC) AS rn FROM scoreline_run_events) WHERE rn = 1`,
      );
      views.push('scoreline_run_events', RUNS_TABLE);
      const chunkDirs = audits.filter((d) => hasParquet(join(d, CHUNKS_TABLE), 1));
      if (chunkDirs.length > 0) {
        await con.run(`CREATE VIEW ${CHUNKS_TABLE} AS SELECT * FROM read_parquet([${chunkDirs.map((d) => sqlString(join(d, CHUNKS_TABLE, '*', '*.parquet'))).join(', ')}], union_by_name = true)`);
        views.push(CHUNKS_TABLE);
      }
    }
    let rows: Record<string, unknown>[];
    try {
      const reader = await con.runAndReadAll(sql);
      const types = new Map(reader.columnNames().map((name, i) => [name, reader.columnTypes()[i].toString()]));
      // Dates as 2026-11-06 and timestamps as ISO 8601 (UTC, `Z`; a TIMESTAMP without a zone without it), not
      // JavaScript's Date text, in tables and JSON alike.
      const iso = (value: Date, type: string | undefined) => (type === 'DATE' ? value.toISOString().slice(0, 10) : type === 'TIMESTAMP' ? value.toISOString().slice(0, -1) : value.toISOString());
      rows = (reader.getRowObjectsJS() as Record<string, unknown>[]).map((row) => {
        for (const [name, value] of Object.entries(row)) if (value instanceof Date) row[name] = iso(value, types.get(name));
        return row;
      });
      // 64-bit integers as numbers, or, in a column holding any beyond 2^53 (which a JSON number would
      // round), all as text: one type per column for whoever reads the JSON.
      for (const name of types.keys()) {
        if (!rows.some((r) => typeof r[name] === 'bigint')) continue;
        const exact = rows.every((r) => typeof r[name] !== 'bigint' || Number.isSafeInteger(Number(r[name])));
        for (const r of rows) if (typeof r[name] === 'bigint') r[name] = exact ? Number(r[name]) : String(r[name]);
      }
    } catch (err) {
      throw new ConfigError(`${String((err as Error).message).split('\n')[0]} (views: ${views.join(', ') || 'none — run a pipeline first'})`);
    }
    return { rows, views };
  } finally {
    con.closeSync();
    instance.closeSync();
  }
}
