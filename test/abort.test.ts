// Cancellation: an aborted AbortSignal stops a call within one denoising step, and the call
// rejects with ERR_ABORTED carrying the signal's reason; a throwing onStep stops it too.
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer } from '../lib/index.js';
import { rejection } from './helpers/errors.js';

const s0 = join(import.meta.dirname, 'fixtures', 'tiny-a', 'release', 'subjects', 's0_224x224.png');
// 128x128 keeps a step at tens of milliseconds, far longer than delivering a progress event.
const base = { prompt: 'a man <|image|> in a park', subjects: [s0], width: 128, height: 128, seed: 3, scheduler: 'ddim' as const };

describe('abort', () => {
  let fc: FastComposer;
  beforeAll(async () => {
    fc = await FastComposer.load(inject('goldenModelDir'), { device: 'cpu' });
    await fc.generate({ ...base, steps: 2 }); // warm up TorchScript's first-run optimisation
  });
  afterAll(() => fc?.dispose());

  it('a signal aborted before the call rejects at once, with the reason as cause, running no step', async () => {
    const reason = new Error('changed my mind');
    let steps = 0;
    const e = await rejection(fc.generate({ ...base, steps: 5, signal: AbortSignal.abort(reason), onStep: () => void steps++ }));
    expect(e.code).toBe('ERR_ABORTED');
    expect(e.cause).toBe(reason);
    expect(steps).toBe(0);
    // The stage API honours it too.
    expect((await rejection(fc.encodeSubjects([s0], { signal: AbortSignal.abort() }))).code).toBe('ERR_ABORTED');
  });

  it('aborting during the call stops within one denoising step', async () => {
    for (const abortAt of [1, 3, 7]) {
      const controller = new AbortController();
      let after = 0;
      let aborted = false;
      const e = await rejection(
        fc.generate({
          ...base,
          steps: 30,
          signal: controller.signal,
          onStep: ({ step }) => {
            if (aborted) after++;
            if (step === abortAt) {
              aborted = true;
              controller.abort();
            }
          },
        }),
      );
      expect(e.code).toBe('ERR_ABORTED');
      // At most the step already running when abort() was called is reported afterwards.
      expect(after, `steps reported after abort() at step ${abortAt}`).toBeLessThanOrEqual(1);
    }
  });

  it('AbortSignal.timeout stops a long call', async () => {
    const started = performance.now();
    let steps = 0;
    const e = await rejection(fc.generate({ ...base, steps: 900, signal: AbortSignal.timeout(300), onStep: () => void steps++ }));
    expect(e.code).toBe('ERR_ABORTED');
    expect(steps).toBeLessThan(900);
    expect(performance.now() - started).toBeLessThan(20_000);
  });

  it('a throwing onStep stops the call, which rejects with the thrown error as cause', async () => {
    const boom = new Error('boom');
    let calls = 0;
    const e = await rejection(
      fc.generate({
        ...base,
        steps: 30,
        onStep: ({ step }) => {
          calls++;
          if (step === 2) throw boom;
        },
      }),
    );
    expect(e.code).toBe('ERR_ABORTED');
    expect(e.cause).toBe(boom);
    expect(e.message).toContain('boom');
    expect(calls).toBe(2); // not called again after it threw
  });

  it('a throwing onStep in the stage API denoise() rejects the same way', async () => {
    const subjectEmbeds = await fc.encodeSubjects([s0]);
    const embeds = await fc.encodePrompt({ prompt: base.prompt, subjectEmbeds });
    const e = await rejection(
      fc.denoise(embeds, {
        steps: 3,
        width: 64,
        height: 64,
        onStep: () => {
          throw new TypeError('bad callback');
        },
      }),
    );
    expect(e.code).toBe('ERR_ABORTED');
    expect(e.cause).toBeInstanceOf(TypeError);
  });

  it('after aborts, the instance still generates the same picture as before', async () => {
    const a = await fc.generate({ ...base, steps: 3 });
    const controller = new AbortController();
    await rejection(fc.generate({ ...base, steps: 10, signal: controller.signal, onStep: () => controller.abort() }));
    const b = await fc.generate({ ...base, steps: 3 });
    expect(Buffer.compare(a.latents.data, b.latents.data)).toBe(0);
  });

  it('a call queued behind another leaves the queue when its signal aborts', async () => {
    const controller = new AbortController();
    let queuedSteps = 0;
    const first = fc.generate({ ...base, steps: 8 });
    const second = fc.generate({ ...base, steps: 8, signal: controller.signal, onStep: () => void queuedSteps++ });
    controller.abort();
    expect((await rejection(second)).code).toBe('ERR_ABORTED');
    await first;
    expect(queuedSteps).toBe(0);
  });
});
