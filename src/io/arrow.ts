/** Small Arrow helpers: build columns from typed arrays without per-row objects. */
import * as arrow from 'apache-arrow';

/** Rows `rows` of a vector, in order. Typed-array fast path for primitive columns without NULLs. */
export function takeRows(vector: arrow.Vector, rows: Int32Array): arrow.Vector {
  const data = vector.data.length === 1 ? vector.data[0] : undefined;
  const values = data?.values as ArrayLike<unknown> & { constructor: new (n: number) => ArrayLike<unknown> } | undefined;
  const primitive = data && data.nullCount === 0 && (arrow.DataType.isInt(vector.type) || arrow.DataType.isFloat(vector.type));
  if (primitive && values) {
    const out = new (values.constructor as new (n: number) => Record<number, unknown>)(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = values[rows[i]]; // values of a sliced batch are already sliced
    return arrow.makeVector(arrow.makeData({ type: vector.type as arrow.Float, length: rows.length, nullCount: 0, data: out as unknown as Float32Array }));
  }
  const picked = Array.from(rows, (r) => vector.get(r));
  return arrow.vectorFromArray(picked, vector.type);
}
