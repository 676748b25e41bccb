/** A dense tensor crossing the JS <-> C++ boundary: row-major bytes plus shape and dtype. */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'uint8' | 'bool';

export interface Tensor {
  data: Buffer;
  shape: number[];
  dtype: DType;
}

/** A float32 view over a float32 tensor's bytes (no copy when the Buffer is aligned). */
export function float32View(t: Tensor): Float32Array {
  if (t.dtype !== 'float32') throw new TypeError(`Expected a float32 tensor, got ${t.dtype}`);
  const { buffer, byteOffset, byteLength } = t.data;
  if (byteOffset % 4 === 0) return new Float32Array(buffer, byteOffset, byteLength / 4);
  return new Float32Array(new Uint8Array(t.data).buffer);
}
