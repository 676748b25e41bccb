// Ending the process while native work runs: the exit code is the one asked for and the
// process does not crash (in child processes). Without the addon's exit preparation these
// delays crashed the process in 3 of 4 runs (SIGSEGV in oneDNN, whose statics were gone).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { expect, inject, it } from 'vitest';

const root = join(import.meta.dirname, '..');

it.each([300, 400, 500, 600])('process.exit(3) %i ms into a running generate() exits with 3, no signal', (delay) => {
  const r = spawnSync(
    process.execPath,
    [join(root, 'test', 'fixtures', 'worker', 'exit-mid-job.mjs'), join(root, 'dist', 'esm'), inject('goldenModelDir'), String(delay)],
    { encoding: 'utf8', timeout: 120_000 },
  );
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(3);
});

it('process.exit(7) while only a worker thread\'s long native task runs exits with 7, no signal', () => {
  const r = spawnSync(
    process.execPath,
    [join(root, 'test', 'fixtures', 'worker', 'worker-only-exit.mjs'), join(root, 'dist', 'esm'), inject('goldenModelDir')],
    { encoding: 'utf8', timeout: 120_000 },
  );
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(7);
});
