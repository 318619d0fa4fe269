/**
 * The profile part of the AuditStore contract, run against each backend's store: rows round-trip with
 * their numbers and quantiles, a retried write replaces (never duplicates) a run's rows, and the
 * `previous` reference is the newest earlier logical date.
 */
import { expect } from 'vitest';
import type { AuditStore } from '../../connectors/types';
import { profileColumn } from '../../src/profile/chunk';
import { profileFromRows, profileRows } from '../../src/run/profile';
import type { PinnedModel, RunRef } from '../../src/types';

const MODEL: PinnedModel = { name: 'churn-gbt', version: '1', sha256: 'a'.repeat(64), ref: 'churn-gbt@champion', store: '/models' };

export async function checkProfileStore(store: AuditStore, pipeline: string): Promise<void> {
  const run = (id: string, date: string): RunRef => ({ runId: `profile-${id}-${Date.now()}`, workflowId: `scoreline/${pipeline}/${date}`, pipeline, logicalDate: date, trigger: 'test' });
  const profile = (shift: number) => ({
    columns: [
      profileColumn('f00', 'feature' as const, Float32Array.from({ length: 500 }, (_, i) => (i % 50) + shift), 500, 1, 0, 3),
      profileColumn('churn_probability', 'prediction' as const, Float32Array.from({ length: 500 }, (_, i) => i / 500), 500),
    ],
  });
  const [older, newer, current] = [run('a', '2026-10-01'), run('b', '2026-10-02'), run('c', '2026-10-03')];
  expect(await store.profiledRuns({ pipeline, beforeDate: current.logicalDate, limit: 1 })).toEqual([]);
  expect(await store.readProfile(older.runId)).toEqual([]);

  await store.recordProfile(older.runId, profileRows(older, MODEL, profile(0), [], null, '2026-10-01T06:00:00.000Z'));
  const drift = [{ column: 'f00', role: 'feature' as const, psi: 0.5, meanShift: 1.25 }];
  const rows = profileRows(newer, MODEL, profile(10), drift, `run ${older.runId} (2026-10-01)`, '2026-10-02T06:00:00.000Z');
  await store.recordProfile(newer.runId, rows);
  await store.recordProfile(newer.runId, rows); // a retried activity

  const [previous] = await store.profiledRuns({ pipeline, beforeDate: current.logicalDate, limit: 1 });
  expect(previous).toEqual({ run_id: newer.runId, logical_date: '2026-10-02', profiled_at: '2026-10-02T06:00:00.000Z' });
  expect((await store.profiledRuns({ pipeline, beforeDate: '2026-10-02', limit: 5 })).map((r) => r.run_id)).toEqual([older.runId]);
  expect((await store.profiledRuns({ pipeline, limit: 5 })).map((r) => r.run_id)).toEqual([newer.runId, older.runId]);

  const stored = await store.readProfile(newer.runId);
  expect(stored).toHaveLength(2);
  const f00 = stored.find((r) => r.column_name === 'f00')!;
  const expected = rows.find((r) => r.column_name === 'f00')!;
  expect(f00).toMatchObject({ run_id: newer.runId, pipeline, logical_date: '2026-10-02', model_name: 'churn-gbt', model_version: '1', role: 'feature', psi: 0.5, mean_shift: 1.25, reference: `run ${older.runId} (2026-10-01)`, profiled_at: '2026-10-02T06:00:00.000Z' });
  expect(Number(f00.value_count)).toBe(500);
  expect(Number(f00.null_count)).toBe(3);
  expect(f00.mean).toBeCloseTo(expected.mean!, 9);
  expect(f00.std).toBeCloseTo(expected.std!, 9);
  expect(JSON.parse(f00.quantiles!)).toEqual(JSON.parse(expected.quantiles!));
  // What the next run compares against is the same profile that was stored.
  const back = profileFromRows(stored).columns.find((c) => c.column === 'f00')!;
  expect(back).toMatchObject({ count: 500, nulls: 3, min: 10, max: 59 });
  expect(stored.find((r) => r.column_name === 'churn_probability')).toMatchObject({ psi: null, mean_shift: null, reference: null });

  // No rows removes a run's profile (a run whose commit failed after its profile was stored), twice too.
  await store.recordProfile(newer.runId, []);
  await store.recordProfile(newer.runId, []);
  expect(await store.readProfile(newer.runId)).toEqual([]);
  expect((await store.profiledRuns({ pipeline, limit: 5 })).map((r) => r.run_id)).toEqual([older.runId]);
}
