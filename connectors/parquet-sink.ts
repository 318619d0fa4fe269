/**
 * Parquet sink: predictions partitioned by logical date, `<table>/ds=YYYY-MM-DD/part-NNNNN.parquet`.
 *
 * Staging lives in a hidden sibling directory (`<parent>/.scoreline-staging/<table>/<run_id>/`), on
 * the same filesystem so the commit is a rename, and outside the table so no glob over the table ever
 * sees staged rows. Commit (replace-partition): move the old partition aside, rename the staged
 * directory into place, delete the old one. Every step checks the commit marker
 * `_scoreline_commit.json`, so a retried commit after a crash finishes the job instead of repeating it.
 */
import { existsSync, promises as fs, statSync } from 'node:fs';
import type { DuckDBConnection } from '@duckdb/node-api';
import { basename, dirname, join, resolve } from 'node:path';
import { errorMessage, SinkError } from '../src/errors';
import { quoteIdent, sqlString, withConnection } from '../src/io/duckdb';
import { writeParquetFile } from '../src/io/parquet-write';
import type { OutputBatch } from '../src/run/batch';
import type { CommitStats, RunRef, StagedChunk } from '../src/types';
import type { Sink, StagedFile } from './types';

export const COMMIT_MARKER = '_scoreline_commit.json';
/** The 0-row file of an empty replace-partition commit (ParquetSink.emptyLikeReplaced). */
const EMPTY_PART = 'part-00000.parquet';

async function columnsOf(con: DuckDBConnection, file: string): Promise<Array<[string, string]>> {
  const rows = (await con.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${sqlString(file)})`)).getRows();
  return rows.map(([name, type]) => [String(name), String(type)]);
}

/** Types a reader unions into one without changing what the values mean. */
function typeFamily(type: string): string {
  if (['FLOAT', 'DOUBLE'].includes(type)) return 'FLOAT';
  if (/^U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)$/.test(type)) return 'INTEGER';
  return type;
}

async function firstParquet(dir: string): Promise<string | undefined> {
  const names = existsSync(dir) ? await fs.readdir(dir) : [];
  const name = names.sort().find((f) => f.endsWith('.parquet'));
  return name && join(dir, name);
}

interface CommitMarker {
  run_id: string;
  workflow_id: string;
  rows: number;
  files: string[];
  committed_at: string;
}

export class ParquetSink implements Sink {
  readonly tableDir: string;
  private readonly stagingRoot: string;

  constructor(
    path: string,
    private readonly mode: 'replace-partition' | 'append',
  ) {
    this.tableDir = resolve(path);
    this.stagingRoot = join(dirname(this.tableDir), '.scoreline-staging', basename(this.tableDir));
  }

  location(run: RunRef): string {
    return this.partitionDir(run.logicalDate);
  }

  partitionDir(logicalDate: string): string {
    return join(this.tableDir, `ds=${logicalDate}`);
  }

  private stagingDir(run: RunRef): string {
    return join(this.stagingRoot, run.runId);
  }

  private fileName(run: RunRef, chunkIndex: number): string {
    const part = `part-${String(chunkIndex).padStart(5, '0')}`;
    // Appended runs share a partition, so their files carry the run id to stay distinct.
    return this.mode === 'append' ? `${part}-${run.runId}.parquet` : `${part}.parquet`;
  }

  /** A table path taken by a file fails every attempt the same way: say so once, without retries. */
  check(): void {
    if (existsSync(this.tableDir) && !statSync(this.tableDir).isDirectory()) {
      throw new SinkError(`${this.tableDir} exists and is not a directory: a Parquet table is a directory of ds=… partitions (move the file, or point the sink elsewhere)`, false);
    }
  }

  async stage(run: RunRef, chunkIndex: number, output: OutputBatch): Promise<StagedFile> {
    const path = join(this.stagingDir(run), this.fileName(run, chunkIndex));
    const bytes = await writeParquetFile(path, output.table, output.constants);
    return { path, bytes };
  }

  async commit(run: RunRef, staged: StagedChunk[]): Promise<CommitStats> {
    this.check();
    const target = this.partitionDir(run.logicalDate);
    const rowsOut = staged.reduce((n, s) => n + s.rows, 0);
    const files = staged.map((s) => s.file);
    const stats = (rowsReplaced: number): CommitStats => ({ output: target, rowsOut, files: files.length, rowsReplaced });

    const staging = this.stagingDir(run);
    const done = await readMarker(join(target, this.markerName(run)));
    if (done?.run_id === run.runId) {
      // Already committed by an earlier attempt that died before cleaning up: the partition moved aside
      // (replace-partition), or the emptied staging directory (append dies between its marker and rm).
      await removeQuietly(`${staging}.replaced`);
      await removeQuietly(staging);
      return stats(0);
    }

    await fs.mkdir(staging, { recursive: true }); // an empty input stages nothing but still commits
    if (files.length === 0 && this.mode === 'replace-partition') {
      const empty = await this.emptyLikeReplaced(staging, target);
      if (empty) files.push(empty);
    }
    // An append retried after a crash may already have moved some files into the partition.
    const present = (f: string) => existsSync(join(staging, f)) || (this.mode === 'append' && existsSync(join(target, f)));
    const missing = files.filter((f) => !present(f));
    if (missing.length > 0) {
      throw new SinkError(`commit of run ${run.runId}: staged file(s) missing in ${staging}: ${missing.slice(0, 5).join(', ')}`, false);
    }
    await this.checkColumns(staging, files, target, run);
    // Files a retried chunk may have left under another name are not part of the run.
    for (const f of await fs.readdir(staging)) {
      if (f !== COMMIT_MARKER && !files.includes(f)) await fs.rm(join(staging, f), { force: true });
    }
    const marker: CommitMarker = { run_id: run.runId, workflow_id: run.workflowId, rows: rowsOut, files, committed_at: new Date().toISOString() };
    await fs.writeFile(join(staging, COMMIT_MARKER), JSON.stringify(marker, null, 2));

    if (this.mode === 'append') return stats(await this.appendInto(target, staging, files, run));
    return stats(await this.swapInto(target, staging, run));
  }

  /**
   * An empty commit over a partition that held rows (a rescore that scored every quarantined row, a
   * rerun on an emptied input) writes one 0-row file with the replaced rows' columns: the table keeps
   * its schema for readers (`scoreline sql` has a view only for tables with files) instead of vanishing.
   * The file's name, or undefined when there is nothing to take the columns from.
   */
  private async emptyLikeReplaced(staging: string, target: string): Promise<string | undefined> {
    const written = join(staging, EMPTY_PART);
    if (existsSync(written)) return EMPTY_PART; // a retried commit
    const template = (await firstParquet(target)) ?? (await firstParquet(`${staging}.replaced`));
    if (!template) return undefined;
    await withConnection((con) => con.run(`COPY (SELECT * FROM read_parquet(${sqlString(template)}) LIMIT 0) TO ${sqlString(written)} (FORMAT parquet)`));
    return EMPTY_PART;
  }

  /**
   * The staged rows must fit the table's columns as readers see them (a file of the newest other
   * partition; in append mode, of any): a key read as text one day and as a number the next would turn
   * every partition's key into text for a reader (`union_by_name`), and the warehouse sinks refuse the same
   * change. Columns the table has and the run lacks are allowed (NULL for its rows); types compare by
   * family (FLOAT and DOUBLE, or INTEGER and BIGINT, read back as one).
   */
  private async checkColumns(staging: string, files: string[], target: string, run: RunRef): Promise<void> {
    // (An append retried after a crash may have moved some files in already.)
    const staged = files.map((f) => join(staging, f)).find((f) => existsSync(f));
    const reference = staged && (await this.referenceFile(target));
    if (!staged || !reference) return;
    const [want, have] = await withConnection(async (con) => [await columnsOf(con, staged), await columnsOf(con, reference)]);
    const table = new Map(have.map(([name, type]) => [name.toLowerCase(), type]));
    const conflicts = want.flatMap(([name, type]) => {
      const actual = table.get(name.toLowerCase());
      if (actual === undefined) return [`column ${name} (${type}) is new`];
      return typeFamily(actual) === typeFamily(type) ? [] : [`column ${name} is ${type}, the table's is ${actual}`];
    });
    if (conflicts.length > 0) {
      throw new SinkError(
        `parquet commit of run ${run.runId} into ${this.tableDir}: its rows do not match the table's columns (docs/output-schema.md; as in ${reference}): ${conflicts.join('; ')}. ` +
          'Point sink.path at a new table, or move the older partitions away.',
        false,
      );
    }
  }

  /** A committed file showing the table's current columns: of the newest partition a commit into `target` keeps. */
  private async referenceFile(target: string): Promise<string | undefined> {
    const partitions = existsSync(this.tableDir) ? (await fs.readdir(this.tableDir)).filter((d) => d.startsWith('ds=')).sort().reverse() : [];
    for (const p of partitions) {
      const dir = join(this.tableDir, p);
      if (this.mode === 'replace-partition' && dir === target) continue;
      const file = await firstParquet(dir);
      if (file) return file;
    }
    return undefined;
  }

  private markerName(run: RunRef): string {
    return this.mode === 'append' ? `_scoreline_commit-${run.runId}.json` : COMMIT_MARKER;
  }

  /** replace-partition: two renames; a crash between them is repaired by the retried commit. */
  private async swapInto(target: string, staging: string, run: RunRef): Promise<number> {
    const replaced = `${staging}.replaced`;
    let rowsReplaced = 0;
    if (existsSync(target)) {
      rowsReplaced = (await readMarker(join(target, COMMIT_MARKER)))?.rows ?? 0;
      await fs.rm(replaced, { recursive: true, force: true });
      await fs.rename(target, replaced);
    } else if (existsSync(replaced)) {
      rowsReplaced = (await readMarker(join(replaced, COMMIT_MARKER)))?.rows ?? 0;
    }
    await fs.mkdir(this.tableDir, { recursive: true });
    await fs.rename(staging, target);
    await removeQuietly(replaced); // the commit is done; leftovers are cleaned by the next commit or abort
    return rowsReplaced;
  }

  /** append: move each staged file in (a rename each), then the run's own marker last. */
  private async appendInto(target: string, staging: string, files: string[], run: RunRef): Promise<number> {
    await fs.mkdir(target, { recursive: true });
    for (const f of files) {
      if (existsSync(join(staging, f))) await fs.rename(join(staging, f), join(target, f));
    }
    await fs.rename(join(staging, COMMIT_MARKER), join(target, this.markerName(run)));
    await fs.rm(staging, { recursive: true, force: true });
    return 0;
  }

  /**
   * Remove what the run staged. If a commit was interrupted between its two renames (the old partition
   * moved aside, the new one not yet in place), put the old partition back first: an aborted run
   * changes nothing.
   */
  async abort(run: RunRef): Promise<void> {
    const staging = this.stagingDir(run);
    const replaced = `${staging}.replaced`;
    const target = this.partitionDir(run.logicalDate);
    if (existsSync(replaced) && !existsSync(target)) await fs.rename(replaced, target);
    await fs.rm(staging, { recursive: true, force: true });
    await fs.rm(replaced, { recursive: true, force: true });
  }

  async stagedChunks(run: RunRef): Promise<Map<number, StagedChunk>> {
    const staging = this.stagingDir(run);
    const staged = new Map<number, StagedChunk>();
    const entries = existsSync(staging) ? await fs.readdir(staging, { withFileTypes: true }) : [];
    const files = entries.filter((e) => e.isFile() && /^part-\d{5}(-[^/]+)?\.parquet$/.test(e.name)).map((e) => e.name);
    if (files.length === 0) return staged;
    const rows = await withConnection(async (con) =>
      (await con.runAndReadAll(`SELECT file_name, num_rows FROM parquet_file_metadata([${files.map((f) => sqlString(join(staging, f))).join(', ')}])`)).getRows(),
    );
    for (const [path, n] of rows) {
      const file = basename(String(path));
      const index = Number(file.slice('part-'.length, 'part-00000'.length));
      staged.set(index, { index, rows: Number(n), file });
    }
    return staged;
  }

  async sweepStaging(olderThanMs: number, current: RunRef): Promise<string[]> {
    if (!existsSync(this.stagingRoot)) return [];
    const removed: string[] = [];
    for (const name of await fs.readdir(this.stagingRoot)) {
      const dir = join(this.stagingRoot, name);
      const st = await fs.stat(dir).catch(() => undefined);
      // `<run>.replaced` is an interrupted commit's old partition: abort or the retried commit owns it.
      if (!st?.isDirectory() || name.endsWith('.replaced') || name === current.runId || Date.now() - st.mtimeMs < olderThanMs) continue;
      await fs.rm(dir, { recursive: true, force: true });
      removed.push(dir);
    }
    return removed;
  }

  async pendingQuarantined(run: RunRef, quarantine: Sink, of: string, keys: string[]): Promise<string[][]> {
    if (!(quarantine instanceof ParquetSink)) throw new Error('internal: a parquet sink with a quarantine table elsewhere');
    const quarantined = quarantine.partitionDir(run.logicalDate);
    if (!(await firstParquet(quarantined))) return [];
    const output = this.partitionDir(run.logicalDate);
    const k = keys.map(quoteIdent);
    const notScored = (await firstParquet(output))
      ? ` AND NOT EXISTS (SELECT 1 FROM read_parquet(${sqlString(join(output, '*.parquet'))}) o WHERE ${k.map((c) => `o.${c} = q.${c}`).join(' AND ')})`
      : '';
    const sql = `SELECT ${k.map((c) => `CAST(q.${c} AS VARCHAR)`).join(', ')} FROM read_parquet(${sqlString(join(quarantined, '*.parquet'))}) q WHERE q.run_id = $1${notScored}`;
    try {
      return await withConnection(async (con) => (await con.runAndReadAll(sql, [of])).getRows().map((r) => r.map(String)));
    } catch (err) {
      throw new SinkError(`${quarantined}: could not read the quarantined rows of run ${of}: ${errorMessage(err)}`, false, { cause: err });
    }
  }
}

async function removeQuietly(path: string): Promise<void> {
  await fs.rm(path, { recursive: true, force: true }).catch(() => undefined);
}

async function readMarker(path: string): Promise<CommitMarker | undefined> {
  try {
    return JSON.parse(await fs.readFile(path, 'utf8')) as CommitMarker;
  } catch {
    return undefined;
  }
}
