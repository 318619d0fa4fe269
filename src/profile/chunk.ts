/**
 * A chunk's profile from what scoring already holds: the feature tensors (after the NULL policy) and
 * the prediction columns; NULL counts from the source batch. One pass per column, no copies.
 */
import type * as arrow from 'apache-arrow';
import type { ModelManifest } from '../models/manifest';
import type { BuiltTensor, OutputColumn } from '../scoring/tensor';
import { profileColumn, type ColumnProfile, type Profile } from './sketch';

/** Feature columns, in the manifest's first-use order. Call before the tensors are handed to inference. */
export function profileFeatures(batch: arrow.RecordBatch, tensors: BuiltTensor[], manifest: ModelManifest): ColumnProfile[] {
  const out: ColumnProfile[] = [];
  const seen = new Set<string>();
  for (const input of manifest.inputs) {
    const tensor = tensors.find((t) => t.name === input.name);
    if (!tensor) continue;
    const [rows, width] = tensor.dims;
    input.columns.forEach((column, j) => {
      if (seen.has(column)) return;
      seen.add(column);
      out.push(profileColumn(column, 'feature', tensor.data, rows, width, j, batch.getChild(column)?.nullCount ?? 0));
    });
  }
  return out;
}

export function profilePredictions(predictions: Map<string, OutputColumn>): ColumnProfile[] {
  return [...predictions].map(([column, values]) => profileColumn(column, 'prediction', values, values.length));
}

export function chunkProfile(features: ColumnProfile[], predictions: Map<string, OutputColumn>): Profile {
  return { columns: [...features, ...profilePredictions(predictions)] };
}
