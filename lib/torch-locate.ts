/**
 * Finds libtorch, in the same order as the build (scripts/build.mjs): LIBTORCH (an unpacked
 * libtorch), FASTCOMPOSER_PYTHON's torch, the project's .venv, then python3's torch.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { localVenv } from './paths.js';

export interface TorchLocation {
  root: string; // folder with include/ (when a dev install) and lib/
  libDir: string;
  version: string; // e.g. "2.13.0+cpu"
  source: 'LIBTORCH' | 'FASTCOMPOSER_PYTHON' | '.venv' | 'python3';
}

/** "2.13.0+cu130" -> "2.13.0": variants of one release share the C++ ABI. */
export function baseVersion(version: string): string {
  return version.split('+')[0]!.trim();
}

function readVersion(root: string): string | undefined {
  // A Python torch has version.py; an unpacked libtorch has build-version.
  const py = join(root, 'version.py');
  if (existsSync(py)) {
    const m = /__version__\s*=\s*['"]([^'"]+)['"]/.exec(readFileSync(py, 'utf8'));
    if (m) return m[1];
  }
  const bv = join(root, 'build-version');
  if (existsSync(bv)) return readFileSync(bv, 'utf8').trim();
  return undefined;
}

function fromRoot(root: string, source: TorchLocation['source']): TorchLocation | undefined {
  const libDir = join(root, 'lib');
  if (!existsSync(join(libDir, 'libtorch.so')) && !existsSync(join(libDir, 'libtorch.dylib'))) return undefined;
  return { root, libDir, version: readVersion(root) ?? 'unknown', source };
}

/** The torch package folder of a Python interpreter, found without importing torch (fast). */
export function torchRootOfPython(python: string): string | undefined {
  const code =
    'import importlib.util as u;s=u.find_spec("torch");print(s.submodule_search_locations[0] if s else "")';
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) return undefined;
  const root = r.stdout.trim();
  return root || undefined;
}

function venvTorchRoot(venv: string): string | undefined {
  const libRoot = join(venv, 'lib');
  if (!existsSync(libRoot)) return undefined;
  for (const entry of readdirSync(libRoot)) {
    const root = join(libRoot, entry, 'site-packages', 'torch');
    if (entry.startsWith('python') && existsSync(root)) return root;
  }
  return undefined;
}

export function locateTorch(env: NodeJS.ProcessEnv = process.env): TorchLocation | undefined {
  if (env.LIBTORCH) return fromRoot(env.LIBTORCH, 'LIBTORCH');
  if (env.FASTCOMPOSER_PYTHON) {
    const root = torchRootOfPython(env.FASTCOMPOSER_PYTHON);
    return root ? fromRoot(root, 'FASTCOMPOSER_PYTHON') : undefined;
  }
  const venvRoot = venvTorchRoot(localVenv);
  const fromVenv = venvRoot && fromRoot(venvRoot, '.venv');
  if (fromVenv) return fromVenv;
  const root = torchRootOfPython('python3');
  return root ? fromRoot(root, 'python3') : undefined;
}

export const TORCH_FIXES =
  'Fixes: set LIBTORCH to an unpacked libtorch folder; or set FASTCOMPOSER_PYTHON to a Python that has torch; ' +
  'or run `npx fastcomposer setup` (it installs torch into the package\'s .venv); ' +
  'or `python3 -m pip install torch==2.13.0`.';
