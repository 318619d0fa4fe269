/**
 * `scoreline.model.yaml`: which feature columns feed which ONNX input tensor, and which output tensor
 * (or which column of it) becomes which output column.
 */
import { z } from 'zod';
import { COLUMN_PATTERN } from '../config/pipeline';

export const TENSOR_DTYPES = ['float32', 'float64', 'int64', 'int32'] as const;
export type TensorDtype = (typeof TENSOR_DTYPES)[number];

const column = z.string().regex(COLUMN_PATTERN, 'a column name');

const inputSpec = z.strictObject({
  /** ONNX input name. */
  name: z.string().min(1),
  dtype: z.enum(TENSOR_DTYPES),
  /** [-1, F] takes F columns in order; [-1, 1] one column; -1 is the batch dimension. */
  shape: z.tuple([z.literal(-1), z.number().int().min(1)]),
  columns: z.array(column).min(1),
});

const outputSpec = z.strictObject({
  /** ONNX output name. Only mapped outputs are fetched, so ZipMap outputs can simply be left out. */
  tensor: z.string().min(1),
  /** Column of a [N, K] output; omit for [N] or [N, 1]. */
  index: z.number().int().min(0).optional(),
  column,
  dtype: z.enum(TENSOR_DTYPES),
});

export const manifestSchema = z
  .strictObject({
    name: z.string().min(1),
    version: z.union([z.string(), z.number()]).transform(String),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 lower-case hex digits'),
    description: z.string().optional(),
    created_at: z.union([z.string(), z.date()]).transform((v) => (v instanceof Date ? v.toISOString() : v)).optional(),
    framework: z.string().optional(),
    /** Written by `scoreline models register`: who (SCORELINE_USER or the OS user) and when. */
    registered_by: z.string().optional(),
    registered_at: z.union([z.string(), z.date()]).transform((v) => (v instanceof Date ? v.toISOString() : v)).optional(),
    inputs: z.array(inputSpec).min(1),
    outputs: z.array(outputSpec).min(1),
  })
  .superRefine((m, ctx) => {
    m.inputs.forEach((input, i) => {
      if (input.columns.length !== input.shape[1]) {
        ctx.addIssue({
          code: 'custom',
          path: ['inputs', i, 'columns'],
          message: `${input.columns.length} columns listed but shape [-1, ${input.shape[1]}] takes ${input.shape[1]}`,
        });
      }
    });
    const seen = new Set<string>();
    m.outputs.forEach((o, i) => {
      if (seen.has(o.column)) ctx.addIssue({ code: 'custom', path: ['outputs', i, 'column'], message: `duplicate output column "${o.column}"` });
      seen.add(o.column);
    });
  });

export type ModelManifest = z.output<typeof manifestSchema>;
export type InputSpec = ModelManifest['inputs'][number];
export type OutputSpec = ModelManifest['outputs'][number];

/** Every feature column the model reads, in first-use order, without duplicates. */
export function featureColumns(manifest: ModelManifest): string[] {
  return [...new Set(manifest.inputs.flatMap((i) => i.columns))];
}
