/** Where the package lives on disk, and the files it keeps there. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(): string {
  // dist/esm/paths.js, dist/cjs/index.cjs (bundled) or lib/paths.ts (tests): walk up to package.json.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'native'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('fastcomposer: cannot find its package folder');
}

export const packageRoot = findPackageRoot();
/** The embedded default model, made by `npm install` (the exporter's --tiny preset). */
export const defaultModelDir = join(packageRoot, 'models', 'tiny');
