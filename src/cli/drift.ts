/**
 * `scoreline drift PIPELINE [--last N]` and `scoreline drift baseline PIPELINE --run RUN_ID`: the
 * profiles in `scoreline_run_profiles`, read where the pipeline's audit rows live (docs/drift.md); and
 * `scoreline models compare PIPELINE --date D`: the shadow model's agreement from the audit row.
 */
import { existsSync, promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import type { PipelineConfig } from '../config/pipeline';
import { ConfigError } from '../errors';
import { profileKey } from '../profile/sketch';
import { baselinePath, breachedColumns, profileFromRows, type BaselineFile } from '../run/profile';
import { withRunContext, type RunContext } from '../run/context';
import type { AgreementSummary } from '../profile/agreement';
import type { ProfileAudit } from '../types';
import { formatTable } from './table';
import { wholeNumber } from './options';

const SPARKS = '▁▂▃▄▅▆▇█';

/** One character per value, scaled between lo and hi (a flat series draws as its lowest bar). */
export function sparkline(values: (number | null)[], lo?: number, hi?: number): string {
  const nums = values.filter((v): v is number => v !== null && Number.isFinite(v));
  const min = lo ?? Math.min(...nums);
  const max = hi ?? Math.max(...nums);
  return values
    .map((v) => {
      if (v === null || !Number.isFinite(v)) return ' ';
      if (!(max > min)) return SPARKS[0];
      const i = Math.round(((Math.min(max, Math.max(min, v)) - min) / (max - min)) * (SPARKS.length - 1));
      return SPARKS[i];
    })
    .join('');
}

export interface DriftRow {
  column: string;
  role: string;
  /** Oldest first, one per run. */
  dates: string[];
  psi: (number | null)[];
  mean_shift: (number | null)[];
  mean: (number | null)[];
  null_count: number[];
  value_count: number[];
  drifted: boolean;
}

/** Rows per run (oldest first) → one row per column with its series. */
export function driftRows(runs: { logical_date: string; rows: ProfileAudit[] }[], config: PipelineConfig): DriftRow[] {
  const byColumn = new Map<string, DriftRow>();
  runs.forEach((run, i) => {
    for (const r of run.rows) {
      const key = profileKey({ role: r.role, column: r.column_name });
      let row = byColumn.get(key);
      if (!row) {
        const empty = () => new Array(runs.length).fill(null);
        row = { column: r.column_name, role: r.role, dates: runs.map((x) => x.logical_date), psi: empty(), mean_shift: empty(), mean: empty(), null_count: new Array(runs.length).fill(0), value_count: new Array(runs.length).fill(0), drifted: false };
        byColumn.set(key, row);
      }
      row.psi[i] = r.psi;
      row.mean_shift[i] = r.mean_shift;
      row.mean[i] = r.mean;
      row.null_count[i] = r.null_count;
      row.value_count[i] = r.value_count;
    }
  });
  const latest = runs[runs.length - 1]?.rows ?? [];
  const breached = new Set(
    breachedColumns(
      config.drift,
      latest.map((r) => ({ column: r.column_name, role: r.role, psi: r.psi, meanShift: r.mean_shift })),
    ).map(profileKey),
  );
  for (const [key, row] of byColumn) row.drifted = breached.has(key);
  return [...byColumn.values()];
}


const fmt = (v: number | null | undefined, digits = 3) => (v === null || v === undefined ? '-' : Number(v.toPrecision(digits)).toString());

interface CliDeps {
  loadPipelineArg: (arg: string, overrides: Record<string, string>) => { config: PipelineConfig };
  localContext: () => Promise<RunContext>;
}

/** Runs `fn` with a worker-like context in this process (credentials from this shell's env), then closes it. */
function withContext<T>(deps: CliDeps, fn: (ctx: RunContext) => Promise<T>): Promise<T> {
  return withRunContext(deps.localContext, fn);
}

/** `models compare` under the `models` command (registered by src/cli/models.ts). */
export function registerCompareCommand(models: Command, deps: CliDeps): void {
  models
    .command('compare')
    .description("Champion/challenger agreement of a pipeline's shadow scoring for one logical date (from the audit row of its latest succeeded run).")
    .argument('<pipeline>', 'pipeline YAML file or name (with shadow: set)')
    .requiredOption('--date <YYYY-MM-DD>', 'logical date')
    .option('--json', 'the audit fields as JSON')
    .action(async (pipeline: string, opts: { date: string; json?: boolean }) => {
      const { config } = deps.loadPipelineArg(pipeline, {});
      await withContext(deps, async (ctx) => {
        const audit = ctx.connectors.audit(config);
        const run = await audit.lastSucceededRun(config.name, opts.date);
        if (!run) throw new ConfigError(`no succeeded run of ${config.name} on ${opts.date} in ${audit.location()}`);
        if (!run.shadow_agreement) throw new ConfigError(`run ${run.run_id} of ${config.name} on ${opts.date} had no shadow model (set shadow: in the pipeline, e.g. shadow: ${config.model.split(/[@:]/)[0]}@challenger)`);
        const agreement = JSON.parse(run.shadow_agreement) as AgreementSummary;
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ run_id: run.run_id, model: `${run.model_name}:${run.model_version}`, shadow_model: run.shadow_model, shadow_output: run.shadow_output, ...agreement })}\n`);
          return;
        }
        process.stdout.write(
          `${config.name} ${opts.date}: run ${run.run_id}, ${run.model_name}:${run.model_version} vs shadow ${run.shadow_model}, ${agreement.rows_compared.toLocaleString('en-US')} rows compared\n` +
            `shadow output: ${run.shadow_output ?? '-'}\n\n`,
        );
        const rows = Object.entries(agreement.columns).map(([column, c]) => ({
          column,
          mean_abs_diff: fmt(c.mean_abs_diff, 4),
          max_abs_diff: fmt(c.max_abs_diff, 4),
          agreement_rate: fmt(c.agreement_rate, 4),
          correlation: fmt(c.correlation, 4),
        }));
        process.stdout.write(`${formatTable(rows)}\n\nagreement_rate: share of rows with exactly the same value (label agreement for label columns).\n`);
      });
    });
}

export function registerDriftCommands(program: Command, deps: CliDeps): void {
  const drift = program
    .command('drift')
    .description("Feature and prediction drift of a pipeline's runs: PSI and mean shift per column against each run's reference (docs/drift.md).")
    .argument('<pipeline>', 'pipeline YAML file or name')
    .option('--last <n>', 'the last N profiled runs (one per logical date, newest profile; 1 to 366)', wholeNumber('--last', 1, 366), 7)
    .option('--json', 'one JSON object per column, with its series oldest first')
    .addHelpText(
      'after',
      `
Columns: psi and shift are the latest run's (shift = |mean - reference mean| / reference std);
the trends draw the last N runs, oldest left: PSI on a 0..2x-threshold scale, the mean on its own range.
A ! marks a column past the pipeline's drift thresholds (drift.psi, drift.mean_shift).`,
    )
    .action(async (pipeline: string, opts: { last: number; json?: boolean }) => {
      const { config } = deps.loadPipelineArg(pipeline, {});
      await withContext(deps, async (ctx) => {
        const audit = ctx.connectors.audit(config);
        const found = await audit.profiledRuns({ pipeline: config.name, limit: opts.last * 4 });
        // One run per logical date (the newest profile of a rerun date), the last N dates.
        const perDate = new Map<string, (typeof found)[number]>();
        for (const r of found) if (!perDate.has(r.logical_date)) perDate.set(r.logical_date, r);
        const chosen = [...perDate.values()].slice(0, opts.last).reverse();
        const runs = await Promise.all(chosen.map(async (r) => ({ logical_date: r.logical_date, run_id: r.run_id, rows: await audit.readProfile(r.run_id) })));
        if (runs.length === 0) {
          process.stdout.write(`no profiled runs of ${config.name} in ${audit.location()} yet (profiles are written by runs that succeed with profile: true)\n`);
          return;
        }
        const rows = driftRows(runs, config);
        if (opts.json) {
          for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
          return;
        }
        const latest = runs[runs.length - 1];
        const reference = latest.rows.find((r) => r.reference)?.reference ?? 'none (first profiled run)';
        const psiMax = config.drift.psi * 2;
        process.stdout.write(
          `${config.name}: ${runs.length} run${runs.length === 1 ? '' : 's'}, ${runs[0].logical_date} … ${latest.logical_date}; ` +
            `latest ${latest.run_id} vs ${reference}; thresholds PSI ${config.drift.psi}${config.drift.mean_shift ? `, shift ${config.drift.mean_shift} std` : ''}\n\n`,
        );
        const table = rows.map((r) => {
          const last = r.psi.length - 1;
          return {
            '': r.drifted ? '!' : '',
            column: r.column,
            role: r.role,
            psi: fmt(r.psi[last]),
            shift: fmt(r.mean_shift[last]),
            mean: fmt(r.mean[last], 4),
            nulls: r.null_count[last],
            'psi trend': sparkline(r.psi, 0, psiMax),
            'mean trend': sparkline(r.mean),
          };
        });
        process.stdout.write(`${formatTable(table)}\n`);
        const drifted = rows.filter((r) => r.drifted).length;
        process.stdout.write(drifted ? `\n${drifted} column${drifted === 1 ? '' : 's'} drifted in the latest run.\n` : '\nno column past the thresholds in the latest run.\n');
      });
    });

  drift
    .command('baseline')
    .description(
      "Register a run's profile as the baseline of the model version it scored with (e.g. a run over the training data); " +
        'pipelines with drift.reference: baseline then compare every run with it.',
    )
    .argument('<pipeline>', 'pipeline YAML file or name (says where the audit rows and the model store are)')
    .requiredOption('--run <run_id>', 'the run whose profile becomes the baseline')
    .option('--force', 'replace an existing baseline')
    .action(async (pipeline: string, opts: { run: string; force?: boolean }) => {
      const { config } = deps.loadPipelineArg(pipeline, {});
      await withContext(deps, async (ctx) => {
        const rows = await ctx.connectors.audit(config).readProfile(opts.run);
        if (rows.length === 0) throw new ConfigError(`run ${opts.run}: no profile in ${ctx.connectors.audit(config).location()} (did it succeed, with profile: true?)`);
        const model = { name: rows[0].model_name, version: rows[0].model_version };
        const path = baselinePath(ctx, config, model);
        if (!existsSync(dirname(path))) throw new ConfigError(`model ${model.name}:${model.version} (scored run ${opts.run}) is not in the model store ${dirname(dirname(dirname(path)))}`);
        if (existsSync(path) && !opts.force) throw new ConfigError(`${path} exists; pass --force to replace it`);
        const file: BaselineFile = {
          model: `${model.name}:${model.version}`,
          sha256: rows[0].model_sha256,
          source: `run ${opts.run} (${rows[0].logical_date})`,
          created_at: new Date().toISOString(),
          columns: profileFromRows(rows).columns,
        };
        const tmp = `${path}.tmp-${process.pid}`;
        await fs.writeFile(tmp, `${JSON.stringify(file, null, 1)}\n`);
        await fs.rename(tmp, path);
        process.stdout.write(`✔ baseline of ${file.model}: ${file.columns.length} columns from ${file.source} → ${path}\n`);
      });
    });
}
