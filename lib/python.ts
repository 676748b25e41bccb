/** The Python that runs the exporter: FASTCOMPOSER_PYTHON, else the project's .venv, else python3. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { localVenv, packageRoot } from './paths.js';

export function findPython(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FASTCOMPOSER_PYTHON) return env.FASTCOMPOSER_PYTHON;
  const venvPython = join(localVenv, 'bin', 'python');
  if (existsSync(venvPython)) return venvPython;
  return 'python3';
}

/** Environment for running the exporter package from its folder. */
export function exporterEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const exporterDir = join(packageRoot, 'exporter');
  return { ...env, PYTHONPATH: env.PYTHONPATH ? `${exporterDir}:${env.PYTHONPATH}` : exporterDir, PYTHONUNBUFFERED: '1' };
}
