/**
 * A chunk's profile from what scoring already holds: the feature tensors (after the NULL policy) and
 * the prediction columns; NULL counts from the source batch. One pass over each tensor, no copies.
 */
import type * as arrow from 'apache-arrow';
import type { ModelManifest } from '../models/manifest';
import type { BuiltTensor, OutputColumn } from '../scoring/tensor';
import { int64AsDoubles, profileColumn, profileMatrix, type ColumnProfile, type Profile } from './sketch';

/** Feature columns, in the manifest's first-use order. Call before the tensors are handed to inference. */
export function profileFeatures(batch: arrow.RecordBatch, tensors: BuiltTensor[], manifest: ModelManifest): ColumnProfile[] {
  const out: ColumnProfile[] = [];
  const seen = new Set<string>();
  for (const input of manifest.inputs) {
    const tensor = tensors.find((t) => t.name === input.name);
    if (!tensor || input.columns.every((c) => seen.has(c))) continue;
    const [rows, width] = tensor.dims;
    const nulls = input.columns.map((c) => batch.getChild(c)?.nullCount ?? 0);
    const values = tensor.data instanceof BigInt64Array ? int64AsDoubles(tensor.data) : tensor.data;
    const profiles = profileMatrix(input.columns, 'feature', values, rows, width, nulls);
    for (const p of profiles) {
      if (seen.has(p.column)) continue;
      seen.add(p.column);
      out.push(p);
    }
  }
  return out;
}

export function profilePredictions(predictions: Map<string, OutputColumn>): ColumnProfile[] {
  return [...predictions].map(([column, values]) => profileColumn(column, 'prediction', values, values.length));
}

export function chunkProfile(features: ColumnProfile[], predictions: Map<string, OutputColumn>): Profile {
  return { columns: [...features, ...profilePredictions(predictions)] };
}
