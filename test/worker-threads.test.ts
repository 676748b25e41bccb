// The addon loaded in a worker thread and in the main thread at once: each environment keeps
// its own class references, so neither crashes the process (run in a child process).
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
