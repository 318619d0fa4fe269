/**
 * `run --resume RUN_ID`: a run that failed (or was terminated) after staging some of its chunks is run
 * again under the same run id, against the same input and model, reusing the chunks it staged and
 * scoring only the rest; one commit at the end, as always. Parquet sinks and audit stores for now: they
 * can list what a run staged and read a run's chunk rows back (connectors/types.ts, optional methods).
 */
import type { SourcePlan } from '../../connectors/types';
import type { PipelineConfig } from '../config/pipeline';
import { ConfigError, InputError } from '../errors';
import type { ChunkAudit, RunAudit, RunRef, RunTotals, StagedChunk } from '../types';
import { quarantines } from './budget';
import type { RunContext } from './context';

export interface ResumeFrom {
  run: RunAudit;
  chunks: ChunkAudit[];
}

/** The run to resume, from the audit table, checked against the pipeline and date it is resumed for. */
export async function resumeFrom(ctx: RunContext, config: PipelineConfig, runId: string, logicalDate: string): Promise<ResumeFrom> {
  const audit = ctx.connectors.audit(config);
  const sink = ctx.connectors.sink(config);
  if (!audit.runWithChunks || !sink.stagedChunks) {
    throw new ConfigError(`pipeline ${config.name}: run --resume needs a Parquet sink and audit store for now (sink is ${config.sink.kind}); start a new run instead`);
  }
  if (config.shadow || quarantines(config.max_rejected)) {
    throw new ConfigError(`pipeline ${config.name}: run --resume does not support shadow scoring or an error budget (max_rejected) yet; start a new run instead`);
  }
  const found = await audit.runWithChunks(runId);
  if (!found) throw new InputError(`run ${runId} is not in the audit table ${audit.location()}: nothing to resume`);
  const { run } = found;
  const problem =
    run.pipeline !== config.name ? `is a run of pipeline ${run.pipeline}, not ${config.name}` :
    run.logical_date !== logicalDate ? `scored ${run.logical_date}, not ${logicalDate}` :
    run.status === 'succeeded' ? 'succeeded: there is nothing to resume' :
    !run.model_sha256 ? 'failed before it pinned a model (at plan time): start a new run instead' : undefined;
  if (problem) throw new InputError(`run ${runId} ${problem}`);
  return found;
}

/** The pipeline as the resumed run scores it: its pinned model version; no profile (most chunks are not scored again). */
export function resumeConfig(config: PipelineConfig, from: ResumeFrom): PipelineConfig {
  return { ...config, model: `${from.run.model_name}:${from.run.model_version}`, profile: false };
}

/**
 * Which chunks to take over: those the run's chunk audit says were scored and whose staged file holds
 * the rows they reported. Refuses when the input or the model changed since (its fingerprint, its sha256).
 */
export async function reusableChunks(ctx: RunContext, config: PipelineConfig, run: RunRef, from: ResumeFrom, source: SourcePlan, modelSha256: string): Promise<{ staged: StagedChunk[]; totals: RunTotals }> {
  const was = from.run;
  if (was.model_sha256 !== modelSha256) {
    throw new InputError(`run ${run.runId} scored with ${was.model_name}:${was.model_version} sha256 ${was.model_sha256}, which the model store now holds as ${modelSha256}: start a new run instead`);
  }
  if (was.input_fingerprint && source.fingerprint !== was.input_fingerprint) {
    throw new InputError(`the input of ${config.name} ${run.logicalDate} changed since run ${run.runId} (fingerprint ${was.input_fingerprint} → ${source.fingerprint ?? 'none'}): start a new run instead`);
  }
  const onDisk = await ctx.connectors.sink(config).stagedChunks!(run);
  const planned = new Map(source.chunks.map((c) => [c.index, c.rows]));
  const totals: RunTotals = { chunksDone: 0, rowsIn: 0, rowsOut: 0, rowsRejected: 0, rowsImputed: 0, stageMs: { read: 0, convert: 0, infer: 0, write: 0 } };
  const staged: StagedChunk[] = [];
  for (const c of from.chunks) {
    const file = onDisk.get(c.chunk_index);
    if (c.status === 'failed' || !file || file.rows !== c.rows_out || planned.get(c.chunk_index) !== c.rows_in) continue;
    staged.push(file);
    totals.chunksDone += 1;
    totals.rowsIn += c.rows_in;
    totals.rowsOut += c.rows_out;
    totals.rowsRejected += c.rows_rejected;
    totals.rowsImputed += c.rows_imputed;
  }
  return { staged, totals };
}

/** The chunk audit rows of the reused chunks, marked `reused` (the rest as the first attempt wrote them). */
export function reusedChunkRows(from: ResumeFrom, staged: StagedChunk[]): ChunkAudit[] {
  const reused = new Set(staged.map((s) => s.index));
  return from.chunks.filter((c) => reused.has(c.chunk_index)).map((c) => ({ ...c, status: 'reused' as const }));
}
