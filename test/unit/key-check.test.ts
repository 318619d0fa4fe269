/**
 * The plan-time key check (source.key_check: strict): the GROUP BY the Parquet source runs in DuckDB over
 * the planned files, and the error the planner makes of it. Several key columns, NULL in one of them,
 * hostile and huge key values; logs redact the example keys the audit row keeps. The same check on
 * Snowflake and BigQuery, and through whole runs: test/integration/bad-input-*.test.ts.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keysIncreasing, ParquetSource } from '../../connectors/parquet-source';
import type { KeyCheck, PlanRequest } from '../../connectors/types';
import { parsePipeline, type PipelineInput } from '../../src/config/pipeline';
import { sqlString, withConnection } from '../../src/io/duckdb';
import { errorFields } from '../../src/obs/log';
import { keyProblem } from '../../src/run/batch';
import { HUGE_STRING } from '../helpers/bad-input';
import { cleanup, query, tempProject } from '../helpers/project';

const DATE = '2026-11-01';
let dir: string;

beforeAll(async () => {
  dir = tempProject('scoreline-keys-');
  mkdirSync(join(dir, `ds=${DATE}`));
  // 1000 rows, key (id, region): (7, 'eu') on 3 rows, (8, 'a"b') and (9, HUGE) on 2 each, (10, NULL)
  // and (NULL, 'us') once each; rows 0..999 otherwise unique. Two files, so the check spans files.
  const rows = `SELECT range AS id, 'r' || (range % 3) AS region, (range * 0.5)::FLOAT AS f FROM range(1000)`;
  const dup = `SELECT 7 AS id, 'eu' AS region, 1.0::FLOAT AS f FROM range(3)
    UNION ALL SELECT 8, 'a"b', 1.0 FROM range(2) UNION ALL SELECT 9, ${sqlString(HUGE_STRING)}, 1.0 FROM range(2)
    UNION ALL SELECT 10, NULL, 1.0 UNION ALL SELECT NULL, 'us', 1.0`;
  await query(`COPY (${rows}) TO ${sqlString(join(dir, `ds=${DATE}`, 'part-0.parquet'))} (FORMAT parquet)`);
  await query(`COPY (SELECT id::BIGINT AS id, region, f FROM (${dup})) TO ${sqlString(join(dir, `ds=${DATE}`, 'part-1.parquet'))} (FORMAT parquet)`);
});

afterAll(() => cleanup(dir));

function request(key: string[], over: Partial<PipelineInput['source']> = {}): PlanRequest {
  const config = parsePipeline(
    { name: 'keys', source: { kind: 'parquet', path: 'ds={{ ds }}/*.parquet', key, ...over }, model: 'm@champion', sink: { kind: 'parquet', path: 'out' } } as PipelineInput,
    'test',
  );
  return { config, run: { runId: 'r1', workflowId: 'w', pipeline: 'keys', logicalDate: DATE, trigger: 'test' }, columns: [...key, 'f'], chunkRows: 500 };
}

async function check(key: string[]): Promise<KeyCheck> {
  const source = new ParquetSource({ resolvePath: (p) => join(dir, p) });
  const req = request(key);
  return source.checkKeys(req, await source.plan(req));
}

describe('key check (Parquet, DuckDB)', () => {
  it('counts duplicate keys, their rows and NULL keys over all files, most repeated first', async () => {
    const glob = join(dir, `ds=${DATE}`, '*.parquet');
    expect(await check(['id', 'region'])).toEqual({
      input: glob,
      from: `read_parquet(${sqlString(glob)})`,
      duplicateKeys: 3,
      duplicateRows: 7,
      nullKeyRows: 2,
      examples: [
        { values: ['7', 'eu'], rows: 3 },
        { values: ['8', 'a"b'], rows: 2 },
        { values: ['9', HUGE_STRING], rows: 2 },
      ],
    });
    // One column: ids 7..10 now collide with rows 7..10 of part-0 (7 on 4 rows, 8, 9 on 3, 10 on 2).
    const one = await check(['id']);
    expect(one).toMatchObject({ duplicateKeys: 4, duplicateRows: 12, nullKeyRows: 1 });
    expect(one.examples).toEqual([
      { values: ['7'], rows: 4 },
      { values: ['8'], rows: 3 },
      { values: ['9'], rows: 3 },
    ]);
  });

  it('a clean key finds nothing and makes no error', async () => {
    const source = new ParquetSource({ resolvePath: (p) => join(dir, p) });
    const req = request(['id'], { path: 'ds={{ ds }}/part-0.parquet' });
    const none = await source.checkKeys(req, await source.plan(req));
    expect(none).toMatchObject({ duplicateKeys: 0, duplicateRows: 0, nullKeyRows: 0, examples: [] });
    expect(keyProblem(req.config, DATE, none)).toBeUndefined();
  });

  const rows = (values: string) => `(SELECT * FROM (VALUES ${values}) AS t(id))`;
  it.each([
    ['increasing integers', rows('(1), (2), (5), (9)'), true],
    ['increasing strings', rows("('a'), ('ab'), ('b')"), true],
    ['no rows', '(SELECT 1 AS id WHERE false)', true],
    ['a repeat next to itself', rows('(1), (2), (2), (3)'), false],
    ['distinct but out of order', rows('(3), (1), (2)'), false],
    ['a NULL', rows('(1), (NULL), (2)'), false],
  ])('the fast path (keys strictly increasing) holds only for a scan order that proves them distinct: %s', async (_, from, expected) => {
    expect(await withConnection((con) => keysIncreasing(con, from, 'id'))).toBe(expected);
  });

  it('unique keys out of order take the GROUP BY and pass it', async () => {
    mkdirSync(join(dir, 'shuffled'), { recursive: true });
    await query(`COPY (SELECT (range * 7919) % 1000 AS id, 1.0::FLOAT AS f FROM range(1000)) TO ${sqlString(join(dir, 'shuffled', 'part-0.parquet'))} (FORMAT parquet)`);
    const source = new ParquetSource({ resolvePath: (p) => join(dir, p) });
    const req = request(['id'], { path: 'shuffled/*.parquet' });
    expect(await source.checkKeys(req, await source.plan(req))).toMatchObject({ duplicateKeys: 0, duplicateRows: 0, nullKeyRows: 0, examples: [] });
  });

  it('the error names input, key, counts and examples (cut to 60 characters), a query, the opt-out; logs redact the examples', async () => {
    const req = request(['id', 'region']);
    const err = keyProblem(req.config, DATE, await check(['id', 'region']))!;
    const glob = join(dir, `ds=${DATE}`, '*.parquet');
    expect(err.code).toBe('INPUT');
    expect(err.retryable).toBe(false);
    expect(err.message).toBe(
      `${glob}: source.key (id, region) must identify one row each, but the input for ${DATE} has 3 duplicate keys on 7 rows ` +
        `(value ("7", "eu") on 3 rows, value ("8", "a\\"b") on 2 rows, value ("9", "${'x'.repeat(57)}...") on 2 rows) and 2 rows with a NULL key column. ` +
        `Fix the source or the key (to list them: SELECT id, region, COUNT(*) FROM read_parquet(${sqlString(glob)}) GROUP BY id, region HAVING COUNT(*) > 1 OR id IS NULL OR region IS NULL), ` +
        'or set source.key_check: allow to score every row as it is',
    );
    const logged = errorFields(err).error;
    expect(logged).toContain('3 duplicate keys on 7 rows (value ‹redacted› on 3 rows, value ‹redacted› on 2 rows, value ‹redacted› on 2 rows) and 2 rows with a NULL key column');
    for (const v of ['"eu"', 'a\\"b', 'xxxx']) expect(logged).not.toContain(v);
  });

  it('one example more than fits says "e.g."; NULL keys alone have no examples', () => {
    const config = request(['id']).config;
    const base = { input: 'in', from: 't', duplicateRows: 0, nullKeyRows: 0, examples: [] };
    expect(keyProblem(config, DATE, { ...base, duplicateKeys: 4, duplicateRows: 8, examples: [{ values: ['1'], rows: 2 }, { values: ['2'], rows: 2 }, { values: ['3'], rows: 2 }] })!.message).toContain(
      'has 4 duplicate keys on 8 rows (e.g. value "1" on 2 rows, value "2" on 2 rows, value "3" on 2 rows). Fix',
    );
    expect(keyProblem(config, DATE, { ...base, duplicateKeys: 0, nullKeyRows: 1 })!.message).toBe(
      `in: source.key (id) must identify one row each, but the input for ${DATE} has 1 row with a NULL key. ` +
        'Fix the source or the key (to list them: SELECT id, COUNT(*) FROM t GROUP BY id HAVING COUNT(*) > 1 OR id IS NULL), or set source.key_check: allow to score every row as it is',
    );
  });
});
