// Exports the golden tiny-a release (test/fixtures/tiny-a/release) once per test run with the
// project's own exporter CLI, as a user would, and shares the model directory with the tests.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { TestProject } from 'vitest/node';

const root = join(import.meta.dirname, '..', '..');
const release = join(root, 'test', 'fixtures', 'tiny-a', 'release');

declare module 'vitest' {
  export interface ProvidedContext {
    goldenModelDir: string;
  }
}

export default function setup(project: TestProject): () => void {
  const out = mkdtempSync(join(tmpdir(), 'fastcomposer-golden-'));
  const modelDir = join(out, 'tiny-a');
  const cli = join(root, 'dist', 'esm', 'cli', 'main.js');
  if (!existsSync(cli)) throw new Error('dist/ is missing: run `npm install` (or `npm run build`) first');
  const r = spawnSync(
    process.execPath,
    [
      cli,
      'export',
      '--checkpoint',
      join(release, 'fastcomposer', 'pytorch_model.bin'),
      '--base',
      join(release, 'sd'),
      '--image-encoder',
      join(release, 'clip'),
      '--out',
      modelDir,
      '--no-progress',
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`exporting the golden release failed:\n${r.stderr}`);
  project.provide('goldenModelDir', modelDir);
  return () => rmSync(out, { recursive: true, force: true });
}
