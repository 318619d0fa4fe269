/** Guessing a manifest from a model's input/output metadata (the shapes onnxruntime-node reports). */
import { describe, expect, it } from 'vitest';
import { featureNames, inferManifest } from '../../src/models/infer';

describe('inferManifest', () => {
  it('one [N, 32] float input → f00…f31; label + two-column probabilities → label, probabilities_1', () => {
    const m = inferManifest(
      [{ name: 'features', isTensor: true, type: 'float32', shape: ['', 32] }],
      [
        { name: 'label', isTensor: true, type: 'int64', shape: [''] },
        { name: 'probabilities', isTensor: true, type: 'float32', shape: ['', 2] },
      ],
    );
    expect(m.inputs).toEqual([{ name: 'features', dtype: 'float32', shape: [-1, 32], columns: featureNames(32) }]);
    expect(m.inputs[0].columns.slice(0, 2)).toEqual(['f00', 'f01']);
    expect(m.inputs[0].columns.at(-1)).toBe('f31');
    expect(m.outputs).toEqual([
      { tensor: 'label', column: 'label', dtype: 'int64' },
      { tensor: 'probabilities', index: 1, column: 'probabilities_1', dtype: 'float32' },
    ]);
    expect(m.notes.join('\n')).toMatch(/GUESSED: put your feature column names here/);
  });

  it('[N, 1] inputs are named after the input; ZipMap outputs are skipped with a note; wide outputs map every column', () => {
    const m = inferManifest(
      [
        { name: 'age', isTensor: true, type: 'float32', shape: ['N', 1] },
        { name: 'spend.eur', isTensor: true, type: 'float64', shape: ['N', 1] },
      ],
      [
        { name: 'output_probability', isTensor: false },
        { name: 'scores', isTensor: true, type: 'float32', shape: ['N', 3] },
      ],
    );
    expect(m.inputs.map((i) => [i.name, i.dtype, i.columns])).toEqual([
      ['age', 'float32', ['age']],
      ['spend.eur', 'float64', ['spend_eur']],
    ]);
    expect(m.outputs.map((o) => [o.column, o.index])).toEqual([
      ['scores_0', 0],
      ['scores_1', 1],
      ['scores_2', 2],
    ]);
    expect(m.notes.join('\n')).toMatch(/output "output_probability" skipped: not a tensor/);
  });

  it('several wide inputs get prefixed names, so they cannot collide', () => {
    const m = inferManifest(
      [
        { name: 'a', isTensor: true, type: 'float32', shape: ['N', 2] },
        { name: 'b', isTensor: true, type: 'int64', shape: ['N', 2] },
      ],
      [{ name: 'y', isTensor: true, type: 'float32', shape: ['N'] }],
    );
    expect(m.inputs.map((i) => i.columns)).toEqual([
      ['a_0', 'a_1'],
      ['b_0', 'b_1'],
    ]);
  });

  it('refuses what it cannot guess, saying why', () => {
    expect(() => inferManifest([{ name: 'img', isTensor: true, type: 'float32', shape: ['N', 3, 224, 224] }], [{ name: 'y', isTensor: true, type: 'float32', shape: ['N'] }])).toThrow(
      /cannot guess a manifest[\s\S]*input "img" has shape \[N, 3, 224, 224\]/,
    );
    expect(() => inferManifest([{ name: 'x', isTensor: true, type: 'float32', shape: ['N', 'F'] }], [{ name: 'y', isTensor: true, type: 'float32', shape: ['N'] }])).toThrow(/a guess needs \[N, F\] with a fixed F/);
    expect(() => inferManifest([{ name: 'x', isTensor: true, type: 'string', shape: ['N', 2] }], [{ name: 'y', isTensor: true, type: 'string', shape: ['N'] }])).toThrow(
      /input "x" is a string tensor[\s\S]*no output can be mapped/,
    );
  });
});
