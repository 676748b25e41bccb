// The addon in worker threads, in child processes (a native crash fails one test, not the run):
// loaded beside the main thread; a running native call leaves libuv's pool free; terminating a
// worker stops its running job and never reads its freed memory; a process where only a worker
// loaded the addon exits cleanly.
import { join } from 'node:path';

import { expect, inject, it } from 'vitest';

import { runChild } from './helpers/child.js';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist', 'esm');

function runWorkerFixture<T>(name: string, timeoutMs = 120_000, env: NodeJS.ProcessEnv = process.env) {
  return runChild<T>(join(root, 'test', 'fixtures', 'worker', name), [dist, inject('goldenModelDir')], timeoutMs, env);
}

it('survives the addon loaded in a worker thread beside the main thread', async () => {
  const r = await runWorkerFixture<string>('two-threads.mjs');
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(0);
  expect(r.result).toBe('ok');
});

it("leaves libuv's pool free while a generate() runs (UV_THREADPOOL_SIZE=1)", async () => {
  const r = await runWorkerFixture<{ poolMs: number; stepsBeforePool: number; steps: number }>('pool-free.mjs', 120_000, {
    ...process.env,
    UV_THREADPOOL_SIZE: '1',
  });
  expect(r.code, r.stderr).toBe(0);
  // The pool task finished while the denoising loop was still going (61 PNDM steps in all).
  expect(r.result!.steps).toBe(61);
  expect(r.result!.stepsBeforePool).toBeLessThan(r.result!.steps);
});

it("aborts a terminated worker thread's running generate(), so the device is free again", async () => {
  const r = await runWorkerFixture<{ ms: number }>('terminate-running.mjs');
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(0);
  // Not a speed target: the aborted job had about half a minute left, and without the abort the
  // shutdown waits 5 s for it and the next call queues behind the rest.
  expect(r.result!.ms).toBeLessThan(10_000);
});

it('exits cleanly when only a worker thread loaded the addon', async () => {
  const r = await runWorkerFixture<string>('worker-only.mjs');
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(0);
  expect(r.result).toBe('ok');
});

it("never reads a terminated worker's subject pictures: its queued job is skipped", async () => {
  const r = await runWorkerFixture<string>('terminate-queued.mjs', 180_000);
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(0);
  expect(r.result).toBe('ok');
}, 200_000); // the child's own limit (180 s) is the one that counts, not vitest's default
