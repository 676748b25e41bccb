// `npm run lint` / `format` for the Python (exporter, benchmarks, fixture makers): ruff, run by the
// Python that runs the exporter (FASTCOMPOSER_PYTHON, else the checkout's .venv, else python3),
// where `npm install` puts it in a checkout, else a `ruff` on PATH. Arguments go to ruff as given.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { findPython } from '../torch-discovery.mjs';
import { RUFF_PIN } from '../torch-setup.mjs';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const python = findPython(pkgRoot);

function works(cmd, args) {
  const r = spawnSync(cmd, [...args, '--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

const command = works(python, ['-m', 'ruff']) ? [python, '-m', 'ruff'] : works('ruff', []) ? ['ruff'] : undefined;
if (!command) {
  console.error(`ruff is not installed for ${python}: run \`${python} -m pip install ${RUFF_PIN}\` (npm install does it in a checkout)`);
  process.exit(1);
}
const [cmd, ...pre] = command;
const r = spawnSync(cmd, [...pre, ...process.argv.slice(2)], { stdio: 'inherit', cwd: pkgRoot });
process.exit(r.status ?? 1);
