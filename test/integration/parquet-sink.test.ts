/**
 * The Parquet sink's commit protocol on a real filesystem: replace-partition swaps, append, and the
 * repairs a retried commit or an abort must make after a crash between steps.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as arrow from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParquetSink } from '../../connectors/parquet-sink';
import { runAnalystQuery } from '../../src/sql';
import type { RunRef, StagedChunk } from '../../src/types';
import { cleanup, query, tempProject } from '../helpers/project';

let dir: string;
const DATE = '2026-11-01';
const run = (id: string): RunRef => ({ runId: id, workflowId: `wf-${id}`, pipeline: 'p', logicalDate: DATE, trigger: 'test' });

async function stageRows(sink: ParquetSink, r: RunRef, chunks: number[][]): Promise<StagedChunk[]> {
  const staged: StagedChunk[] = [];
  for (const [index, ids] of chunks.entries()) {
    const table = new arrow.Table({ id: arrow.makeVector(new BigInt64Array(ids.map(BigInt))), score: arrow.makeVector(new Float32Array(ids.length).fill(0.5)) });
    const file = await sink.stage(r, index, { table, constants: [{ name: 'run_id', sqlType: 'VARCHAR', value: r.runId }] });
    staged.push({ index, rows: ids.length, file: file.path.split('/').pop()! });
  }
  return staged;
}

const rowsIn = async (table: string) => query(`SELECT run_id, count(*) AS n FROM read_parquet('${join(dir, table)}/ds=${DATE}/*.parquet') GROUP BY ALL ORDER BY run_id`);

beforeAll(() => {
  dir = tempProject('scoreline-sink-');
});
afterAll(() => cleanup(dir));

describe('ParquetSink', () => {
  it('replace-partition: a second run replaces the first; a retried commit is a no-op', async () => {
    const sink = new ParquetSink(join(dir, 'replace'), 'replace-partition');
    const a = run('a');
    await sink.commit(a, await stageRows(sink, a, [[1, 2], [3]]));
    const b = run('b');
    const stagedB = await stageRows(sink, b, [[4, 5, 6]]);
    const first = await sink.commit(b, stagedB);
    expect(first).toMatchObject({ rowsOut: 3, rowsReplaced: 3, files: 1 });
    expect(await sink.commit(b, stagedB)).toMatchObject({ rowsOut: 3 }); // idempotent
    expect(await rowsIn('replace')).toEqual([{ run_id: 'b', n: 3 }]);
  });

  it('an empty commit over rows keeps the table and its columns (a 0-row file), and stays idempotent', async () => {
    const sink = new ParquetSink(join(dir, 'emptied'), 'replace-partition');
    const a = run('a');
    await sink.commit(a, await stageRows(sink, a, [[1, 2]]));
    const b = run('b');
    expect(await sink.commit(b, [])).toMatchObject({ rowsOut: 0, rowsReplaced: 2 });
    expect(await sink.commit(b, [])).toMatchObject({ rowsOut: 0 }); // retried: still one file
    expect(readdirSync(join(dir, 'emptied', `ds=${DATE}`)).filter((f) => f.endsWith('.parquet'))).toEqual(['part-00000.parquet']);
    // What an analyst sees: the table's view, with its columns, and no rows (it used to vanish from `scoreline sql`).
    const { rows, views } = await runAnalystQuery('SELECT count(*)::INTEGER AS n, max(id) AS id, max(run_id) AS run_id FROM emptied', { dataDirs: [dir] });
    expect(views).toContain('emptied');
    expect(rows).toEqual([{ n: 0, id: null, run_id: null }]);
    // A table that never had rows has nothing to take the columns from: no file.
    const fresh = new ParquetSink(join(dir, 'never'), 'replace-partition');
    await fresh.commit(a, []);
    expect(readdirSync(join(dir, 'never', `ds=${DATE}`)).filter((f) => f.endsWith('.parquet'))).toEqual([]);
  });

  it("a run whose columns do not fit the table's is refused at commit, naming them; FLOAT vs DOUBLE fits", async () => {
    const sink = new ParquetSink(join(dir, 'typed'), 'replace-partition');
    const at = (id: string, logicalDate: string): RunRef => ({ ...run(id), logicalDate });
    const stageTable = async (r: RunRef, table: arrow.Table) => {
      const file = await sink.stage(r, 0, { table, constants: [{ name: 'run_id', sqlType: 'VARCHAR', value: r.runId }] });
      return [{ index: 0, rows: table.numRows, file: file.path.split('/').pop()! }];
    };
    const a = at('a', '2026-11-01');
    await sink.commit(a, await stageTable(a, new arrow.Table({ id: arrow.makeVector(new BigInt64Array([1n])), score: arrow.makeVector(new Float32Array([0.5])) })));
    // The key read as text on the next date, and a new column: refused, nothing committed.
    const b = at('b', '2026-11-02');
    const text = new arrow.Table({ id: arrow.vectorFromArray(['1'], new arrow.Utf8()), score: arrow.makeVector(new Float32Array([0.5])), extra: arrow.makeVector(new Float32Array([1])) });
    await expect(sink.commit(b, await stageTable(b, text))).rejects.toThrow(
      /its rows do not match the table's columns \(docs\/output-schema\.md; as in \S+ds=2026-11-01\/part-00000\.parquet\): column id is VARCHAR, the table's is BIGINT; column extra \(FLOAT\) is new\. Point sink\.path at a new table/,
    );
    expect(existsSync(join(dir, 'typed', 'ds=2026-11-02'))).toBe(false);
    await sink.abort(b);
    // float32 → float64 predictions and int64 → int32 keys read back as one column: allowed.
    const c = at('c', '2026-11-03');
    await sink.commit(c, await stageTable(c, new arrow.Table({ id: arrow.makeVector(new Int32Array([2])), score: arrow.makeVector(new Float64Array([0.25])) })));
    // Replacing the only partition there is may change its columns: nothing else holds the old ones.
    const lone = new ParquetSink(join(dir, 'lone'), 'replace-partition');
    const d = run('d');
    await lone.commit(d, await stageRows(lone, d, [[1]]));
    const e = run('e');
    const file = await lone.stage(e, 0, { table: text, constants: [] });
    await lone.commit(e, [{ index: 0, rows: 1, file: file.path.split('/').pop()! }]);
  });

  it('a commit interrupted between its two renames is finished by the retry', async () => {
    const sink = new ParquetSink(join(dir, 'crash'), 'replace-partition');
    const a = run('a');
    await sink.commit(a, await stageRows(sink, a, [[1, 2]]));
    const b = run('b');
    const staged = await stageRows(sink, b, [[7, 8, 9]]);
    // Simulate the crash: the old partition was moved aside, the new one not yet renamed in.
    const stagingDir = join(dir, '.scoreline-staging', 'crash', 'b');
    renameSync(join(dir, 'crash', `ds=${DATE}`), `${stagingDir}.replaced`);
    await sink.commit(b, staged);
    expect(await rowsIn('crash')).toEqual([{ run_id: 'b', n: 3 }]);
    expect(existsSync(`${stagingDir}.replaced`)).toBe(false);
  });

  it('an abort after such a crash puts the old partition back', async () => {
    const sink = new ParquetSink(join(dir, 'abort'), 'replace-partition');
    const a = run('a');
    await sink.commit(a, await stageRows(sink, a, [[1, 2]]));
    const b = run('b');
    await stageRows(sink, b, [[7, 8, 9]]);
    const stagingDir = join(dir, '.scoreline-staging', 'abort', 'b');
    renameSync(join(dir, 'abort', `ds=${DATE}`), `${stagingDir}.replaced`);
    await sink.abort(b);
    expect(await rowsIn('abort')).toEqual([{ run_id: 'a', n: 2 }]);
    expect(existsSync(stagingDir)).toBe(false);
  });

  it('append: a commit retried after moving some files completes without duplicates', async () => {
    const sink = new ParquetSink(join(dir, 'append'), 'append');
    const a = run('a');
    await sink.commit(a, await stageRows(sink, a, [[1]]));
    const b = run('b');
    const staged = await stageRows(sink, b, [[2, 3], [4]]);
    // Simulate a crash after the first file was moved into the partition.
    const partition = join(dir, 'append', `ds=${DATE}`);
    mkdirSync(partition, { recursive: true });
    renameSync(join(dir, '.scoreline-staging', 'append', 'b', staged[0].file), join(partition, staged[0].file));
    await sink.commit(b, staged);
    expect(await rowsIn('append')).toEqual([
      { run_id: 'a', n: 1 },
      { run_id: 'b', n: 3 },
    ]);
    expect(readdirSync(partition).filter((f) => f.endsWith('.parquet'))).toHaveLength(3);
  });

  it('append: a commit that died after its marker, before removing staging, is cleaned up by the retry', async () => {
    const sink = new ParquetSink(join(dir, 'append-late'), 'append');
    const c = run('c');
    const staged = await stageRows(sink, c, [[5], [6]]);
    const partition = join(dir, 'append-late', `ds=${DATE}`);
    const staging = join(dir, '.scoreline-staging', 'append-late', 'c');
    // Simulate a crash after every file and the run's marker were moved in, before the staging directory went.
    mkdirSync(partition, { recursive: true });
    for (const s of staged) renameSync(join(staging, s.file), join(partition, s.file));
    writeFileSync(join(partition, '_scoreline_commit-c.json'), JSON.stringify({ run_id: 'c', workflow_id: 'w', rows: 2, files: staged.map((s) => s.file), committed_at: new Date().toISOString() }));
    expect(existsSync(staging)).toBe(true);
    expect(await sink.commit(c, staged)).toMatchObject({ rowsOut: 2, rowsReplaced: 0 });
    expect(existsSync(staging)).toBe(false);
    expect(await rowsIn('append-late')).toEqual([{ run_id: 'c', n: 2 }]);
  });
});
