// Runs the exporter's pytest suite with the Python that has torch (the one `npm install` set up).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { exporterEnv, findPython } from './torch-discovery.mjs';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const r = spawnSync(findPython(pkgRoot), ['-m', 'pytest', '-q', join(pkgRoot, 'exporter', 'tests'), ...process.argv.slice(2)], {
  stdio: 'inherit',
  cwd: pkgRoot,
  env: exporterEnv(pkgRoot),
});
process.exit(r.status ?? 1);
