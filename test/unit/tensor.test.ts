import * as arrow from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import type { FeaturePolicy } from '../../src/config/pipeline';
import { InputError } from '../../src/errors';
import type { ModelManifest } from '../../src/models/manifest';
import { buildFeeds, extractOutput } from '../../src/scoring/tensor';

const strict: FeaturePolicy = { nulls: 'error', impute_values: {}, cast: 'strict' };

function manifest(dtype: 'float32' | 'float64' | 'int64', columns: string[], perFeature = false): ModelManifest {
  const inputs = perFeature
    ? columns.map((c) => ({ name: c, dtype, shape: [-1, 1] as [-1, number], columns: [c] }))
    : [{ name: 'x', dtype, shape: [-1, columns.length] as [-1, number], columns }];
  return { name: 'm', version: '1', sha256: '0'.repeat(64), inputs, outputs: [{ tensor: 'y', column: 'score', dtype: 'float32' }] };
}

function batch(columns: Record<string, arrow.Vector>): arrow.RecordBatch {
  return new arrow.Table(columns).batches[0];
}

describe('buildFeeds', () => {
  it('interleaves columns into a row-major [N, F] tensor in manifest order', () => {
    const b = batch({
      b: arrow.makeVector(new Float32Array([10, 20, 30])),
      a: arrow.makeVector(new Float32Array([1, 2, 3])),
      ignored: arrow.vectorFromArray(['x', 'y', 'z']),
    });
    const feeds = buildFeeds(b, manifest('float32', ['a', 'b']), strict, 'chunk 0');
    expect(feeds.tensors[0].dims).toEqual([3, 2]);
    expect(Array.from(feeds.tensors[0].data as Float32Array)).toEqual([1, 10, 2, 20, 3, 30]);
    expect(feeds.rowsOut).toBe(3);
  });

  it('builds one [N, 1] tensor per feature', () => {
    const b = batch({ a: arrow.makeVector(new Float64Array([1.5, 2.5])), b: arrow.makeVector(new Int32Array([7, 8])) });
    const feeds = buildFeeds(b, manifest('float32', ['a', 'b'], true), strict, 'c');
    expect(feeds.tensors.map((t) => [t.name, t.dims, Array.from(t.data as Float32Array)])).toEqual([
      ['a', [2, 1], [1.5, 2.5]],
      ['b', [2, 1], [7, 8]],
    ]);
  });

  it('names a missing feature column and lists what exists', () => {
    const b = batch({ a: arrow.makeVector(new Float32Array([1])) });
    expect(() => buildFeeds(b, manifest('float32', ['a', 'f07']), strict, 'chunk 2 (x.parquet)')).toThrow(
      'chunk 2 (x.parquet): feature column "f07" is missing (columns: a)',
    );
  });

  it('refuses string columns as features', () => {
    const b = batch({ a: arrow.vectorFromArray(['1.0'], new arrow.Utf8()) });
    expect(() => buildFeeds(b, manifest('float32', ['a']), strict, 'c')).toThrow(/column "a" has type Utf8, which cannot feed float32/);
  });

  it('refuses lossy casts under the strict policy and allows them when lenient', () => {
    const big = batch({ a: arrow.makeVector(new BigInt64Array([1n, 16777217n])) });
    expect(() => buildFeeds(big, manifest('float32', ['a']), strict, 'c')).toThrow(/row 1: value 16777217 is an integer beyond 2\^24/);
    const lenient = buildFeeds(big, manifest('float32', ['a']), { ...strict, cast: 'lenient' }, 'c');
    expect(Array.from(lenient.tensors[0].data as Float32Array)).toEqual([1, 16777216]);
    const huge = batch({ a: arrow.makeVector(new Float64Array([1e39])) });
    expect(() => buildFeeds(huge, manifest('float32', ['a']), strict, 'c')).toThrow(/beyond float32 range/);
    const frac = batch({ a: arrow.makeVector(new Float64Array([1.5])) });
    expect(() => buildFeeds(frac, manifest('int64', ['a']), strict, 'c')).toThrow(/is not a whole number/);
    expect(() => buildFeeds(frac, manifest('float64', ['a']), strict, 'c')).not.toThrow();
  });

  it('fails on NULL features by default, naming column and count', () => {
    const b = batch({ a: arrow.vectorFromArray([1, null, 3, null], new arrow.Float32()) });
    expect(() => buildFeeds(b, manifest('float32', ['a']), strict, 'c')).toThrow(InputError);
    expect(() => buildFeeds(b, manifest('float32', ['a']), strict, 'c')).toThrow('feature column "a" has 2 NULL value(s) (first at row 1 of the chunk)');
  });

  it('skips rows with NULL features and reports which rows were kept', () => {
    const b = batch({
      a: arrow.vectorFromArray([1, null, 3, 4], new arrow.Float32()),
      b: arrow.vectorFromArray([5, 6, null, 8], new arrow.Float32()),
    });
    const feeds = buildFeeds(b, manifest('float32', ['a', 'b']), { ...strict, nulls: 'skip' }, 'c');
    expect(Array.from(feeds.keptRows!)).toEqual([0, 3]);
    expect(Array.from(feeds.tensors[0].data as Float32Array)).toEqual([1, 5, 4, 8]);
    expect([feeds.rowsIn, feeds.rowsOut, feeds.rowsRejected]).toEqual([4, 2, 2]);
  });

  it('imputes configured values and counts imputed rows', () => {
    const b = batch({ a: arrow.vectorFromArray([1, null, null], new arrow.Float32()), b: arrow.makeVector(new Float32Array([1, 2, 3])) });
    const feeds = buildFeeds(b, manifest('float32', ['a', 'b']), { ...strict, nulls: 'impute', impute_values: { a: -1 } }, 'c');
    expect(Array.from(feeds.tensors[0].data as Float32Array)).toEqual([1, 1, -1, 2, -1, 3]);
    expect(feeds.rowsImputed).toBe(2);
    expect(() => buildFeeds(b, manifest('float32', ['a', 'b']), { ...strict, nulls: 'impute', impute_values: { b: 0 } }, 'c')).toThrow(
      'features.impute_values has no value for it',
    );
  });

  it('with quarantine, leaves out rows with a NULL (nulls: error) or a refused cast, first reason per row, instead of throwing', () => {
    const b = batch({
      a: arrow.vectorFromArray([1, null, 3, 4, null], new arrow.Float32()),
      b: arrow.vectorFromArray([5, 6, 1e39, 8, 2 ** 40], new arrow.Float64()),
      i: arrow.vectorFromArray([1, 2, 3, 4.5, 5], new arrow.Float64()),
    });
    const m: ModelManifest = { ...manifest('float32', ['a', 'b']), inputs: [...manifest('float32', ['a', 'b']).inputs, { name: 'n', dtype: 'int64', shape: [-1, 1], columns: ['i'] }] };
    expect(() => buildFeeds(b, m, strict, 'c')).toThrow(InputError);
    const feeds = buildFeeds(b, m, strict, 'c', { quarantine: true });
    expect(Array.from(feeds.keptRows!)).toEqual([0]);
    expect(Array.from(feeds.tensors[0].data as Float32Array)).toEqual([1, 5]);
    expect(Array.from(feeds.tensors[1].data as BigInt64Array)).toEqual([1n]);
    expect([feeds.rowsIn, feeds.rowsOut, feeds.rowsRejected]).toEqual([5, 1, 0]);
    expect(Array.from(feeds.quarantined!.rows)).toEqual([1, 2, 3, 4]);
    expect(feeds.quarantined!.columns).toEqual(['a', 'b', 'i', 'a']);
    expect(feeds.quarantined!.reasons).toEqual([
      'NULL (features.nulls: error)',
      'value 1e+39 is beyond float32 range (input "x" is float32)',
      'value 4.5 is not a whole number (input "n" is int64)',
      'NULL (features.nulls: error)',
    ]);
    // Under `skip` a NULL row is dropped (rowsRejected), not quarantined; a clean batch quarantines nothing.
    const skip = buildFeeds(b, m, { ...strict, nulls: 'skip' }, 'c', { quarantine: true });
    expect([skip.rowsOut, skip.rowsRejected, skip.quarantined!.rows.length]).toEqual([1, 2, 2]);
    expect(buildFeeds(batch({ a: arrow.makeVector(new Float32Array([1])) }), manifest('float32', ['a']), strict, 'c', { quarantine: true }).quarantined).toBeUndefined();
  });

  it('reads booleans as 0/1', () => {
    const b = batch({ a: arrow.vectorFromArray([true, false, true]) });
    expect(Array.from(buildFeeds(b, manifest('float32', ['a']), strict, 'c').tensors[0].data as Float32Array)).toEqual([1, 0, 1]);
  });
});

describe('extractOutput', () => {
  it('takes one column of an [N, K] output', () => {
    const probs = new Float32Array([0.9, 0.1, 0.3, 0.7]);
    expect(Array.from(extractOutput({ tensor: 'p', index: 1, column: 'p1', dtype: 'float32' }, [2, 2], probs, 2, 'm') as Float32Array)).toEqual([
      expect.closeTo(0.1, 6),
      expect.closeTo(0.7, 6),
    ]);
  });

  it('converts int64 labels and checks shapes', () => {
    const out = extractOutput({ tensor: 'l', column: 'label', dtype: 'int64' }, [3], new BigInt64Array([0n, 1n, 1n]), 3, 'm');
    expect(Array.from(out as BigInt64Array)).toEqual([0n, 1n, 1n]);
    expect(() => extractOutput({ tensor: 'p', column: 'p', dtype: 'float32' }, [2, 2], new Float32Array(4), 2, 'm')).toThrow('set index:');
    expect(() => extractOutput({ tensor: 'p', index: 5, column: 'p', dtype: 'float32' }, [2, 2], new Float32Array(4), 2, 'm')).toThrow('out of range');
  });
});
