// Ending the process while native work runs: the exit code is the one asked for and the
// process does not crash (in child processes). Without the addon's exit preparation the first
// delays crashed the process in 3 of 4 runs (SIGSEGV in oneDNN, whose statics were gone).
import { join } from 'node:path';

import { expect, inject, it } from 'vitest';

import { runChild } from './helpers/child.js';

const root = join(import.meta.dirname, '..');
const fixture = (name: string) => join(root, 'test', 'fixtures', 'worker', name);
const dist = join(root, 'dist', 'esm');

it.each([300, 400, 500, 600])('process.exit(3) %i ms into a running generate() exits with 3, no signal', async (delay) => {
  const r = await runChild(fixture('exit-mid-job.mjs'), [dist, inject('goldenModelDir'), String(delay)], 120_000);
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(3);
});

it("process.exit(7) while only a worker thread's long native task runs exits with 7, no signal", async () => {
  const r = await runChild(fixture('worker-only-exit.mjs'), [dist, inject('goldenModelDir')], 120_000);
  expect(r.signal, r.stderr).toBeNull();
  expect(r.code, r.stderr).toBe(7);
});
