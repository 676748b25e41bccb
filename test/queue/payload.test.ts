// The job data and the errors that cross the queue, without Redis: options are checked on the
// producer with the library's own validation, pictures travel as bytes, the seed is fixed before
// queueing, the worker reads the data back strictly, and coded errors survive the trip.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';

import { FastComposerError } from '../../lib/errors.js';
import { validateGenerateOptions } from '../../lib/options.js';
import { failureError, jobFailure } from '../../lib/queue/failures.js';
import { decodeJob, encodeJob } from '../../lib/queue/payload.js';
import { rejection } from '../helpers/errors.js';

const subjectA = join(import.meta.dirname, '..', '..', 'examples', 'subject-a.png');

describe('job data', () => {
  it('round-trips every kind of picture, region, mask and latents as bytes', async () => {
    const raw = { data: new Uint8Array([1, 2, 3, 4, 5, 6]), width: 2, height: 1, channels: 3 as const };
    const latents = { data: Buffer.alloc(4 * 4 * 8 * 8, 7), shape: [1, 4, 8, 8], dtype: 'float32' as const };
    const { data, opts } = await encodeJob(
      {
        prompt: 'a man <|image|> and a dog <|image|> and a cat <|image|>',
        subjects: [
          subjectA,
          { image: readFileSync(subjectA), region: { x: 0, y: 0, width: 32, height: 64 } },
          { image: raw, mask: raw, subjectMask: subjectA },
        ],
        width: 64,
        height: 64,
        steps: 3,
        latents,
        startMergeStep: 1,
      },
      5000,
    );
    // Plain JSON: what BullMQ stores.
    const back = decodeJob(JSON.parse(JSON.stringify(data)));
    expect(back.resultTtl).toBe(5000);
    expect(back.progress).toBe(false); // nobody listens: the worker reports no steps
    expect((await encodeJob({ prompt: 'a photo', onStep: () => undefined }, 5000)).data.progress).toBe(true);
    const subjects = back.options.subjects as { image: unknown; region?: unknown; mask?: unknown; subjectMask?: unknown }[];
    expect(subjects[0]!.image).toEqual(readFileSync(subjectA)); // a path is read on the producer
    expect(subjects[1]!.image).toEqual(readFileSync(subjectA));
    expect(subjects[1]!.region).toEqual({ x: 0, y: 0, width: 32, height: 64 });
    expect(subjects[2]!.image).toEqual({ ...raw, data: Buffer.from(raw.data) });
    expect(subjects[2]!.mask).toEqual({ ...raw, data: Buffer.from(raw.data) });
    expect(subjects[2]!.subjectMask).toEqual(readFileSync(subjectA));
    expect(back.options.latents).toEqual(latents);
    expect(back.options.startMergeStep).toBe(1);
    expect(back.options.alpha).toBeUndefined();
    // The completed options, seed included, are what the worker runs.
    expect(back.options.seed).toBe(opts.seed);
    expect(opts.seedWasRandom).toBe(true);
    expect(back.options).toMatchObject({ steps: 3, guidanceScale: 5, scheduler: 'pndm', numImages: 1, output: 'raw', negativePrompt: '' });
    // The worker's own validation accepts what the producer sent.
    expect(validateGenerateOptions(back.options, { subjectCount: 3 }).seed).toBe(opts.seed);
  });

  it("rejects bad options before anything is queued, with the library's errors", async () => {
    const base = { prompt: 'a man <|image|>', subjects: [subjectA] };
    let e = await rejection(encodeJob({ ...base, steps: 0 }, 1000));
    expect(e.code).toBe('ERR_INVALID_ARGUMENT');
    expect(e.message).toBe('Expected integer between 1 and 1000 for steps but received 0 of type number');
    e = await rejection(encodeJob({ ...base, subjects: [] }, 1000));
    expect(e.code).toBe('ERR_SUBJECT_COUNT');
    e = await rejection(encodeJob({ ...base, subjects: ['/no/such/picture.png'] }, 1000));
    expect(e.code).toBe('ERR_IMAGE');
    expect(e.message).toBe('subjects[0]: cannot read "/no/such/picture.png" (ENOENT)');
    e = await rejection(encodeJob({ ...base, bogus: 1 } as never, 1000));
    expect(e.message).toMatch(/^Unknown option "bogus"/);
  });

  it("carries MMagic's img marker: the subject count follows the chosen marker; the default adds no key", async () => {
    const { data } = await encodeJob(
      { prompt: 'a man img and a dog img', imageToken: 'img', subjects: [subjectA, subjectA], seed: 1 },
      1000,
    );
    const back = decodeJob(JSON.parse(JSON.stringify(data)));
    expect(back.options).toMatchObject({ prompt: 'a man img and a dog img', imageToken: 'img' });
    expect((back.options.subjects as unknown[]).length).toBe(2);
    // Jobs in the default dialect stay what workers from before the img dialect accept.
    expect('imageToken' in (await encodeJob({ prompt: 'a man <|image|>', subjects: [subjectA] }, 1000)).data.options).toBe(false);
    const e = await rejection(encodeJob({ prompt: 'a man <|image|>', imageToken: 'img', subjects: [subjectA] }, 1000));
    expect([e.code, e.message]).toEqual([
      'ERR_SUBJECT_COUNT',
      'Expected 0 subjects (one per img in the prompt) for subjects but received array of length 1',
    ]);
    expect((await rejection(encodeJob({ prompt: 'a man img', imageToken: 'IMG' as never, subjects: [subjectA] }, 1000))).message).toMatch(
      /for imageToken/,
    );
  });

  it('the worker refuses malformed data, naming the field', async () => {
    const { data } = await encodeJob({ prompt: 'a man <|image|>', subjects: [subjectA], seed: 1 }, 1000);
    const json = JSON.parse(JSON.stringify(data));
    const cases: [unknown, RegExp][] = [
      [null, /job data/],
      [{ ...json, format: 'other' }, /job data format/],
      [{ ...json, version: 2 }, /job data version 1/],
      [{ ...json, options: { ...json.options, onStep: 'x' } }, /Unknown job data options "onStep"/],
      [{ ...json, subjects: [{ image: { encoded: '***' } }] }, /base64 string for subjects\[0\]\.image\.encoded/],
      [{ ...json, subjects: [{ image: { path: '/etc/passwd' } }] }, /subjects\[0\]\.image/],
      [{ ...json, resultTtl: -1 }, /resultTtl/],
      [{ ...json, progress: 'yes' }, /job data progress/],
    ];
    for (const [bad, message] of cases) {
      let error: unknown;
      try {
        decodeJob(bad);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(FastComposerError);
      expect((error as FastComposerError).code).toBe('ERR_INVALID_ARGUMENT');
      expect((error as FastComposerError).message).toMatch(message);
    }
  });
});

describe('errors across the queue', () => {
  it('input errors fail at once, others may be retried; code and message come back unchanged', () => {
    const input = new FastComposerError('ERR_PROMPT', '<|image|> at character 0 of the prompt has no noun before it');
    const failure = jobFailure(input);
    expect(failure).toBeInstanceOf(UnrecoverableError);
    const back = failureError(failure.message, '7');
    expect([back.code, back.message]).toEqual([input.code, input.message]);
    for (const code of ['ERR_INVALID_ARGUMENT', 'ERR_SUBJECT_COUNT', 'ERR_IMAGE', 'ERR_ABORTED'] as const) {
      expect(jobFailure(new FastComposerError(code, 'x'))).toBeInstanceOf(UnrecoverableError);
    }
    const oom = jobFailure(new FastComposerError('ERR_OUT_OF_MEMORY', 'CUDA out of memory.\nTried to allocate 2 GiB'));
    expect(oom).not.toBeInstanceOf(UnrecoverableError);
    expect(failureError(oom.message, '7')).toMatchObject({
      code: 'ERR_OUT_OF_MEMORY',
      message: 'CUDA out of memory.\nTried to allocate 2 GiB',
    });
    // A plain error inside a worker is a native error.
    expect(jobFailure(new TypeError('boom')).message).toBe('ERR_NATIVE: boom');
  });

  it("BullMQ's own reasons become ERR_QUEUE naming the job", () => {
    const e = failureError('job stalled more than allowable limit', '12');
    expect(e.code).toBe('ERR_QUEUE');
    expect(e.message).toBe('Job 12 failed in the queue: job stalled more than allowable limit');
    expect(failureError('ERR_NOT_A_CODE: x', '3').code).toBe('ERR_QUEUE');
  });
});
