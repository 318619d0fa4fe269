/**
 * The steps of a batch run, as plain async functions of (context, arguments): activities/ wraps them
 * with heartbeats and error mapping; unit tests call them directly.
 */
import { basename } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as arrow from 'apache-arrow';
import { assertLogicalDate, chunkRowsFor, keepFailedStagingMs, renderTemplate, templateVars, type PipelineConfig } from '../config/pipeline';
import { ConfigError, errorMessage, InputError } from '../errors';
import { takeRows } from '../io/arrow';
import { buffers } from '../io/buffers';
import type { ConstantColumn } from '../io/parquet-write';
import { featureColumns } from '../models/manifest';
import { logger } from '../obs/log';
import { compareChunk, summarizeAgreement, type Agreement, type AgreementSummary } from '../profile/agreement';
import { chunkProfile, featureProfileSpecs, profileFeatures, type TensorProfileSpec } from '../profile/chunk';
import type { ColumnProfile } from '../profile/sketch';
import { quarantineConfig, shadowConfig } from './shadow';
import { quarantines } from './budget';
import { resumeConfig, resumeFrom, reusableChunks, reusedChunkRows, type ResumeFrom } from './resume';
import type { LoadedModel } from '../models/store';
import { checkTimeZone, logicalDateIn } from '../schedules/logical-date';
import { runModel, type ScoringSession } from '../scoring/session';
import { buildFeeds, emptyColumn, keyText, type BuiltFeeds, type OutputColumn, type QuarantinedRows } from '../scoring/tensor';
import type { AlertRecord } from '../alerts/events';
import type { KeyCheck } from '../../connectors/types';
import type { Chunk, ChunkAudit, ChunkStats, CommitStats, PinnedModel, RunAudit, RunInput, RunPlan, RunRef, RunResult, PlanSummary, RunStatus, RunTotals, StagedChunk } from '../types';
import { modelStoreFor, resolvePipeline, type RunContext } from './context';

export interface StepHooks {
  heartbeat(details?: unknown): void;
  /** Throws (the activity's cancellation) once the run asked it to stop; called before anything is written. */
  throwIfCancelled(): void;
  attempt: number;
}

/**
 * How big a run can get. A run scores up to DEFAULT_CHUNKS_PER_CHILD chunks in its own workflow and more
 * in child workflows of that many, one group at a time, so no history grows with the input (a chunk
 * costs ~5 events and ~5 KB of history where it is scored). What stays in the run's own history is the
 * plan (~150 bytes per chunk) and the list of staged files, both single payloads under Temporal's 2 MiB
 * limit: hence at most MAX_CHUNKS_PER_RUN chunks and MAX_PLAN_BYTES of chunk list. With the automatic
 * chunk size (~262k rows at 32 features) that is over 2 billion rows per run.
 */
export const MAX_CHUNKS_PER_RUN = 10_000;
export const MAX_PLAN_BYTES = 1_500_000;
export const DEFAULT_CHUNKS_PER_CHILD = 500;

export const NO_HOOKS: StepHooks = { heartbeat: () => undefined, throwIfCancelled: () => undefined, attempt: 1 };

/** Columns every output row carries besides keys and predictions (docs/output-schema.md). */
export const CONTRACT_COLUMNS = ['run_id', 'model_name', 'model_version', 'model_sha256', 'scored_at', 'ds'];

/** The quarantine table's own columns, after the keys (docs/output-schema.md). */
const QUARANTINE_COLUMNS = ['rejected_column', 'reason'];

/**
 * Keys, predictions and contract columns share one table (keys, the quarantine table's columns and the
 * contract columns another): a name used twice would silently shadow. Compared without case, as DuckDB,
 * Snowflake and BigQuery compare column names (`DS` and `ds` are one column there).
 */
function checkOutputColumns(config: PipelineConfig, predictions: string[], origin: string): void {
  const contract = CONTRACT_COLUMNS.map((c) => [c, 'a Scoreline contract column']);
  const keys = config.source.key.map((k) => [k, 'a key column']);
  const tables = [[...contract, ...keys, ...predictions.map((p) => [p, 'a prediction column'])]];
  if (quarantines(config.max_rejected)) tables.push([...contract, ...QUARANTINE_COLUMNS.map((c) => [c, 'a column of the quarantine table (max_rejected)']), ...keys]);
  for (const columns of tables) {
    const seen = new Map<string, string[]>();
    for (const [name, role] of columns) {
      const clash = seen.get(name.toLowerCase());
      if (clash) {
        const names = clash[0] === name ? `"${name}"` : `"${clash[0]}" / "${name}"`;
        throw new ConfigError(`${origin}: output column ${names} is both ${clash[1]} and ${role}; rename one (source.key, or the manifest's outputs[].column)`);
      }
      seen.set(name.toLowerCase(), [name, role]);
    }
  }
}

/** Columns a run reads: keys first, then model features, each once. */
export function neededColumns(config: PipelineConfig, features: string[]): string[] {
  return [...new Set([...config.source.key, ...features])];
}

/**
 * An explicit date wins; otherwise the calendar date of the schedule's nominal time (not the wall-clock
 * start, so a late or backfilled run scores the partition it was scheduled for) in the schedule's
 * timezone, else of `now`.
 */
export function logicalDateFor(input: RunInput, scheduledStart: string | undefined, now: Date): string {
  if (input.date) return assertLogicalDate(input.date, `pipeline "${input.pipeline}"`);
  const timeZone = input.timezone ?? 'UTC';
  if (!checkTimeZone(timeZone).ok) throw new ConfigError(`pipeline "${input.pipeline}": timezone "${timeZone}": expected an IANA name such as UTC or Europe/Berlin`);
  return logicalDateIn(scheduledStart ? new Date(scheduledStart) : now, timeZone);
}

export interface PlanArgs {
  input: RunInput;
  run: RunRef;
  scheduledStart?: string;
  startedAtMs?: number;
  /**
   * Leave the key check to `checkRunKeys`, which the workflow runs beside the chunks (it scans the
   * whole input, so it need not hold up the first chunk); the commit waits for it. `validate` checks now.
   */
  deferKeyCheck?: boolean;
  /** The run was started without Scoreline's search attributes (the Web UI): say whether it may set them (RunPlan.searchAttributes). */
  askSearchAttributes?: boolean;
  /**
   * Only what a backfill needs to tell changed from unchanged (src/run/backfill.ts): the pinned model
   * (alias resolved to its sha256) and the source's plan with its fingerprint; the model is not loaded
   * into a session, and no key check runs. Still no side effects beyond the source's plan (a warehouse
   * snapshot, which the caller drops with `cleanup`).
   */
  fingerprintOnly?: boolean;
}

/**
 * Resolve config and model (pinned), check the source's schema against the model, split into chunks.
 * No side effects: `scoreline validate` runs exactly this. `found.resume` gets the run a `--resume` takes
 * over, as the audit table holds it (planRun marks its reused chunks from it).
 */
export async function buildPlan(ctx: RunContext, args: PlanArgs, hooks: StepHooks = NO_HOOKS, found: { resume?: ResumeFrom } = {}): Promise<RunPlan> {
  const { input } = args;
  const rescoreOf = input.onlyQuarantined;
  const pipeline = resolvePipeline(ctx, input.pipeline, input.config, input.overrides ?? {});
  const logicalDate = logicalDateFor(input, args.scheduledStart, new Date(args.startedAtMs ?? Date.now()));
  // A resumed run keeps the run id it had, so its staged files (named by run) and output rows agree.
  const resume = input.resume ? await resumeFrom(ctx, pipeline, input.resume, logicalDate) : undefined;
  found.resume = resume;
  const scoredWith = rescoreOf ? await ctx.connectors.audit(pipeline).lastSucceededRun(pipeline.name, logicalDate) : undefined;
  const config = rescoreConfig(resume ? resumeConfig(pipeline, resume) : pipeline, rescoreOf, scoredWith);
  const run: RunRef = { ...args.run, ...(input.resume && { runId: input.resume }), pipeline: config.name, logicalDate };
  const store = modelStoreFor(ctx, config);
  const model = await store.resolve(config.model);
  if (scoredWith?.model_sha256 && model.pin.sha256 !== scoredWith.model_sha256) {
    throw new InputError(
      `${config.name} ${logicalDate} was scored with ${scoredWith.model_name}:${scoredWith.model_version} sha256 ${scoredWith.model_sha256}, which the model store now holds as ${model.pin.sha256}: ` +
        'a rescore would append rows another model scored; rerun the date instead',
    );
  }
  hooks.heartbeat({ step: 'model', model: model.pin });
  if (!args.fingerprintOnly) await ctx.sessions.get(model); // loads the session and checks the manifest against the model
  checkOutputColumns(config, model.manifest.outputs.map((o) => o.column), `pipeline ${config.name} with model ${model.pin.name}:${model.pin.version}`);
  // The challenger is pinned at plan time like the model; a promotion mid-run changes neither.
  const shadow = config.shadow ? await store.resolve(config.shadow) : undefined;
  if (shadow && !args.fingerprintOnly) {
    await ctx.sessions.get(shadow);
    checkOutputColumns(config, shadow.manifest.outputs.map((o) => o.column), `pipeline ${config.name} with shadow model ${shadow.pin.name}:${shadow.pin.version}`);
  }
  // What would fail every commit (a Parquet table path taken by a file) fails the plan, before any work.
  for (const target of [config, ...(shadow ? [shadowConfig(config)] : []), ...(quarantines(config.max_rejected) ? [quarantineConfig(config)] : [])]) ctx.connectors.sink(target).check?.();
  const features = scoredFeatures(model, shadow);
  const chunkRows = chunkRowsFor(config, features.length);
  const source = ctx.connectors.source(config);
  const planRequest = { config, run, columns: neededColumns(config, features), chunkRows };
  const sourcePlan = await source.plan(planRequest);
  const notNumeric = features.filter((f) => sourcePlan.schema[f] && !sourcePlan.schema[f].numeric);
  if (notNumeric.length > 0) {
    const list = notNumeric.map((f) => `"${f}" (${sourcePlan.schema[f].type})`).join(', ');
    throw new InputError(`${sourcePlan.inputs[0]}: feature column(s) ${list} are not numeric; model ${model.pin.name}:${model.pin.version} needs numbers`);
  }
  if (sourcePlan.rows === 0 && config.source.on_empty === 'fail') {
    throw new InputError(
      `no input rows for ${config.name} on ${logicalDate}: ${sourcePlan.inputs.length ? `${sourcePlan.inputs.join(', ')} ${sourcePlan.inputs.length === 1 ? 'holds' : 'hold'} 0 rows` : `nothing matches ${config.source.kind === 'parquet' ? renderTemplate(config.source.path, templateVars(logicalDate, config.name), 'source.path') : 'the source'}`}` +
        ` (set source.on_empty: succeed to commit an empty partition instead)`,
    );
  }
  checkRunSize(config, sourcePlan.chunks, sourcePlan.rows, sourcePlan.inputs.length, chunkRows);
  // A rescore scores the rows its run quarantined that the output does not hold yet (its keys were checked then).
  const rowsPlanned = rescoreOf ? await pendingQuarantinedRows(ctx, config, run, rescoreOf) : sourcePlan.rows;
  // Last: the only step that scans the input (its key columns), after every cheaper check passed.
  const checkKeys = sourcePlan.rows > 0 && config.source.key_check !== 'allow' && !rescoreOf;
  if (checkKeys && !args.deferKeyCheck && !args.fingerprintOnly) {
    hooks.heartbeat({ step: 'keys' });
    const problem = keyProblem(config, logicalDate, await source.checkKeys(planRequest, sourcePlan));
    if (problem) throw problem;
  }
  const reused = resume && (await reusableChunks(ctx, config, run, resume, sourcePlan, model.pin.sha256));
  const taken = new Set(reused?.staged.map((s) => s.index));
  const startedAt = new Date(args.startedAtMs ?? Date.now()).toISOString();
  const profileColumns = features.length + model.manifest.outputs.length;
  const chunksPerChild = ctx.chunksPerChild ?? DEFAULT_CHUNKS_PER_CHILD;
  return {
    run,
    config,
    model: model.pin,
    ...(shadow && { shadow: shadow.pin }),
    profileColumns,
    chunksPerChild,
    ...(checkKeys && args.deferKeyCheck && { keyCheckDeferred: true }),
    chunks: reused ? sourcePlan.chunks.filter((c) => !taken.has(c.index)) : sourcePlan.chunks,
    rowsPlanned,
    inputs: sourcePlan.inputs,
    ...(sourcePlan.fingerprint && { fingerprint: sourcePlan.fingerprint }),
    startedAt,
    ...(rescoreOf && { rescoreOf }),
    ...(reused && { reused }),
  };
}

/**
 * `run --only-quarantined`: the rescored rows are appended to the date's output (the rest of it stays);
 * rows that still cannot be scored stay quarantined whatever the budget; no profile (a handful of rejected
 * rows would make a poor drift reference).
 */
function rescoreConfig(config: PipelineConfig, rescoreOf: string | undefined, scoredWith: RunAudit | undefined): PipelineConfig {
  if (!rescoreOf) return config;
  // The model the date's rows were scored with (its last succeeded run: the rescored run, or an earlier
  // rescore of it), not what the alias names now: appended rows must match the partition's columns and model.
  const model = scoredWith?.model_name && scoredWith.model_version ? `${scoredWith.model_name}:${scoredWith.model_version}` : config.model;
  return { ...config, model, sink: { ...config.sink, mode: 'append' }, max_rejected: '100%', profile: false };
}

/**
 * Before a rescore starts (CLI and API): one that would find no rows is refused, rather than started as a
 * run that fails at its plan (a failed audit row, failure alerts). Only a positive "none": a check this
 * machine cannot make (e.g. no warehouse credentials here) lets the run start, and its plan decides.
 */
export async function assertRescoreHasRows(ctx: RunContext, config: PipelineConfig, logicalDate: string, of: string): Promise<void> {
  const run: RunRef = { runId: `rescore-check-${of}-${Date.now()}`, workflowId: 'rescore-check', pipeline: config.name, logicalDate, trigger: 'cli' };
  try {
    await pendingQuarantinedRows(ctx, rescoreConfig(config, of, undefined), run, of);
  } catch (err) {
    if (err instanceof InputError) throw new ConfigError(err.message);
  }
}

async function pendingQuarantinedRows(ctx: RunContext, config: PipelineConfig, run: RunRef, of: string): Promise<number> {
  const pending = (await pendingKeySet(ctx, config, run, of)).size;
  if (pending === 0) {
    throw new InputError(
      `run ${of} has no quarantined rows left to rescore in ${ctx.connectors.sink(quarantineConfig(config)).location(run)}: ` +
        'it quarantined none on this date, a rescore already scored them, or a later run of the date replaced them',
    );
  }
  return pending;
}

/** The keys a rescore keeps (its plan counts them, its chunks filter by them), per rescore run, loaded once per worker. */
const pendingKeys = new Map<string, Promise<Set<string>>>();
const PENDING_KEY_RUNS = 4;

function pendingKeySet(ctx: RunContext, config: PipelineConfig, run: RunRef, of: string): Promise<Set<string>> {
  let keys = pendingKeys.get(run.runId);
  if (!keys) {
    keys = ctx.connectors
      .sink(config)
      .pendingQuarantined(run, ctx.connectors.sink(quarantineConfig(config)), of, config.source.key)
      .then((rows) => new Set(rows.map((r) => r.join(KEY_SEPARATOR))));
    keys.catch(() => pendingKeys.delete(run.runId));
    pendingKeys.set(run.runId, keys);
    if (pendingKeys.size > PENDING_KEY_RUNS) pendingKeys.delete(pendingKeys.keys().next().value!);
  }
  return keys;
}

const KEY_SEPARATOR = '\u0000';

/** The rows of `batch` whose key (as text, like pendingQuarantined's) is in `keys`. */
function rowsWithKeys(batch: arrow.RecordBatch, keyColumns: string[], keys: Set<string>): arrow.RecordBatch {
  const vectors = keyColumns.map((k) => batch.getChild(k)!);
  const rows: number[] = [];
  for (let r = 0; r < batch.numRows; r++) if (keys.has(vectors.map((v) => String(v.get(r))).join(KEY_SEPARATOR))) rows.push(r);
  const take = Int32Array.from(rows);
  const children = batch.schema.fields.map((f) => takeRows(batch.getChild(f.name)!, take).data[0]);
  return new arrow.RecordBatch(batch.schema, arrow.makeData({ type: new arrow.Struct(batch.schema.fields), length: take.length, nullCount: 0, children }));
}

export interface KeyCheckArgs {
  run: RunRef;
  config: PipelineConfig;
  inputs: string[];
  rowsPlanned: number;
}

/** The key check of a plan built with `deferKeyCheck`: throws the same InputError buildPlan would have. */
export async function checkRunKeys(ctx: RunContext, args: KeyCheckArgs): Promise<void> {
  const { run, config } = args;
  const check = await ctx.connectors.source(config).checkKeys({ config, run, columns: config.source.key, chunkRows: 0 }, { chunks: [], rows: args.rowsPlanned, inputs: args.inputs, schema: {} });
  const problem = keyProblem(config, run.logicalDate, check);
  if (problem) throw problem;
}

/**
 * Duplicate or NULL keys (`source.key_check: strict`): an output row must identify one input row, so
 * the run fails before anything is scored. The error names the input, the key, how many keys and rows,
 * up to MAX_KEY_EXAMPLES duplicate keys (each as `value "…"`, which logs redact like any quoted input
 * value: src/obs/log.ts), a query that lists them all, and the opt-out.
 */
export function keyProblem(config: PipelineConfig, logicalDate: string, check: KeyCheck): InputError | undefined {
  if (check.duplicateKeys === 0 && check.nullKeyRows === 0) return undefined;
  const keys = config.source.key;
  const problems: string[] = [];
  if (check.duplicateKeys > 0) {
    const examples = check.examples.map((e) => `value ${keyValueText(e.values)} on ${plural(e.rows, 'row')}`).join(', ');
    const some = check.examples.length < check.duplicateKeys ? 'e.g. ' : '';
    problems.push(`${plural(check.duplicateKeys, 'duplicate key')} on ${plural(check.duplicateRows, 'row')} (${some}${examples})`);
  }
  if (check.nullKeyRows > 0) problems.push(`${plural(check.nullKeyRows, 'row')} with a NULL key${keys.length > 1 ? ' column' : ''}`);
  const list = keys.join(', ');
  return new InputError(
    `${check.input}: source.key (${list}) must identify one row each, but the input for ${logicalDate} has ${problems.join(' and ')}. ` +
      `Fix the source or the key (to list them: SELECT ${list}, COUNT(*) FROM ${check.from} GROUP BY ${list} HAVING COUNT(*) > 1 OR ${keys.map((k) => `${k} IS NULL`).join(' OR ')}), ` +
      'or set source.key_check: allow to score every row as it is',
  );
}

/** `"1001"`, or `("1001", "eu")` for several key columns: JSON strings, each cut to 60 characters. */
function keyValueText(values: string[]): string {
  const texts = values.map((v) => JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v));
  return texts.length === 1 ? texts[0] : `(${texts.join(', ')})`;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** A plan must fit in the run's history (see MAX_CHUNKS_PER_RUN); the error says what to change. */
function checkRunSize(config: PipelineConfig, chunks: Chunk[], rows: number, files: number, chunkRows: number): void {
  const count = chunks.length;
  const bytes = count > MAX_CHUNKS_PER_RUN / 4 ? JSON.stringify(chunks).length : 0;
  if (count <= MAX_CHUNKS_PER_RUN && bytes <= MAX_PLAN_BYTES) return;
  const limit = count > MAX_CHUNKS_PER_RUN ? `${count} chunks exceed the ${MAX_CHUNKS_PER_RUN}` : `its ${count} chunks (${bytes} bytes of plan) exceed the ${MAX_PLAN_BYTES} bytes`;
  const factor = Math.max(count / MAX_CHUNKS_PER_RUN, bytes / MAX_PLAN_BYTES);
  const advice =
    files * 2 > MAX_CHUNKS_PER_RUN
      ? `the input has ${files} files and a chunk never spans files: combine small files, or split the input across runs`
      : `raise chunk_rows to at least ${Math.ceil(chunkRows * factor * 1.05)} (now ${config.chunk_rows === 'auto' ? `auto = ${chunkRows}` : chunkRows}; ${rows} rows)`;
  throw new ConfigError(`pipeline ${config.name}: ${limit} one run can track in its Temporal history; ${advice}`);
}

/** Feature columns a chunk reads: the model's, then any more the shadow model needs. */
function scoredFeatures(model: LoadedModel, shadow?: LoadedModel): string[] {
  return [...new Set([...featureColumns(model.manifest), ...(shadow ? featureColumns(shadow.manifest) : [])])];
}

/** The plan step of a run: build the plan, then record the run as `running` in the audit table. */
export async function planRun(ctx: RunContext, args: PlanArgs, hooks: StepHooks = NO_HOOKS): Promise<RunPlan> {
  const found: { resume?: ResumeFrom } = {};
  const plan = await buildPlan(ctx, args, hooks, found);
  if (args.askSearchAttributes && (await ctx.searchAttributesRegistered?.().catch(() => false))) plan.searchAttributes = true;
  const audit = ctx.connectors.audit(plan.config);
  await audit.recordRun(
    runAuditRow(plan.run, plan.model, 'running', {
      startedAt: plan.startedAt,
      rowsIn: plan.rowsPlanned,
      chunks: plan.chunks.length + (plan.reused?.staged.length ?? 0),
      shadow: plan.shadow && { model: plan.shadow },
      inputFingerprint: plan.fingerprint,
    }),
  );
  // The audit shows which chunks a resumed run took over.
  if (plan.reused && found.resume) for (const row of reusedChunkRows(found.resume, plan.reused.staged)) await audit.recordChunk(row);
  await sweepFailedStaging(ctx, plan);
  return plan;
}

/** Staging that failed or terminated runs of this sink left behind longer than `keep_failed_staging` ago. */
async function sweepFailedStaging(ctx: RunContext, plan: RunPlan): Promise<void> {
  const keepMs = keepFailedStagingMs(plan.config.keep_failed_staging) ?? 0;
  const sink = ctx.connectors.sink(plan.config);
  if (keepMs <= 0 || !sink.sweepStaging) return;
  try {
    const removed = await sink.sweepStaging(keepMs, plan.run);
    if (removed.length > 0) logger.info({ pipeline: plan.run.pipeline, removed }, `removed staging left by failed runs more than ${plan.config.keep_failed_staging} ago`);
  } catch (err) {
    logger.warn({ pipeline: plan.run.pipeline, error: errorMessage(err) }, 'could not sweep old staging');
  }
}

export interface ScoreArgs {
  run: RunRef;
  config: PipelineConfig;
  model: PinnedModel;
  chunk: Chunk;
  /** false: skip this chunk's profile (see profiledChunk in src/profile/sketch.ts). */
  profile?: boolean;
  /** The plan's pinned shadow model: scored on the same rows, staged to the shadow sink. */
  shadow?: PinnedModel;
  /** A rescore (RunPlan.rescoreOf): score only the rows this run quarantined that the output lacks. */
  onlyQuarantinedOf?: string;
}

export async function scoreChunk(ctx: RunContext, args: ScoreArgs, hooks: StepHooks = NO_HOOKS): Promise<ChunkStats> {
  const { run, config, chunk } = args;
  // A warehouse chunk is a range of the run's snapshot table, which is dropped when the run ends: name the source too.
  const where = `chunk ${chunk.index} (${describeChunk(chunk)}${chunk.locator.kind === 'table' ? `, a snapshot of ${describeSource(config)}` : ''})`;
  // Loaded by the pinned sha256: a model promoted or replaced mid-run is refused, never silently used.
  const session = await pinnedSession(ctx, config, args.model);
  const model = session.model;
  const shadowPin = args.shadow;
  const shadowSession = shadowPin && (await pinnedSession(ctx, config, shadowPin));
  const columns = neededColumns(config, scoredFeatures(model, shadowSession?.model));

  let t = performance.now();
  hooks.heartbeat({ step: 'read', chunk: chunk.index });
  let batch = await ctx.connectors.source(config).read(chunk, columns, config.source.key);
  if (args.onlyQuarantinedOf) batch = rowsWithKeys(batch, config.source.key, await pendingKeySet(ctx, config, run, args.onlyQuarantinedOf));
  const readMs = lap();

  hooks.heartbeat({ step: 'convert', chunk: chunk.index });
  // Under an error budget, rows that cannot be scored are set aside (quarantined) instead of failing the chunk.
  const feedOptions = { quarantine: quarantines(config.max_rejected) };
  const feeds = buildFeeds(batch, model.manifest, config.features, where, feedOptions);
  const shadowFeeds = shadowSession && buildFeeds(batch, shadowSession.model.manifest, config.features, `${where}, shadow model`, feedOptions);
  // NULL counts come from the source batch, so they are read before its feature buffers are recycled.
  const profileSpecs = config.profile && args.profile !== false ? featureProfileSpecs(batch, model.manifest) : undefined;
  recycleFeatureColumns(batch, config.source.key);
  const convertMs = lap();

  hooks.heartbeat({ step: 'infer', chunk: chunk.index });
  // Model and challenger at once: with inference threads they run side by side. The features are
  // profiled by the champion's inference thread while it holds the tensor (or here, without threads).
  const [scored, shadowScored] = await Promise.all([infer(ctx, session, feeds, profileSpecs), shadowSession && infer(ctx, shadowSession, shadowFeeds!)]);
  const predictions = scored.predictions;
  const shadowPredictions = shadowScored?.predictions;
  const inferMs = lap();

  hooks.throwIfCancelled();
  hooks.heartbeat({ step: 'write', chunk: chunk.index });
  const output = outputBatch(batch, config, run, args.model, feeds.keptRows, predictions);
  const staged = await ctx.connectors.sink(config).stage(run, chunk.index, output);
  let shadow: ChunkStats['shadow'];
  if (shadowPin && shadowFeeds && shadowPredictions) {
    const shadowOutput = outputBatch(batch, config, run, shadowPin, shadowFeeds.keptRows, shadowPredictions);
    const shadowStaged = await ctx.connectors.sink(shadowConfig(config)).stage(run, chunk.index, shadowOutput);
    const agreement = compareChunk(predictions, shadowPredictions, feeds.rowsIn, feeds.keptRows, shadowFeeds.keptRows);
    shadow = { stagedFile: basename(shadowStaged.path), rowsOut: shadowFeeds.rowsOut, agreement };
  }
  let quarantine: ChunkStats['quarantine'];
  if (feeds.quarantined) {
    const q = feeds.quarantined;
    const staged = await ctx.connectors.sink(quarantineConfig(config)).stage(run, chunk.index, quarantineBatch(batch, config, run, args.model, q));
    const r = q.rows[0];
    const key = keyText(batch, config.source.key, r);
    quarantine = { stagedFile: basename(staged.path), rows: q.rows.length, first: `${where} row ${r}${key && ` (${key})`}: column "${q.columns[0]}": ${q.reasons[0]}` };
  }
  const writeMs = lap();
  // The inference thread profiled the features while this thread wrote the chunk.
  const profile = scored.features && chunkProfile(await scored.features, predictions);
  const profileMs = lap();

  const stats: ChunkStats = {
    index: chunk.index,
    rowsIn: feeds.rowsIn,
    rowsOut: feeds.rowsOut,
    rowsRejected: feeds.rowsRejected,
    rowsImputed: feeds.rowsImputed,
    readMs,
    convertMs,
    inferMs,
    writeMs,
    stagedFile: basename(staged.path),
    bytesWritten: staged.bytes,
    worker: ctx.workerId,
    attempt: hooks.attempt,
    ...(profile && { profile, profileMs: Math.round(profileMs * 100) / 100 }),
    ...(shadow && { shadow }),
    ...(quarantine && { quarantine }),
  };
  await ctx.connectors.audit(config).recordChunk(chunkAuditRow(run, stats));
  return stats;

  function lap(): number {
    const now = performance.now();
    const ms = now - t;
    t = now;
    return Math.round(ms * 100) / 100;
  }
}

/** The session of a model pinned at plan time: loaded by its sha256, so a changed file is refused. */
function pinnedSession(ctx: RunContext, config: PipelineConfig, pin: PinnedModel): Promise<ScoringSession> {
  return ctx.sessions.getPinned(pin, () => modelStoreFor(ctx, config).load(pin.name, pin.version, pin.sha256));
}

/** Predictions, and with `profile` the features' profiles (from the inference thread when there is one). */
async function infer(ctx: RunContext, session: ScoringSession, feeds: BuiltFeeds, profile?: TensorProfileSpec[]): Promise<{ predictions: Map<string, OutputColumn>; features?: ColumnProfile[] | Promise<ColumnProfile[]> }> {
  if (profile && ctx.inference && feeds.rowsOut > 0) {
    const { outputs, features } = await ctx.inference.runProfiled(session, feeds.tensors, feeds.rowsOut, profile);
    return { predictions: outputs, features };
  }
  const features = profile && profileFeatures(feeds.tensors, profile);
  if (feeds.rowsOut === 0) return { predictions: emptyPredictions(session.model), features };
  const predictions = ctx.inference ? await ctx.inference.run(session, feeds.tensors, feeds.rowsOut) : await runModel(session, feeds.tensors, feeds.rowsOut);
  return { predictions, features };
}

/** Typed like real predictions, so every file of a partition has the same schema. */
function emptyPredictions(model: LoadedModel): Map<string, OutputColumn> {
  return new Map(model.manifest.outputs.map((o) => [o.column, emptyColumn(o.dtype)]));
}

/** The pipeline's source as its author wrote it: `snowflake table FEATURES`, `the bigquery source.query`. */
function describeSource(config: PipelineConfig): string {
  const s = config.source;
  if (s.kind === 'parquet') return s.path;
  return s.table ? `${s.kind} table ${s.table}` : `the ${s.kind} source.query`;
}

export function describeChunk(chunk: Chunk): string {
  const l = chunk.locator;
  return l.kind === 'parquet' ? `${l.file} rows ${l.rowStart}..${l.rowEnd - 1}` : `${l.table} rows ${l.rowStart}..${l.rowEnd - 1}`;
}

/**
 * The features now live in the tensors: their column buffers go back to the recycler for the next
 * chunk's read (src/io/buffers.ts). Key columns stay, the output needs them; `batch` must not be read
 * for features afterwards.
 */
function recycleFeatureColumns(batch: arrow.RecordBatch, keys: string[]): void {
  for (const field of batch.schema.fields) {
    if (keys.includes(field.name)) continue;
    for (const data of batch.getChild(field.name)?.data ?? []) if (ArrayBuffer.isView(data.values)) buffers.giveArray(data.values);
  }
}

export interface OutputBatch {
  /** Key and prediction columns, one value per row. */
  table: arrow.Table;
  /** run_id, model_name, model_version, model_sha256, scored_at, ds: one value for every row. */
  constants: ConstantColumn[];
}

/** The output contract: keys, predictions, run_id, model_name, model_version, model_sha256, scored_at, ds. */
export function outputBatch(
  batch: arrow.RecordBatch,
  config: PipelineConfig,
  run: RunRef,
  model: PinnedModel,
  keptRows: Int32Array | undefined,
  predictions: Map<string, ArrayLike<number | bigint>>,
): OutputBatch {
  const columns: Record<string, arrow.Vector> = {};
  for (const key of config.source.key) {
    const vector = batch.getChild(key)!;
    columns[key] = keptRows ? takeRows(vector, keptRows) : vector;
  }
  for (const [name, values] of predictions) columns[name] = arrow.makeVector(values as Float32Array);
  return { table: new arrow.Table(columns), constants: contractConstants(run, model) };
}

/**
 * The quarantine table's rows (docs/output-schema.md): the keys of each row that could not be scored,
 * the column and the reason, and the output's constant columns (run_id … ds), so it is queried like the output.
 */
function quarantineBatch(batch: arrow.RecordBatch, config: PipelineConfig, run: RunRef, model: PinnedModel, q: QuarantinedRows): OutputBatch {
  const columns: Record<string, arrow.Vector> = {};
  for (const key of config.source.key) columns[key] = takeRows(batch.getChild(key)!, q.rows);
  columns.rejected_column = arrow.vectorFromArray(q.columns, new arrow.Utf8());
  columns.reason = arrow.vectorFromArray(q.reasons, new arrow.Utf8());
  return { table: new arrow.Table(columns), constants: contractConstants(run, model) };
}

function contractConstants(run: RunRef, model: PinnedModel): ConstantColumn[] {
  return [
    { name: 'run_id', sqlType: 'VARCHAR', value: run.runId },
    { name: 'model_name', sqlType: 'VARCHAR', value: model.name },
    { name: 'model_version', sqlType: 'VARCHAR', value: model.version },
    { name: 'model_sha256', sqlType: 'VARCHAR', value: model.sha256 },
    { name: 'scored_at', sqlType: 'TIMESTAMPTZ', value: new Date().toISOString() },
    { name: 'ds', sqlType: 'DATE', value: run.logicalDate },
  ];
}

export interface CommitArgs {
  run: RunRef;
  config: PipelineConfig;
  staged: StagedChunk[];
  /** Commit the shadow model's staged output to the shadow table instead. */
  shadow?: boolean;
  /** Commit the rows set aside under the error budget to the quarantine table instead. */
  quarantine?: boolean;
}

export async function commitRun(ctx: RunContext, args: CommitArgs): Promise<CommitStats> {
  const config = args.shadow ? shadowConfig(args.config) : args.quarantine ? quarantineConfig(args.config) : args.config;
  return ctx.connectors.sink(config).commit(args.run, args.staged);
}

export interface FinishArgs {
  input: RunInput;
  run: RunRef;
  plan?: PlanSummary;
  status: RunStatus;
  error?: string;
  totals: RunTotals;
  commit?: CommitStats;
  startedAtMs: number;
  /** Alerts sent for the run (delivered or not), for the audit row. */
  alerts?: AlertRecord[];
  /** Shadow scoring: the shadow table's commit, the agreement summed over chunks, and why the commit failed. */
  shadow?: { commit?: CommitStats; agreement?: Agreement; error?: string };
  /** The error budget's quarantine table: its commit, or why it could not be written. */
  quarantine?: { commit?: CommitStats; error?: string };
  /** A failed run the workflow deems resumable: keep its staging (and snapshot) for `keep_failed_staging`. */
  keepStaging?: boolean;
  /** The profile step ran alongside a commit that did not succeed: remove the profile it stored. */
  dropProfile?: boolean;
}

/** Final audit rows, and on failure/cancel the removal of everything staged. Idempotent. */
export async function finishRun(ctx: RunContext, args: FinishArgs): Promise<RunResult> {
  const { run, plan, status } = args;
  let config = plan?.config;
  if (!config) {
    try {
      config = resolvePipeline(ctx, args.input.pipeline, args.input.config, args.input.overrides ?? {});
    } catch {
      config = undefined; // invalid config: nothing was staged and there is no audit location to write to
    }
  }
  const { rowsIn, rowsRejected, rowsImputed, rowsQuarantined } = args.totals;
  const rowsOut = args.commit?.rowsOut ?? args.totals.rowsOut;
  const finishedAt = new Date();
  const durationMs = finishedAt.getTime() - args.startedAtMs;
  const result: RunResult = {
    runId: run.runId,
    workflowId: run.workflowId,
    pipeline: run.pipeline,
    logicalDate: run.logicalDate,
    status,
    rowsIn: status === 'succeeded' ? rowsIn : plan?.rowsPlanned ?? 0,
    rowsOut: status === 'succeeded' ? rowsOut : 0,
    rowsRejected,
    rowsImputed,
    chunks: (plan?.chunks ?? 0) + (plan?.reused?.staged.length ?? 0),
    durationMs,
    model: plan?.model,
    error: args.error,
    stageMs: mapValues(args.totals.stageMs, Math.round),
    ...(plan?.rescoreOf && { rescoreOf: plan.rescoreOf }),
    ...(plan?.reused && { reusedChunks: plan.reused.staged.length }),
    ...((rowsQuarantined !== undefined || quarantines(plan?.config.max_rejected)) && { rowsQuarantined: rowsQuarantined ?? 0 }),
  };
  if (!config) return result;
  const sink = ctx.connectors.sink(config);
  const audit = ctx.connectors.audit(config);
  // Only where a resume can pick it up (a sink that lists its staging: Parquet for now).
  const keepMs = status === 'failed' && args.keepStaging && sink.stagedChunks ? (keepFailedStagingMs(config.keep_failed_staging) ?? 0) : 0;
  if (keepMs === 0 && status !== 'succeeded') await sink.abort(run);
  // A resume refused at its plan leaves the run it named as it was, and is no resumable run itself.
  else if (keepMs > 0 && !(args.input.resume !== undefined && !plan)) result.resumableUntil = new Date(finishedAt.getTime() + keepMs).toISOString();
  if (quarantines(config.max_rejected)) {
    const q = args.quarantine;
    if (!q?.commit) await ctx.connectors.sink(quarantineConfig(config)).abort(run);
    if (status === 'succeeded') result.quarantine = { output: q?.commit?.output, rows: rowsQuarantined ?? 0, ...(q?.error && { error: q.error }) };
  }
  if (plan?.shadow) {
    const shadowSink = ctx.connectors.sink(shadowConfig(config));
    if (!args.shadow?.commit) await shadowSink.abort(run);
    const error = args.shadow?.error;
    result.shadow = {
      model: plan.shadow,
      output: args.shadow?.commit?.output,
      agreement: { ...summarizeAgreement(args.shadow?.agreement ?? { rows: 0, columns: [] }), ...(error && { error }) },
    };
  }
  if (args.dropProfile && status !== 'succeeded') await audit.recordProfile(run.runId, []);
  result.output = args.commit?.output ?? (status === 'succeeded' ? sink.location(run) : undefined);
  result.audit = audit.location();
  await audit.recordRun(
    runAuditRow(run, plan?.model, status, {
      startedAt: new Date(args.startedAtMs).toISOString(),
      finishedAt: finishedAt.toISOString(),
      durationMs,
      rowsIn: result.rowsIn,
      rowsOut: result.rowsOut,
      rowsRejected,
      rowsImputed,
      chunks: result.chunks,
      output: result.output,
      error: args.error ?? args.quarantine?.error,
      alerts: args.alerts,
      shadow: result.shadow,
      inputFingerprint: plan?.fingerprint,
      // 0, not NULL, for a run with an error budget that set nothing aside (docs/output-schema.md).
      rowsQuarantined: result.rowsQuarantined,
    }),
  );
  // Best effort, after the audit row: a snapshot that cannot be dropped must not turn a committed run
  // into a failed one (BigQuery's expire on their own after 72 h; docs/warehouses.md).
  if (keepMs > 0) return result; // a resume re-plans against the snapshot
  try {
    await ctx.connectors.source(config).cleanup?.(config, run);
  } catch (err) {
    logger.warn({ run_id: run.runId, workflow_id: run.workflowId, pipeline: run.pipeline, error: errorMessage(err) }, 'could not drop the source snapshot');
  }
  return result;
}

function mapValues<T extends Record<string, number>>(o: T, f: (v: number) => number): T {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)])) as T;
}

export function runAuditRow(
  run: RunRef,
  model: PinnedModel | undefined,
  status: RunStatus,
  f: {
    startedAt: string;
    finishedAt?: string;
    durationMs?: number;
    rowsIn?: number;
    rowsOut?: number;
    rowsRejected?: number;
    rowsImputed?: number;
    chunks?: number;
    output?: string;
    error?: string;
    alerts?: AlertRecord[];
    shadow?: { model: PinnedModel; output?: string; agreement?: AgreementSummary };
    inputFingerprint?: string;
    rowsQuarantined?: number;
  },
): RunAudit {
  return {
    run_id: run.runId,
    workflow_id: run.workflowId,
    pipeline: run.pipeline,
    trigger: run.trigger,
    logical_date: run.logicalDate,
    model_name: model?.name ?? null,
    model_version: model?.version ?? null,
    model_sha256: model?.sha256 ?? null,
    status,
    rows_in: f.rowsIn ?? 0,
    rows_out: f.rowsOut ?? 0,
    rows_rejected: f.rowsRejected ?? 0,
    rows_imputed: f.rowsImputed ?? 0,
    chunks: f.chunks ?? 0,
    started_at: f.startedAt,
    finished_at: f.finishedAt ?? null,
    duration_ms: f.durationMs ?? null,
    output: f.output ?? null,
    error: f.error ?? null,
    alerts: f.alerts?.length ? JSON.stringify(f.alerts) : null,
    shadow_model: f.shadow ? `${f.shadow.model.name}:${f.shadow.model.version}` : null,
    shadow_model_sha256: f.shadow?.model.sha256 ?? null,
    shadow_output: f.shadow?.output ?? null,
    shadow_agreement: f.shadow?.agreement ? JSON.stringify(f.shadow.agreement) : null,
    input_fingerprint: f.inputFingerprint ?? null,
    rows_quarantined: f.rowsQuarantined ?? null,
  };
}

function chunkAuditRow(run: RunRef, c: ChunkStats): ChunkAudit {
  return {
    run_id: run.runId,
    chunk_index: c.index,
    status: 'succeeded',
    rows_in: c.rowsIn,
    rows_out: c.rowsOut,
    rows_rejected: c.rowsRejected,
    rows_imputed: c.rowsImputed,
    read_ms: c.readMs,
    convert_ms: c.convertMs,
    infer_ms: c.inferMs,
    write_ms: c.writeMs,
    worker: c.worker,
    attempt: c.attempt,
    error: null,
  };
}
