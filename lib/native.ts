/**
 * Loads the native addon. A prebuilt binary does not know where libtorch is on this machine,
 * so libtorch is found first (torch-locate.ts), its version checked against the one the
 * binary was built with, and its libraries preloaded by absolute path; the addon's own
 * references to them then resolve by name, without LD_LIBRARY_PATH.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { isMainThread } from 'node:worker_threads';

import { FastComposerError } from './errors.js';
import type { NativeBinding } from './native-contract.js';
import { packageRoot } from './paths.js';
import { baseVersion, hasCudaLibraries, locateTorch, TORCH_FIXES, TORCH_LIBRARIES, type TorchLocation } from './torch-locate.js';

const require = createRequire(import.meta.url);

// dlopen flags (Linux values): RTLD_NODELETE keeps the library mapped after Node's addon loader
// closes a handle on finding no module in it.
const RTLD_NOW = 2;
const RTLD_GLOBAL = 0x100;
const RTLD_NODELETE = 0x1000;

/** Written beside each built or prebuilt .node by scripts/build-native.mjs and scripts/prebuild.mjs. */
export interface BuildInfo {
  torchVersion: string;
  cuda: boolean;
  builtAt?: string;
}

export interface LoadedNative {
  binding: NativeBinding;
  addonPath: string;
  torch: TorchLocation;
  build: BuildInfo | undefined;
}

let loaded: LoadedNative | undefined;

function resolveAddon(): string {
  const gypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  try {
    return gypBuild.resolve(packageRoot);
  } catch (cause) {
    throw new FastComposerError(
      'ERR_NATIVE_LOAD',
      `No fastcomposer binary for ${process.platform}-${process.arch} in build/ or prebuilds/. ` +
        'Run `npx fastcomposer setup` to build it from source (needs cmake and a C++ compiler).',
      { cause },
    );
  }
}

function readBuildInfo(addonPath: string): BuildInfo | undefined {
  const file = join(dirname(addonPath), 'torch.json');
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as BuildInfo;
}

function preload(torch: TorchLocation): void {
  for (const name of TORCH_LIBRARIES) {
    const file = join(torch.libDir, name);
    if (!existsSync(file)) continue;
    try {
      process.dlopen({ exports: {} }, file, RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
    } catch (error) {
      // Loading worked; Node only complains that a plain library registers no addon.
      if (error instanceof Error && /did not self-register/.test(error.message)) continue;
      throw new FastComposerError('ERR_NATIVE_LOAD', `Cannot load ${file}: ${(error as Error).message}. ${TORCH_FIXES}`, {
        cause: error,
      });
    }
  }
}

export function loadNative(): LoadedNative {
  if (loaded) return loaded;
  const addonPath = resolveAddon();
  const build = readBuildInfo(addonPath);
  const torch = locateTorch();
  if (!torch) {
    throw new FastComposerError('ERR_TORCH_NOT_FOUND', `libtorch was not found. ${TORCH_FIXES}`);
  }
  if (build && torch.version !== 'unknown' && baseVersion(build.torchVersion) !== baseVersion(torch.version)) {
    throw new FastComposerError(
      'ERR_TORCH_VERSION',
      `The fastcomposer binary ${addonPath} was built against torch ${build.torchVersion}, but the torch found ` +
        `(${torch.source}: ${torch.root}) is ${torch.version}. ` +
        `Install torch==${baseVersion(build.torchVersion)} there, or rebuild with \`FASTCOMPOSER_BUILD_FROM_SOURCE=1 npx fastcomposer setup\`. ${TORCH_FIXES}`,
    );
  }
  if (build?.cuda && !hasCudaLibraries(torch.root)) {
    throw new FastComposerError(
      'ERR_TORCH_VERSION',
      `The fastcomposer binary ${addonPath} was built against a CUDA torch (${build.torchVersion}), but the torch ` +
        `found (${torch.source}: ${torch.root}) has no CUDA libraries. Install a CUDA torch there, or rebuild ` +
        `against this one with \`FASTCOMPOSER_BUILD_FROM_SOURCE=1 npx fastcomposer setup\`. ${TORCH_FIXES}`,
    );
  }
  if (process.platform === 'linux') preload(torch);
  let binding: NativeBinding;
  try {
    binding = require(addonPath) as NativeBinding;
  } catch (cause) {
    throw new FastComposerError(
      'ERR_NATIVE_LOAD',
      `Cannot load ${addonPath} with torch ${torch.version} from ${torch.root}: ${(cause as Error).message}. ` +
        'If this mentions GLIBC or GLIBCXX, the binary needs a newer C/C++ runtime: rebuild from source with ' +
        `\`FASTCOMPOSER_BUILD_FROM_SOURCE=1 npx fastcomposer setup\`. ${TORCH_FIXES}`,
      { cause },
    );
  }
  // Before the process exits (also by process.exit()), native work must stop: C++ static objects
  // are destroyed right after, and a torch task still running then would crash the process.
  if (isMainThread) process.once('exit', () => binding.prepareExit());
  loaded = { binding, addonPath, torch, build };
  return loaded;
}
