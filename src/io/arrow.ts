/** Small Arrow helpers: build columns from typed arrays without per-row objects. */
import * as arrow from 'apache-arrow';

/** A dictionary-encoded string column holding one value n times (run_id, model_sha256, …): O(n) int32 zeros. */
export function constantUtf8(value: string, n: number): arrow.Vector {
  const dictionary = arrow.vectorFromArray([value], new arrow.Utf8());
  const type = new arrow.Dictionary(new arrow.Utf8(), new arrow.Int32());
  const data = arrow.makeData({ type, length: n, nullCount: 0, data: new Int32Array(n), dictionary });
  return arrow.makeVector(data);
}

export function constantTimestampMicros(date: Date, n: number): arrow.Vector {
  const micros = BigInt(date.getTime()) * 1000n;
  return arrow.makeVector(arrow.makeData({ type: new arrow.TimestampMicrosecond('UTC'), length: n, nullCount: 0, data: new BigInt64Array(n).fill(micros) }));
}

/** DATE column (days since epoch) holding one date n times. */
export function constantDate(isoDate: string, n: number): arrow.Vector {
  const days = Math.round(Date.parse(`${isoDate}T00:00:00Z`) / 86_400_000);
  return arrow.makeVector(arrow.makeData({ type: new arrow.DateDay(), length: n, nullCount: 0, data: new Int32Array(n).fill(days) }));
}

/** Rows `rows` of a vector, in order. Typed-array fast path for primitive columns without NULLs. */
export function takeRows(vector: arrow.Vector, rows: Int32Array): arrow.Vector {
  const data = vector.data.length === 1 ? vector.data[0] : undefined;
  const values = data?.values as ArrayLike<unknown> & { constructor: new (n: number) => ArrayLike<unknown> } | undefined;
  const primitive = data && data.nullCount === 0 && (arrow.DataType.isInt(vector.type) || arrow.DataType.isFloat(vector.type));
  if (primitive && values) {
    const out = new (values.constructor as new (n: number) => Record<number, unknown>)(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = values[data!.offset + rows[i]];
    return arrow.makeVector(arrow.makeData({ type: vector.type as arrow.Float, length: rows.length, nullCount: 0, data: out as unknown as Float32Array }));
  }
  const picked = Array.from(rows, (r) => vector.get(r));
  return arrow.vectorFromArray(picked, vector.type);
}

export function tableFromVectors(columns: Record<string, arrow.Vector>): arrow.Table {
  return new arrow.Table(columns);
}
