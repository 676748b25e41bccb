/** The Python that runs the exporter (FASTCOMPOSER_PYTHON, else the package's .venv, else python3), as the install scripts pick it, and running it. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

import { exporterEnv as exporterEnvIn, findPython as findPythonIn } from '#torch-discovery';

import { AbortError, FastComposerError } from './errors.js';
import { packageRoot } from './paths.js';

export function findPython(env: NodeJS.ProcessEnv = process.env): string {
  return findPythonIn(packageRoot, env);
}

/** Environment for running the exporter package from its folder. */
export function exporterEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return exporterEnvIn(packageRoot, env);
}

/** One JSON progress line of the exporter (cli.py's Progress): a plan, then each stage's start and done. */
export interface ExporterEvent {
  status?: string;
  stage?: string;
  stages?: string[];
  [key: string]: unknown;
}

/**
 * Runs `python -m fastcomposer_export ARGS`; `onEvent` gets each JSON progress line (cli.py's
 * Progress). Rejects with ERR_EXPORT and the exporter's one-line message.
 */
export function runExporter(args: string[], onEvent: (event: ExporterEvent) => void, signal?: AbortSignal): Promise<void> {
  const python = findPython();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortError(signal.reason));
    // An abort stops the exporter with SIGINT: it removes its partial output folder and exits.
    const child = spawn(python, ['-m', 'fastcomposer_export', ...args], {
      env: exporterEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(signal ? { signal, killSignal: 'SIGINT' as const } : {}),
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        onEvent(JSON.parse(line) as ExporterEvent);
      } catch {
        process.stderr.write(`${line}\n`);
      }
    });
    child.on('error', (error) =>
      signal?.aborted
        ? undefined
        : reject(
            new FastComposerError(
              'ERR_EXPORT',
              `Cannot run the exporter with ${python}: ${error.message}. Set FASTCOMPOSER_PYTHON to a Python with torch.`,
            ),
          ),
    );
    child.on('close', (code) => {
      if (signal?.aborted) reject(new AbortError(signal.reason));
      else if (code === 0) resolve();
      else reject(new FastComposerError('ERR_EXPORT', stderr.trim() || `the exporter exited with code ${code}`));
    });
  });
}
