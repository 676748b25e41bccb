// Runs the exporter's pytest suite with the Python that has torch (the one `npm install` set up).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const venv = join(pkgRoot, '.venv', 'bin', 'python');
const python = process.env.FASTCOMPOSER_PYTHON || (existsSync(venv) ? venv : 'python3');
const r = spawnSync(python, ['-m', 'pytest', '-q', join(pkgRoot, 'exporter', 'tests'), ...process.argv.slice(2)], {
  stdio: 'inherit',
  cwd: pkgRoot,
  env: { ...process.env, PYTHONPATH: join(pkgRoot, 'exporter') },
});
process.exit(r.status ?? 1);
