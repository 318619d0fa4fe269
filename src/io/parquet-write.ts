/**
 * Parquet writing through parquet-wasm (Rust arrow-rs/parquet compiled to WASM), chosen by benchmark:
 * several million rows/s from an Arrow table (see README "Parquet library choice").
 * Files are written to a temporary name and renamed, so a reader never sees half a file.
 */
import { promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import * as arrow from 'apache-arrow';
import * as pw from 'parquet-wasm/node';

function properties(): pw.WriterProperties {
  // writeParquet takes ownership of (and frees) both the table and the properties: build one per call.
  return new pw.WriterPropertiesBuilder().setCompression(pw.Compression.SNAPPY).setMaxRowGroupSize(65_536).build();
}

export function encodeParquet(table: arrow.Table): Uint8Array {
  const ipc = arrow.tableToIPC(table, 'stream');
  const wasmTable = pw.Table.fromIPCStream(ipc);
  return pw.writeParquet(wasmTable, properties());
}

/** Write atomically; returns bytes written. */
export async function writeParquetFile(path: string, table: arrow.Table): Promise<number> {
  const bytes = encodeParquet(table);
  await fs.mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await fs.writeFile(tmp, bytes);
  await fs.rename(tmp, path);
  return bytes.length;
}
