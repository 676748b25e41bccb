// onStep: called once per UNet step, in order, with step (1-based), steps (the scheduler's real
// step count: PNDM's PLMS runs one extra step) and the step's timestep.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer, type StepProgress } from '../lib/index.js';

const small = { prompt: 'a red house by the sea', width: 64, height: 64, seed: 11 };

describe('onStep progress', () => {
  let fc: FastComposer;
  beforeAll(async () => {
    fc = await FastComposer.load(inject('goldenModelDir'), { device: 'cpu' });
  });
  afterAll(() => fc?.dispose());

  async function record(options: Record<string, unknown>): Promise<StepProgress[]> {
    const events: StepProgress[] = [];
    await fc.generate({ ...small, ...options, onStep: (e) => void events.push({ ...e }) });
    return events;
  }

  it.each([
    ['pndm', 10, 11], // PLMS with skip_prk_steps: one extra step (the second evaluation at the first timestep)
    ['ddim', 10, 10],
    ['euler', 7, 7],
    ['euler-ancestral', 5, 5],
    ['dpmpp-2m', 6, 6],
    ['pndm', 2, 3],
    ['pndm', 1, 1], // diffusers: a single timestep has nothing to repeat
  ] as const)('%s with %i steps reports %i UNet steps', async (scheduler, steps, unetSteps) => {
    const events = await record({ scheduler, steps });
    expect(events.map((e) => e.step)).toEqual(Array.from({ length: unetSteps }, (_, i) => i + 1));
    expect(new Set(events.map((e) => e.steps))).toEqual(new Set([unetSteps]));
    for (const e of events) {
      expect(Number.isFinite(e.timestep)).toBe(true);
      expect(e.timestep).toBeGreaterThanOrEqual(0);
      expect(e.timestep).toBeLessThan(1000);
    }
    // Timesteps never increase.
    for (let i = 1; i < events.length; i++) expect(events[i]!.timestep).toBeLessThanOrEqual(events[i - 1]!.timestep);
  });

  it('gives the scheduler timesteps: DDIM 10 steps is 901, 801, ..., 1; PNDM repeats its first', async () => {
    expect((await record({ scheduler: 'ddim', steps: 10 })).map((e) => e.timestep)).toEqual([
      901, 801, 701, 601, 501, 401, 301, 201, 101, 1,
    ]);
    expect((await record({ scheduler: 'pndm', steps: 10 })).map((e) => e.timestep)).toEqual([
      901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1,
    ]);
  });

  it('counts each step once whatever the batch, guidance and subjects', async () => {
    const events = await record({ scheduler: 'ddim', steps: 4, numImages: 3, guidanceScale: 1 });
    expect(events.map((e) => e.step)).toEqual([1, 2, 3, 4]);
  });

  it('is called on the main thread, before generate() resolves, and not at all without onStep', async () => {
    let last = 0;
    const result = await fc.generate({ ...small, steps: 3, scheduler: 'ddim', onStep: (e) => void (last = e.step) });
    expect(last).toBe(3);
    expect(result.images).toHaveLength(1);
    await expect(fc.generate({ ...small, steps: 2 })).resolves.toBeDefined();
  });
});
