import { describe, expect, it } from 'vitest';
import { splitRowGroups } from '../../connectors/parquet-source';

describe('splitRowGroups', () => {
  it('one chunk per row group when they match chunk_rows', () => {
    expect(splitRowGroups([100, 100, 50], 100)).toEqual([[0, 100], [100, 200], [200, 250]]);
  });
  it('packs small row groups together without exceeding chunk_rows', () => {
    expect(splitRowGroups([30, 30, 30, 30], 70)).toEqual([[0, 60], [60, 120]]);
  });
  it('splits row groups larger than chunk_rows', () => {
    expect(splitRowGroups([250], 100)).toEqual([[0, 100], [100, 200], [200, 250]]);
    expect(splitRowGroups([20, 250, 20], 100)).toEqual([[0, 20], [20, 120], [120, 220], [220, 270], [270, 290]]);
  });
  it('covers every row exactly once and ignores empty row groups', () => {
    const groups = [0, 7, 65536, 3, 0, 1000];
    const ranges = splitRowGroups(groups, 4096);
    expect(ranges[0][0]).toBe(0);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBe(ranges[i - 1][1]);
    expect(ranges.at(-1)![1]).toBe(groups.reduce((a, b) => a + b, 0));
    expect(ranges.every(([a, b]) => b - a <= 4096 && b > a)).toBe(true);
  });
  it('no row groups, no chunks', () => {
    expect(splitRowGroups([], 10)).toEqual([]);
  });
});
