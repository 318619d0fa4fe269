/**
 * Near-real-time request bodies → one Arrow IPC stream, the form rows travel through Temporal in.
 *
 * JSON numbers become float64 columns, booleans bool columns, strings utf8 (which the model then refuses
 * with the batch path's message if it is a feature): a JSON number is a double, so the batch cast policy
 * applies unchanged (e.g. 1e39 into a float32 input is an error). Arrow IPC bodies keep the sender's
 * types, exactly like a Parquet source. Rows are one binary payload in history (float64: 8 bytes a value),
 * not row objects, so a 1,000 × 32 request is ~260 KB instead of ~700 KB of JSON.
 */
import * as arrow from 'apache-arrow';
import { InputError } from '../errors';

/**
 * Temporal refuses payloads over 2 MiB (`limit.blobSize.error`); the rows are one payload of the
 * request, so they must stay well below it.
 */
export const MAX_ROWS_BYTES = 1_500_000;
/** Upper bound on rows per request regardless of width (the JSON response and history stay small). */
export const MAX_ROWS_PER_REQUEST = 10_000;
const MAX_COLUMNS = 10_000;

export class RowsError extends InputError {
  constructor(
    message: string,
    /** The body is too large for one request (HTTP 413) rather than malformed (400). */
    readonly tooLarge = false,
  ) {
    super(message);
  }
}

export interface EncodedRows {
  /** Arrow IPC stream with one record batch per input batch. */
  ipc: Uint8Array;
  /** The same rows, decoded (the API echoes key columns from it). */
  table: arrow.Table;
  rows: number;
  columns: string[];
}

type Kind = 'number' | 'boolean' | 'string';

/** `[{...}, …]` (parsed JSON) → Arrow IPC. `where` names the field in errors, e.g. "rows". */
export function rowsFromObjects(rows: unknown, where = 'rows'): EncodedRows {
  if (!Array.isArray(rows)) throw new RowsError(`${where}: expected an array of row objects`);
  if (rows.length === 0) throw new RowsError(`${where}: no rows (send at least one row object)`);
  checkRowCount(rows.length, where);
  const kinds = new Map<string, Kind | undefined>(); // undefined: only NULLs so far
  const firstSeen = new Map<string, number>(); // the row that set a column's kind, for the message
  rows.forEach((row, i) => {
    if (row === null || typeof row !== 'object' || Array.isArray(row)) throw new RowsError(`${where}[${i}]: expected an object of column → value`);
    for (const [name, value] of Object.entries(row as Record<string, unknown>)) {
      if (value === null || value === undefined) {
        if (!kinds.has(name)) kinds.set(name, undefined);
        continue;
      }
      const kind = typeof value;
      if (kind !== 'number' && kind !== 'boolean' && kind !== 'string') {
        throw new RowsError(`${where}[${i}].${name}: expected a number, boolean, string or null, got ${Array.isArray(value) ? 'a list' : kind}`);
      }
      const seen = kinds.get(name);
      if (seen && seen !== kind) {
        const first = firstSeen.get(name)!;
        throw new RowsError(`${where}[${i}].${name} is a ${kind} but ${where}[${first}].${name} is a ${seen}: a column holds one type (features are numbers)`);
      }
      if (!seen) firstSeen.set(name, i);
      kinds.set(name, kind as Kind);
    }
  });
  if (kinds.size > MAX_COLUMNS) throw new RowsError(`${where}: ${kinds.size} columns; at most ${MAX_COLUMNS}`);
  const columns: Record<string, arrow.Vector> = {};
  for (const [name, kind] of kinds) {
    const values = rows.map((r) => (r as Record<string, unknown>)[name] ?? null);
    columns[name] = columnVector(kind ?? 'number', values as (number | boolean | string | null)[]);
  }
  return encode(new arrow.Table(columns), where);
}

function columnVector(kind: Kind, values: (number | boolean | string | null)[]): arrow.Vector {
  if (kind === 'number' && !values.includes(null)) return arrow.makeVector(Float64Array.from(values as number[]));
  const type = kind === 'number' ? new arrow.Float64() : kind === 'boolean' ? new arrow.Bool() : new arrow.Utf8();
  return arrow.vectorFromArray(values, type);
}

/** JSON Lines (one row object per line; blank lines ignored) → Arrow IPC. */
export function rowsFromJsonLines(text: string, where = 'rows'): EncodedRows {
  const rows: unknown[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      rows.push(JSON.parse(line));
    } catch (err) {
      throw new RowsError(`${where}: line ${i + 1} is not JSON (${(err as Error).message})`);
    }
  });
  return rowsFromObjects(rows, where);
}

/** A JSON array, or JSON Lines: what `scoreline score --rows FILE` accepts. */
export function rowsFromText(text: string, where: string): EncodedRows {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new RowsError(`${where}: not valid JSON (${(err as Error).message})`);
    }
    return rowsFromObjects(parsed, where);
  }
  if (trimmed.startsWith('{')) {
    // A single object with "rows" (the API's body) is accepted too, so one file works for curl and the CLI.
    try {
      const parsed = JSON.parse(text) as { rows?: unknown };
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed) && 'rows' in parsed) return rowsFromObjects(parsed.rows, `${where}: rows`);
    } catch {
      // not one JSON document: JSON Lines
    }
  }
  return rowsFromJsonLines(text, where);
}

/** An Arrow IPC stream (or file) body, checked and passed on as is. */
export function rowsFromArrow(bytes: Uint8Array, where = 'body'): EncodedRows {
  let table: arrow.Table;
  try {
    table = arrow.tableFromIPC(bytes);
  } catch (err) {
    throw new RowsError(`${where}: not an Arrow IPC stream (${(err as Error).message})`);
  }
  if (table.numRows === 0) throw new RowsError(`${where}: no rows`);
  checkRowCount(table.numRows, where);
  if (table.numCols > MAX_COLUMNS) throw new RowsError(`${where}: ${table.numCols} columns; at most ${MAX_COLUMNS}`);
  // Re-encode as a stream: the file format (and odd writer settings) never reach the worker.
  return encode(table, where);
}

function encode(table: arrow.Table, where: string): EncodedRows {
  const ipc = arrow.tableToIPC(table, 'stream');
  if (ipc.byteLength > MAX_ROWS_BYTES) {
    const perRow = ipc.byteLength / table.numRows;
    const fit = Math.max(1, Math.floor(MAX_ROWS_BYTES / perRow));
    throw new RowsError(
      `${where}: ${table.numRows} rows × ${table.numCols} columns are ${(ipc.byteLength / 1e6).toFixed(2)} MB as Arrow, over the ` +
        `${MAX_ROWS_BYTES / 1e6} MB a request may carry through Temporal (its payload limit is 2 MiB); send at most ${fit} rows per request, or start a batch run`,
      true,
    );
  }
  return { ipc, table, rows: table.numRows, columns: table.schema.fields.map((f) => f.name) };
}

function checkRowCount(rows: number, where: string): void {
  if (rows > MAX_ROWS_PER_REQUEST) {
    throw new RowsError(`${where}: ${rows} rows; a near-real-time request takes at most ${MAX_ROWS_PER_REQUEST} (start a batch run for more)`, true);
  }
}

/** The worker's side: the record batches of a request. */
export function decodeRows(ipc: Uint8Array): arrow.RecordBatch[] {
  return arrow.tableFromIPC(ipc).batches;
}
