// `npm run build:prebuilds` (not "prebuild": npm would run that before every `npm run build`): prebuildify (N-API) writes prebuilds/<platform>-<arch>/fastcomposer.napi.node,
// built by cmake-js (scripts/prebuild-backend.mjs), and beside it torch.json: the torch version
// the binary was built against, which lib/native.ts checks before loading it.
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { run } from './torch-setup.mjs';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const prebuildify = join(dirname(require.resolve('prebuildify/package.json')), 'bin.js');
run(
  process.execPath,
  [prebuildify, '--napi', '--strip', '--name', 'fastcomposer', '--node-gyp', join(pkgRoot, 'scripts', 'prebuild-backend.mjs')],
  {
    cwd: pkgRoot,
  },
);
const dir = join(pkgRoot, 'prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
copyFileSync(join(pkgRoot, 'build', 'Release', 'torch.json'), join(dir, 'torch.json'));
process.stderr.write(`fastcomposer: prebuilt binary in ${dir}\n`);
