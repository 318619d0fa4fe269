/**
 * Fingerprint-aware backfills: for each date of a range, tell whether a run now would score the same
 * input with the same model as the date's last succeeded run (then it is `unchanged` and skipped under
 * --skip-unchanged), or not (`changed`, with why; `new` when no run succeeded yet). Plans with the
 * source's own plan (buildPlan with `fingerprintOnly`: no scoring, no model session, no key check) and
 * resolves the model alias to its sha256 exactly as a run would. docs/schedules.md, "Backfills that skip
 * what is already right".
 */
import type { ScorelineClient } from '../client';
import type { PipelineConfig } from '../config/pipeline';
import { ConfigError, errorMessage } from '../errors';
import { backfillSchedule, scheduledRunInput, type BackfillResult } from '../schedules';
import type { BackfillOverlap } from '../schedules/config';
import { addDays } from '../schedules/logical-date';
import type { RunInput, RunRef } from '../types';
import { buildPlan } from './batch';
import { resolvePipeline, withRunContext, type RunContext } from './context';

export type DateState = 'changed' | 'unchanged' | 'new';

export interface DatePlan {
  logical_date: string;
  state: DateState;
  /** Why: `input fingerprint differs`, `model sha256 differs (…)`, `no succeeded run yet`, `same input and model as run …`. */
  reason: string;
  /** Whether this date is scored: every changed or new date, and every date under --force. */
  run: boolean;
  /** What a run now would read and score with. */
  fingerprint: string | null;
  model_sha256: string | null;
  /** The last succeeded run the date was compared with. */
  previous_run_id: string | null;
}

export interface BackfillPlan {
  pipeline: string;
  skip_unchanged: boolean;
  dates: DatePlan[];
  /** Dates that will be scored (all of them without --skip-unchanged). */
  to_run: string[];
}

/** Every date from `from` to `to`, inclusive. */
export function datesBetween(from: string, to: string): string[] {
  const dates: string[] = [];
  for (let d = from; d <= to; d = addDays(d, 1)) dates.push(d);
  return dates;
}

/** `2026-11-01..2026-11-07` (or a single date) → its dates. */
export function parseDateRange(text: string): { from: string; to: string } {
  const m = /^(\d{4}-\d{2}-\d{2})(?:\.\.(\d{4}-\d{2}-\d{2}))?$/.exec(text.trim());
  if (!m) throw new ConfigError(`--dates ${text}: expected YYYY-MM-DD..YYYY-MM-DD (or one date)`);
  return { from: m[1], to: m[2] ?? m[1] };
}

const short = (sha: string | null | undefined) => (sha ? sha.slice(0, 12) : 'none');

/**
 * Compare what a run of each date would use now with the date's last succeeded run. `force` scores every
 * date anyway (states and reasons are still reported); `skipUnchanged: false` likewise.
 */
export async function planBackfill(
  ctx: RunContext,
  opts: { config: PipelineConfig; raw: unknown; dates: string[]; overrides?: Record<string, string>; skipUnchanged?: boolean; force?: boolean },
): Promise<BackfillPlan> {
  const { config } = opts;
  const skip = (opts.skipUnchanged ?? true) && !opts.force;
  const audit = ctx.connectors.audit(config);
  const source = ctx.connectors.source(config);
  const dates: DatePlan[] = [];
  for (const date of opts.dates) {
    const run: RunRef = { runId: `backfill-plan-${date}-${Date.now()}`, workflowId: 'backfill-plan', pipeline: config.name, logicalDate: date, trigger: 'cli' };
    let fingerprint: string | null = null;
    let sha: string | null = null;
    let planError: string | undefined;
    try {
      const plan = await buildPlan(ctx, { input: { pipeline: config.name, config: opts.raw ?? config, date, overrides: opts.overrides }, run, fingerprintOnly: true });
      fingerprint = plan.fingerprint ?? null;
      sha = plan.model.sha256;
    } catch (err) {
      planError = errorMessage(err);
    } finally {
      // A warehouse source snapshots its input while planning: drop it again.
      await source.cleanup?.(config, run).catch(() => undefined);
    }
    const last = await audit.lastSucceededRun(config.name, date);
    const previous = last?.run_id ?? null;
    let state: DateState;
    let reason: string;
    if (planError !== undefined) [state, reason] = ['changed', `cannot plan it (${planError}); a run would tell`];
    else if (!last) [state, reason] = ['new', 'no succeeded run yet'];
    else if (last.model_sha256 !== sha) [state, reason] = ['changed', `model sha256 differs (${short(last.model_sha256)} → ${short(sha)})`];
    else if (!fingerprint) [state, reason] = ['changed', 'the source gives no input fingerprint'];
    else if (!last.input_fingerprint) [state, reason] = ['changed', `run ${previous} recorded no input fingerprint`];
    else if (last.input_fingerprint !== fingerprint) [state, reason] = ['changed', 'input fingerprint differs'];
    else [state, reason] = ['unchanged', `same input and model as run ${previous}`];
    dates.push({ logical_date: date, state, reason, run: !skip || state !== 'unchanged', fingerprint, model_sha256: sha, previous_run_id: previous });
  }
  return { pipeline: config.name, skip_unchanged: skip, dates, to_run: dates.filter((d) => d.run).map((d) => d.logical_date) };
}

export interface ScheduleBackfill {
  /** The fingerprint plan (absent under --no-skip-unchanged without --dry-run or --force: nothing to compare). */
  plan?: BackfillPlan;
  /** The runs started, or under a dry run (or when every date is unchanged) the runs it would start. */
  backfill: BackfillResult;
  started: boolean;
}

/**
 * `schedule backfill` as the CLI and the API both do it: which dates have a scheduled time, then the
 * fingerprint plan of those dates with the pipeline the schedule embeds (planned with `context()`, on
 * this machine), then the schedule's backfill of the dates to score. Unchanged dates are skipped
 * unless `force` or `skipUnchanged: false`; `dryRun` starts nothing.
 */
export async function planAndBackfillSchedule(
  sc: ScorelineClient,
  name: string,
  range: { from: string; to: string },
  opts: { overlap?: BackfillOverlap; skipUnchanged?: boolean; force?: boolean; dryRun?: boolean },
  context: () => Promise<RunContext>,
): Promise<ScheduleBackfill> {
  const skip = (opts.skipUnchanged ?? true) && !opts.force;
  const all = await backfillSchedule(sc, name, range.from, range.to, { overlap: opts.overlap, dryRun: true });
  let plan: BackfillPlan | undefined;
  if (skip || opts.dryRun || opts.force) {
    const input = await scheduledRunInput(sc, name);
    plan = await withRunContext(context, (ctx) => {
      const config = resolvePipeline(ctx, input.pipeline, input.config, input.overrides ?? {});
      return planBackfill(ctx, { config, raw: input.config, dates: all.runs.map((x) => x.logical_date), overrides: input.overrides, skipUnchanged: skip, force: opts.force });
    });
  }
  const only = plan?.to_run;
  if (opts.dryRun || (only && only.length === 0)) return { plan, backfill: { ...all, runs: all.runs.filter((x) => !only || only.includes(x.logical_date)) }, started: false };
  return { plan, backfill: await backfillSchedule(sc, name, range.from, range.to, { overlap: opts.overlap, only }), started: true };
}

/** The plan as a person reads it, one line per date, then what will happen. */
export function backfillPlanLines(plan: BackfillPlan, opts: { dryRun?: boolean; force?: boolean } = {}): string[] {
  const width = Math.max(9, ...plan.dates.map((d) => d.state.length));
  const lines = [`plan for ${plan.pipeline} (${opts.force ? '--force: every date is rescored' : plan.skip_unchanged ? 'skipping unchanged dates' : 'rescoring every date'}):`];
  for (const d of plan.dates) lines.push(`  ${d.logical_date}  ${d.state.padEnd(width)}  ${d.run ? 'score' : 'skip '}  ${d.reason}`);
  const skipped = plan.dates.length - plan.to_run.length;
  if (plan.dates.length === 0) lines.push('no dates to plan');
  else if (plan.to_run.length === 0) lines.push(`nothing to score: all ${plan.dates.length} date${plan.dates.length === 1 ? ' is' : 's are'} unchanged (use --force to rescore anyway)`);
  else lines.push(`${opts.dryRun ? 'would score' : 'scoring'} ${plan.to_run.length} date${plan.to_run.length === 1 ? '' : 's'}${skipped ? `, skipping ${skipped} unchanged` : ''}`);
  if (opts.dryRun) lines.push('dry run: nothing was started');
  return lines;
}

export interface ChangedDatesArgs {
  /** The scheduled run's input (pipeline as applied, overrides). */
  input: RunInput;
  dates: string[];
}

/** What the `rescore_window` re-check needs of the plan: each date's state and whether to rescore it. */
export type ChangedDate = Pick<DatePlan, 'logical_date' | 'state' | 'reason' | 'run'>;

/** The activity behind `rescore_window`: plan the dates with --skip-unchanged semantics. */
export async function changedDates(ctx: RunContext, args: ChangedDatesArgs): Promise<ChangedDate[]> {
  const { input } = args;
  const config = resolvePipeline(ctx, input.pipeline, input.config, input.overrides ?? {});
  const plan = await planBackfill(ctx, { config, raw: input.config ?? config, dates: args.dates, overrides: input.overrides, skipUnchanged: true });
  return plan.dates.map(({ logical_date, state, reason, run }) => ({ logical_date, state, reason, run }));
}
