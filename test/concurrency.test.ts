// Calls on one instance queue and give the same results as serial calls; two CPU instances run
// at once; dispose() during a call rejects it with an abort-type error (or lets it finish) and
// never crashes; later calls reject with ERR_DISPOSED.
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer, FastComposerError, type GenerateOptions, type GenerateResult } from '../lib/index.js';

const subjects = join(import.meta.dirname, 'fixtures', 'tiny-a', 'release', 'subjects');
const s0 = join(subjects, 's0_224x224.png');
const s1 = join(subjects, 's1_224x224.png');

/** Eight different small calls: prompts, subjects, seeds, schedulers and batch sizes vary. */
const calls: GenerateOptions[] = (
  [
    { prompt: 'a man <|image|> in a park', subjects: [s0], seed: 1 },
    { prompt: 'a woman <|image|> on a beach', subjects: [s1], seed: 2, scheduler: 'ddim' },
    { prompt: 'a man <|image|> and a woman <|image|>', subjects: [s0, s1], seed: 3 },
    { prompt: 'a red house', seed: 4, scheduler: 'euler' },
    { prompt: 'a man <|image|> smiling', subjects: [s0], seed: 5, numImages: 2 },
    { prompt: 'a dog <|image|> running', subjects: [s1], seed: 6, scheduler: 'dpmpp-2m', guidanceScale: 7.5 },
    { prompt: 'a man <|image|> in a park', subjects: [s0], seed: 1, width: 96, height: 64 },
    { prompt: 'a cat <|image|>', subjects: [s0], seed: 8, scheduler: 'euler-ancestral', alpha: 0.5 },
  ] satisfies GenerateOptions[]
).map((c) => ({ steps: 4, width: 64, height: 64, ...c }));

function fingerprint(r: GenerateResult): { latents: string; images: string[]; shape: number[] } {
  return {
    shape: r.latents.shape,
    latents: r.latents.data.toString('base64'),
    images: r.images.map((i) => Buffer.from(i.data).toString('base64')),
  };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

let modelDir: string;
beforeAll(() => {
  modelDir = inject('goldenModelDir');
});

describe('one instance', () => {
  let fc: FastComposer;
  beforeAll(async () => {
    fc = await FastComposer.load(modelDir, { device: 'cpu' });
  });
  afterAll(() => fc?.dispose());

  it('8 concurrent generate() calls equal serial ones bit for bit', async () => {
    const serial = [];
    for (const c of calls) serial.push(fingerprint(await fc.generate(c)));
    const concurrent = (await Promise.all(calls.map((c) => fc.generate(c)))).map(fingerprint);
    expect(concurrent).toEqual(serial);
    // Same options, same numbers: the first and seventh differ only in size, so not equal.
    expect(serial[0]!.latents).not.toEqual(serial[6]!.latents);
  });

  it('runs one call at a time: the steps of concurrent calls do not interleave', async () => {
    const events: number[] = [];
    await Promise.all([0, 1, 2].map((k) => fc.generate({ ...calls[3]!, seed: 10 + k, onStep: () => void events.push(k) })));
    // Each call's steps form one contiguous run.
    const runs = events.filter((k, i) => i === 0 || events[i - 1] !== k);
    expect(runs).toHaveLength(3);
  });
});

describe('counters()', () => {
  it('counts the calls that wait for the model and those it runs', async () => {
    const fc = await FastComposer.load(modelDir, { device: 'cpu' });
    const until = async (ready: () => boolean): Promise<void> => {
      while (!ready()) await new Promise((resolve) => setTimeout(resolve, 5));
    };
    try {
      expect(fc.counters()).toEqual({ waiting: 0, running: 0 });
      const long = new AbortController();
      const impatient = new AbortController();
      let queued: Promise<GenerateResult>[] = [];
      const running = fc.generate({
        ...calls[3]!,
        steps: 500,
        scheduler: 'ddim',
        signal: long.signal,
        onStep: ({ step }) => {
          if (step === 1) queued = [fc.generate(calls[3]!), fc.generate({ ...calls[3]!, signal: impatient.signal })];
        },
      });
      await until(() => fc.counters().waiting === 2);
      expect(fc.counters()).toEqual({ waiting: 2, running: 1 });
      impatient.abort();
      expect(((await rejection(queued[1]!)) as FastComposerError).code).toBe('ERR_ABORTED');
      expect(fc.counters()).toEqual({ waiting: 1, running: 1 });
      long.abort();
      expect(((await rejection(running)) as FastComposerError).code).toBe('ERR_ABORTED');
      await queued[0];
      await until(() => fc.counters().running === 0);
      expect(fc.counters()).toEqual({ waiting: 0, running: 0 });
    } finally {
      await fc.dispose();
    }
  });
});

describe('two instances on CPU', () => {
  it('can be called at the same time and give the serial results', async () => {
    const a = await FastComposer.load(modelDir, { device: 'cpu' });
    const b = await FastComposer.load(modelDir, { device: 'cpu' });
    try {
      const ca = { ...calls[0]!, steps: 12, width: 128, height: 128 };
      const cb = { ...calls[1]!, steps: 12, width: 128, height: 128 };
      const serialA = fingerprint(await a.generate(ca));
      const serialB = fingerprint(await b.generate(cb));
      const log: string[] = [];
      const [ra, rb] = await Promise.all([
        a.generate({ ...ca, onStep: () => void log.push('a') }),
        b.generate({ ...cb, onStep: () => void log.push('b') }),
      ]);
      expect(fingerprint(ra)).toEqual(serialA);
      expect(fingerprint(rb)).toEqual(serialB);
      // Both ran to the end; their torch work shares the CPU job thread (native/job_thread.h),
      // so one call's steps follow the other's instead of splitting the same cores.
      expect(new Set(log)).toEqual(new Set(['a', 'b']));
      expect(log.filter((x, i) => i === 0 || log[i - 1] !== x)).toHaveLength(2);
    } finally {
      await Promise.all([a.dispose(), b.dispose()]);
    }
  });
});

describe('dispose()', () => {
  it('during a call: the call rejects with ERR_DISPOSED or ERR_ABORTED, or finishes; queued calls reject', async () => {
    const fc = await FastComposer.load(modelDir, { device: 'cpu' });
    let disposing: Promise<void> | undefined;
    let queued: Promise<GenerateResult> | undefined;
    const running = fc.generate({
      ...calls[0]!,
      steps: 20,
      onStep: ({ step }) => {
        // A second call queues behind the running one; then dispose() cuts both short.
        if (step === 1) queued = fc.generate(calls[3]!);
        if (step === 2) disposing = fc.dispose();
      },
    });
    const r1 = (await Promise.allSettled([running]))[0];
    const r2 = (await Promise.allSettled([queued!]))[0];
    expect(disposing).toBeDefined();
    await disposing;
    if (r1.status === 'rejected') {
      expect(r1.reason).toBeInstanceOf(FastComposerError);
      expect(['ERR_DISPOSED', 'ERR_ABORTED']).toContain((r1.reason as FastComposerError).code);
    } else {
      expect(r1.value.images).toHaveLength(1);
    }
    expect(r2.status).toBe('rejected');
    expect((r2 as PromiseRejectedResult).reason).toBeInstanceOf(FastComposerError);
    expect(['ERR_DISPOSED', 'ERR_ABORTED']).toContain(((r2 as PromiseRejectedResult).reason as FastComposerError).code);

    // Every later call rejects with ERR_DISPOSED.
    for (const later of [
      fc.generate(calls[0]!),
      fc.encodeSubjects([s0]),
      fc.decode({ data: Buffer.alloc(4 * 4 * 8 * 8), shape: [1, 4, 8, 8], dtype: 'float32' }),
    ]) {
      const e = await rejection(later);
      expect(e).toBeInstanceOf(FastComposerError);
      expect((e as FastComposerError).code).toBe('ERR_DISPOSED');
    }
    // dispose() again is harmless and returns the same promise.
    await fc.dispose();
  });

  it('right after starting a call, before it reaches native code', async () => {
    const fc = await FastComposer.load(modelDir, { device: 'cpu' });
    const call = fc.generate(calls[2]!);
    const disposed = fc.dispose();
    const outcome = await Promise.allSettled([call]);
    await disposed;
    if (outcome[0].status === 'rejected') {
      expect(['ERR_DISPOSED', 'ERR_ABORTED']).toContain((outcome[0].reason as FastComposerError).code);
    }
    // A new instance still works after all of this.
    const again = await FastComposer.load(modelDir, { device: 'cpu' });
    const r = await again.generate(calls[3]!);
    expect(r.images[0]!.data.length).toBe(64 * 64 * 3);
    await again.dispose();
  });

  it('Symbol.asyncDispose disposes', async () => {
    const fc = await FastComposer.load(modelDir, { device: 'cpu' });
    expect(typeof fc[Symbol.asyncDispose]).toBe('function');
    await fc[Symbol.asyncDispose]();
    const e = await rejection(fc.generate(calls[3]!));
    expect((e as FastComposerError).code).toBe('ERR_DISPOSED');
  });
});
