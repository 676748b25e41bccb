/**
 * `fastcomposer serve`: the HTTP API and the demo page on one model (default: the embedded tiny
 * one). SIGINT or SIGTERM stops it cleanly: no new jobs, queued ones cancelled, the running one
 * aborted within a step, the server closed, the model disposed, exit code 0.
 */
import { basename, resolve } from 'node:path';

import type { Command } from 'commander';

import { FastComposerError, invalidArgument } from '../errors.js';
import { FastComposer } from '../fastcomposer.js';
import type { DeviceSpec, ModelDType } from '../options.js';
import { defaultModelDir } from '../paths.js';
import { type PageDefaults, type ServerLimits, startServer } from '../server/index.js';

// The embedded model's pictures are noise, and at the seed demo's 512 x 512, 4 images, 50 steps a
// CPU takes minutes for them: the page starts small on it.
const TINY_PAGE: PageDefaults = { width: 128, height: 128, steps: 20, numImages: 2 };

interface ServeFlags {
  model: string;
  host: string;
  port: string;
  device: string;
  dtype: string;
  maxQueue?: string;
  jobTtl?: string;
}

function integerFlag(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw invalidArgument(`integer between ${min} and ${max}`, flag, value);
  return n;
}

/** Resolves at the first SIGINT or SIGTERM; a second one ends the process at once. */
function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const first = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', first);
      process.off('SIGTERM', first);
      const again = (): void => {
        process.stderr.write('fastcomposer: stopping at once\n');
        process.exit(1);
      };
      process.once('SIGINT', again);
      process.once('SIGTERM', again);
      resolve(signal);
    };
    process.on('SIGINT', first);
    process.on('SIGTERM', first);
  });
}

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('serve the HTTP API and the web demo page on one model')
    .option('-m, --model <dir>', 'model directory (from `fastcomposer export`)', defaultModelDir)
    .option('--host <address>', 'address to listen on (0.0.0.0: every interface)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', '7860')
    .option('--device <d>', 'cpu | cuda | cuda:N | auto', 'auto')
    .option('--dtype <t>', 'float32 | float16 | bfloat16', 'float32')
    .option('--max-queue <n>', 'jobs that may wait; one more is refused with 429 (default 32)')
    .option('--job-ttl <minutes>', 'how long finished jobs and their images are kept (default 15)')
    .action(async (flags: ServeFlags) => {
      const port = integerFlag('--port', flags.port, 0, 65535);
      const limits: Partial<ServerLimits> = {};
      if (flags.maxQueue !== undefined) limits.maxQueued = integerFlag('--max-queue', flags.maxQueue, 1, 1_000_000);
      if (flags.jobTtl !== undefined) limits.jobTtlMs = integerFlag('--job-ttl', flags.jobTtl, 1, 7 * 24 * 60) * 60_000;
      // Listen for the signals before the (slow) load, so that Ctrl-C during it also ends cleanly.
      let early: NodeJS.Signals | undefined;
      const stopping = stopSignal().then((signal) => (early = signal));
      const fc = await FastComposer.load(flags.model, { device: flags.device as DeviceSpec, dtype: flags.dtype as ModelDType });
      if (early) {
        await fc.dispose();
        process.stderr.write(`fastcomposer: ${early}: stopped before serving\n`);
        return;
      }
      const model = fc.model.manifest.name ?? basename(fc.model.dir);
      const embedded = resolve(flags.model) === resolve(defaultModelDir);
      let server;
      try {
        server = await startServer({
          backend: fc,
          info: { model, device: fc.device, dtype: fc.dtype },
          concurrency: 1,
          limits,
          ...(embedded ? { pageDefaults: TINY_PAGE } : {}),
          host: flags.host,
          port,
          onInternalError: (error) => process.stderr.write(`fastcomposer: internal error: ${(error as Error)?.stack ?? String(error)}\n`),
        });
      } catch (error) {
        await fc.dispose();
        const code = (error as NodeJS.ErrnoException)?.code;
        if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
          throw new FastComposerError('ERR_INVALID_ARGUMENT', `Cannot listen on ${flags.host}:${port} (${code}); pick another --host or --port`, { cause: error });
        }
        throw error;
      }
      process.stdout.write(`fastcomposer: serving ${model} on ${fc.device} (${fc.dtype}) at ${server.url}\n`);
      if (embedded) {
        process.stderr.write('fastcomposer: the embedded tiny model makes noise, quickly: the page starts at 128x128, 20 steps, 2 images (real pictures: --model <dir>)\n');
      }
      const signal = await stopping;
      process.stderr.write(`fastcomposer: ${signal}: stopping (queued jobs cancelled, the running one aborted)\n`);
      await server.close();
      await fc.dispose();
      process.stderr.write('fastcomposer: stopped\n');
    });
}
