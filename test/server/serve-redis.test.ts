// `fastcomposer serve --redis` in a child process in front of a real redis-server (started here on
// a free loopback port): the server loads no model; workers (one FastComposerWorker in this
// process, one `fastcomposer worker` process) run the jobs. A full job gives generate()'s pixels
// with its progress over SSE; DELETE stops the job on its worker; --concurrency runs jobs on
// several workers at once; SIGTERM cancels the running job on its worker and exits 0; a Redis out
// of reach fails at start with ERR_QUEUE and exit code 1.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { FastComposer } from '../../lib/index.js';
import { FastComposerWorker, type WorkerEvent } from '../../lib/queue/index.js';
import { startRedis } from '../helpers/redis-server.mjs';
import { startWorker } from '../queue/helpers.js';
import { expectError, getJson, post, readEvents, waitFor } from './helpers.js';
import { cli, type ServeProcess, serveProcess } from './serve-process.js';

const subjectA = readFileSync(join(import.meta.dirname, '..', '..', 'examples', 'subject-a.png'));
const LONG = { prompt: 'a house', steps: 500, width: 64, height: 64, scheduler: 'ddim' };
// Steps long enough (tens of ms) that a step report still on its way to JavaScript is at most one.
const SLOW_STEPS = { ...LONG, width: 256, height: 256 };
const QUEUE = 'web';

async function pixels(png: Buffer | ArrayBuffer): Promise<Buffer> {
  return sharp(Buffer.from(png as ArrayBuffer))
    .raw()
    .toBuffer();
}

function cancelledOnWorker(events: WorkerEvent[]): Extract<WorkerEvent, { type: 'cancelled' }>[] {
  return events.filter((e): e is Extract<WorkerEvent, { type: 'cancelled' }> => e.type === 'cancelled');
}

describe('fastcomposer serve --redis', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let fc: FastComposer;
  let worker: FastComposerWorker;
  const workerEvents: WorkerEvent[] = [];
  let serve: ServeProcess;
  let base: string;

  beforeAll(async () => {
    redis = await startRedis();
    fc = await FastComposer.load(undefined, { device: 'cpu', threads: 1 });
    worker = await FastComposerWorker.start({ connection: redis.url, name: QUEUE, model: fc }, (e) => workerEvents.push(e));
    serve = serveProcess(['--redis', redis.url, '--queue', QUEUE]);
    base = await serve.url;
  }, 120_000);

  afterAll(async () => {
    serve?.child.kill('SIGKILL');
    await worker?.close();
    await fc?.dispose();
    await redis?.stop();
  });

  it('runs a job through the queue: progress over SSE, PNGs with the pixels of generate() with that seed; no model in the server', async () => {
    expect((await getJson(base, 'api/health')).body).toMatchObject({
      status: 'ok',
      backend: 'queue',
      queueName: QUEUE,
      model: 'queue',
      device: 'queue',
      dtype: 'queue',
      queue: { concurrency: 8, running: 0 },
    });
    expect(serve.stdout()).toMatch(
      new RegExp(`^fastcomposer: serving through queue ${QUEUE} on redis://127\\.0\\.0\\.1:${redis.port} \\(8 jobs at once\\) at http`),
    );
    // Neither libtorch nor the addon is mapped into the server's process.
    const maps = readFileSync(`/proc/${serve.child.pid}/maps`, 'utf8');
    expect(maps).not.toMatch(/libtorch|fastcomposer\.node/);

    const fields = {
      prompt: 'a man <|image|> in a park',
      steps: 4,
      width: 64,
      height: 64,
      scheduler: 'ddim' as const,
      numImages: 2,
      attentionMaps: true,
    };
    const queued = await post(base, fields, [subjectA]);
    expect(queued.status).toBe(202);
    const events = await readEvents(base, queued.body.id);
    expect(events.filter((e) => e.event === 'progress' && e.data.step > 0).map((e) => e.data.step)).toEqual([1, 2, 3, 4]);
    const job = events.at(-1)!;
    expect(job).toMatchObject({ event: 'done', data: { status: 'done', step: 4, seed: queued.body.seed, subjects: 1, numImages: 2 } });
    expect(workerEvents.filter((e) => e.type === 'completed')).toHaveLength(1);

    const direct = await fc.generate({ ...fields, subjects: [subjectA], seed: queued.body.seed });
    for (const n of [0, 1]) {
      const res = await fetch(new URL(job.data.images[n]!, base));
      expect(res.headers.get('content-type')).toBe('image/png');
      expect((await pixels(await res.arrayBuffer())).equals(direct.images[n]!.data)).toBe(true);
      const map = await (await fetch(new URL(job.data.attentionMaps[n]!, base))).arrayBuffer();
      expect((await pixels(map)).equals(await pixels(await FastComposer.attentionHeatmap(direct, 0, n)))).toBe(true);
    }

    // MMagic's img dialect goes through the queue too; a bad request is refused before anything is queued.
    const img = await post(
      base,
      { ...fields, prompt: 'a man img in a park', imageToken: 'img', numImages: 1, attentionMaps: false, seed: 5 },
      [subjectA],
    );
    const imgDone = (await readEvents(base, img.body.id)).at(-1)!;
    expect(imgDone).toMatchObject({ event: 'done', data: { seed: 5, subjects: 1 } });
    const twin = await fc.generate({ ...fields, numImages: 1, attentionMaps: false, subjects: [subjectA], seed: 5 });
    expect((await pixels(await (await fetch(new URL(imgDone.data.images[0]!, base))).arrayBuffer())).equals(twin.images[0]!.data)).toBe(
      true,
    );
    expectError(await post(base, { ...fields, steps: 'ten' }, [subjectA]), 400, 'ERR_INVALID_ARGUMENT');
  }, 120_000);

  it('DELETE stops the job on its worker within a step', async () => {
    const running = await post(base, SLOW_STEPS);
    await readEvents(base, running.body.id, (e) => e.data.step >= 1);
    const before = cancelledOnWorker(workerEvents).length;
    const events = readEvents(base, running.body.id);
    const cancel = await getJson(base, `api/jobs/${running.body.id}`, { method: 'DELETE' });
    expect(cancel.status).toBe(202);
    const last = (await events).at(-1)!;
    expect(last).toMatchObject({ event: 'cancelled', data: { status: 'cancelled', images: [], error: { code: 'ERR_ABORTED' } } });
    const onWorker = await waitFor('the worker to stop the job', () => cancelledOnWorker(workerEvents)[before], 30_000);
    // atStep is the last step the worker's JavaScript had heard of when the cancel came; the native
    // loop may be one report ahead of it, and finishes the step under way: two at most.
    expect(onWorker.lastStep - onWorker.atStep).toBeLessThanOrEqual(2);
    expect(onWorker.lastStep).toBeLessThan(500);
    // The worker takes the next job.
    const next = await post(base, { prompt: 'a tree', steps: 2, width: 64, height: 64 });
    expect((await readEvents(base, next.body.id)).at(-1)!.event).toBe('done');
  }, 120_000);

  it('runs several jobs at once on several workers', async () => {
    const other = await startWorker(cli, redis.url, QUEUE, 'second');
    try {
      const ids = [(await post(base, LONG)).body.id as string, (await post(base, LONG)).body.id as string];
      // Both running and past their first step at the same time: one on each worker.
      await waitFor(
        'both jobs to run at once',
        async () => {
          const jobs = await Promise.all(ids.map(async (id) => (await getJson(base, `api/jobs/${id}`)).body));
          return jobs.every((j) => j.status === 'running' && j.step >= 1) ? true : undefined;
        },
        60_000,
      );
      expect((await getJson(base, 'api/health')).body.queue).toMatchObject({ running: 2, queued: 0 });
      for (const id of ids) expect((await getJson(base, `api/jobs/${id}`, { method: 'DELETE' })).status).toBe(202);
      for (const id of ids) expect((await readEvents(base, id)).at(-1)!.event).toBe('cancelled');
      await waitFor('the other worker to stop its job', () => (/cancelled by its caller/.test(other.output()) ? true : undefined), 30_000);
    } finally {
      other.child.kill('SIGTERM');
      expect((await other.exit).code).toBe(0);
    }
  }, 240_000);

  it('SIGTERM: the running job is cancelled on its worker, the queue connection closed, exit code 0', async () => {
    const running = await post(base, SLOW_STEPS);
    await readEvents(base, running.body.id, (e) => e.data.step >= 1);
    const before = cancelledOnWorker(workerEvents).length;
    const stream = readEvents(base, running.body.id);
    await new Promise((r) => setTimeout(r, 200)); // the stream subscribed
    serve.child.kill('SIGTERM');
    expect((await stream).at(-1)).toMatchObject({ event: 'cancelled', data: { error: { code: 'ERR_SHUTTING_DOWN' } } });
    const result = await serve.exit;
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(result.stderr).toContain('fastcomposer: SIGTERM: stopping');
    expect(result.stderr).toContain('fastcomposer: stopped');
    await waitFor('the worker to stop the job', () => cancelledOnWorker(workerEvents)[before], 30_000);
  }, 120_000);

  it('fails at start with ERR_QUEUE and exit code 1 when Redis cannot be reached; queue flags need --redis', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve)); // nothing listens there now
    const started = Date.now();
    const nowhere = serveProcess(['--redis', `redis://127.0.0.1:${port}`]);
    const result = await nowhere.exit;
    expect(result.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(result.stderr).toMatch(
      new RegExp(
        `^fastcomposer: Cannot use the queue fastcomposer on redis://127\\.0\\.0\\.1:${port}: Cannot connect to Redis: .*ECONNREFUSED.* \\[ERR_QUEUE\\]\\n$`,
      ),
    );

    const child = spawn(process.execPath, [cli, 'serve', '--concurrency', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(1);
    expect(stderr).toBe(
      'fastcomposer: --concurrency needs --redis (without it, one model in this process runs one job at a time) [ERR_INVALID_ARGUMENT]\n',
    );

    const batching = spawn(process.execPath, [cli, 'serve', '--redis', 'redis://127.0.0.1:1', '--max-batch-size', '4'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let batchingErr = '';
    batching.stderr.setEncoding('utf8').on('data', (d: string) => (batchingErr += d));
    expect(await new Promise((resolve) => batching.on('exit', resolve))).toBe(1);
    expect(batchingErr).toBe(
      'fastcomposer: --max-batch-size does not go with --redis: the workers load the model (fastcomposer worker --max-batch-size ...) [ERR_INVALID_ARGUMENT]\n',
    );
  }, 60_000);
});
