// Finds a torch for the build, or installs one into the package's own .venv. Plain JS: it runs
// during `npm install`, before anything is compiled. Mirrors lib/torch-locate.ts's order.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const TORCH_PIN = '2.13.0';

export function log(message) {
  process.stderr.write(`fastcomposer: ${message}\n`);
}

export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) throw new Error(`${cmd} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed with exit code ${r.status}`);
}

function readVersion(root) {
  const py = join(root, 'version.py');
  if (existsSync(py)) return /__version__\s*=\s*['"]([^'"]+)['"]/.exec(readFileSync(py, 'utf8'))?.[1] ?? 'unknown';
  const bv = join(root, 'build-version');
  return existsSync(bv) ? readFileSync(bv, 'utf8').trim() : 'unknown';
}

function fromRoot(root, source, python) {
  if (!root || !existsSync(join(root, 'lib', 'libtorch.so'))) return undefined;
  return { root, version: readVersion(root), source, python };
}

function torchRootOf(python) {
  const code = 'import importlib.util as u;s=u.find_spec("torch");print(s.submodule_search_locations[0] if s else "")';
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() || undefined : undefined;
}

export function venvPython(pkgRoot) {
  return join(pkgRoot, '.venv', 'bin', 'python');
}

function venvTorchRoot(pkgRoot) {
  const lib = join(pkgRoot, '.venv', 'lib');
  if (!existsSync(lib)) return undefined;
  for (const entry of readdirSync(lib)) {
    const root = join(lib, entry, 'site-packages', 'torch');
    if (existsSync(root)) return root;
  }
  return undefined;
}

export function findTorch(pkgRoot, env = process.env) {
  if (env.LIBTORCH) return fromRoot(env.LIBTORCH, 'LIBTORCH', undefined);
  if (env.FASTCOMPOSER_PYTHON) return fromRoot(torchRootOf(env.FASTCOMPOSER_PYTHON), 'FASTCOMPOSER_PYTHON', env.FASTCOMPOSER_PYTHON);
  const local = fromRoot(venvTorchRoot(pkgRoot), '.venv', venvPython(pkgRoot));
  if (local) return local;
  return fromRoot(torchRootOf('python3'), 'python3', 'python3');
}

// Creates <pkg>/.venv (seeing python3's own packages, so a torch already there is reused) and
// pip-installs what is missing: torch, plus the test tools in a development checkout.
export function installTorch(pkgRoot, { dev }) {
  const python = venvPython(pkgRoot);
  if (!existsSync(python)) {
    log('no torch found: creating a Python environment in .venv');
    run('python3', ['-m', 'venv', '--system-site-packages', join(pkgRoot, '.venv')]);
  }
  const packages = [`torch==${TORCH_PIN}`];
  if (dev) packages.push('numpy', 'safetensors', 'pytest', 'pillow');
  log(`installing ${packages.join(' ')} into .venv`);
  run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '--quiet', ...packages]);
  return fromRoot(venvTorchRoot(pkgRoot), '.venv', python);
}

export const TORCH_FIXES =
  'Fixes: set LIBTORCH to an unpacked libtorch folder; or set FASTCOMPOSER_PYTHON to a Python that has torch; ' +
  `or install one: python3 -m pip install torch==${TORCH_PIN}.`;
