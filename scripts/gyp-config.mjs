// Prints what binding.gyp needs from JavaScript, found the same way as the cmake-js build
// (torch-discovery.mjs): `torch` (the libtorch folder), `defines` (the C++ ABI libtorch was built
// with), `libraries` (torch's libraries to link, its CUDA ones too in a CUDA torch), `sources`
// (native/*.cc), `napi-include`; and `torch-json FILE` writes the torch.json that lib/native.ts
// checks beside the binary.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { findTorch, hasCudaLibraries, TORCH_FIXES } from './torch-discovery.mjs';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

function torchOrExit() {
  const torch = findTorch(pkgRoot);
  if (torch) return torch;
  process.stderr.write(`fastcomposer: libtorch was not found. ${TORCH_FIXES}\n`);
  process.exit(1);
}

// As CMakeLists.txt: libtorch's CMake config records the ABI flag it was built with; 1 when it does not say.
function cxx11Abi(root) {
  const config = join(root, 'share', 'cmake', 'Torch', 'TorchConfig.cmake');
  const m = existsSync(config) ? /_GLIBCXX_USE_CXX11_ABI=([01])/.exec(readFileSync(config, 'utf8')) : null;
  return m ? m[1] : '1';
}

const [what, arg] = process.argv.slice(2);
if (what === 'torch') {
  process.stdout.write(torchOrExit().root);
} else if (what === 'defines') {
  process.stdout.write(`_GLIBCXX_USE_CXX11_ABI=${cxx11Abi(torchOrExit().root)}`);
} else if (what === 'libraries') {
  // As CMakeLists.txt: a CUDA torch's CUDA libraries are linked too, so that their kernels register when the addon loads.
  const torch = torchOrExit();
  const libs = ['torch', 'torch_cpu', 'c10', 'torch_cuda', 'c10_cuda'].filter((l) => existsSync(join(torch.libDir, `lib${l}.so`)));
  process.stdout.write(libs.map((l) => `-l${l}`).join(' '));
} else if (what === 'torch-json' && arg) {
  const torch = torchOrExit();
  const info = {
    torchVersion: torch.version,
    cuda: hasCudaLibraries(torch.root),
    builtAt: new Date().toISOString(),
    builtWith: 'node-gyp',
  };
  writeFileSync(arg, JSON.stringify(info, null, 2));
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
  process.stderr.write('usage: gyp-config.mjs torch|defines|libraries|sources|napi-include|torch-json FILE\n');
  process.exit(2);
}
