// Load option maxBatchSize: generate() calls that wait for the model share one UNet batch. Each
// call keeps its own prompt, subjects, seed, guidance, alpha and scheduler state, so its result
// is the one it gets alone, up to the kernels' batch-size dependent rounding; calls that cannot
// share (other size, steps or scheduler, attention maps, regions) run alone; a call aborted or
// stopped by its onStep leaves the batch and the others finish.
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer, type GenerateOptions, type GenerateResult } from '../lib/index.js';
import { float32View } from '../lib/tensor.js';
import { rejection } from './helpers/errors.js';

const subjects = join(import.meta.dirname, 'fixtures', 'tiny-a', 'release', 'subjects');
const s0 = join(subjects, 's0_224x224.png');
const s1 = join(subjects, 's1_224x224.png');

const base = { steps: 5, width: 64, height: 64 } satisfies Partial<GenerateOptions>;
/** Calls that can share a batch: everything but size, steps and scheduler differs. */
const mixed: GenerateOptions[] = [
  { ...base, prompt: 'a man <|image|> in a park', subjects: [s0], seed: 1 },
  { ...base, prompt: 'a woman <|image|> on a beach', subjects: [s1], seed: 2, guidanceScale: 7.5, negativePrompt: 'blurry' },
  { ...base, prompt: 'a man <|image|> and a woman <|image|>', subjects: [s0, s1], seed: 3, alpha: 0.5, numImages: 2 },
  { ...base, prompt: 'a red house', seed: 4, guidanceScale: 1 },
];

/** Resolves once `ready()` holds (checked every 5 ms); fails, naming `what`, after 60 s. */
async function until(what: string, ready: () => boolean): Promise<void> {
  const end = Date.now() + 60_000;
  while (!ready()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Holds the model with a long call; once that call runs, `then()` starts calls that queue
 * behind it. When `waiting` of them wait for the model (counters()), and `meanwhile()` has run,
 * the long call is aborted, which lets the queued ones start.
 */
async function behindBlocker<T>(model: FastComposer, waiting: number, then: () => T, meanwhile?: () => Promise<void>): Promise<T> {
  const controller = new AbortController();
  let queued: T | undefined;
  const blocker = model.generate({
    prompt: 'a blue door',
    steps: 500,
    scheduler: 'ddim',
    width: 128,
    height: 128,
    signal: controller.signal,
    onStep: ({ step }) => {
      if (step === 1) queued = then();
    },
  });
  await until(`${waiting} calls waiting`, () => queued !== undefined && model.counters().waiting === waiting);
  await meanwhile?.();
  expect(model.counters().running, 'the long call still runs').toBe(1);
  controller.abort();
  expect((await rejection(blocker)).code).toBe('ERR_ABORTED');
  return queued!;
}

/** Largest absolute difference between two results' latents, and between their pixels. */
function difference(a: GenerateResult, b: GenerateResult): { latents: number; pixels: number } {
  const x = float32View(a.latents);
  const y = float32View(b.latents);
  expect(a.latents.shape).toEqual(b.latents.shape);
  let latents = 0;
  for (let i = 0; i < x.length; i++) latents = Math.max(latents, Math.abs(x[i]! - y[i]!));
  let pixels = 0;
  a.images.forEach((img, k) => {
    const other = b.images[k]!.data;
    for (let i = 0; i < img.data.length; i++) pixels = Math.max(pixels, Math.abs(img.data[i]! - other[i]!));
  });
  return { latents, pixels };
}

let modelDir: string;
let fc: FastComposer;
const alone = new Map<string, GenerateResult>();

beforeAll(async () => {
  modelDir = inject('goldenModelDir');
  fc = await FastComposer.load(modelDir, { device: 'cpu', maxBatchSize: 8 });
});
afterAll(() => fc?.dispose());

async function aloneResult(name: string, options: GenerateOptions): Promise<GenerateResult> {
  if (!alone.has(name)) alone.set(name, await fc.generate(options));
  return alone.get(name)!;
}

describe('maxBatchSize', () => {
  it('a call on an idle model runs at once, alone', async () => {
    const r = await fc.generate(mixed[0]!);
    expect(r.timings.batchedCalls).toBe(1);
  });

  for (const scheduler of ['pndm', 'euler-ancestral', 'dpmpp-2m'] as const) {
    it(`calls queued behind a running one share a batch and get their own results (${scheduler})`, async () => {
      const calls = mixed.map((c) => ({ ...c, scheduler }));
      const expected = [];
      for (const [k, c] of calls.entries()) expected.push(await aloneResult(`${scheduler}${k}`, c));
      const steps = calls.map(() => [] as number[]);
      const keys = new Set<string>();
      const queued = await behindBlocker(fc, calls.length, () =>
        calls.map((c, k) =>
          fc.generate({
            ...c,
            onStep: (event) => {
              steps[k]!.push(event.step);
              for (const key of Object.keys(event)) keys.add(key);
            },
          }),
        ),
      );
      const batched = await Promise.all(queued);
      for (const [k, r] of batched.entries()) {
        expect(r.timings.batchedCalls).toBe(calls.length);
        expect(r.images).toHaveLength(calls[k]!.numImages ?? 1);
        expect(r.seed).toBe(calls[k]!.seed);
        // Same numbers as alone, up to rounding: the UNet's kernels block a batch of 10 rows
        // differently from one of 2.
        const d = difference(r, expected[k]!);
        expect(d.latents).toBeLessThan(1e-3);
        expect(d.pixels).toBeLessThanOrEqual(2);
        // Each call hears of its own steps, in order.
        const total = scheduler === 'pndm' ? base.steps + 1 : base.steps;
        expect(steps[k]).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      }
      // The events a lone call gets, no more.
      expect([...keys].sort()).toEqual(['step', 'steps', 'timestep']);
      // Different calls, different pictures: the batch did not mix them up.
      expect(difference(batched[0]!, batched[1]!).latents).toBeGreaterThan(0.1);
    });
  }

  it('calls that cannot share a batch run alone', async () => {
    const others: GenerateOptions[] = [
      { ...mixed[0]!, width: 96 },
      { ...mixed[0]!, steps: 4 },
      { ...mixed[0]!, scheduler: 'ddim' },
      { ...mixed[0]!, attentionMaps: true },
      { ...mixed[0]!, subjects: [{ image: s0, region: { x: 0, y: 0, width: 32, height: 32 } }] },
    ];
    const queued = await behindBlocker(fc, others.length + 1, () => [fc.generate(mixed[0]!), ...others.map((c) => fc.generate(c))]);
    const results = await Promise.all(queued);
    for (const r of results) expect(r.timings.batchedCalls).toBe(1);
    expect(results[4]!.attentionMaps?.shape).toEqual([1, 1, 8, 8]);
  });

  it('a batch holds at most maxBatchSize images', async () => {
    const small = await FastComposer.load(modelDir, { device: 'cpu', maxBatchSize: 3 });
    try {
      const ones = await behindBlocker(small, 4, () => [0, 1, 2, 3].map((seed) => small.generate({ ...mixed[0]!, seed })));
      // Three calls of one image, then the fourth alone.
      expect((await Promise.all(ones)).map((r) => r.timings.batchedCalls).sort()).toEqual([1, 3, 3, 3]);
      const twos = await behindBlocker(small, 2, () => [0, 1].map((seed) => small.generate({ ...mixed[0]!, seed, numImages: 2 })));
      // 2 + 2 images is more than 3: each alone.
      expect((await Promise.all(twos)).map((r) => r.timings.batchedCalls)).toEqual([1, 1]);
    } finally {
      await small.dispose();
    }
  });

  it('a call aborted while it waits rejects at once; the others run as a batch', async () => {
    const controller = new AbortController();
    const queued = await behindBlocker(
      fc,
      mixed.length,
      () => {
        const calls = mixed.map((c, k) => fc.generate({ ...c, ...(k === 1 ? { signal: controller.signal } : {}) }));
        // Observed now: the aborted call rejects while the long call still runs.
        return { calls, outcomes: Promise.allSettled(calls) };
      },
      async () => {
        controller.abort(new Error('changed my mind'));
        await until('the aborted call gone', () => fc.counters().waiting === mixed.length - 1);
      },
    );
    const outcomes = await queued.outcomes;
    expect(outcomes[1]!.status).toBe('rejected');
    expect((await rejection(queued.calls[1]!)).code).toBe('ERR_ABORTED');
    for (const k of [0, 2, 3]) {
      const r = (outcomes[k] as PromiseFulfilledResult<GenerateResult>).value;
      expect(r.timings.batchedCalls).toBe(3);
      expect(difference(r, await aloneResult(`pndm${k}`, { ...mixed[k]!, scheduler: 'pndm' })).latents).toBeLessThan(1e-3);
    }
  });

  it('a call aborted during the batch leaves it at its next step; the others finish', async () => {
    // Longer calls, so that the abort lands well before the end.
    const calls = mixed.map((c) => ({ ...c, steps: 60 }));
    const controller = new AbortController();
    const seen: number[] = [];
    const queued = await behindBlocker(fc, calls.length, () =>
      calls.map((c, k) =>
        fc.generate({
          ...c,
          ...(k === 2
            ? {
                signal: controller.signal,
                onStep: ({ step }) => {
                  seen.push(step);
                  if (step === 2) controller.abort();
                },
              }
            : {}),
        }),
      ),
    );
    const e = await rejection(queued[2]!);
    expect(e.code).toBe('ERR_ABORTED');
    // It left the batch before its end (61 UNet calls).
    expect(Math.max(...seen)).toBeLessThan(61);
    for (const k of [0, 1, 3]) {
      const r = await queued[k]!;
      expect(r.timings.batchedCalls).toBe(4);
      expect(difference(r, await aloneResult(`long${k}`, calls[k]!)).latents).toBeLessThan(1e-3);
    }
  });

  it('a throwing onStep stops its own call only', async () => {
    const queued = await behindBlocker(fc, mixed.length, () =>
      mixed.map((c, k) =>
        fc.generate({
          ...c,
          ...(k === 0
            ? {
                onStep: () => {
                  throw new Error('progress bar broke');
                },
              }
            : {}),
        }),
      ),
    );
    const e = await rejection(queued[0]!);
    expect(e.code).toBe('ERR_ABORTED');
    expect(e.message).toContain('progress bar broke');
    for (const k of [1, 2, 3]) expect((await queued[k]!).images.length).toBe(mixed[k]!.numImages ?? 1);
  });

  it('a failed batch runs its calls again one at a time, so each gets its own result', async () => {
    const model = await FastComposer.load(modelDir, { device: 'cpu', maxBatchSize: 8 });
    try {
      // The device out of memory two steps into the batch, as a GPU would say it.
      // (The addon's methods are read-only on its prototype: an own property shadows this one.)
      let batches = 0;
      Object.defineProperty((model as unknown as { native: object }).native, 'generateBatch', {
        value: (jobs: unknown[], onStep?: (e: { member: number; step: number; steps: number; timestep: number }) => void) => {
          batches++;
          // Two steps of every member (calls join in the order their subjects finish decoding).
          for (const member of jobs.keys()) for (const step of [1, 2]) onStep?.({ member, step, steps: base.steps + 1, timestep: 999 });
          return Promise.reject(Object.assign(new Error('Out of memory: tried to allocate 8 GiB'), { code: 'ERR_OUT_OF_MEMORY' }));
        },
      });
      const expected = [];
      for (const [k, c] of mixed.entries()) expected.push(await aloneResult(`default${k}`, c));
      const steps: number[] = [];
      const queued = await behindBlocker(model, mixed.length, () =>
        mixed.map((c, k) =>
          model.generate({ ...c, ...(k === 0 ? { onStep: ({ step }: { step: number }) => void steps.push(step) } : {}) }),
        ),
      );
      const results = await Promise.all(queued);
      expect(batches).toBe(1);
      for (const [k, r] of results.entries()) {
        expect(r.timings.batchedCalls).toBe(1);
        expect(r.latents.data.equals(expected[k]!.latents.data)).toBe(true);
      }
      // The failed batch's two steps, then the rerun's, from the first.
      expect(steps).toEqual([1, 2, ...Array.from({ length: base.steps + 1 }, (_, i) => i + 1)]);
      expect(model.counters()).toEqual({ waiting: 0, running: 0 });
    } finally {
      await model.dispose();
    }
  });

  it('dispose() while a failed batch reruns its calls rejects the rest with ERR_DISPOSED', async () => {
    const model = await FastComposer.load(modelDir, { device: 'cpu', maxBatchSize: 8 });
    Object.defineProperty((model as unknown as { native: object }).native, 'generateBatch', {
      value: () => Promise.reject(Object.assign(new Error('Out of memory'), { code: 'ERR_OUT_OF_MEMORY' })),
    });
    let disposed: Promise<void> | undefined;
    // Whichever call reruns first calls dispose() at its first step: that stops it, and the others
    // never start.
    const queued = await behindBlocker(model, mixed.length, () =>
      mixed.map((c) => model.generate({ ...c, steps: 40, onStep: ({ step }) => void (step === 1 && (disposed ??= model.dispose())) })),
    );
    for (const call of queued) expect((await rejection(call)).code).toBe('ERR_DISPOSED');
    await disposed;
  });

  it('dispose() during a batch rejects its calls with an abort-type error', async () => {
    const model = await FastComposer.load(modelDir, { device: 'cpu', maxBatchSize: 8 });
    let disposed: Promise<void> | undefined;
    const queued = await behindBlocker(model, mixed.length, () =>
      mixed.map((c, k) =>
        model.generate({
          ...c,
          steps: 40,
          // The batch runs: dispose() stops it.
          ...(k === 0 ? { onStep: ({ step }: { step: number }) => void (step === 1 && (disposed = model.dispose())) } : {}),
        }),
      ),
    );
    // Caught at the batch's next step, long before its 41st.
    for (const call of queued) expect(['ERR_DISPOSED', 'ERR_ABORTED']).toContain((await rejection(call)).code);
    await disposed;
    expect((await rejection(model.generate(mixed[0]!))).code).toBe('ERR_DISPOSED');
  });

  it('is checked at load: an integer from 1 to 64', async () => {
    for (const bad of [0, 65, 1.5, '4']) {
      const e = await rejection(FastComposer.load(modelDir, { device: 'cpu', maxBatchSize: bad as number }));
      expect(e.code).toBe('ERR_INVALID_ARGUMENT');
      expect(e.message).toContain('maxBatchSize');
    }
  });
});
