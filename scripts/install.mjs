// `npm install`: compiles the TypeScript (in a checkout), finds or installs torch, takes a
// matching prebuilt binary or builds one, and makes the embedded default model. Says which.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildNative } from './build-native.mjs';
import { baseVersion, exporterEnv, findTorch, hasCudaLibraries, TORCH_FIXES } from './torch-discovery.mjs';
import { installTorch, log, run } from './torch-setup.mjs';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
// A git checkout has the tests and the TypeScript sources; the published package has dist/.
const dev = existsSync(join(pkgRoot, 'test')) && existsSync(join(pkgRoot, 'tsconfig.json'));

function matchingPrebuild(torch) {
  const dir = join(pkgRoot, 'prebuilds', `${process.platform}-${process.arch}`);
  const info = join(dir, 'torch.json');
  if (!existsSync(info)) return undefined;
  const built = JSON.parse(readFileSync(info, 'utf8'));
  // A binary built against a CUDA torch links its CUDA libraries: it needs a CUDA torch too.
  const cudaTorch = hasCudaLibraries(torch.root);
  const matches = baseVersion(built.torchVersion) === baseVersion(torch.version) && Boolean(built.cuda) === cudaTorch;
  return matches ? { dir, built } : undefined;
}

function main() {
  if (dev) {
    log('compiling TypeScript (lib/ -> dist/)');
    run(process.execPath, [join(pkgRoot, 'scripts', 'build-ts.mjs')], { cwd: pkgRoot });
  }

  let torch = findTorch(pkgRoot);
  if (torch) log(`using torch ${torch.version} from ${torch.source} (${torch.root})`);
  if (dev && torch?.source !== 'LIBTORCH' && torch?.source !== 'FASTCOMPOSER_PYTHON') {
    torch = installTorch(pkgRoot, { dev }); // the checkout also needs pytest & co in .venv
  } else if (!torch) {
    torch = installTorch(pkgRoot, { dev });
  }
  if (!torch) throw new Error(`no torch could be found or installed. ${TORCH_FIXES}`);

  const prebuild = process.env.FASTCOMPOSER_BUILD_FROM_SOURCE ? undefined : matchingPrebuild(torch);
  if (prebuild && !dev) {
    log(`using the prebuilt binary in ${prebuild.dir} (built against torch ${prebuild.built.torchVersion})`);
  } else {
    if (!dev) log(`no prebuilt binary matches torch ${torch.version}: building from source`);
    buildNative(torch);
  }

  const tiny = join(pkgRoot, 'models', 'tiny');
  if (!existsSync(join(tiny, 'model.json'))) {
    if (!torch.python) {
      log('LIBTORCH has no Python: skipping the embedded tiny model (export one with `npx fastcomposer export`)');
      return;
    }
    log('making the embedded default model (models/tiny)');
    mkdirSync(dirname(tiny), { recursive: true });
    run(torch.python, ['-m', 'fastcomposer_export', '--tiny', '--out', tiny], {
      cwd: pkgRoot,
      env: exporterEnv(pkgRoot),
    });
  }
  log('ready');
}

try {
  main();
} catch (error) {
  log(`install failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
