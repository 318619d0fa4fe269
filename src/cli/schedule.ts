/**
 * `scoreline schedule …`: a thin layer over src/schedules (which the HTTP API calls too) that prints
 * for humans, or one JSON object per line with --json.
 */
import { Command, Option } from 'commander';
import { ScorelineClient, clientConfigFromEnv } from '../client';
import type { PipelineConfig } from '../config/pipeline';
import {
  applySchedule,
  deleteSchedule,
  describeSchedule,
  listSchedules,
  pauseSchedule,
  triggerSchedule,
  unpauseSchedule,
  type ApplyResult,
  type BackfillResult,
  type ScheduleInfo,
} from '../schedules';
import { BACKFILL_OVERLAP_POLICIES, OVERLAP_POLICIES, type BackfillOverlap, type OverlapPolicy } from '../schedules/config';
import { ConfigError } from '../errors';
import type { RunContext } from '../run/context';
import { printJson } from './run-output';
import { formatTable } from './table';

type LoadPipeline = (arg: string, overrides: Record<string, string>) => { config: PipelineConfig; origin: string };

async function withClient<T>(fn: (sc: ScorelineClient) => Promise<T>): Promise<T> {
  const sc = await ScorelineClient.connect(clientConfigFromEnv());
  try {
    return await fn(sc);
  } finally {
    await sc.close();
  }
}

const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

export function applyLines(r: ApplyResult): string[] {
  const verb = r.dry_run ? { created: 'would create', updated: 'would update', unchanged: 'unchanged:' }[r.result] : r.result;
  if (r.result === 'unchanged') return [`✔ ${r.schedule_id} already matches the pipeline file; nothing changed`];
  const width = Math.max(...r.changes.map((c) => c.field.length));
  return [
    `✔ ${verb} ${r.schedule_id} (${r.changes.length} field${r.changes.length === 1 ? '' : 's'})`,
    ...r.changes.map((c) =>
      c.before === undefined
        ? `  + ${c.field.padEnd(width)}  ${show(c.after)}`
        : c.after === undefined
          ? `  - ${c.field.padEnd(width)}  ${show(c.before)}`
          : `  ~ ${c.field.padEnd(width)}  ${show(c.before)} → ${show(c.after)}`,
    ),
  ];
}

/** The dates of a backfill the schedule has no time on; those where the clocks change get their own way out. */
function withoutRunsLines(r: BackfillResult, name: string): string[] {
  if (!r.dates_without_runs.length) return [];
  const lines = [`no scheduled time on: ${r.dates_without_runs.join(', ')}`];
  if (r.clock_change_dates.length) {
    const pipeline = r.schedule_id.slice('scoreline/'.length) || name;
    lines.push(
      `  the clocks change in ${r.timezone} on ${r.clock_change_dates.join(', ')}: a cron time in the hour they skip does not exist that day; ` +
        `to score such a date anyway: scoreline run ${pipeline} --date ${r.clock_change_dates[0]}`,
    );
  }
  return lines;
}

export function describeLines(s: ScheduleInfo): string[] {
  const kv = (k: string, v: unknown) => `${k.padEnd(17)} ${v === null || v === undefined || v === '' ? '-' : show(v)}`;
  const lines = [
    kv('schedule', s.schedule_id),
    kv('cron', s.cron.join('  |  ')),
    kv('timezone', s.timezone),
    kv('state', s.paused ? `PAUSED${s.note ? ` (${s.note})` : ''}` : 'active'),
    kv('overlap', s.overlap),
    kv('catchup window', s.catchup_window),
    kv('pause on failure', s.pause_on_failure),
    kv('jitter', s.jitter),
    kv('actions taken', `${s.actions_taken} (skipped for overlap ${s.skipped_overlap}, missed catch-up ${s.missed_catchup_window})`),
    '',
    s.paused ? 'next runs (none starts while paused; these once unpaused):' : 'next runs:',
    s.next_runs.length ? formatTable(s.next_runs.slice(0, 5).map((n) => ({ at: n.at, logical_date: n.logical_date }))) : '(none: the cron has no future times)',
    '',
    'recent runs (newest first):',
    s.recent_runs.length
      ? formatTable(s.recent_runs.map((r) => ({ logical_date: r.logical_date, status: r.status, scheduled_at: r.scheduled_at, run: r.run_workflow_id, reason: r.reason })))
      : '(none yet)',
  ];
  return lines;
}

export function registerScheduleCommands(program: Command, loadPipeline: LoadPipeline, localContext?: () => Promise<RunContext>): void {
  const schedule = program
    .command('schedule')
    .description("Temporal Schedules that run a pipeline on its file's schedule: section (cron, timezone, overlap, catch-up).")
    .addHelpText(
      'after',
      `
A pipeline's schedule has the id scoreline/<pipeline>. Each scheduled run scores the calendar date of
its scheduled (nominal) time in the schedule's timezone, as workflow scoreline/<pipeline>/<date>.
See docs/schedules.md.

Examples:
  scoreline schedule apply pipelines/churn.yaml
  scoreline schedule describe churn
  scoreline schedule backfill churn --from 2026-11-01 --to 2026-11-07`,
    );

  schedule
    .command('apply')
    .description('Create or update the pipeline\'s schedule from its file. Idempotent: prints each field it changed, or that nothing changed.')
    .argument('<pipeline>', 'pipeline YAML file, or a pipeline name in the pipelines directory')
    .option('--dry-run', 'show what would change without changing it')
    .option('--json', 'print the result as one JSON object')
    .addHelpText(
      'after',
      `
The scheduled action embeds the pipeline as applied: edit the file, then apply again to change what
scheduled runs do. "paused" is only changed when the file sets schedule.paused.

Example output:
  ✔ updated scoreline/churn (2 fields)
    ~ schedule.cron         ["0 2 * * *"] → ["30 0 * * *"]
    ~ pipeline.chunk_rows   65536 → 100000`,
    )
    .action(async (pipeline: string, opts) => {
      const { config, origin } = loadPipeline(pipeline, {});
      const result = await withClient((sc) => applySchedule(sc, { config, origin }, { dryRun: opts.dryRun }));
      if (opts.json) printJson(result);
      else process.stdout.write(`${applyLines(result).join('\n')}\n`);
    });

  schedule
    .command('list')
    .description('Every Scoreline schedule in the namespace: cron, timezone, state, next and last run.')
    .option('--json', 'one JSON object per line')
    .action(async (opts) => {
      const items = await withClient((sc) => listSchedules(sc));
      if (opts.json) items.forEach((i) => printJson(i));
      else
        process.stdout.write(
          `${formatTable(items.map((i) => ({ pipeline: i.pipeline, cron: i.cron.join(' | '), timezone: i.timezone, state: i.paused ? 'paused' : 'active', next_run: i.paused ? '- (paused)' : i.next_run, last_run: i.last_run })))}\n`,
        );
    });

  schedule
    .command('describe')
    .description('A schedule: spec, state, next run times (with their logical dates) and recent runs with their outcome.')
    .argument('<name>', 'pipeline name (or schedule id scoreline/<pipeline>)')
    .option('--json', 'print one JSON object')
    .action(async (name: string, opts) => {
      const info = await withClient((sc) => describeSchedule(sc, name));
      if (opts.json) printJson(info);
      else process.stdout.write(`${describeLines(info).join('\n')}\n`);
    });

  schedule
    .command('pause')
    .description('Stop taking scheduled runs until unpaused (runs in progress go on). A later apply keeps the pause unless the file sets schedule.paused.')
    .argument('<name>', 'pipeline name (or schedule id)')
    .option('--note <text>', 'why, shown by describe and in the Web UI')
    .option('--json', 'print one JSON object')
    .action(async (name: string, opts) => {
      const r = await withClient((sc) => pauseSchedule(sc, name, opts.note));
      if (opts.json) printJson(r);
      else process.stdout.write(`paused ${r.schedule_id}: ${r.note}\n`);
    });

  schedule
    .command('unpause')
    .description('Resume taking scheduled runs. Runs missed while paused are not taken; use backfill for those.')
    .argument('<name>', 'pipeline name (or schedule id)')
    .option('--note <text>', 'note shown by describe and in the Web UI')
    .option('--json', 'print one JSON object')
    .action(async (name: string, opts) => {
      const r = await withClient((sc) => unpauseSchedule(sc, name, opts.note));
      if (opts.json) printJson(r);
      else process.stdout.write(`unpaused ${r.schedule_id}: ${r.note}\n`);
    });

  schedule
    .command('trigger')
    .description("Run now, as the schedule would: the run scores today's date in the schedule's timezone (works while paused).")
    .argument('<name>', 'pipeline name (or schedule id)')
    .addOption(new Option('--overlap <policy>', "overlap policy for this run (default: the schedule's own; allow_all forces a run)").choices([...OVERLAP_POLICIES]))
    .option('--json', 'print one JSON object')
    .addHelpText(
      'after',
      `
Under the schedule's overlap policy, like a scheduled run: with "skip", a trigger while a run of this
schedule is in progress is dropped (use --overlap allow_all to force it), and pause_on_failure applies.
A date that is already running is never started twice: the action then ends as "skipped".`,
    )
    .action(async (name: string, opts) => {
      const r = await withClient((sc) => triggerSchedule(sc, name, { overlap: opts.overlap as OverlapPolicy | undefined }));
      if (r.skipped_overlap || r.skipped) process.exitCode = 1; // asked for a run, none was started
      if (opts.json) printJson(r);
      else if (r.skipped_overlap) {
        process.stdout.write(`not started: a run of ${r.schedule_id} is in progress and its overlap policy is ${r.overlap} (use --overlap allow_all to force one)\n`);
      } else if (r.skipped) {
        process.stdout.write(`not scored: the trigger's run of ${r.logical_date} was skipped (${r.skipped}); wait for that run, or cancel it first (scoreline cancel ${r.run_workflow_id})\n`);
      } else if (!r.workflow_id) process.stdout.write(`triggered ${r.schedule_id}; the server has not started it yet (see: scoreline schedule describe ${name})\n`);
      else process.stdout.write(`triggered ${r.schedule_id}: scoring ${r.logical_date} as ${r.run_workflow_id} (scheduled for ${r.scheduled_at})\n`);
    });

  schedule
    .command('backfill')
    .description('Run the schedule over past dates: one run per date from --from to --to (inclusive, in the schedule\'s timezone), each scoring its own date.')
    .argument('<name>', 'pipeline name (or schedule id)')
    .requiredOption('--from <YYYY-MM-DD>', 'first date')
    .requiredOption('--to <YYYY-MM-DD>', 'last date (inclusive)')
    .addOption(new Option('--overlap <policy>', 'buffer_all: one date after another; allow_all: all at once').choices([...BACKFILL_OVERLAP_POLICIES]).default('buffer_all'))
    .option('--skip-unchanged', 'run only dates whose input fingerprint or model sha256 changed since their last succeeded run (the default)')
    .option('--no-skip-unchanged', 'run every date of the range')
    .option('--force', 'run every date even when unchanged (the plan still says which are)')
    .option('--dry-run', 'print the plan (changed / unchanged / new per date, and why) and start nothing')
    .option('--json', 'print one JSON object')
    .addHelpText(
      'after',
      `
Each date runs once, at the first time the cron has on that date; dates the cron never hits (e.g. the
weekend of a weekday cron) are listed and skipped. A date already running is not started twice.

The plan is printed first. A date is "unchanged" when its last succeeded run read the same input (input
fingerprint) with the same model (sha256) as a run now would: it is skipped unless --force (or
--no-skip-unchanged). A changed or new date is run again and its partition replaced (sink mode
replace-partition). Planning uses the pipeline the schedule embeds, and reads the source's metadata and
the audit table from this machine, like validate.

  $ scoreline schedule backfill churn --from 2026-11-01 --to 2026-11-03
  plan for churn (skipping unchanged dates):
    2026-11-01  unchanged  skip   same input and model as run 0193…
    2026-11-02  changed    score  input fingerprint differs
    2026-11-03  unchanged  skip   same input and model as run 0193…
  scoring 1 date, skipping 2 unchanged`,
    )
    .action(async (name: string, opts) => {
      if (!localContext) throw new ConfigError('internal: schedule backfill cannot plan without a local context');
      // Loaded here: planning pulls in the run's planner, which the other commands need not load.
      const { planAndBackfillSchedule } = await import('../run/backfill.js');
      const flags = { overlap: opts.overlap as BackfillOverlap, skipUnchanged: opts.skipUnchanged, force: opts.force, dryRun: opts.dryRun };
      const out = await withClient((sc) => planAndBackfillSchedule(sc, name, { from: opts.from, to: opts.to }, flags, localContext));
      const r = out.backfill;
      if (opts.json) printJson({ ...r, ...(out.plan && { plan: out.plan }), dry_run: Boolean(opts.dryRun) });
      else {
        const { backfillPlanLines } = await import('../run/backfill.js');
        const lines = out.plan ? backfillPlanLines(out.plan, { dryRun: opts.dryRun, force: opts.force }) : [];
        if (!out.started) {
          lines.push(...withoutRunsLines(r, name));
          process.stdout.write(`${lines.join('\n')}\n`);
          return;
        }
        lines.push(`backfill ${r.schedule_id} ${r.from} … ${r.to} (${r.overlap}): ${r.runs.length} run${r.runs.length === 1 ? '' : 's'}`);
        if (r.runs.length) lines.push(formatTable(r.runs.map((x) => ({ logical_date: x.logical_date, scheduled_at: x.scheduled_at, run: x.run_workflow_id }))));
        lines.push(...withoutRunsLines(r, name));
        lines.push(`follow with: scoreline schedule describe ${name}   or   scoreline runs list --pipeline ${r.schedule_id.slice('scoreline/'.length)}`);
        process.stdout.write(`${lines.join('\n')}\n`);
      }
    });

  schedule
    .command('delete')
    .description('Delete the schedule. Runs already started go on; outputs and audit rows stay.')
    .argument('<name>', 'pipeline name (or schedule id)')
    .option('--json', 'print one JSON object')
    .action(async (name: string, opts) => {
      const r = await withClient((sc) => deleteSchedule(sc, name));
      if (opts.json) printJson(r);
      else process.stdout.write(`deleted ${r.schedule_id}\n`);
    });
}
