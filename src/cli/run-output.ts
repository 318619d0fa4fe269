/** How a finished run is shown: the human summary and the --json object other tooling reads. */
import { webUiLink } from '../client';
import { driftJson, shadowJson } from '../runs';
import type { RunResult } from '../types';
import { formatDuration, formatRate } from './progress';
import { jsonSafe } from './table';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, jsonSafe)}\n`);
}

export function summaryLinesFor(r: RunResult, uiUrl?: string): string[] {
  const rate = r.durationMs > 0 ? (r.rowsIn / r.durationMs) * 1000 : 0;
  const lines = [
    `${r.status === 'succeeded' ? '✔' : '✘'} ${r.pipeline} ${r.logicalDate}: ${r.status} in ${formatDuration(r.durationMs)}`,
    `  rows in ${r.rowsIn.toLocaleString('en-US')}, out ${r.rowsOut.toLocaleString('en-US')}${r.rowsRejected ? `, rejected ${r.rowsRejected.toLocaleString('en-US')}` : ''}${r.rowsImputed ? `, imputed ${r.rowsImputed.toLocaleString('en-US')}` : ''}${r.rowsQuarantined ? `, quarantined ${r.rowsQuarantined.toLocaleString('en-US')}` : ''} (${formatRate(rate)}), ${r.chunks} chunk${r.chunks === 1 ? '' : 's'}`,
  ];
  if (r.model) lines.push(`  model   ${r.model.name}:${r.model.version} (${r.model.ref}, sha256 ${r.model.sha256.slice(0, 12)}…)`);
  if (r.output) lines.push(`  output  ${r.output}`);
  if (r.quarantine?.output && r.quarantine.rows > 0) lines.push(`  quarantine ${r.quarantine.output}: ${r.quarantine.rows.toLocaleString('en-US')} rows that could not be scored (within max_rejected)`);
  if (r.quarantine?.error) lines.push(`  warning ${r.quarantine.error}`);
  if (r.drift) lines.push(`  drift   ${driftLine(r.drift)}`);
  if (r.shadow) {
    const a = r.shadow.agreement;
    const rates = Object.entries(a.columns).map(([c, v]) => `${c} ${v.agreement_rate === null ? '-' : `${(100 * v.agreement_rate).toFixed(1)}%`}`).join(', ');
    lines.push(`  shadow  ${r.shadow.model.name}:${r.shadow.model.version} → ${r.shadow.output ?? 'not committed'}; agreement over ${a.rows_compared.toLocaleString('en-US')} rows: ${rates || 'none'}${a.error ? ` (${a.error})` : ''}`);
  }
  if (r.reusedChunks !== undefined) lines.push(`  resumed: ${r.reusedChunks} of ${r.chunks} chunks taken over from the run's staging, ${r.chunks - r.reusedChunks} scored`);
  if (r.resumableUntil) lines.push(`  staged chunks kept until ${r.resumableUntil}: resume with scoreline run ${r.pipeline} --resume ${r.runId}`);
  if (r.rescoreOf && r.status === 'succeeded') {
    lines.push(`  rescore of run ${r.rescoreOf}: ${r.rowsOut.toLocaleString('en-US')} of its ${r.rowsIn.toLocaleString('en-US')} quarantined rows scored and appended, ${(r.rowsQuarantined ?? 0).toLocaleString('en-US')} still quarantined`);
  }
  // Local audit tables are queried with `scoreline sql`; a warehouse location names its tables itself.
  if (r.audit) lines.push(`  audit   ${r.audit}${/^[a-z]+:\/\//.test(r.audit) ? '' : ' (scoreline sql "SELECT * FROM scoreline_runs")'}`);
  if (r.stageMs && r.status === 'succeeded') {
    const s = r.stageMs;
    lines.push(`  time in chunks: read ${s.read}ms, convert ${s.convert}ms, infer ${s.infer}ms, write ${s.write}ms (summed over parallel chunks)`);
  }
  if (uiUrl) lines.push(`  web UI  ${webUiLink(uiUrl, 'default', r.workflowId, r.runId)}`);
  lines.push(`  run id  ${r.runId}`);
  if (r.error) lines.push(`  error   ${r.error}`);
  return lines;
}

export function resultJson(r: RunResult): Record<string, unknown> {
  return {
    run_id: r.runId,
    workflow_id: r.workflowId,
    pipeline: r.pipeline,
    logical_date: r.logicalDate,
    status: r.status,
    rows_in: r.rowsIn,
    rows_out: r.rowsOut,
    rows_rejected: r.rowsRejected,
    rows_imputed: r.rowsImputed,
    rows_quarantined: r.rowsQuarantined ?? 0,
    quarantine: r.quarantine?.output ?? null,
    rescore_of: r.rescoreOf ?? null,
    reused_chunks: r.reusedChunks ?? null,
    resumable_until: r.resumableUntil ?? null,
    chunks: r.chunks,
    duration_ms: r.durationMs,
    rows_per_s: r.durationMs > 0 ? Math.round((r.rowsIn / r.durationMs) * 1000) : null,
    output: r.output ?? null,
    audit: r.audit ?? null,
    model: r.model ? `${r.model.name}:${r.model.version}` : null,
    model_sha256: r.model?.sha256 ?? null,
    stage_ms: r.stageMs ?? null,
    // Drift against the reference (docs/drift.md) and the challenger's agreement (docs/models.md), as the run's result holds them.
    drift: driftJson(r),
    shadow: shadowJson(r),
    error: r.error ?? null,
  };
}

/** `2 of 34 columns drifted vs run … (2026-11-05): f03, churn_probability`, or why there is nothing to compare. */
function driftLine(d: NonNullable<RunResult['drift']>): string {
  if (d.error) return d.error;
  if (!d.reference) return 'no reference yet (the first profiled run of this pipeline is the next run\'s reference)';
  const breached = d.breached.map((c) => c.column);
  return `${breached.length} of ${d.columns.length} columns drifted vs ${d.reference}${breached.length ? `: ${breached.join(', ')}` : ''}`;
}

export function waitForSignal(): Promise<void> {
  return new Promise((resolvePromise) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolvePromise();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

