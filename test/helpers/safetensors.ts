/** A minimal safetensors reader for the golden fixtures (8-byte header length, JSON header, raw data). */
import { readFileSync } from 'node:fs';

import type { DType, Tensor } from '../../lib/tensor.js';

const DTYPES: Record<string, DType> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  U8: 'uint8',
  BOOL: 'bool',
};

export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

export function readSafetensors(path: string): SafetensorsFile {
  const file = readFileSync(path);
  const headerLength = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>
  >;
  const base = 8 + headerLength;
  const tensors: Record<string, Tensor> = {};
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const dt = DTYPES[dtype];
    if (!dt) continue; // e.g. F64 scalars: read them with readFloat64
    // Copy so the data is aligned for typed-array views.
    const data = Buffer.from(file.subarray(base + data_offsets[0], base + data_offsets[1]));
    tensors[name] = { data, shape, dtype: dt };
  }
  return { tensors, metadata };
}

export function readFloat64(path: string, name: string): number[] {
  const file = readFileSync(path);
  const headerLength = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8'));
  const entry = header[name];
  const start = 8 + headerLength + entry.data_offsets[0];
  const n = (entry.data_offsets[1] - entry.data_offsets[0]) / 8;
  return Array.from({ length: n }, (_, i) => file.readDoubleLE(start + i * 8));
}

export function toFloat32(t: Tensor): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`expected float32, got ${t.dtype}`);
  return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
}

/** max |a - b| / max |b|: the golden README's relative error. */
export function relativeError(actual: Float32Array | Uint8Array, expected: Float32Array | Uint8Array): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A tensor view of rows [start, end) along the first axis. */
export function sliceFirst(t: Tensor, index: number): Tensor {
  const rest = t.shape.slice(1);
  const per = rest.reduce((a, b) => a * b, 1) * (t.data.byteLength / t.shape.reduce((a, b) => a * b, 1));
  return { data: t.data.subarray(index * per, (index + 1) * per), shape: rest, dtype: t.dtype };
}
