import * as arrow from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import type { NrtResult } from '../../src/nrt/protocol';
import { predictionRows } from '../../src/nrt/response';

const result = (predictions: NrtResult['predictions'], skipped?: number[]): NrtResult => ({
  requestId: 'r',
  model: { name: 'm', version: '1', sha256: 'x', ref: 'm@champion' },
  rowsIn: 3,
  rowsOut: 3 - (skipped?.length ?? 0),
  rowsRejected: skipped?.length ?? 0,
  rowsImputed: 0,
  predictions,
  ...(skipped && { skipped }),
  scoreMs: 1,
  finishedAtMs: 0,
});

describe('near-real-time response rows', () => {
  const rows = new arrow.Table({ customer_id: arrow.makeVector(new Int32Array([7, 8, 9])) });
  it('keeps a row whose prediction is NaN (null in JSON); only a row the NULL policy skipped is null', () => {
    // Row 1's prediction was NaN: it travels as null, but the row was scored and keeps its key.
    expect(predictionRows(result({ p: [0.1, null, 0.3], label: [0, 1, 0] }, []), rows, ['customer_id'])).toEqual([
      { customer_id: 7, p: 0.1, label: 0 },
      { customer_id: 8, p: null, label: 1 },
      { customer_id: 9, p: 0.3, label: 0 },
    ]);
    expect(predictionRows(result({ p: [0.1, null, 0.3] }, [1]), rows, ['customer_id'])).toEqual([{ customer_id: 7, p: 0.1 }, null, { customer_id: 9, p: 0.3 }]);
    // A result from an older worker (no `skipped`): a null first prediction means skipped, as before.
    expect(predictionRows(result({ p: [0.1, null, 0.3] }), rows, ['customer_id'])[1]).toBeNull();
  });
});
