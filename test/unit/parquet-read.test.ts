/**
 * The Parquet source's chunk read (connectors/parquet-source.ts): values and NULLs copied straight from
 * DuckDB's vectors land on the right rows of the Arrow columns, for chunks that start inside a vector,
 * end mid-byte of the validity mask, and span vectors of 2,048 rows, for every fixed-width type.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParquetSource } from '../../connectors/parquet-source';
import { sqlString } from '../../src/io/duckdb';
import { cleanup, query, tempProject } from '../helpers/project';

const ROWS = 7_000;
let dir: string;
let file: string;

/** NULL on scattered rows, on a run across a vector boundary (2,040..2,060) and on every 3rd row of 5,000..5,100. */
const isNull = (i: number) => i % 97 === 5 || (i >= 2_040 && i < 2_060) || (i >= 5_000 && i < 5_100 && i % 3 === 0);
const nullSql = (col: string) => `CASE WHEN range % 97 = 5 OR range BETWEEN 2040 AND 2059 OR (range BETWEEN 5000 AND 5099 AND range % 3 = 0) THEN NULL ELSE ${col} END`;

beforeAll(async () => {
  dir = tempProject('scoreline-read-');
  file = join(dir, 'part-0.parquet');
  // Row groups of 1,000 rows, so chunks are ranges not aligned to DuckDB's 2,048-row vectors.
  await query(
    `COPY (SELECT range AS id, ${nullSql('(range * 0.25)::FLOAT')} AS f, ${nullSql('(range * 0.5)::DOUBLE')} AS d, ` +
      `${nullSql('(range - 3000)::INTEGER')} AS i, ${nullSql('(range * 1000000007)::BIGINT')} AS b, ${nullSql('(range % 200)::UTINYINT')} AS u ` +
      `FROM range(${ROWS})) TO ${sqlString(file)} (FORMAT parquet, ROW_GROUP_SIZE 1000)`,
  );
});

afterAll(() => cleanup(dir));

describe('ParquetSource.read', () => {
  const source = new ParquetSource({ resolvePath: (p) => p });
  const cases: Array<[number, number]> = [
    [0, ROWS],
    [1_000, 3_000], // starts inside the first vector, crosses the NULL run at 2,040
    [5_000, 6_000],
    [6_000, ROWS],
  ];
  for (const [rowStart, rowEnd] of cases) {
    it(`rows ${rowStart}..${rowEnd - 1}: every value and NULL on its row`, async () => {
      const batch = await source.read({ index: 0, rows: rowEnd - rowStart, locator: { kind: 'parquet', file, rowStart, rowEnd } }, ['f', 'd', 'i', 'b', 'u', 'id'], ['id']);
      expect(batch.numRows).toBe(rowEnd - rowStart);
      const expected: Record<string, (r: number) => unknown> = {
        f: (r) => r * 0.25,
        d: (r) => r * 0.5,
        i: (r) => r - 3000,
        b: (r) => BigInt(r) * 1000000007n,
        u: (r) => r % 200,
      };
      const nulls: Record<string, number> = {};
      for (const [name, value] of Object.entries(expected)) {
        const column = batch.getChild(name)!;
        const wrong: string[] = [];
        for (let k = 0; k < batch.numRows; k++) {
          const r = rowStart + k;
          const want = isNull(r) ? null : value(r);
          if (column.get(k) !== want) wrong.push(`row ${r}: ${column.get(k)} != ${want}`);
        }
        expect(wrong.slice(0, 5), name).toEqual([]);
        nulls[name] = column.nullCount;
      }
      const want = Array.from({ length: rowEnd - rowStart }, (_, k) => rowStart + k).filter(isNull).length;
      expect(want).toBeGreaterThan(0);
      expect(nulls).toEqual({ f: want, d: want, i: want, b: want, u: want });
      const ids = batch.getChild('id')!;
      expect([ids.get(0), ids.get(batch.numRows - 1)]).toEqual([BigInt(rowStart), BigInt(rowEnd - 1)]);
    });
  }
});
