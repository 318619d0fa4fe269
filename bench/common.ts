/** What the bench entry points share: flags, progress on stderr, and generated input partitions. */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { generateDemoData } from '../src/demo/generate-data';
import { withConnection } from '../src/io/duckdb';

/** The value after `--name` in argv, if given. */
export function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** Progress goes to stderr; stdout holds the results (tables, or JSON lines). */
export const log = (m: string) => process.stderr.write(`${m}\n`);

/**
 * One partition `ds=<date>` of `rows` generated demo rows (32 features, 64k-row groups) under `dir`,
 * kept between bench runs and generated again when its row count differs. Returns the file.
 */
export async function ensureDataset(dir: string, date: string, rows: number, seed = 42): Promise<string> {
  const file = join(dir, `ds=${date}`, 'part-0.parquet');
  if (existsSync(file)) {
    const have = await withConnection(async (con) => Number((await con.runAndReadAll('SELECT count(*) AS n FROM read_parquet($1)', [file])).getRowObjects()[0].n));
    if (have === rows) return file;
    rmSync(dir, { recursive: true, force: true });
  }
  log(`generating ${rows.toLocaleString('en-US')} rows × 32 features → ${file}`);
  await generateDemoData({ dir, dates: [date], rowsPerDate: rows, rowGroupSize: 65_536, seed });
  return file;
}
