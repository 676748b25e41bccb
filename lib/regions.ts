/**
 * Subject regions on the latent grid: for each subject, the fraction of each latent cell
 * (8x8 output pixels) inside the region the user gave, as a box or a mask.
 */
import type { SubjectSpec } from './options.js';
import { boxMask, loadRegionMask } from './subjects.js';
import type { Tensor } from './tensor.js';

export interface RegionGrid {
  inside: Tensor; // float32 [S, h, w]
  hasRegion: number[]; // 1 where the subject had a region
}

/** Averages a full-resolution [height, width] mask over factor x factor cells. */
export function areaAverage(mask: Float32Array, width: number, height: number, factor: number): Float32Array {
  const w = width / factor;
  const h = height / factor;
  const out = new Float32Array(w * h);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y / factor) * w;
    for (let x = 0; x < width; x++) out[row + Math.floor(x / factor)]! += mask[y * width + x]!;
  }
  const cell = factor * factor;
  for (let i = 0; i < out.length; i++) out[i]! /= cell;
  return out;
}

/** undefined when no subject has a region. */
export async function regionGrid(
  subjects: readonly SubjectSpec[],
  width: number,
  height: number,
  factor: number,
): Promise<RegionGrid | undefined> {
  if (!subjects.some((s) => s.region || s.mask)) return undefined;
  const w = width / factor;
  const h = height / factor;
  const grid = new Float32Array(subjects.length * w * h);
  const hasRegion: number[] = [];
  for (const [i, subject] of subjects.entries()) {
    let full: Float32Array | undefined;
    if (subject.region) {
      const { x, y, width: bw, height: bh } = subject.region;
      full = boxMask({ left: x, top: y, width: bw, height: bh }, width, height);
    } else if (subject.mask) {
      full = await loadRegionMask(subject.mask, width, height, { label: `subjects[${i}].mask` });
    }
    hasRegion.push(full ? 1 : 0);
    grid.set(full ? areaAverage(full, width, height, factor) : new Float32Array(w * h).fill(1), i * w * h);
  }
  return {
    inside: { data: Buffer.from(grid.buffer, grid.byteOffset, grid.byteLength), shape: [subjects.length, h, w], dtype: 'float32' },
    hasRegion,
  };
}
