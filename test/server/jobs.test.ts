// The job queue and its bounds with a scripted backend (no model): order and concurrency, progress
// events, failures as codes without details, expiry by age, count and bytes, shutdown; and the
// server's option checks and OpenAPI document.
import { describe, expect, it } from 'vitest';

import type { GenerateOptions } from '../../lib/options.js';
import { createServer, DEFAULT_LIMITS, type BackendResult, type GenerateBackend } from '../../lib/server/index.js';
import { openapiDocument } from '../../lib/server/openapi.js';
import { JobStore, type JobEvent } from '../../lib/server/job-store.js';
import { resolveLimits, type ServerLimits } from '../../lib/server/limits.js';

interface Call {
  options: GenerateOptions;
  finish(): void;
  fail(error: unknown): void;
}

/** generate() calls wait until the test finishes or fails them; an abort rejects with ERR_ABORTED. */
function scriptedBackend(): GenerateBackend & { calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    generate(options) {
      return new Promise<BackendResult>((resolve, reject) => {
        const n = options.numImages ?? 1;
        const w = options.width ?? 64;
        const h = options.height ?? 64;
        const s = options.subjects?.length ?? 0;
        const result: BackendResult = {
          images: Array.from({ length: n }, (_, i) => ({
            data: Buffer.alloc(w * h * 3, 40 * i),
            width: w,
            height: h,
            channels: 3 as const,
          })),
          seed: options.seed!,
          warnings: [],
          ...(options.attentionMaps
            ? {
                attentionMaps: {
                  data: Buffer.from(new Float32Array(n * s * (h / 8) * (w / 8)).map((_, i) => i).buffer),
                  shape: [n, s, h / 8, w / 8],
                  dtype: 'float32' as const,
                },
              }
            : {}),
        };
        options.signal?.addEventListener('abort', () =>
          reject(Object.assign(new Error('The operation was aborted'), { code: 'ERR_ABORTED' })),
        );
        calls.push({ options, finish: () => resolve(result), fail: reject });
      });
    },
  };
}

function job(seed = 1, extra: Partial<GenerateOptions> = {}) {
  return { options: { prompt: 'a house', width: 64, height: 64, seed, ...extra }, steps: 10, subjects: 0, numImages: 1 };
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
async function settle(store: JobStore, id: string): Promise<void> {
  while (!store.get(id)?.finished) await tick(5);
}

function store(backend: GenerateBackend, limits: Partial<ServerLimits> = {}, concurrency = 1): JobStore {
  return new JobStore(backend, concurrency, resolveLimits(limits));
}

describe('job queue', () => {
  it('runs jobs first in, first out, `concurrency` at a time, and reports positions', async () => {
    const backend = scriptedBackend();
    const jobs = store(backend);
    const [a, b, c] = [jobs.add(job(1)), jobs.add(job(2)), jobs.add(job(3))];
    expect(backend.calls.map((call) => call.options.seed)).toEqual([1]);
    expect([a, b, c].map((j) => jobs.json(j)).map((j) => [j.status, j.position])).toEqual([
      ['running', null],
      ['queued', 0],
      ['queued', 1],
    ]);
    const seen: JobEvent[] = [];
    jobs.subscribe(c.id, (e) => seen.push(e));
    backend.calls[0]!.finish();
    await settle(jobs, a.id);
    expect(backend.calls.map((call) => call.options.seed)).toEqual([1, 2]);
    expect(seen.map((e) => [e.type, e.job.position])).toEqual([['queued', 0]]);
    backend.calls[1]!.finish();
    await settle(jobs, b.id);
    backend.calls[2]!.finish();
    await settle(jobs, c.id);
    expect(seen.map((e) => e.type)).toEqual(['queued', 'progress', 'done']);
    expect(jobs.json(c)).toMatchObject({ status: 'done', images: [`/api/jobs/${c.id}/images/0`] });

    const two = scriptedBackend();
    const parallel = store(two, {}, 2);
    parallel.add(job(1));
    parallel.add(job(2));
    parallel.add(job(3));
    expect(two.calls).toHaveLength(2);
    expect(parallel.stats()).toMatchObject({ running: 2, queued: 1, concurrency: 2 });
    await parallel.close();
  });

  it('reports each step, and keeps a PNG per image and a heat map per image and subject', async () => {
    const backend = scriptedBackend();
    const jobs = store(backend);
    const subjects = [Buffer.from('a'), Buffer.from('b')];
    const j = jobs.add({ ...job(5, { subjects, numImages: 2, attentionMaps: true }), subjects: 2, numImages: 2 });
    const seen: JobEvent[] = [];
    jobs.subscribe(j.id, (e) => seen.push(e));
    const call = backend.calls[0]!;
    expect(call.options.seed).toBe(5);
    call.options.onStep!({ step: 1, steps: 11, timestep: 901 });
    call.options.onStep!({ step: 2, steps: 11, timestep: 801 });
    expect(seen.map((e) => [e.type, e.job.step, e.job.steps])).toEqual([
      ['progress', 1, 11],
      ['progress', 2, 11],
    ]);
    call.finish();
    await settle(jobs, j.id);
    expect(j.images).toHaveLength(2);
    expect(j.heatmaps.map((maps) => maps.length)).toEqual([2, 2]);
    for (const png of [...j.images, ...j.heatmaps.flat()]) expect(png.readUInt32BE(0)).toBe(0x89504e47);
    expect(jobs.json(j).attentionMaps).toHaveLength(4);
    expect(j.options).toBeUndefined(); // the uploads are let go once the job has started
  });

  it('keeps a failure as its code and message; anything else is ERR_INTERNAL without details', async () => {
    const backend = scriptedBackend();
    const jobs = store(backend);
    const a = jobs.add(job());
    const b = jobs.add(job());
    backend.calls[0]!.fail(Object.assign(new Error('CUDA out of memory'), { code: 'ERR_OUT_OF_MEMORY' }));
    await settle(jobs, a.id);
    expect(jobs.json(a)).toMatchObject({ status: 'failed', error: { code: 'ERR_OUT_OF_MEMORY', message: 'CUDA out of memory' } });
    backend.calls[1]!.fail(new TypeError('cannot read properties of undefined (reading "x") at /srv/app/secret.js:1'));
    await settle(jobs, b.id);
    expect(jobs.json(b).error).toEqual({ code: 'ERR_INTERNAL', message: 'The job failed with an internal error' });
  });

  it('drops finished jobs after their time to live', async () => {
    const backend = scriptedBackend();
    const jobs = store(backend, { jobTtlMs: 100 });
    const j = jobs.add(job());
    backend.calls[0]!.finish();
    await settle(jobs, j.id);
    expect(jobs.json(j).expiresAt).toBe(new Date(j.finishedAt! + 100).toISOString());
    await tick(150);
    expect(jobs.get(j.id)).toBeUndefined();
    expect(jobs.stats()).toMatchObject({ jobs: 0, storedBytes: 0 });
    expect(() => jobs.require(j.id)).toThrow(expect.objectContaining({ status: 404, code: 'ERR_JOB_NOT_FOUND' }));
  });

  it('keeps at most maxFinishedJobs finished jobs and maxStoredBytes of PNGs (the newest always)', async () => {
    const backend = scriptedBackend();
    const jobs = store(backend, { maxFinishedJobs: 2 });
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const j = jobs.add(job());
      backend.calls[i]!.finish();
      await settle(jobs, j.id);
      ids.push(j.id);
    }
    expect(ids.map((id) => jobs.get(id) !== undefined)).toEqual([false, true, true]);

    const bytes = scriptedBackend();
    const small = store(bytes, { maxStoredBytes: 1 });
    const first = small.add(job());
    bytes.calls[0]!.finish();
    await settle(small, first.id);
    expect(small.get(first.id)).toBeDefined();
    const second = small.add(job());
    bytes.calls[1]!.finish();
    await settle(small, second.id);
    expect(small.get(first.id)).toBeUndefined();
    expect(small.stats().storedBytes).toBe(second.storedBytes);
  });

  it('refuses a job over the queue limit with 429', async () => {
    const backend = scriptedBackend();
    const jobs = store(backend, { maxQueued: 1 });
    jobs.add(job());
    jobs.add(job());
    expect(() => jobs.add(job())).toThrow(expect.objectContaining({ status: 429, code: 'ERR_QUEUE_FULL' }));
    await jobs.close();
  });

  it('close() cancels queued jobs, aborts the running one, waits for it and takes no more', async () => {
    const backend = scriptedBackend();
    const jobs = store(backend);
    const running = jobs.add(job());
    const queued = jobs.add(job());
    await jobs.close();
    expect(backend.calls).toHaveLength(1);
    expect(backend.calls[0]!.options.signal!.aborted).toBe(true);
    for (const j of [running, queued]) expect(jobs.json(j)).toMatchObject({ status: 'cancelled', error: { code: 'ERR_SHUTTING_DOWN' } });
    expect(() => jobs.add(job())).toThrow(expect.objectContaining({ status: 503, code: 'ERR_SHUTTING_DOWN' }));
  });
});

describe('server options and document', () => {
  const info = { model: 'm', device: 'cpu', dtype: 'float32' };
  it('checks its options and limits', async () => {
    await expect(createServer({ backend: {} as GenerateBackend, info })).rejects.toThrow(
      'Expected object with a generate() method for backend',
    );
    await expect(createServer({ backend: scriptedBackend(), info: { ...info, device: 1 as unknown as string } })).rejects.toThrow(
      'info.device',
    );
    await expect(createServer({ backend: scriptedBackend(), info, concurrency: 0 })).rejects.toThrow('concurrency');
    await expect(createServer({ backend: scriptedBackend(), info, pageDefaults: { width: 100 } })).rejects.toThrow(
      'Expected multiple of 8 between 64 and 2048 for pageDefaults.width but received 100 of type number',
    );
    await expect(createServer({ backend: scriptedBackend(), info, pageDefaults: { steps: 301 } })).rejects.toThrow('pageDefaults.steps');
    const server = await createServer({ backend: scriptedBackend(), info, pageDefaults: { width: 128, steps: 20 } });
    const health = await server.app.inject({ method: 'GET', url: '/api/health' });
    expect(health.json()).toMatchObject({
      status: 'ok',
      ...info,
      pageDefaults: { width: 128, steps: 20 },
      queue: { queued: 0, running: 0 },
    });
    await server.close();
    expect(() => resolveLimits({ maxQueue: 3 } as Partial<ServerLimits>)).toThrow('Unknown limit "maxQueue"');
    expect(() => resolveLimits({ maxFileBytes: 1.5 })).toThrow(
      'Expected positive integer for limits.maxFileBytes but received 1.5 of type number',
    );
    expect(() => resolveLimits({ maxSubjects: 5 })).toThrow('limits.maxSubjects');
    expect(resolveLimits({ maxQueued: 3 })).toEqual({ ...DEFAULT_LIMITS, maxQueued: 3 });
  });

  it('the OpenAPI document names only routes the server has', async () => {
    const server = await createServer({ backend: scriptedBackend(), info });
    const documented = Object.entries(openapiDocument.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => ({ method: method.toUpperCase(), url: path.replace(/\{(\w+)\}/g, ':$1') })),
    );
    expect(documented).toHaveLength(8);
    for (const route of documented) expect(server.app.hasRoute(route as never), `${route.method} ${route.url}`).toBe(true);
    await server.close();
  });
});
