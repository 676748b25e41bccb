// The HTTP API against a real server on 127.0.0.1 in front of the embedded tiny model: a full job
// gives the same pixels as generate() with the returned seed; bad requests are refused at once with
// the library's codes; cancelling works while queued and while running; the server stays healthy.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { FastComposer } from '../../lib/index.js';
import { type FastComposerServer, startServer } from '../../lib/server/index.js';
import { expectError, getJson, post, readEvents, waitFor } from './helpers.js';

const root = join(import.meta.dirname, '..', '..');
const subjectA = readFileSync(join(root, 'examples', 'subject-a.png'));
const subjectB = readFileSync(join(root, 'examples', 'subject-b.png'));
const PROMPT = 'a man <|image|> and a woman <|image|> in a park';
// Long enough to still run when the test acts on it, and still cheap per step.
const LONG = { prompt: 'a house', steps: 500, width: 64, height: 64, scheduler: 'ddim' };

async function pixels(png: Buffer | ArrayBuffer): Promise<Buffer> {
  const { data, info } = await sharp(Buffer.from(png as ArrayBuffer))
    .raw()
    .toBuffer({ resolveWithObject: true });
  expect(info.channels).toBe(3);
  return data;
}

describe('HTTP API', () => {
  let fc: FastComposer;
  let server: FastComposerServer;
  let base: string;

  beforeAll(async () => {
    fc = await FastComposer.load(undefined, { device: 'cpu' });
    server = await startServer({ backend: fc, info: { model: 'tiny', device: fc.device, dtype: fc.dtype }, port: 0 });
    base = server.url!;
  });
  afterAll(async () => {
    await server?.close();
    await fc?.dispose();
  });
  afterEach(async () => {
    const health = await getJson(base, 'api/health');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', model: 'tiny', device: 'cpu', dtype: 'float32' });
  });

  it('runs a full job: events, PNGs, heat maps, the seed, and the same pixels as generate() with that seed', async () => {
    const region = { x: 0, y: 0, width: 32, height: 64 };
    const fields = {
      prompt: PROMPT,
      steps: 6,
      width: 64,
      height: 64,
      numImages: 2,
      scheduler: 'ddim',
      alpha: 0.5,
      guidanceScale: 4,
      attentionMaps: true,
      region: [JSON.stringify(region), ''],
    };
    const queued = await post(base, fields, [subjectA, subjectB]);
    expect(queued.status).toBe(202);
    const id = queued.body.id as string;
    expect(queued.body).toMatchObject({ id, subjects: 2, numImages: 2, images: [], error: null });
    expect(Number.isSafeInteger(queued.body.seed)).toBe(true);

    const events = await readEvents(base, id);
    const last = events.at(-1)!;
    expect(last.event).toBe('done');
    const steps = events.filter((e) => e.event === 'progress' && e.data.step > 0).map((e) => e.data.step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
    const job = last.data;
    expect(job).toMatchObject({ status: 'done', step: 6, steps: 6, seed: queued.body.seed, error: null });
    expect(job.images).toEqual([0, 1].map((n) => `/api/jobs/${id}/images/${n}`));
    expect(job.attentionMaps).toEqual(
      ['0/attention/0', '0/attention/1', '1/attention/0', '1/attention/1'].map((p) => `/api/jobs/${id}/images/${p}`),
    );
    expect((await getJson(base, `api/jobs/${id}`)).body).toEqual(job);

    const direct = await fc.generate({
      prompt: PROMPT,
      subjects: [{ image: subjectA, region }, subjectB],
      steps: 6,
      width: 64,
      height: 64,
      numImages: 2,
      scheduler: 'ddim',
      alpha: 0.5,
      guidanceScale: 4,
      attentionMaps: true,
      seed: job.seed,
    });
    for (const n of [0, 1]) {
      const res = await fetch(new URL(job.images[n]!, base));
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      const png = Buffer.from(await res.arrayBuffer());
      expect(png.readUInt32BE(0)).toBe(0x89504e47);
      expect((await pixels(png)).equals(direct.images[n]!.data)).toBe(true);
      for (const s of [0, 1]) {
        const map = await fetch(new URL(job.attentionMaps[n * 2 + s]!, base));
        expect(map.headers.get('content-type')).toBe('image/png');
        const want = await pixels(await FastComposer.attentionHeatmap(direct, s, n));
        expect((await pixels(await map.arrayBuffer())).equals(want)).toBe(true);
      }
    }
    // Out of range, and a job without the maps asked for.
    expectError(await getJson(base, `api/jobs/${id}/images/2`), 404, 'ERR_NOT_FOUND');
    expectError(await getJson(base, `api/jobs/${id}/images/0/attention/2`), 404, 'ERR_NOT_FOUND');
    expectError(await getJson(base, `api/jobs/${id}/images/x`), 404, 'ERR_NOT_FOUND');
  });

  it('uses the seed it is given and says so', async () => {
    const { status, body } = await post(base, { prompt: 'a man <|image|>', seed: 1234, steps: 2, width: 64, height: 64 }, [subjectA]);
    expect(status).toBe(202);
    expect(body.seed).toBe(1234);
    const events = await readEvents(base, body.id);
    expect(events.at(-1)).toMatchObject({ event: 'done', data: { seed: 1234, attentionMaps: [] } });
    expectError(await getJson(base, `api/jobs/${body.id}/images/0/attention/0`), 404, 'ERR_NOT_FOUND');
  });

  it("takes MMagic's img marker (imageToken=img): the subject count follows it, the pixels are its <|image|> twin's", async () => {
    const fields = {
      prompt: 'a man img and a woman img in a park',
      imageToken: 'img',
      seed: 77,
      steps: 3,
      width: 64,
      height: 64,
      scheduler: 'ddim',
    };
    const queued = await post(base, fields, [subjectA, subjectB]);
    expect(queued.status).toBe(202);
    expect(queued.body).toMatchObject({ subjects: 2, seed: 77 });
    const last = (await readEvents(base, queued.body.id)).at(-1)!;
    expect(last).toMatchObject({ event: 'done', data: { status: 'done', subjects: 2 } });
    const twin = await fc.generate({
      prompt: PROMPT,
      subjects: [subjectA, subjectB],
      seed: 77,
      steps: 3,
      width: 64,
      height: 64,
      scheduler: 'ddim',
    });
    const png = await (await fetch(new URL(last.data.images[0]!, base))).arrayBuffer();
    expect((await pixels(png)).equals(twin.images[0]!.data)).toBe(true);

    // Each marker counts only in its own dialect; a marker that is neither is refused by name.
    expect(expectError(await post(base, { ...fields, prompt: PROMPT }, [subjectA, subjectB]), 400, 'ERR_SUBJECT_COUNT')).toBe(
      'Expected 0 subjects (one per img in the prompt) for subjects but received array of length 2',
    );
    expectError(await post(base, { ...fields, imageToken: '<|image|>' }, [subjectA, subjectB]), 400, 'ERR_SUBJECT_COUNT');
    expect(expectError(await post(base, { ...fields, imageToken: 'IMG' }, [subjectA, subjectB]), 400, 'ERR_INVALID_ARGUMENT')).toMatch(
      /^Expected .*for imageToken but received "IMG" of type string$/,
    );
    const doc = (await getJson(base, 'api/openapi.json')).body;
    const schema = doc.paths['/api/generate'].post.requestBody.content['multipart/form-data'].schema.properties.imageToken;
    expect(schema).toMatchObject({ enum: ['<|image|>', 'img'], default: '<|image|>' });
  });

  describe('refuses bad requests at once with the library codes', () => {
    const one = { prompt: 'a man <|image|>', steps: 2, width: 64, height: 64 };
    it('no prompt', async () => {
      expect(expectError(await post(base, { steps: 2 }, []), 400, 'ERR_INVALID_ARGUMENT')).toBe(
        'Expected string for prompt but received undefined',
      );
    });
    it('a subject count that does not match the prompt', async () => {
      const message = expectError(await post(base, one, [subjectA, subjectB]), 400, 'ERR_SUBJECT_COUNT');
      expect(message).toBe('Expected 1 subject (one per <|image|> in the prompt) for subjects but received array of length 2');
      expectError(await post(base, { ...one, prompt: 'a man <|image|> and a dog <|image|>' }, [subjectA]), 400, 'ERR_SUBJECT_COUNT');
    });
    it('corrupt and truncated pictures', async () => {
      const corrupt = Buffer.from(subjectA);
      corrupt.fill(0x5a, 100, 4000); // the header survives, the pixel data does not
      expect(expectError(await post(base, one, [corrupt]), 400, 'ERR_IMAGE')).toMatch(/^subjects\[0\]: cannot decode the image/);
      expectError(await post(base, one, [subjectA.subarray(0, subjectA.length >> 1)]), 400, 'ERR_IMAGE');
      expectError(await post(base, one, [Buffer.from('not a picture')]), 400, 'ERR_IMAGE');
    });
    it('non-numeric and out-of-range numbers, unknown fields, bad regions', async () => {
      expect(expectError(await post(base, { ...one, steps: 'ten' }, [subjectA]), 400, 'ERR_INVALID_ARGUMENT')).toBe(
        'Expected integer between 1 and 1000 for steps but received "ten" of type string',
      );
      expectError(await post(base, { ...one, width: 65 }, [subjectA]), 400, 'ERR_INVALID_ARGUMENT');
      expectError(await post(base, { ...one, attentionMaps: 'maybe' }, [subjectA]), 400, 'ERR_INVALID_ARGUMENT');
      expect(expectError(await post(base, { ...one, colour: 'red' }, [subjectA]), 400, 'ERR_INVALID_ARGUMENT')).toMatch(
        /^Unknown field "colour"/,
      );
      expect(
        expectError(
          await post(base, { ...one, region: '{"x": 0, "y": 0, "width": 65, "height": 8}' }, [subjectA]),
          400,
          'ERR_INVALID_ARGUMENT',
        ),
      ).toBe('Expected integer between 1 and 64 for subjects[0].region.width but received 65 of type number');
      expectError(await post(base, { ...one, region: '{"x": 0' }, [subjectA]), 400, 'ERR_INVALID_ARGUMENT');
      expectError(await post(base, { ...one, region: ['', ''] }, [subjectA]), 400, 'ERR_INVALID_ARGUMENT');
    });
    it('more subject files than the limit', async () => {
      const five = { ...one, prompt: 'a <|image|> b <|image|> c <|image|> d <|image|> e <|image|>' };
      expectError(await post(base, five, [subjectA, subjectA, subjectA, subjectA, subjectA]), 400, 'ERR_SUBJECT_COUNT');
    });
    it('a body that is not multipart', async () => {
      const res = await getJson(base, 'api/generate', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"prompt":"x"}',
      });
      expectError(res, 400, 'ERR_INVALID_ARGUMENT');
    });
    it('unknown job ids and routes', async () => {
      expectError(await getJson(base, 'api/jobs/no-such-job'), 404, 'ERR_JOB_NOT_FOUND');
      expectError(await getJson(base, 'api/jobs/no-such-job/events'), 404, 'ERR_JOB_NOT_FOUND');
      expectError(await getJson(base, 'api/jobs/no-such-job/images/0'), 404, 'ERR_JOB_NOT_FOUND');
      expectError(await getJson(base, 'api/jobs/no-such-job', { method: 'DELETE' }), 404, 'ERR_JOB_NOT_FOUND');
      expectError(await getJson(base, 'api/nothing-here'), 404, 'ERR_NOT_FOUND');
      expectError(await getJson(base, 'api/generate', { method: 'PUT' }), 404, 'ERR_NOT_FOUND');
      expectError(await getJson(base, '%2e%2e/package.json'), 404, 'ERR_NOT_FOUND');
    });
  });

  it('cancels a queued job at once and a running one within a step', async () => {
    const running = await post(base, LONG);
    expect(running.status).toBe(202);
    // The first job is running once its first step is reported.
    const started = await readEvents(base, running.body.id, (e) => e.data.step >= 1);
    expect(started.at(-1)!.data.status).toBe('running');

    const queued = await post(base, { ...LONG, steps: 2 });
    expect(queued.body).toMatchObject({ status: 'queued', position: 0 });
    expectError(await getJson(base, `api/jobs/${queued.body.id}/images/0`), 409, 'ERR_JOB_NOT_DONE');
    const cancelQueued = await getJson(base, `api/jobs/${queued.body.id}`, { method: 'DELETE' });
    expect(cancelQueued.status).toBe(200);
    expect(cancelQueued.body).toMatchObject({ status: 'cancelled', step: 0, error: { code: 'ERR_ABORTED' } });
    expect((await readEvents(base, queued.body.id)).map((e) => e.event)).toEqual(['cancelled']);
    expectError(await getJson(base, `api/jobs/${queued.body.id}`, { method: 'DELETE' }), 409, 'ERR_JOB_FINISHED');

    const events = readEvents(base, running.body.id);
    const cancelRunning = await getJson(base, `api/jobs/${running.body.id}`, { method: 'DELETE' });
    expect(cancelRunning.status).toBe(202);
    const last = (await events).at(-1)!;
    expect(last.event).toBe('cancelled');
    expect(last.data).toMatchObject({ status: 'cancelled', images: [], error: { code: 'ERR_ABORTED' } });
    expect(last.data.step).toBeLessThan(500);
    expectError(await getJson(base, `api/jobs/${running.body.id}/images/0`), 404, 'ERR_NOT_FOUND');

    // The model takes the next job.
    const next = await post(base, { prompt: 'a tree', steps: 2, width: 64, height: 64 });
    expect((await readEvents(base, next.body.id)).at(-1)!.event).toBe('done');
  });

  it('a client that drops its event stream does not cancel the job', async () => {
    const { body } = await post(base, { prompt: 'a boat', steps: 8, width: 64, height: 64, scheduler: 'ddim' });
    const seen = await readEvents(base, body.id, (e) => e.data.step >= 1);
    expect(seen.at(-1)!.data.status).toBe('running');
    const done = await waitFor('the job to finish', async () => {
      const { body: job } = await getJson(base, `api/jobs/${body.id}`);
      return job.status === 'running' || job.status === 'queued' ? undefined : job;
    });
    expect(done).toMatchObject({ status: 'done', step: 8, images: [`/api/jobs/${body.id}/images/0`] });
  });

  it('serves the page and the OpenAPI document', async () => {
    const page = await fetch(base);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toContain('<script src="app.js"></script>');
    const doc = await getJson(base, 'api/openapi.json');
    expect(doc.body.openapi).toBe('3.1.0');
  });
});

describe('HTTP API limits', () => {
  let fc: FastComposer;
  let server: FastComposerServer;
  let base: string;

  beforeAll(async () => {
    fc = await FastComposer.load(undefined, { device: 'cpu' });
    const limits = { maxQueued: 1, maxFileBytes: subjectA.length + 1000, maxRequestBytes: subjectA.length + 50_000, maxFieldBytes: 1024 };
    server = await startServer({ backend: fc, info: { model: 'tiny', device: 'cpu', dtype: 'float32' }, port: 0, limits });
    base = server.url!;
  });
  afterAll(async () => {
    await server?.close();
    await fc?.dispose();
  });

  it('refuses oversize files, requests and fields with 413', async () => {
    const one = { prompt: 'a man <|image|>', steps: 2, width: 64, height: 64 };
    const big = Buffer.concat([subjectA, Buffer.alloc(2000)]);
    expect(expectError(await post(base, one, [big]), 413, 'ERR_UPLOAD_TOO_LARGE')).toBe(
      `A subject file is larger than ${subjectA.length + 1000} bytes`,
    );
    const two = { ...one, prompt: 'a man <|image|> and a woman <|image|>' };
    expect(expectError(await post(base, two, [subjectA, subjectB]), 413, 'ERR_UPLOAD_TOO_LARGE')).toMatch(/^The request is larger than/);
    expect(expectError(await post(base, { ...one, negativePrompt: 'x'.repeat(2000) }, [subjectA]), 413, 'ERR_UPLOAD_TOO_LARGE')).toBe(
      'The field negativePrompt is longer than 1024 bytes',
    );
    expect((await getJson(base, 'api/health')).body.status).toBe('ok');
  });

  it('answers 429 when the queue is full', async () => {
    const running = await post(base, LONG);
    await readEvents(base, running.body.id, (e) => e.data.status === 'running');
    const queued = await post(base, LONG);
    expect(queued.body.status).toBe('queued');
    expect(expectError(await post(base, LONG), 429, 'ERR_QUEUE_FULL')).toMatch(/queue is full \(1 jobs waiting\)/);
    expect((await getJson(base, 'api/health')).body.queue).toMatchObject({ queued: 1, running: 1, maxQueued: 1 });
    await getJson(base, `api/jobs/${queued.body.id}`, { method: 'DELETE' });
    await getJson(base, `api/jobs/${running.body.id}`, { method: 'DELETE' });
    expect((await readEvents(base, running.body.id)).at(-1)!.event).toBe('cancelled');
    expect((await post(base, { prompt: 'a tree', steps: 1, width: 64, height: 64 })).status).toBe(202);
  });
});
