import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyOverrides, assertLogicalDate, chunkRowsFor, loadPipelineFile, parseOverrideFlags, parsePipeline, renderTemplate } from '../../src/config/pipeline';
import { ConfigError } from '../../src/errors';
import { describeBudget, quarantines, rejectBudget } from '../../src/run/budget';

const valid = {
  name: 'churn-daily',
  source: { kind: 'parquet', path: 'data/ds={{ ds }}/*.parquet', key: ['customer_id'] },
  model: 'churn-gbt@champion',
  sink: { kind: 'parquet', path: 'out/churn_scores' },
};

function writeYaml(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'scoreline-cfg-'));
  const path = join(dir, 'churn.yaml');
  writeFileSync(path, text);
  return path;
}

describe('max_rejected (error budget)', () => {
  it('is a row count or a share of the planned rows; 0 (default) quarantines nothing', () => {
    expect([rejectBudget(100, 1_000_000), rejectBudget('0.1%', 12_345), rejectBudget(undefined, 10)]).toEqual([100, 12, 0]);
    expect([quarantines(0), quarantines('0%'), quarantines(undefined), quarantines(1), quarantines('0.01%')]).toEqual([false, false, false, true, true]);
    expect(describeBudget('0.1%', 12_345)).toBe('0.1% of 12345 rows (12 rows)');
    const base = valid;
    expect(parsePipeline(base, 'p.yaml').max_rejected).toBe(0);
    expect(parsePipeline({ ...base, max_rejected: '0.5%' }, 'p.yaml').max_rejected).toBe('0.5%');
    for (const bad of ['lots', '150%', -1, 1.5]) {
      expect(() => parsePipeline({ ...base, max_rejected: bad }, 'p.yaml')).toThrow(`p.yaml: max_rejected: expected a row count (e.g. 100) or a share of the planned rows from 0% to 100% (e.g. "0.1%"), got ${JSON.stringify(bad)}`);
    }
  });
});

describe('chunk_rows: auto', () => {
  it('holds ~32 MiB of float32 features per chunk, in multiples of 4096 rows, bounded', () => {
    expect(chunkRowsFor({ chunk_rows: 'auto' }, 32)).toBe(262_144);
    expect(chunkRowsFor({ chunk_rows: 'auto' }, 500)).toBe(16_384);
    expect(chunkRowsFor({ chunk_rows: 'auto' }, 1)).toBe(1_048_576);
    expect(chunkRowsFor({ chunk_rows: 'auto' }, 100_000)).toBe(4096);
    expect(chunkRowsFor({ chunk_rows: 1000 }, 32)).toBe(1000);
  });
});

describe('pipeline file', () => {
  it('fills documented defaults', () => {
    const c = parsePipeline(valid, 'p.yaml');
    expect(c.chunk_rows).toBe('auto');
    expect(c.parallelism).toBe(4);
    expect(c.sink.mode).toBe('replace-partition');
    expect(c.source.on_empty).toBe('fail');
    expect(c.source.key_check).toBe('strict');
    expect(parsePipeline({ ...valid, source: { ...valid.source, key_check: 'allow' } }, 'p.yaml').source.key_check).toBe('allow');
    expect(() => parsePipeline({ ...valid, source: { ...valid.source, key_check: 'off' } }, 'p.yaml')).toThrow('p.yaml: source.key_check: expected one of "strict", "allow", got "off"');
    expect(c.features).toEqual({ nulls: 'error', impute_values: {}, cast: 'strict' });
  });

  it('names file, field and expectation for a missing field', () => {
    const path = writeYaml('name: churn-daily\nsource: { kind: parquet, path: x, key: [id] }\nmodel: m@champion\nsink: { kind: parquet }\n');
    expect(() => loadPipelineFile(path)).toThrow(ConfigError);
    expect(() => loadPipelineFile(path)).toThrow(`${path}: sink.path: required (expected string)`);
  });

  it('rejects unknown fields (typos) and bad enum values', () => {
    expect(() => parsePipeline({ ...valid, chunk_row: 10 }, 'p.yaml')).toThrow('p.yaml: (top level): unknown field "chunk_row" (did you mean "chunk_rows"?)');
    expect(() => parsePipeline({ ...valid, sink: { ...valid.sink, mdoe: 'append' } }, 'p.yaml')).toThrow('p.yaml: sink: unknown field "mdoe" (did you mean "mode"?)');
    // Nothing close: no guess.
    expect(() => parsePipeline({ ...valid, zzzzzz: 1 }, 'p.yaml')).toThrow(/unknown field "zzzzzz"$/);
    expect(() => parsePipeline({ ...valid, sink: { ...valid.sink, mode: 'overwrite' } }, 'p.yaml')).toThrow(
      'p.yaml: sink.mode: expected one of "replace-partition", "append", got "overwrite"',
    );
  });

  it('rejects identifiers that could reach SQL unchecked', () => {
    expect(() => parsePipeline({ ...valid, source: { ...valid.source, key: ['id; DROP TABLE x'] } }, 'p.yaml')).toThrow('source.key.0');
    expect(() => parsePipeline({ ...valid, name: 'Churn Daily' }, 'p.yaml')).toThrow('p.yaml: name:');
  });

  it('reports YAML syntax errors with the file name', () => {
    const path = writeYaml('name: [unclosed\n');
    expect(() => loadPipelineFile(path)).toThrow(`${path}: invalid YAML`);
  });

  it('requires impute values when nulls are imputed', () => {
    expect(() => parsePipeline({ ...valid, features: { nulls: 'impute' } }, 'p.yaml')).toThrow('features.impute_values: required');
  });

  it('applies --set overrides before validation, typed as YAML scalars', () => {
    const c = parsePipeline(valid, 'p.yaml', parseOverrideFlags(['chunk_rows=1000', 'sink.mode=append', 'model=churn-mlp:1']));
    expect(c.chunk_rows).toBe(1000);
    expect(c.sink.mode).toBe('append');
    expect(c.model).toBe('churn-mlp:1');
    expect(() => parsePipeline(valid, 'p.yaml', { chunk_rows: 'many' })).toThrow('chunk_rows: expected a row count (1 to 10,000,000) or "auto"');
    expect(() => parseOverrideFlags(['novalue'])).toThrow('expected key=value');
    expect(() => applyOverrides(valid, { '__proto__.x': '1' }, 'p.yaml')).toThrow('not a valid dotted field path');
  });

  it('renders {{ ds }} and refuses unknown variables', () => {
    expect(renderTemplate('d/ds={{ ds }}/x_{{ds_nodash}}', { ds: '2026-11-01', ds_nodash: '20261101' }, 'o')).toBe('d/ds=2026-11-01/x_20261101');
    expect(() => renderTemplate('{{ day }}', { ds: 'x' }, 'o')).toThrow('unknown template variable {{ day }}');
  });

  it('checks logical dates are real calendar dates', () => {
    expect(assertLogicalDate('2026-11-01', 'o')).toBe('2026-11-01');
    expect(() => assertLogicalDate('2026-02-30', 'o')).toThrow('expected a calendar date');
    expect(() => assertLogicalDate('yesterday', 'o')).toThrow('expected a calendar date');
  });
});
