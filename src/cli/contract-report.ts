/** The text form of `scoreline models register --sample-from`'s contract report (src/models/contract.ts). */
import type { ColumnCheck, ContractReport } from '../models/contract';
import { formatRate } from './progress';
import { formatTable } from './table';

const n = (v: number) => v.toLocaleString('en-US');
const indent = (text: string, by = '  ') => text.split('\n').map((l) => `${by}${l}`).join('\n');

/** Consecutive feature columns that read, feed and cast alike are one row: `f00 … f31 (32)`. */
function columnRows(columns: ColumnCheck[]): Record<string, string>[] {
  const rows: Record<string, string>[] = [];
  const same = (a: ColumnCheck, b: ColumnCheck) =>
    a.role === 'feature' && b.role === 'feature' && !a.problem && !b.problem &&
    a.source_type === b.source_type && a.read_as === b.read_as && a.feeds === b.feeds && a.cast === b.cast && a.status === b.status;
  for (let i = 0; i < columns.length; ) {
    let j = i + 1;
    while (j < columns.length && same(columns[i], columns[j])) j++;
    const c = columns[i];
    const count = j - i;
    rows.push({
      column: count > 1 ? `${c.column} … ${columns[j - 1].column} (${count})` : c.column,
      role: c.role,
      'source type': c.source_type ?? '-',
      'read as': c.read_as ?? '-',
      feeds: c.feeds ?? '-',
      cast: c.cast ?? '-',
      status: c.status === 'ok' ? 'ok' : `✘ ${c.status}`,
    });
    i = j;
  }
  return rows;
}

export function contractReportText(r: ContractReport): string {
  const out: string[] = [];
  const src = r.source;
  const what = src.kind === 'pipeline' ? `pipeline ${src.name}, ${src.logical_date}` : src.name;
  out.push(`Contract check of ${r.model.name}:${r.model.version} (${r.model.path}) against ${what}: ${r.ok ? 'OK' : 'FAILED'}`);
  const inputs = src.inputs.length ? `${src.inputs[0]}${src.inputs.length > 1 ? ` and ${src.inputs.length - 1} more` : ''}` : 'no input';
  out.push(`  source  ${inputs}${src.rows !== null ? ` (${n(src.rows)} rows)` : ''}${r.sample ? `; sampled the first ${n(r.sample.rows_read)}` : ''}`);
  out.push(`  policy  features.cast ${src.policy.cast}, features.nulls ${src.policy.nulls} (${src.policy_from})${src.keys.length ? `; key ${src.keys.join(', ')}` : ''}`);

  if (r.columns.length) {
    out.push('', 'Columns', indent(formatTable(columnRows(r.columns))));
    const notes = [...new Map(r.columns.filter((c) => c.cast === 'checked' || c.cast === 'lossy').map((c) => [c.cast_note, c.column])).entries()];
    for (const [note, column] of notes) out.push(`  ${column}: ${note}`);
  }
  out.push('', 'Outputs');
  if (r.outputs.length) {
    out.push(indent(formatTable(r.outputs.map((o) => ({ output: o.tensor, type: o.type, 'made by': o.produced_by ?? '-', handling: o.handling })))));
    for (const o of r.outputs) if (o.note) out.push(`  ${o.tensor}: ${o.note}`);
  } else {
    out.push('  (the model file\'s outputs could not be read)');
  }

  if (r.sample) {
    const s = r.sample;
    const extra = [s.rows_rejected ? `${n(s.rows_rejected)} skipped for NULLs` : '', s.rows_imputed ? `${n(s.rows_imputed)} imputed` : ''].filter(Boolean).join(', ');
    out.push('', `Predictions on the sample (${n(s.rows_scored)} rows scored${extra ? `; ${extra}` : ''})`);
    out.push(indent(formatTable(s.predictions.map((p) => ({ column: p.column, dtype: p.dtype, min: p.min ?? '-', max: p.max ?? '-', mean: p.mean ?? '-', 'NaN/inf': p.non_finite })))));
  }

  if (r.timing) {
    const t = r.timing;
    out.push('', 'Time and memory (estimates, measured on this machine)');
    out.push(
      `  time     ${t.ms_per_1k_rows} ms per 1k rows on the ${n(t.sample_rows)}-row sample (median of ${t.runs} runs, 1 ONNX Runtime thread)` +
        (t.ms_per_1k_rows_at_slice !== null ? `; ${t.ms_per_1k_rows_at_slice} ms per 1k rows in ${n(t.slice_rows!)}-row runs` : '') +
        ` → ~${formatRate(t.rows_per_s_per_thread)} per inference thread`,
    );
  }
  if (r.memory) {
    const m = r.memory;
    out.push(
      `  memory   ~${m.total_mib_per_1k_rows} MiB per 1k rows = ONNX Runtime ${m.ort_mib_per_1k_rows} (peak RSS growth scoring ${n(m.probe_rows)} rows, 3 runs, fresh process${m.peak_from === 'maxRSS' ? ', an upper bound' : ''})` +
        ` + chunk data ${m.chunk_mib_per_1k_rows} (read ${m.bytes_per_row.read} B + tensors ${m.bytes_per_row.tensors} B + predictions ${m.bytes_per_row.predictions} B per row)`,
    );
    out.push(`  session  ${m.session_mib} MiB for the first session in a process (ONNX Runtime start-up + model), ${m.extra_session_mib} MiB each further one`);
  }
  if (r.chunk_rows) {
    const c = r.chunk_rows;
    out.push('', `chunk_rows for a worker under ${n(c.memory_target_mib)} MiB (${c.concurrency} activity slots, ${c.inference_threads} inference threads${c.ort_batch_rows ? `, ${n(c.ort_batch_rows)}-row inference slices` : ', whole-chunk inference'})`);
    const rows: Record<string, string>[] = [{ chunk_rows: `auto = ${n(c.auto)}`, 'est. peak': `${n(c.auto_peak_mib)} MiB`, fits: c.auto_peak_mib <= c.memory_target_mib ? 'yes' : 'no' }];
    if (c.configured !== null) rows.push({ chunk_rows: `pipeline: ${n(c.configured)}`, 'est. peak': `${n(c.configured_peak_mib!)} MiB`, fits: c.configured_peak_mib! <= c.memory_target_mib ? 'yes' : 'no' });
    if (c.max_fit !== null) rows.push({ chunk_rows: `largest that fits: ${n(c.max_fit)}`, 'est. peak': `${n(c.max_fit_peak_mib!)} MiB`, fits: 'yes' });
    out.push(indent(formatTable(rows)));
    out.push(`  ${c.formula}`, `  → ${c.advice}`);
  }
  if (r.warnings.length) out.push('', 'Warnings', ...r.warnings.map((w) => `  - ${w}`));
  if (r.problems.length) out.push('', 'Problems (nothing was registered)', ...r.problems.map((p) => `  ✘ ${p}`));
  return `${out.join('\n')}\n`;
}
