// Where torch and its Python are: one answer for the install scripts (plain JS, run during `npm
// install` before anything is compiled) and for the library at run time (lib/torch-locate.ts and
// lib/python.ts import it as '#torch-discovery'). Types: torch-discovery.d.mts.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The torch release installed when none is found, and the one the prebuilt binary is built against. */
export const TORCH_PIN = '2.13.0';

/** The package's own Python environment (made by the set-up when no torch is found), in the package folder. */
export const VENV_DIR = '.venv';

/** The library that makes a folder's lib/ a libtorch. */
export const TORCH_LIBRARY = 'libtorch.so';
/** Present in a CUDA build of torch only. */
export const TORCH_CUDA_LIBRARY = 'libtorch_cuda.so';
/** torch's shared libraries in load order (each needs the ones before it); the CUDA ones exist in CUDA builds only. */
export const TORCH_LIBRARIES = ['libc10.so', 'libtorch_cpu.so', 'libc10_cuda.so', TORCH_CUDA_LIBRARY, TORCH_LIBRARY];

/** Appended to every "torch not found or not usable" message. */
export const TORCH_FIXES =
  'Fixes: set LIBTORCH to an unpacked libtorch folder; or set FASTCOMPOSER_PYTHON to a Python that has torch; ' +
  `or run \`npx fastcomposer setup\` (it installs torch into the package's ${VENV_DIR}); ` +
  `or \`python3 -m pip install torch==${TORCH_PIN}\`.`;

/** "2.13.0+cu130" -> "2.13.0": the variants of one release share the C++ ABI. */
export function baseVersion(version) {
  return String(version).split('+')[0].trim();
}

/** Whether the torch in `root` is a CUDA build. */
export function hasCudaLibraries(root) {
  return existsSync(join(root, 'lib', TORCH_CUDA_LIBRARY));
}

export function venvDir(pkgRoot) {
  return join(pkgRoot, VENV_DIR);
}

export function venvPython(pkgRoot) {
  return join(venvDir(pkgRoot), 'bin', 'python');
}

// A Python torch has version.py; an unpacked libtorch has build-version.
function readVersion(root) {
  const py = join(root, 'version.py');
  if (existsSync(py)) {
    const m = /__version__\s*=\s*['"]([^'"]+)['"]/.exec(readFileSync(py, 'utf8'));
    if (m) return m[1];
  }
  const bv = join(root, 'build-version');
  return existsSync(bv) ? readFileSync(bv, 'utf8').trim() : 'unknown';
}

function fromRoot(root, source, python) {
  if (!root) return undefined;
  const libDir = join(root, 'lib');
  if (!existsSync(join(libDir, TORCH_LIBRARY))) return undefined;
  return { root, libDir, version: readVersion(root), source, python };
}

/** The torch package folder of a Python interpreter, found without importing torch (fast). */
export function torchRootOfPython(python) {
  const code = 'import importlib.util as u;s=u.find_spec("torch");print(s.submodule_search_locations[0] if s else "")';
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) return undefined;
  return r.stdout.trim() || undefined;
}

/** The torch installed in the package's own .venv (not one it sees from python3's packages). */
export function venvTorch(pkgRoot) {
  const lib = join(venvDir(pkgRoot), 'lib');
  if (!existsSync(lib)) return undefined;
  for (const entry of readdirSync(lib)) {
    const root = join(lib, entry, 'site-packages', 'torch');
    if (entry.startsWith('python') && existsSync(root)) return fromRoot(root, VENV_DIR, venvPython(pkgRoot));
  }
  return undefined;
}

/**
 * Finds torch in this order: LIBTORCH (an unpacked libtorch), FASTCOMPOSER_PYTHON's torch, the
 * package's .venv, then python3's torch. A variable that is set decides: when it names no torch,
 * the later places are not tried.
 */
export function findTorch(pkgRoot, env = process.env) {
  if (env.LIBTORCH) return fromRoot(env.LIBTORCH, 'LIBTORCH', undefined);
  if (env.FASTCOMPOSER_PYTHON) return fromRoot(torchRootOfPython(env.FASTCOMPOSER_PYTHON), 'FASTCOMPOSER_PYTHON', env.FASTCOMPOSER_PYTHON);
  return venvTorch(pkgRoot) ?? fromRoot(torchRootOfPython('python3'), 'python3', 'python3');
}

/** The Python that runs the exporter and its tests: FASTCOMPOSER_PYTHON, else the package's .venv, else python3. */
export function findPython(pkgRoot, env = process.env) {
  if (env.FASTCOMPOSER_PYTHON) return env.FASTCOMPOSER_PYTHON;
  const python = venvPython(pkgRoot);
  return existsSync(python) ? python : 'python3';
}

/** The environment that runs the exporter package (exporter/fastcomposer_export) from the package folder. */
export function exporterEnv(pkgRoot, env = process.env) {
  const dir = join(pkgRoot, 'exporter');
  return { ...env, PYTHONPATH: env.PYTHONPATH ? `${dir}:${env.PYTHONPATH}` : dir, PYTHONUNBUFFERED: '1' };
}
