/**
 * A chunk's profile from what scoring already holds: the feature tensors (after the NULL policy) and
 * the prediction columns; NULL counts from the source batch. One pass over each tensor, no copies. The
 * kernel is plain JS (src/profile/kernel.js) so the inference threads run the same code on the tensors
 * they hold (InferencePool.run with `profile`), off the worker's main thread.
 */
import { join } from 'node:path';
import type * as arrow from 'apache-arrow';
import type { ModelManifest } from '../models/manifest';
import { packageRoot } from '../paths';
import type { BuiltTensor, OutputColumn } from '../scoring/tensor';
import type { ColumnProfile, Profile, ProfileRole } from './sketch';

interface ProfileKernel {
  profileColumn(column: string, role: ProfileRole, data: ArrayLike<number | bigint>, rows: number, stride?: number, offset?: number, nulls?: number): ColumnProfile;
  profileMatrix(columns: string[], role: ProfileRole, data: ArrayLike<number>, rows: number, width: number, nulls?: number[], simd?: boolean): ColumnProfile[];
  profileTensors(tensors: Pick<BuiltTensor, 'name' | 'dims' | 'data'>[], specs: TensorProfileSpec[]): ColumnProfile[];
  simdAvailable(): boolean;
}

/** The kernel file's path: the inference threads load it from there too. */
export const PROFILE_KERNEL = join(packageRoot(), 'src', 'profile', 'kernel.js');
const kernel = require(PROFILE_KERNEL) as ProfileKernel;
export const { profileColumn, profileMatrix, simdAvailable } = kernel;

/** What a tensor's profile needs besides its data: its columns and their NULL counts in the source. */
export interface TensorProfileSpec {
  tensor: string;
  columns: string[];
  nulls: number[];
}

/** Per input tensor of the manifest: the columns it feeds and their NULLs in this chunk's source batch. */
export function featureProfileSpecs(batch: arrow.RecordBatch, manifest: ModelManifest): TensorProfileSpec[] {
  return manifest.inputs.map((input) => ({ tensor: input.name, columns: input.columns, nulls: input.columns.map((c) => batch.getChild(c)?.nullCount ?? 0) }));
}

/** Feature columns, in the manifest's first-use order, each once. Call before the tensors are handed to inference. */
export function profileFeatures(tensors: BuiltTensor[], specs: TensorProfileSpec[]): ColumnProfile[] {
  return firstOfEach(kernel.profileTensors(tensors, specs));
}

/** A column fed to two inputs is profiled once (the first). */
export function firstOfEach(profiles: ColumnProfile[]): ColumnProfile[] {
  const seen = new Set<string>();
  return profiles.filter((p) => !seen.has(p.column) && seen.add(p.column));
}

export function profilePredictions(predictions: Map<string, OutputColumn>): ColumnProfile[] {
  return [...predictions].map(([column, values]) => kernel.profileColumn(column, 'prediction', values, values.length));
}

export function chunkProfile(features: ColumnProfile[], predictions: Map<string, OutputColumn>): Profile {
  return { columns: [...features, ...profilePredictions(predictions)] };
}
