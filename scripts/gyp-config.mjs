// Prints what binding.gyp needs from JavaScript: `torch` (the libtorch folder found the same way
// as the cmake-js build), `sources` (native/*.cc) or `napi-include`.
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { findTorch, TORCH_FIXES } from './torch-discovery.mjs';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const what = process.argv[2];
if (what === 'torch') {
  const torch = findTorch(pkgRoot);
  if (!torch) {
    process.stderr.write(`fastcomposer: libtorch was not found. ${TORCH_FIXES}\n`);
    process.exit(1);
  }
  process.stdout.write(torch.root);
} else if (what === 'sources') {
  const files = [];
  for (const dir of ['native', 'native/schedulers']) {
    for (const f of readdirSync(join(pkgRoot, dir))) if (f.endsWith('.cc')) files.push(join(dir, f));
  }
  process.stdout.write(files.map((f) => relative(pkgRoot, join(pkgRoot, f))).join(' '));
} else if (what === 'napi-include') {
  const require = createRequire(import.meta.url);
  process.stdout.write(require('node-addon-api').include_dir);
} else {
  process.stderr.write('usage: gyp-config.mjs torch|sources|napi-include\n');
  process.exit(2);
}
