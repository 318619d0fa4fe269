/** The pure parts of fingerprint-aware backfills: date ranges, the printed plan, the Parquet fingerprint. */
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parquetFingerprint } from '../../connectors/parquet-source';
import { backfillPlanLines, datesBetween, parseDateRange, type BackfillPlan } from '../../src/run/backfill';

const dir = mkdtempSync(join(tmpdir(), 'scoreline-fp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('date ranges', () => {
  it('parses FROM..TO and one date, and lists the dates inclusively across a month end', () => {
    expect(parseDateRange('2026-10-30..2026-11-02')).toEqual({ from: '2026-10-30', to: '2026-11-02' });
    expect(parseDateRange('2026-11-01')).toEqual({ from: '2026-11-01', to: '2026-11-01' });
    expect(() => parseDateRange('2026-11-01:2026-11-02')).toThrow('--dates 2026-11-01:2026-11-02: expected YYYY-MM-DD..YYYY-MM-DD');
    expect(datesBetween('2026-10-30', '2026-11-02')).toEqual(['2026-10-30', '2026-10-31', '2026-11-01', '2026-11-02']);
  });
});

describe('parquet fingerprint', () => {
  it('changes with a file\'s size, modification time, the file list and the row count; not otherwise', () => {
    const a = join(dir, 'a.parquet');
    const b = join(dir, 'b.parquet');
    writeFileSync(a, 'aaaa');
    writeFileSync(b, 'bbbb');
    utimesSync(a, 1_700_000_000, 1_700_000_000);
    const fp = parquetFingerprint([a, b], 10);
    expect(fp).toMatch(/^parquet:v1:[0-9a-f]{64}$/);
    expect(parquetFingerprint([a, b], 10)).toBe(fp);
    expect(parquetFingerprint([a, b], 11)).not.toBe(fp);
    expect(parquetFingerprint([a], 10)).not.toBe(fp);
    utimesSync(a, 1_700_000_001, 1_700_000_001);
    expect(parquetFingerprint([a, b], 10)).not.toBe(fp);
    utimesSync(a, 1_700_000_000, 1_700_000_000);
    expect(parquetFingerprint([a, b], 10)).toBe(fp);
    writeFileSync(a, 'aaaaa');
    utimesSync(a, 1_700_000_000, 1_700_000_000);
    expect(parquetFingerprint([a, b], 10)).not.toBe(fp);
  });
});

describe('the printed plan', () => {
  const plan = (run: boolean[]): BackfillPlan => ({
    pipeline: 'churn',
    skip_unchanged: true,
    dates: [
      { logical_date: '2026-11-01', state: 'unchanged', reason: 'same input and model as run r1', run: run[0], fingerprint: 'f', model_sha256: 's', previous_run_id: 'r1' },
      { logical_date: '2026-11-02', state: 'changed', reason: 'input fingerprint differs', run: run[1], fingerprint: 'g', model_sha256: 's', previous_run_id: 'r2' },
    ],
    to_run: ['2026-11-01', '2026-11-02'].filter((_, i) => run[i]),
  });

  it('says per date what it is, whether it is scored and why, then what happens', () => {
    expect(backfillPlanLines(plan([false, true]))).toEqual([
      'plan for churn (skipping unchanged dates):',
      '  2026-11-01  unchanged  skip   same input and model as run r1',
      '  2026-11-02  changed    score  input fingerprint differs',
      'scoring 1 date, skipping 1 unchanged',
    ]);
    expect(backfillPlanLines(plan([false, true]), { dryRun: true }).slice(-2)).toEqual(['would score 1 date, skipping 1 unchanged', 'dry run: nothing was started']);
  });

  it('says so when there is nothing to score', () => {
    const p = { ...plan([false, false]), dates: plan([false, false]).dates.map((d) => ({ ...d, state: 'unchanged' as const })) };
    expect(backfillPlanLines(p).at(-1)).toBe('nothing to score: all 2 dates are unchanged (use --force to rescore anyway)');
  });
});
