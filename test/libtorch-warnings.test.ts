// libtorch's own messages never reach the terminal raw: NNPACK's "Could not initialize NNPACK!
// Reason: Unsupported hardware." (logged for every float32 CPU convolution on CPUs NNPACK does not
// support, as on the machines these tests were written on) is kept quiet at its source, and
// warnings raised during a call become FastComposerWarning process warnings (lib/warnings.ts).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { expect, inject, it } from 'vitest';

import { runChild } from './helpers/child.js';

const root = join(import.meta.dirname, '..');
const dist = join(root, 'dist', 'esm');

it('a CLI generate prints no libtorch log line (no NNPACK notice)', () => {
  const r = spawnSync(
    process.execPath,
    [
      join(dist, 'cli', 'main.js'),
      'generate',
      '--model',
      inject('goldenModelDir'),
      '--prompt',
      'a man <|image|> in a park',
      '--subject',
      join(root, 'examples', 'subject-a.png'),
      '--steps',
      '2',
      '--width',
      '64',
      '--height',
      '64',
      '--seed',
      '1',
      '--device',
      'cpu',
      '--out',
      join(inject('goldenModelDir'), '..', 'warnings-test.png'),
      '--no-progress',
    ],
    { encoding: 'utf8', timeout: 300_000 },
  );
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr).not.toContain('NNPACK');
  expect(r.stderr.split('\n').filter((line) => /^\[[WEI]\d/.test(line))).toEqual([]);
});

it('a libtorch warning raised during a call is a FastComposerWarning, emitted once, never raw on stderr', async () => {
  const r = await runChild<{ name: string; code: string; message: string }[]>(
    join(root, 'test', 'fixtures', 'security', 'libtorch-warning.mjs'),
    [dist, inject('goldenModelDir')],
    180_000,
    { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --no-warnings`.trim() },
  );
  expect(r.code, r.stderr).toBe(0);
  expect(r.result).toEqual([
    { name: 'FastComposerWarning', code: 'FASTCOMPOSER_LIBTORCH', message: 'libtorch: a libtorch warning raised by the test' },
  ]);
  expect(r.stderr).not.toContain('raised by the test');
  expect(r.stderr).not.toContain('NNPACK');
});
