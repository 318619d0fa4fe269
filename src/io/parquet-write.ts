/**
 * Parquet writing through DuckDB, chosen by benchmark (bench/parquet-libs.ts: ~13M rows/s, against
 * ~1.5–2.4M for parquet-wasm and 70k for parquetjs-lite). Arrow columns are copied into DuckDB data
 * chunks as raw bytes (typed arrays and validity bitmaps share DuckDB's layout), constant columns
 * (run_id, model_sha256, …) are added in the COPY's SELECT instead of being materialised per row, and
 * the COPY runs on DuckDB's threads, so the worker's event loop stays free. Files are written to a
 * temporary name and renamed: a reader never sees half a file.
 */
import { promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import {
  BIGINT,
  DATE,
  DOUBLE,
  DuckDBDataChunk,
  FLOAT,
  INTEGER,
  SMALLINT,
  TIMESTAMPTZ,
  TINYINT,
  UBIGINT,
  UINTEGER,
  USMALLINT,
  UTINYINT,
  VARCHAR,
  type DuckDBConnection,
  type DuckDBType,
} from '@duckdb/node-api';
import * as duck from '@duckdb/node-bindings';
import * as arrow from 'apache-arrow';
import { quoteIdent, sqlString, withConnection } from './duckdb';

/** A column with one value for every row, written by SQL (no per-row memory). */
export interface ConstantColumn {
  name: string;
  sqlType: 'VARCHAR' | 'DATE' | 'TIMESTAMPTZ';
  value: string;
}

interface ColumnWriter {
  duckType: DuckDBType;
  sqlType: string;
  /** Fill rows [row, row + n) of the source into `vector` rows [0, n). */
  fill(vector: duck.Vector, row: number, n: number): void;
}

let tableCounter = 0;

export async function writeParquetFile(path: string, table: arrow.Table, constants: ConstantColumn[] = []): Promise<number> {
  await fs.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const fields = table.schema.fields;
  const sqlTypes = fields.map((f) => columnWriter(undefined, f.type, f.name).sqlType);
  const name = `scoreline_write_${process.pid}_${++tableCounter}`;
  await withConnection(async (con) => {
    await con.run(`CREATE TEMP TABLE ${name} (${fields.map((f, i) => `${quoteIdent(f.name)} ${sqlTypes[i]}`).join(', ')})`);
    try {
      for (const batch of table.batches) {
        if (batch.numRows === 0) continue;
        await append(con, name, fields.map((f, i) => columnWriter(batch.getChildAt(i)!.data[0], f.type, f.name)), batch.numRows);
      }
      const select = [
        ...fields.map((f) => quoteIdent(f.name)),
        ...constants.map((c) => `${constantSql(c)} AS ${quoteIdent(c.name)}`),
      ].join(', ');
      await con.run(`COPY (SELECT ${select} FROM ${name}) TO ${sqlString(tmp)} (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 65536)`);
    } finally {
      await con.run(`DROP TABLE IF EXISTS ${name}`);
    }
  });
  const { size } = await fs.stat(tmp);
  await fs.rename(tmp, path);
  return size;
}

/**
 * A constant text column as a one-value ENUM: DuckDB writes an ENUM as the same Parquet string column
 * (BYTE_ARRAY, String, dictionary-encoded, same statistics), read back as VARCHAR by DuckDB and as
 * `string` by pyarrow, but from the enum's index instead of hashing every row's text into the
 * dictionary: a 262,144-row chunk with the four contract constants writes in ~19 instead of ~60 ms.
 */
function constantSql(c: ConstantColumn): string {
  const value = sqlString(c.value);
  return c.sqlType === 'VARCHAR' ? `${value}::ENUM(${value})` : `${value}::${c.sqlType}`;
}

async function append(con: DuckDBConnection, table: string, writers: ColumnWriter[], rows: number): Promise<void> {
  const appender = await con.createAppender(table);
  const chunk = DuckDBDataChunk.create(writers.map((w) => w.duckType));
  const size = duck.vector_size();
  try {
    for (let row = 0; row < rows; row += size) {
      const n = Math.min(size, rows - row);
      chunk.reset();
      chunk.rowCount = n;
      writers.forEach((w, i) => w.fill(duck.data_chunk_get_vector(chunk.chunk, i), row, n));
      appender.appendDataChunk(chunk);
    }
  } finally {
    appender.closeSync();
  }
}

const INT_TYPES: Record<number, [[string, DuckDBType], [string, DuckDBType]]> = {
  8: [['TINYINT', TINYINT], ['UTINYINT', UTINYINT]],
  16: [['SMALLINT', SMALLINT], ['USMALLINT', USMALLINT]],
  32: [['INTEGER', INTEGER], ['UINTEGER', UINTEGER]],
  64: [['BIGINT', BIGINT], ['UBIGINT', UBIGINT]],
};

/** Arrow types whose values DuckDB stores in the same fixed-width layout. */
function fixedWidth(type: arrow.DataType): { sql: string; duckType: DuckDBType; bytes: number } | undefined {
  if (arrow.DataType.isFloat(type)) {
    const p = (type as arrow.Float).precision;
    if (p === arrow.Precision.SINGLE) return { sql: 'FLOAT', duckType: FLOAT, bytes: 4 };
    if (p === arrow.Precision.DOUBLE) return { sql: 'DOUBLE', duckType: DOUBLE, bytes: 8 };
    return undefined;
  }
  if (arrow.DataType.isInt(type)) {
    const { bitWidth, isSigned } = type as arrow.Int;
    const [sql, duckType] = INT_TYPES[bitWidth][isSigned ? 0 : 1];
    return { sql, duckType, bytes: bitWidth / 8 };
  }
  if (arrow.DataType.isDate(type) && (type as arrow.Date_).unit === arrow.DateUnit.DAY) return { sql: 'DATE', duckType: DATE, bytes: 4 };
  return undefined;
}

function columnWriter(data: arrow.Data | undefined, type: arrow.DataType, name: string): ColumnWriter {
  const fixed = fixedWidth(type);
  if (fixed) {
    return {
      duckType: fixed.duckType,
      sqlType: fixed.sql,
      fill(vector, row, n) {
        if (!data) return;
        const values = data.values as ArrayBufferView;
        const start = values.byteOffset + row * fixed.bytes; // values of a sliced batch are already sliced
        duck.copy_data_to_vector(vector, 0, values.buffer as ArrayBuffer, start, n * fixed.bytes);
        copyValidity(vector, data, row, n);
      },
    };
  }
  if (arrow.DataType.isTimestamp(type)) {
    const toMicros = { [arrow.TimeUnit.SECOND]: 1_000_000n, [arrow.TimeUnit.MILLISECOND]: 1000n, [arrow.TimeUnit.MICROSECOND]: 1n, [arrow.TimeUnit.NANOSECOND]: 0n }[(type as arrow.Timestamp).unit];
    return {
      duckType: TIMESTAMPTZ,
      sqlType: 'TIMESTAMPTZ',
      fill(vector, row, n) {
        if (!data) return;
        const src = data.values as unknown as BigInt64Array;
        const micros = new BigInt64Array(n);
        for (let i = 0; i < n; i++) {
          const v = src[row + i];
          micros[i] = toMicros === 0n ? v / 1000n : v * toMicros;
        }
        duck.copy_data_to_vector(vector, 0, micros.buffer, 0, n * 8);
        copyValidity(vector, data, row, n);
      },
    };
  }
  if (arrow.DataType.isUtf8(type) || (arrow.DataType.isDictionary(type) && arrow.DataType.isUtf8((type as arrow.Dictionary).dictionary))) {
    const vector = data ? arrow.makeVector(data) : undefined;
    return {
      duckType: VARCHAR,
      sqlType: 'VARCHAR',
      fill(target, row, n) {
        if (!vector || !data) return;
        for (let i = 0; i < n; i++) {
          const v = vector.get(row + i) as string | null;
          duck.vector_assign_string_element(target, i, v ?? '');
        }
        copyValidity(target, data, row, n);
      },
    };
  }
  throw new Error(`internal: cannot write column "${name}" of Arrow type ${type} to Parquet`);
}

/** Arrow's validity bitmap and DuckDB's validity mask are both LSB-first bits: copy the bytes. */
function copyValidity(vector: duck.Vector, data: arrow.Data, row: number, n: number): void {
  if (data.nullCount === 0 || !data.nullBitmap || data.nullBitmap.length === 0) return;
  duck.vector_ensure_validity_writable(vector);
  const first = data.offset + row;
  let bytes: Uint8Array;
  if (first % 8 === 0) {
    bytes = data.nullBitmap.subarray(first >> 3, (first >> 3) + Math.ceil(n / 8));
  } else {
    bytes = new Uint8Array(Math.ceil(n / 8));
    for (let i = 0; i < n; i++) {
      const bit = first + i;
      if (data.nullBitmap[bit >> 3] & (1 << (bit & 7))) bytes[i >> 3] |= 1 << (i & 7);
    }
  }
  const copy = bytes.slice(); // own buffer: copy_data_to_vector_validity takes an ArrayBuffer + offset
  duck.copy_data_to_vector_validity(vector, 0, copy.buffer, 0, copy.length);
}
