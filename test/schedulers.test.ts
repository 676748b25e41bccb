// Golden numbers per scheduler: diffusers' classes (scripts/dev/make_scheduler_fixtures.py) vs
// ours through the addon, step by step, on the same seed and model outputs.
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadNative } from '../lib/native.js';
import { readFloat64, readSafetensors, relativeError, sliceFirst, toFloat32 } from './helpers/safetensors.js';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'schedulers', 'schedulers.safetensors');
const { tensors, metadata } = readSafetensors(FIXTURE);
const cases = JSON.parse(metadata.cases!) as { case: string; scheduler: string; steps: number; overrides: Record<string, unknown> }[];
const baseConfig = JSON.parse(metadata.base_config!) as Record<string, unknown>;
const seed = Number(metadata.seed);
const eps = tensors.eps!;

describe('schedulers reproduce diffusers', () => {
  const { binding } = loadNative();

  it.each(cases.map((c) => [c.case, c] as const))('%s', (_name, c) => {
    const expectedX = tensors[`${c.case}.x`]!;
    const expectedT = toFloat32(tensors[`${c.case}.timesteps`]!);
    const n = expectedT.length;
    const epsList = Array.from({ length: n }, (_, i) => sliceFirst(eps, i));
    const out = binding.testing.replayScheduler(
      c.scheduler,
      { ...baseConfig, ...c.overrides },
      c.steps,
      sliceFirst(expectedX, 0),
      epsList,
      seed,
    );

    expect(Array.from(toFloat32(out.timesteps))).toEqual(Array.from(expectedT));
    expect(out.initNoiseSigma).toBe(readFloat64(FIXTURE, `${c.case}.init_noise_sigma`)[0]);
    for (let i = 0; i <= n; i++) {
      expect(relativeError(toFloat32(out.x[i]!), toFloat32(sliceFirst(expectedX, i))), `x[${i}]`).toBeLessThanOrEqual(1e-6);
    }
    const scaled = tensors[`${c.case}.scaled`];
    if (scaled) {
      for (let i = 0; i < n; i++) {
        expect(relativeError(toFloat32(out.scaled[i]!), toFloat32(sliceFirst(scaled, i))), `scaled[${i}]`).toBeLessThanOrEqual(1e-6);
      }
    }
  });

  it('names the step limit where leading spacing would pass the last training timestep', () => {
    const x0 = sliceFirst(tensors['pndm.20.x']!, 0);
    for (const name of ['pndm', 'ddim']) {
      try {
        binding.testing.replayScheduler(name, baseConfig, 1000, x0, [], seed);
        expect.unreachable();
      } catch (error) {
        expect((error as { code: string }).code).toBe('ERR_INVALID_ARGUMENT');
        expect(String(error)).toMatch(/1000 steps reach timestep 1000/);
      }
    }
  });

  it('rejects an unknown scheduler and unsupported config values with a coded error', () => {
    const x0 = sliceFirst(tensors['pndm.20.x']!, 0);
    expect(() => binding.testing.replayScheduler('lms', baseConfig, 20, x0, [], seed)).toThrow(/lms/);
    try {
      binding.testing.replayScheduler('ddim', { ...baseConfig, thresholding: true }, 20, x0, [], seed);
      expect.unreachable();
    } catch (error) {
      expect((error as { code: string }).code).toBe('ERR_INVALID_ARGUMENT');
      expect(String(error)).toMatch(/thresholding/);
    }
  });
});
