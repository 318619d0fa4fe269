/**
 * The declared types of an ONNX model's graph outputs, read straight from the protobuf: onnxruntime-node
 * reports a non-tensor output (a ZipMap's `sequence<map<int64, float>>`, …) only as `isTensor: false`,
 * and `models register --sample-from` wants to say what it is and which node makes it.
 *
 * A minimal reader of the protobuf wire format: ModelProto.graph (7) → GraphProto.node (1) /
 * .output (12) → ValueInfoProto.name (1) / .type (2) → TypeProto tensor (1) / sequence (4) / map (5) /
 * sparse tensor (8) / optional (9). Everything else, initializers included, is skipped by length,
 * never copied. Any parse failure yields an empty result; callers fall back to "not a tensor".
 */

export interface OnnxOutputType {
  name: string;
  /** e.g. `float32[N, 2]`, `int64[N]`, `sequence<map<int64, float32>>`. */
  type: string;
  isTensor: boolean;
  /** op_type of the node that produces it (`ZipMap`, `Gemm`, …), when found. */
  producedBy?: string;
}

const ELEM_TYPES: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool',
  10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 14: 'complex64', 15: 'complex128', 16: 'bfloat16',
};

interface Field {
  no: number;
  wire: number;
  /** Varint value (wire type 0). */
  value?: number;
  /** Byte range of a length-delimited field (wire type 2). */
  start?: number;
  end?: number;
}

/** The fields of the message in bytes[start, end), in order. Throws on malformed input. */
function* fields(bytes: Uint8Array, start: number, end: number): Generator<Field> {
  let pos = start;
  const varint = (): number => {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw new Error('truncated varint');
      const b = bytes[pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new Error('varint too long');
  };
  while (pos < end) {
    const key = varint();
    const no = Math.floor(key / 8);
    const wire = key % 8;
    switch (wire) {
      case 0:
        yield { no, wire, value: varint() };
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        const len = varint();
        if (pos + len > end) throw new Error('truncated field');
        yield { no, wire, start: pos, end: pos + len };
        pos += len;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${wire}`);
    }
  }
}

const text = (bytes: Uint8Array, f: Field) => Buffer.from(bytes.buffer, bytes.byteOffset + f.start!, f.end! - f.start!).toString('utf8');

function dims(bytes: Uint8Array, f: Field): string[] {
  const out: string[] = [];
  for (const d of fields(bytes, f.start!, f.end!)) {
    if (d.no !== 1 || d.wire !== 2) continue; // TensorShapeProto.dim
    let dim = '?';
    for (const v of fields(bytes, d.start!, d.end!)) {
      if (v.no === 1 && v.wire === 0) dim = String(v.value); // dim_value
      else if (v.no === 2 && v.wire === 2) dim = text(bytes, v) || '?'; // dim_param
    }
    out.push(dim);
  }
  return out;
}

/** A TypeProto as text; the first dimension of a tensor (the batch) is shown as N. */
function typeText(bytes: Uint8Array, start: number, end: number): { type: string; isTensor: boolean } {
  for (const f of fields(bytes, start, end)) {
    if (f.wire !== 2) continue;
    if (f.no === 1 || f.no === 8) {
      let elem = '?';
      let shape: string[] | undefined;
      for (const t of fields(bytes, f.start!, f.end!)) {
        if (t.no === 1 && t.wire === 0) elem = ELEM_TYPES[t.value!] ?? `type${t.value}`;
        else if (t.no === 2 && t.wire === 2) shape = dims(bytes, t);
      }
      const shown = shape ? `[${shape.map((d, i) => (i === 0 && !/^\d+$/.test(d) ? 'N' : d)).join(', ')}]` : '';
      return { type: `${f.no === 8 ? 'sparse ' : ''}${elem}${shown}`, isTensor: f.no === 1 };
    }
    if (f.no === 4 || f.no === 9) {
      let inner = '?';
      for (const s of fields(bytes, f.start!, f.end!)) if (s.no === 1 && s.wire === 2) inner = typeText(bytes, s.start!, s.end!).type;
      return { type: `${f.no === 4 ? 'sequence' : 'optional'}<${inner}>`, isTensor: false };
    }
    if (f.no === 5) {
      let key = '?';
      let value = '?';
      for (const m of fields(bytes, f.start!, f.end!)) {
        if (m.no === 1 && m.wire === 0) key = ELEM_TYPES[m.value!] ?? `type${m.value}`;
        else if (m.no === 2 && m.wire === 2) value = typeText(bytes, m.start!, m.end!).type.replace(/\[.*\]$/, '');
      }
      return { type: `map<${key}, ${value}>`, isTensor: false };
    }
  }
  return { type: 'unknown', isTensor: false };
}

/** The graph outputs of an ONNX model with their declared types; [] if the bytes cannot be parsed. */
export function onnxOutputTypes(bytes: Uint8Array): OnnxOutputType[] {
  try {
    let graph: Field | undefined;
    for (const f of fields(bytes, 0, bytes.length)) if (f.no === 7 && f.wire === 2) graph = f;
    if (!graph) return [];
    const outputs: OnnxOutputType[] = [];
    const producers = new Map<string, string>();
    for (const f of fields(bytes, graph.start!, graph.end!)) {
      if (f.wire !== 2) continue;
      if (f.no === 1) {
        let op = '';
        const outs: string[] = [];
        for (const n of fields(bytes, f.start!, f.end!)) {
          if (n.no === 2 && n.wire === 2) outs.push(text(bytes, n));
          else if (n.no === 4 && n.wire === 2) op = text(bytes, n);
        }
        for (const o of outs) producers.set(o, op);
      } else if (f.no === 12) {
        let name = '';
        let type = { type: 'unknown', isTensor: false };
        for (const v of fields(bytes, f.start!, f.end!)) {
          if (v.no === 1 && v.wire === 2) name = text(bytes, v);
          else if (v.no === 2 && v.wire === 2) type = typeText(bytes, v.start!, v.end!);
        }
        outputs.push({ name, ...type });
      }
    }
    return outputs.map((o) => ({ ...o, ...(producers.get(o.name) && { producedBy: producers.get(o.name) }) }));
  } catch {
    return [];
  }
}
