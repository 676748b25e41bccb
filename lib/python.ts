/** The Python that runs the exporter (FASTCOMPOSER_PYTHON, else the package's .venv, else python3), as the install scripts pick it. */
import { exporterEnv as exporterEnvIn, findPython as findPythonIn } from '#torch-discovery';

import { packageRoot } from './paths.js';

export function findPython(env: NodeJS.ProcessEnv = process.env): string {
  return findPythonIn(packageRoot, env);
}

/** Environment for running the exporter package from its folder. */
export function exporterEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return exporterEnvIn(packageRoot, env);
}
