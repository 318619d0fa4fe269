/**
 * The profile step of a committed run: compare the run's profile (merged from its chunks by the
 * workflow) with a reference, and store it with the drift scores in `scoreline_run_profiles`.
 *
 * Reference `previous`: the latest profiled run of the pipeline with an earlier logical date (a rerun of
 * a date compares with the day before, not with itself). Reference `baseline`: the profile registered
 * with the pinned model version (`scoreline drift baseline`), e.g. of the training data scored once.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { DriftConfig, PipelineConfig } from '../config/pipeline';
import { ConfigError } from '../errors';
import { compareProfiles, profileKey, stdOf, type ColumnDrift, type ColumnProfile, type Profile } from '../profile/sketch';
import type { AuditStore } from '../../connectors/types';
import type { DriftSummary, PinnedModel, ProfileAudit, RunRef } from '../types';
import { modelStoreFor, type RunContext } from './context';

export const BASELINE_FILE = 'baseline-profile.json';

export interface ProfileArgs {
  run: RunRef;
  config: PipelineConfig;
  model: PinnedModel;
  profile: Profile;
}

/** A baseline profile file: the profile plus where it came from. */
export interface BaselineFile {
  model: string;
  sha256: string;
  /** `run <id> (<date>)` the profile was taken from. */
  source: string;
  created_at: string;
  columns: ColumnProfile[];
}

export async function profileRun(ctx: RunContext, args: ProfileArgs): Promise<DriftSummary> {
  const { run, config, model, profile } = args;
  const audit = ctx.connectors.audit(config);
  // A missing baseline leaves this run without drift scores, but its profile is still stored: it may be
  // the very run the baseline is to be made from.
  let reference: Awaited<ReturnType<typeof referenceFor>>;
  let error: string | undefined;
  try {
    reference = await referenceFor(ctx, audit, args);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    error = err.message;
  }
  const columns = reference ? compareProfiles(reference.profile, profile) : [];
  const rows = profileRows(run, model, profile, columns, reference?.label ?? null, new Date().toISOString());
  await audit.recordProfile(run.runId, rows);
  return { reference: reference?.label ?? null, columns, breached: breachedColumns(config.drift, columns), ...(error && { error }) };
}

export function breachedColumns(drift: DriftConfig, columns: ColumnDrift[]): ColumnDrift[] {
  return columns.filter(
    (c) => (!drift.columns || drift.columns.includes(c.column)) && ((c.psi ?? 0) >= drift.psi || (drift.mean_shift !== undefined && (c.meanShift ?? 0) >= drift.mean_shift)),
  );
}

async function referenceFor(ctx: RunContext, audit: AuditStore, args: ProfileArgs): Promise<{ label: string; profile: Profile } | undefined> {
  const { run, config, model } = args;
  if (config.drift.reference === 'baseline') {
    const path = baselinePath(ctx, config, model);
    if (!existsSync(path)) {
      throw new ConfigError(
        `pipeline ${config.name}: drift.reference is baseline but model ${model.name}:${model.version} has no ${BASELINE_FILE}; ` +
          `register one with: scoreline drift baseline ${config.name} --run RUN_ID (a run that scored the reference data)`,
      );
    }
    const file = JSON.parse(await fs.readFile(path, 'utf8')) as BaselineFile;
    return { label: `baseline ${file.model} from ${file.source}`, profile: { columns: file.columns } };
  }
  const [previous] = await audit.profiledRuns({ pipeline: run.pipeline, beforeDate: run.logicalDate, limit: 1 });
  if (!previous) return undefined;
  return { label: `run ${previous.run_id} (${previous.logical_date})`, profile: profileFromRows(await audit.readProfile(previous.run_id)) };
}

export function baselinePath(ctx: RunContext, config: PipelineConfig, model: Pick<PinnedModel, 'name' | 'version'>): string {
  return join(modelStoreFor(ctx, config).versionDir(model.name, model.version), BASELINE_FILE);
}

export function profileRows(run: RunRef, model: PinnedModel, profile: Profile, drift: ColumnDrift[], reference: string | null, at: string): ProfileAudit[] {
  const byKey = new Map(drift.map((d) => [profileKey(d), d]));
  return profile.columns.map((c) => {
    const d = byKey.get(profileKey(c));
    return {
      run_id: run.runId,
      pipeline: run.pipeline,
      logical_date: run.logicalDate,
      model_name: model.name,
      model_version: model.version,
      model_sha256: model.sha256,
      column_name: c.column,
      role: c.role,
      value_count: c.count,
      null_count: c.nulls,
      min_value: c.min,
      max_value: c.max,
      mean: c.mean,
      std: stdOf(c),
      quantiles: c.q.length ? JSON.stringify(c.q) : null,
      psi: finiteOrNull(d?.psi),
      mean_shift: finiteOrNull(d?.meanShift),
      reference: d ? reference : null,
      profiled_at: at,
    };
  });
}

/**
 * Stored rows (numbers already numbers: every store reads them through profileAuditRow) → a profile to
 * compare against (m2 from std and count: exact to float precision).
 */
export function profileFromRows(rows: ProfileAudit[]): Profile {
  return {
    columns: rows.map((r) => ({
      column: r.column_name,
      role: r.role,
      count: r.value_count,
      nulls: r.null_count,
      min: r.min_value,
      max: r.max_value,
      mean: r.mean,
      m2: r.std === null || r.value_count < 2 ? 0 : r.std * r.std * (r.value_count - 1),
      q: r.quantiles ? (JSON.parse(r.quantiles) as number[]) : [],
    })),
  };
}

function finiteOrNull(v: number | null | undefined): number | null {
  return v === null || v === undefined || !Number.isFinite(v) ? null : Math.round(v * 1e6) / 1e6;
}
