/**
 * `scoreline models …`: register versions, inspect the store, promote / roll back aliases
 * (docs/models.md). Everything goes through the ModelStoreBackend interface; the CLI uses the local one.
 */
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { stringify } from 'yaml';
import { assertLogicalDate, parseOverrideFlags } from '../config/pipeline';
import { ConfigError, ModelError } from '../errors';
import type { ContractReport, SampleSource } from '../models/contract';
import { DEFAULT_SAMPLE_ROWS } from '../models/sample-rows';
import {
  DEFAULT_ALIAS,
  HISTORY_FILE,
  LocalModelStore,
  MANIFEST_FILE,
  readManifestDraft,
  type AliasChange,
  type AliasEvent,
  type ModelStoreBackend,
} from '../models/store';
import { contractReportText } from './contract-report';
import { printJson } from './run-output';
import { formatTable } from './table';
import { wholeNumber } from './options';

const storeOption = () => new Option('--models-dir <dir>', 'model store directory').env('SCORELINE_MODELS_DIR').default('models');
const openStore = (opts: { modelsDir: string }): ModelStoreBackend => new LocalModelStore(opts.modelsDir);

const columnsText = (columns: string[]) => (columns.length > 6 ? `${columns.slice(0, 3).join(', ')} … ${columns.at(-1)}` : columns.join(', '));
const eventText = (e: AliasEvent) => `${e.time}  @${e.alias}  ${e.from ?? '(unset)'} → ${e.to}  ${e.action} by ${e.by}`;

const collect = (value: string, previous: string[]) => [...previous, value];

/** `--sample-from`: a pipeline (name or YAML file; its source for `--date`), or a Parquet file, directory or glob. */
/** The contract check (Arrow, DuckDB, the warehouse SDKs): loaded by `--sample-from` only, not at every CLI start. */
const contractCheck = () => import('../models/contract.js');

async function sampleSourceFrom(opts: { sampleFrom: string; date?: string; set: string[] }): Promise<SampleSource> {
  const from: string = opts.sampleFrom;
  const date = opts.date === undefined ? undefined : assertLogicalDate(opts.date, '--date');
  const { sampleSourceKind } = await contractCheck();
  if (sampleSourceKind(from) === 'parquet') {
    if (opts.set.length) throw new ConfigError(`--set changes a pipeline, but --sample-from ${from} is a Parquet path`);
    if (from.includes('{{') && !date) throw new ConfigError(`--sample-from ${from} is templated: add --date YYYY-MM-DD for {{ ds }}`);
    return { kind: 'parquet', path: from, logicalDate: date ?? new Date().toISOString().slice(0, 10) };
  }
  if (!date) throw new ConfigError(`--sample-from ${from} is a pipeline: add --date YYYY-MM-DD, the logical date whose input to sample`);
  // main.ts imports this module; its pipeline lookup (file or name in the pipelines directory) is loaded when needed.
  const { loadPipelineArg } = await import('./main.js');
  const { config, origin } = loadPipelineArg(from, parseOverrideFlags(opts.set));
  return { kind: 'pipeline', config, origin, logicalDate: date, projectDir: resolve(process.env.SCORELINE_PROJECT_DIR ?? process.cwd()) };
}

const SAMPLE_ONLY_FLAGS: Array<[string, string]> = [['date', '--date'], ['sampleRows', '--sample-rows'], ['memoryTarget', '--memory-target'], ['concurrency', '--concurrency'], ['workerBase', '--worker-base']];

function changeText(c: AliasChange): string {
  if (!c.changed) return `${c.name}@${c.alias} already points at ${c.to}; nothing changed`;
  return `${c.name}@${c.alias}: ${c.from ?? '(unset)'} → ${c.to} (${c.event!.action} by ${c.event!.by} at ${c.event!.time}); runs started from now on use ${c.name}:${c.to}, runs already running keep their version`;
}

export function registerModelCommands(program: Command): Command {
  const models = program
    .command('models')
    .description('The model store: register versions, inspect them, promote and roll back aliases (docs/models.md).')
    .addHelpText(
      'after',
      `
Store layout (--models-dir, default SCORELINE_MODELS_DIR or ./models):
  <name>/<version>/model.onnx, <name>/<version>/${MANIFEST_FILE}, <name>/aliases.yaml, <name>/${HISTORY_FILE}
A run pins the exact version and sha256 when it starts, so a promotion changes only later runs;
near-real-time scoring picks up a promotion on its next request.
Who registered or promoted: SCORELINE_USER, else the OS user.
Workers keep SCORELINE_MODEL_CACHE ONNX sessions per process and per inference thread (LRU, default 8).`,
    );

  models
    .command('register')
    .alias('add')
    .description(
      'Copy an ONNX model into the store as a new, immutable version. It is opened with ONNX Runtime and checked against the manifest ' +
        '(input names, dtypes and feature counts, output names) before anything is written; without --manifest, the manifest is guessed ' +
        'from the model and the guesses are printed. "add" is the old name of this command.',
    )
    .argument('<model.onnx>', 'the ONNX file')
    .requiredOption('--name <name>', 'model name (lower-case letters, digits, - and _)')
    .option('--version <v>', 'version (default: the next integer after the highest one)')
    .option('--manifest <file>', 'scoreline.model.yaml mapping feature columns to inputs and outputs to columns (name, version, sha256 may be left out)')
    .option('--alias <alias>', 'also promote the new version to this alias (e.g. champion)')
    .option('--dry-run', 'check and print the manifest that would be stored (with the guesses as comments), write nothing; with --sample-from: run every check and print the report, write nothing')
    .option('--json', 'JSON output')
    .option('--sample-from <source>', 'also check the model against real rows: a pipeline (name or YAML file; its source, keys and features: policy, for --date) or a Parquet file, directory or glob')
    .option('--date <YYYY-MM-DD>', 'with --sample-from PIPELINE (required): the logical date whose input to sample; fills {{ ds }} in a Parquet path')
    .option('--set <key=value>', 'with --sample-from PIPELINE: override a pipeline field (repeatable)', collect, [])
    .option('--sample-rows <n>', `rows to read and score (default ${DEFAULT_SAMPLE_ROWS.toLocaleString('en-US')}: the first rows of the input, in plan order)`, wholeNumber('--sample-rows'))
    .option('--memory-target <size>', 'worker memory the suggested chunk_rows must stay under (default 1GiB; e.g. 768MiB, 2GiB)')
    .option('--concurrency <n>', 'chunk activities per worker for the suggestion (default SCORELINE_WORKER_CONCURRENCY, else 2 × cores, as `scoreline worker`)', wholeNumber('--concurrency'))
    .option('--worker-base <size>', "a worker's memory besides chunks and sessions (default 440MiB, measured with `scoreline worker` on Node 20)")
    .addOption(storeOption())
    .addHelpText(
      'after',
      `
Guessing (no --manifest): one [N, F] input → feature columns f0…f(F-1) (zero-padded: f00…f31 for 32);
[N, 1] inputs → a column named after each input; outputs [N] / [N, 1] → a column named after the output;
[N, 2] (a binary classifier's probabilities) → column <output>_1 = class 1; non-tensor outputs (ZipMap) are skipped.
To use other column names: --dry-run > m.yaml, edit m.yaml, register with --manifest m.yaml.

Contract check (--sample-from): reads up to --sample-rows rows through the connector a run uses, checks every
feature column is present and numeric and how it casts into its tensor under the cast policy (and the keys, for a
pipeline), builds the tensors and scores the sample with ONNX Runtime, lists non-tensor outputs (ZipMap) and what a
run does with them, measures time and memory per 1k rows, and suggests a chunk_rows that keeps a worker under
--memory-target. Any problem exits 2 and registers nothing. docs/models.md "Contract check" explains the estimate.
  scoreline models register churn.onnx --name churn --manifest m.yaml --sample-from churn-daily --date 2026-11-01
  scoreline models register churn.onnx --name churn --sample-from 'data/customers/ds=2026-11-01/*.parquet' --dry-run`,
    )
    .action(async (modelPath: string, opts) => {
      const store = openStore(opts);
      const manifest = opts.manifest ? readManifestDraft(opts.manifest) : undefined;
      const sampling = opts.sampleFrom !== undefined;
      if (!sampling) {
        for (const [key, flag] of SAMPLE_ONLY_FLAGS) if (opts[key] !== undefined) throw new ConfigError(`${flag} needs --sample-from`);
        if (opts.set.length) throw new ConfigError('--set needs --sample-from PIPELINE');
      }
      let report: ContractReport | undefined;
      if (sampling) {
        const { checkContract, defaultConcurrency, parseSize } = await contractCheck();
        const source = await sampleSourceFrom(opts);
        const memoryTarget = opts.memoryTarget === undefined ? undefined : parseSize(opts.memoryTarget, '--memory-target');
        const workerBase = opts.workerBase === undefined ? undefined : parseSize(opts.workerBase, '--worker-base');
        // The model and manifest first (as without --sample-from), then the data; nothing is written yet.
        const candidate = await store.register({ modelPath, name: opts.name, version: opts.version, manifest, dryRun: true });
        report = await checkContract({
          model: candidate.model,
          source,
          sampleRows: opts.sampleRows,
          memoryTarget,
          concurrency: opts.concurrency ?? defaultConcurrency(),
          workerBase,
        });
        if (!report.ok) {
          if (opts.json) printJson({ name: opts.name, registered: false, dry_run: Boolean(opts.dryRun), contract: report });
          else process.stdout.write(contractReportText(report));
          throw new ModelError(`model contract check failed, so nothing was registered:\n  - ${report.problems.join('\n  - ')}`);
        }
        if (opts.dryRun) {
          if (opts.json) printJson({ ...candidate.model.pin, registered: false, dry_run: true, path: null, alias: null, inferred: candidate.inferred ?? null, manifest: candidate.model.manifest, contract: report });
          else process.stdout.write(`${contractReportText(report)}\ndry run: every check passed; nothing was registered (without --sample-from, --dry-run prints the manifest)\n`);
          return;
        }
      }
      const { model, inferred } = await store.register({ modelPath, name: opts.name, version: opts.version, manifest, dryRun: opts.dryRun });
      const change = opts.alias && !opts.dryRun ? await store.promote(model.pin.name, model.pin.version, { alias: opts.alias }) : undefined;
      if (opts.json) {
        printJson({ ...model.pin, registered: !opts.dryRun, dry_run: Boolean(opts.dryRun), path: opts.dryRun ? null : model.modelPath, alias: change?.alias ?? null, inferred: inferred ?? null, manifest: model.manifest, ...(report && { contract: report }) });
        return;
      }
      if (opts.dryRun) {
        const { registered_by: _b, registered_at: _a, name, version, sha256, ...rest } = model.manifest;
        const draft = { name, version, sha256, ...rest };
        const header = [
          `# ${model.pin.name}:${model.pin.version} checked against ${modelPath} with ONNX Runtime: OK (dry run, nothing written)`,
          ...(inferred ? ['# Guessed from the model; edit the column names, then: scoreline models register … --manifest THIS_FILE', ...inferred.map((n) => `#   ${n}`)] : []),
        ];
        process.stdout.write(`${header.join('\n')}\n${stringify(draft)}`);
        return;
      }
      if (report) process.stdout.write(`${contractReportText(report)}\n`);
      const lines = [`registered ${model.pin.name}:${model.pin.version} (sha256 ${model.pin.sha256})${change ? ` as @${change.alias}` : ''}`, `  ${model.modelPath}`];
      if (inferred) {
        lines.push(
          'manifest guessed from the model (no --manifest):',
          ...inferred.map((n) => `  ${n}`),
          `  stored in ${join(model.modelPath, '..', MANIFEST_FILE)}. If these are not your column names, register a corrected manifest as a new`,
          `  version: scoreline models register ${modelPath} --name ${model.pin.name} --dry-run > m.yaml; edit m.yaml; … --manifest m.yaml`,
        );
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  models
    .command('list')
    .description('Models in the store, their versions and aliases.')
    .addOption(storeOption())
    .option('--json', 'one JSON object per model')
    .action(async (opts) => {
      const all = await openStore(opts).list();
      if (opts.json) {
        all.forEach((m) => printJson({ name: m.name, versions: m.versions.join(', '), aliases: m.aliases }));
        return;
      }
      const rows = all.map((m) => ({ name: m.name, versions: m.versions.join(', '), aliases: Object.entries(m.aliases).map(([a, v]) => `${a}→${v}`).join(', ') }));
      process.stdout.write(rows.length ? `${formatTable(rows)}\n` : `no models in ${new LocalModelStore(opts.modelsDir).root}\n`);
    });

  models
    .command('show')
    .description('One model version: inputs, outputs, sha256, aliases, who registered it and when, and the alias history.')
    .argument('<ref>', 'name (= name@champion), name@alias or name:version')
    .addOption(storeOption())
    .option('--json', 'JSON output')
    .action(async (ref: string, opts) => {
      const d = await openStore(opts).show(ref);
      const m = d.model.manifest;
      if (opts.json) {
        printJson({ ...m, aliases: d.aliases, all_aliases: d.allAliases, path: d.model.modelPath, history: d.history });
        return;
      }
      const recent = d.history.slice(-10);
      process.stdout.write(
        [
          `${m.name}:${m.version}${d.aliases.length ? ` (${d.aliases.map((a) => `@${a}`).join(', ')})` : ''}`,
          `  sha256      ${m.sha256}`,
          `  file        ${d.model.modelPath}`,
          `  registered  ${d.registeredAt ?? 'unknown'} by ${d.registeredBy ?? 'unknown'}`,
          `  aliases     ${Object.entries(d.allAliases).map(([a, v]) => `${a}→${v}`).join(', ') || 'none'}`,
          ...(m.description ? [`  about       ${m.description}`] : []),
          '  inputs:',
          ...m.inputs.map((i) => `    ${i.name} ${i.dtype}[N,${i.shape[1]}] ← ${columnsText(i.columns)}`),
          '  outputs:',
          ...m.outputs.map((o) => `    ${o.column} ${o.dtype} ← ${o.tensor}${o.index !== undefined ? `[:, ${o.index}]` : ''}`),
          `  alias history${d.history.length > recent.length ? ` (last ${recent.length} of ${d.history.length}; --json for all)` : ''}:`,
          ...(recent.length ? recent.map((e) => `    ${eventText(e)}`) : ['    none recorded']),
        ].join('\n') + '\n',
      );
    });

  models
    .command('promote')
    .description('Point an alias (default champion) at a version. Runs already running keep the version they pinned; runs started afterwards and the next near-real-time request use the new one.')
    .argument('<name>')
    .argument('<version>')
    .option('--alias <alias>', 'alias to move', DEFAULT_ALIAS)
    .option('--json', 'JSON output')
    .addOption(storeOption())
    .action(async (name: string, version: string, opts) => {
      const change = await openStore(opts).promote(name, version, { alias: opts.alias });
      if (opts.json) printJson(change);
      else process.stdout.write(`${changeText(change)}\n`);
    });

  models
    .command('rollback')
    .description(
      'Move an alias (default champion) back to its previous target from the alias history, undoing the latest promotion not yet rolled back ' +
        '(promote 1→2, promote 2→3, rollback → 2, rollback → 1). Fails with the reason when there is no previous target.',
    )
    .argument('<name>')
    .option('--alias <alias>', 'alias to move back', DEFAULT_ALIAS)
    .option('--json', 'JSON output')
    .addOption(storeOption())
    .action(async (name: string, opts) => {
      const change = await openStore(opts).rollback(name, { alias: opts.alias });
      if (opts.json) printJson(change);
      else process.stdout.write(`${changeText(change)}\n`);
    });

  models
    .command('history')
    .description(`Alias history of a model, oldest first (${HISTORY_FILE}: time, alias, from, to, by, action).`)
    .argument('<name>')
    .option('--alias <alias>', 'only this alias')
    .option('--json', 'one JSON object per event')
    .addOption(storeOption())
    .action(async (name: string, opts) => {
      const store = openStore(opts);
      const events = await store.history(name, opts.alias);
      // A typo'd name is not a model without history: refuse it (exit 2) like `show` does.
      const known = events.length === 0 ? (await store.list()).map((m) => m.name) : [name];
      if (!known.includes(name)) throw new ConfigError(`model "${name}" not found in model store ${store.root}` + (known.length ? ` (known: ${known.join(', ')})` : ' (store is empty)'));
      if (opts.json) events.forEach((e) => printJson(e));
      else process.stdout.write(events.length ? `${formatTable(events.map((e) => ({ time: e.time, alias: e.alias, from: e.from ?? '-', to: e.to, action: e.action, by: e.by })))}\n` : 'no alias history\n');
    });

  models
    .command('alias')
    .description('Point an alias at a version (like promote, for any alias; recorded in the history as "set").')
    .argument('<name>')
    .argument('<alias>')
    .argument('<version>')
    .option('--json', 'JSON output (as promote)')
    .addOption(storeOption())
    .action(async (name: string, alias: string, version: string, opts) => {
      const change = await openStore(opts).setAlias(name, alias, version);
      if (opts.json) printJson(change);
      else process.stdout.write(`${name}@${alias} → ${version}${change.changed ? '' : ' (unchanged)'}\n`);
    });
  return models;
}
