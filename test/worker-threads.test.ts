// The addon loaded in a worker thread and in the main thread at once: each environment keeps
// its own class references, so neither crashes the process; and a running native call leaves
// libuv's pool free; terminating a worker thread stops its running job (in child processes).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { expect, inject, it } from 'vitest';

const root = join(import.meta.dirname, '..');

it('survives the addon loaded in a worker thread beside the main thread', () => {
  const r = spawnSync(
    process.execPath,
    [join(root, 'test', 'fixtures', 'worker', 'two-threads.mjs'), join(root, 'dist', 'esm'), inject('goldenModelDir')],
    { encoding: 'utf8', timeout: 120_000 },
  );
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toContain('RESULT ok');
});

it('leaves libuv\'s pool free while a generate() runs (UV_THREADPOOL_SIZE=1)', () => {
  const r = spawnSync(
    process.execPath,
    [join(root, 'test', 'fixtures', 'worker', 'pool-free.mjs'), join(root, 'dist', 'esm'), inject('goldenModelDir')],
    { encoding: 'utf8', timeout: 120_000, env: { ...process.env, UV_THREADPOOL_SIZE: '1' } },
  );
  expect(r.status, r.stderr).toBe(0);
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  const result = JSON.parse(line!.slice('RESULT '.length)) as { poolMs: number; stepsBeforePool: number; steps: number };
  // The pool task finished while the denoising loop was still going (61 PNDM steps in all).
  expect(result.steps).toBe(61);
  expect(result.stepsBeforePool).toBeLessThan(result.steps);
});

it('aborts a terminated worker thread\'s running generate(), so the device is free again', () => {
  const r = spawnSync(
    process.execPath,
    [join(root, 'test', 'fixtures', 'worker', 'terminate-running.mjs'), join(root, 'dist', 'esm'), inject('goldenModelDir')],
    { encoding: 'utf8', timeout: 120_000 },
  );
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  const { ms } = JSON.parse(line!.slice('RESULT '.length)) as { ms: number };
  // Not a speed target: the aborted job had about half a minute left, and without the abort the
  // shutdown waits 5 s for it and the next call queues behind the rest.
  expect(ms).toBeLessThan(10_000);
});

it('exits cleanly when only a worker thread loaded the addon', () => {
  const r = spawnSync(
    process.execPath,
    [join(root, 'test', 'fixtures', 'worker', 'worker-only.mjs'), join(root, 'dist', 'esm'), inject('goldenModelDir')],
    { encoding: 'utf8', timeout: 120_000 },
  );
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toContain('RESULT ok');
});

it('never reads a terminated worker\'s subject pictures: its queued job is skipped', () => {
  const r = spawnSync(
    process.execPath,
    [join(root, 'test', 'fixtures', 'worker', 'terminate-queued.mjs'), join(root, 'dist', 'esm'), inject('goldenModelDir')],
    { encoding: 'utf8', timeout: 180_000 },
  );
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toContain('RESULT ok');
});
