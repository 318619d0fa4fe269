/**
 * One in-process DuckDB per worker: it reads Parquet (globs, hive partitions, projection and row-range
 * pushdown) fastest of the libraries we measured, and powers `scoreline sql`.
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

let instance: Promise<DuckDBInstance> | undefined;

export function duckdb(): Promise<DuckDBInstance> {
  instance ??= DuckDBInstance.create(':memory:', { threads: process.env.SCORELINE_DUCKDB_THREADS ?? '1' });
  return instance;
}

/** A SQL string literal (paths, constant values in COPY, which takes no bind parameters). */
export function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A fresh connection (cheap): concurrent activities must not share one, or their queries serialise. */
export async function withConnection<T>(fn: (con: DuckDBConnection) => Promise<T>): Promise<T> {
  const con = await (await duckdb()).connect();
  try {
    return await fn(con);
  } finally {
    con.closeSync();
  }
}
