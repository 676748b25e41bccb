// Builds the addon from source with cmake-js against a torch, and records which torch in
// build/Release/torch.json (lib/native.ts checks it at load time).
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { findTorch, hasCudaLibraries, TORCH_FIXES } from './torch-discovery.mjs';
import { log, run } from './torch-setup.mjs';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

export function buildNative(torch, { out = join(pkgRoot, 'build') } = {}) {
  const require = createRequire(import.meta.url);
  const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  log(`building the native addon from source against torch ${torch.version} (${torch.root})`);
  const cuda = hasCudaLibraries(torch.root);
  const args = [cmakeJs, 'compile', '--out', out, `--CDTORCH_ROOT=${torch.root}`];
  try {
    run(process.execPath, args, { cwd: pkgRoot });
  } catch (error) {
    if (!cuda) throw error;
    // The fused CUDA kernels need an nvcc that suits this torch; without them the addon still
    // runs on CUDA (ATen's group norm), so try once more before giving up.
    log(`the build with CUDA kernels failed (${error instanceof Error ? error.message : String(error)}); building again without them`);
    run(process.execPath, [...args, '--CDFASTCOMPOSER_CUDA_KERNELS=OFF'], { cwd: pkgRoot });
  }
  const release = join(out, 'Release');
  mkdirSync(release, { recursive: true });
  writeFileSync(
    join(release, 'torch.json'),
    JSON.stringify({ torchVersion: torch.version, cuda, builtAt: new Date().toISOString() }, null, 2),
  );
  return join(release, 'fastcomposer.node');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const torch = findTorch(pkgRoot);
  if (!torch) {
    log(`libtorch was not found. ${TORCH_FIXES}`);
    process.exit(1);
  }
  buildNative(torch);
}
