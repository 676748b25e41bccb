// Install-time helpers: messages, commands, and installing torch into the package's own .venv
// when torch-discovery.mjs finds none. Plain JS: it runs during `npm install`, before anything is
// compiled.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

import { TORCH_PIN, VENV_DIR, venvDir, venvPython, venvTorch } from './torch-discovery.mjs';

/** The Python linter and formatter of a development checkout (`npm run lint`): one version, so formatting stays put. */
export const RUFF_PIN = 'ruff==0.16.9';

export function log(message) {
  process.stderr.write(`fastcomposer: ${message}\n`);
}

export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) throw new Error(`${cmd} could not start: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed with exit code ${r.status}`);
}

// Creates <pkg>/.venv (seeing python3's own packages, so a torch already there is reused) and
// pip-installs what is missing: torch, plus the test and lint tools in a development checkout.
export function installTorch(pkgRoot, { dev }) {
  const python = venvPython(pkgRoot);
  if (!existsSync(python)) {
    log(`no torch found: creating a Python environment in ${VENV_DIR}`);
    run('python3', ['-m', 'venv', '--system-site-packages', venvDir(pkgRoot)]);
  }
  const packages = [`torch==${TORCH_PIN}`];
  if (dev) packages.push('numpy', 'safetensors', 'pytest', 'pillow', RUFF_PIN);
  log(`installing ${packages.join(' ')} into ${VENV_DIR}`);
  run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', '--quiet', ...packages]);
  return venvTorch(pkgRoot);
}
