/**
 * A manifest guessed from the model's own inputs and outputs, for `models register` without
 * `--manifest`. What cannot be known from the graph — the feature column names — is guessed
 * (`f00…f31` for one [N, 32] input, the input's name for an [N, 1] input) and every guess is reported,
 * so the user knows what to edit.
 */
import { ModelError } from '../errors';
import { TENSOR_DTYPES, type InputSpec, type OutputSpec, type TensorDtype } from './manifest';

/** The part of onnxruntime-node's `InferenceSession.ValueMetadata` the guess needs. */
export interface TensorMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: ReadonlyArray<number | string>;
}

export interface InferredManifest {
  inputs: InputSpec[];
  outputs: OutputSpec[];
  /** One line per guess or skipped output, for the user to check. */
  notes: string[];
}

const isDtype = (t: string | undefined): t is TensorDtype => (TENSOR_DTYPES as readonly string[]).includes(t ?? '');

/** A column name from a tensor name: invalid characters become `_`. */
export function columnName(tensorName: string): string {
  let name = tensorName.replace(/[^A-Za-z0-9_]/g, '_');
  if (!/^[A-Za-z_]/.test(name)) name = `c_${name}`;
  return name.slice(0, 128);
}

/** `f0…f9` for 10 features, `f00…f31` for 32: zero-padded so the columns sort in tensor order. */
export function featureNames(count: number, prefix = 'f'): string[] {
  const width = String(count - 1).length;
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(width, '0')}`);
}

export function inferManifest(inputs: readonly TensorMetadata[], outputs: readonly TensorMetadata[]): InferredManifest {
  const problems: string[] = [];
  const notes: string[] = [];
  const specs: InputSpec[] = [];
  const wide = inputs.filter((i) => typeof i.shape?.[1] === 'number' && (i.shape[1] as number) > 1);
  for (const input of inputs) {
    const shape = input.shape ?? [];
    if (!input.isTensor || !isDtype(input.type)) {
      problems.push(`input "${input.name}" is ${input.isTensor ? `a ${input.type} tensor` : 'not a tensor'}; Scoreline feeds ${TENSOR_DTYPES.join(', ')} tensors`);
      continue;
    }
    const width = shape[1];
    if (shape.length !== 2 || typeof width !== 'number' || width < 1) {
      problems.push(`input "${input.name}" has shape [${shape.map((d) => (d === '' ? '?' : d)).join(', ')}]; a guess needs [N, F] with a fixed F`);
      continue;
    }
    let columns: string[];
    if (width === 1) {
      columns = [columnName(input.name)];
      notes.push(`input "${input.name}" [N, 1] ← column ${columns[0]} (named after the input)`);
    } else {
      // One wide input: f00…; several: prefixed by the input's name so they cannot collide.
      columns = wide.length === 1 ? featureNames(width) : featureNames(width, `${columnName(input.name)}_`);
      notes.push(`input "${input.name}" [N, ${width}] ← columns ${columns[0]} … ${columns.at(-1)} (GUESSED: put your feature column names here, in tensor order)`);
    }
    specs.push({ name: input.name, dtype: input.type, shape: [-1, width], columns });
  }
  const outs: OutputSpec[] = [];
  for (const output of outputs) {
    if (!output.isTensor) {
      notes.push(`output "${output.name}" skipped: not a tensor (e.g. a ZipMap); export with zipmap=False to map probabilities`);
      continue;
    }
    if (!isDtype(output.type)) {
      notes.push(`output "${output.name}" skipped: ${output.type} tensors cannot be written (${TENSOR_DTYPES.join(', ')} only)`);
      continue;
    }
    const shape = output.shape ?? [];
    const width = shape.length >= 2 ? shape[1] : 1;
    if (shape.length > 2 || typeof width !== 'number') {
      notes.push(`output "${output.name}" skipped: shape [${shape.join(', ')}] has no fixed width; map it by hand with index:`);
      continue;
    }
    const base = columnName(output.name);
    if (width === 1) {
      outs.push({ tensor: output.name, column: base, dtype: output.type });
      notes.push(`output "${output.name}" → column ${base}`);
    } else if (width === 2) {
      // A binary classifier's [N, 2] probabilities: column 1 is P(class 1), column 0 is its complement.
      outs.push({ tensor: output.name, index: 1, column: `${base}_1`, dtype: output.type });
      notes.push(`output "${output.name}" [N, 2] → column ${base}_1 = ${output.name}[:, 1] (class 1; add index 0 if you want it too)`);
    } else {
      for (let i = 0; i < width; i++) outs.push({ tensor: output.name, index: i, column: `${base}_${i}`, dtype: output.type });
      notes.push(`output "${output.name}" [N, ${width}] → columns ${base}_0 … ${base}_${width - 1}`);
    }
  }
  if (outs.length === 0) problems.push(`no output can be mapped (outputs: ${outputs.map((o) => o.name).join(', ') || 'none'})`);
  if (problems.length) {
    throw new ModelError(`cannot guess a manifest for this model; write one (docs/models.md) and pass --manifest:\n  - ${problems.join('\n  - ')}`);
  }
  return { inputs: specs, outputs: outs, notes };
}
