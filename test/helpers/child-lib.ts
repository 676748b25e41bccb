// Child-process tests need the library as plain JavaScript: bundle the current lib/ sources
// (dependencies stay external) into node_modules/.cache, so they never depend on a stale dist/.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { buildSync } from 'esbuild';

const root = join(import.meta.dirname, '..', '..');

/** Bundles lib/index.ts; returns the path of the ES module. */
export function bundleLibrary(): string {
  const dir = join(root, 'node_modules', '.cache', 'fastcomposer-tests');
  mkdirSync(dir, { recursive: true });
  const outfile = join(dir, `index-${process.pid}.mjs`);
  buildSync({
    entryPoints: [join(root, 'lib', 'index.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
  return outfile;
}

/** Bundles the command line (lib/cli/main.ts) the same way; returns the path of the script. */
export function bundleCli(): string {
  const dir = join(root, 'node_modules', '.cache', 'fastcomposer-tests');
  mkdirSync(dir, { recursive: true });
  const outfile = join(dir, `cli-${process.pid}.mjs`);
  buildSync({
    entryPoints: [join(root, 'lib', 'cli', 'main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
  return outfile;
}
