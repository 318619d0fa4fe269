/**
 * Profile audit rows as a backend returns them → ProfileAudit with numbers as numbers (drivers return
 * FLOAT/NUMBER columns as strings, INT64 as numbers or BigInt, timestamps as objects).
 */
import type { ProfileAudit } from '../types';

const NUMERIC: (keyof ProfileAudit)[] = ['value_count', 'null_count', 'min_value', 'max_value', 'mean', 'std', 'psi', 'mean_shift'];

export function profileAuditRow(raw: Record<string, unknown>, profiledAt: string | null): ProfileAudit {
  const row = { ...raw, profiled_at: profiledAt } as Record<string, unknown>;
  for (const c of NUMERIC) row[c] = raw[c] === null || raw[c] === undefined ? null : Number(raw[c]);
  return row as unknown as ProfileAudit;
}
