/**
 * `fastcomposer serve`: the HTTP API and the demo page on one model (default: the embedded tiny
 * one), or with --redis in front of a BullMQ queue whose workers (`fastcomposer worker`) hold the
 * models: then this process loads none and hands `--concurrency` jobs to the queue at once.
 * SIGINT or SIGTERM stops it cleanly: no new jobs, queued ones cancelled, the running ones aborted
 * (within a step, on whichever worker), the server closed, the model disposed or the queue's
 * connections closed, exit code 0.
 */
import { basename, resolve } from 'node:path';

import type { Command } from 'commander';

import { FastComposerError, invalidArgument } from '../errors.js';
import { FastComposer } from '../fastcomposer.js';
import type { DeviceSpec, ModelDType } from '../options.js';
import { defaultModelDir } from '../paths.js';
import { DEFAULT_QUEUE_NAME } from '../queue/connection.js';
import { FastComposerQueue } from '../queue/producer.js';
import { type BackendInfo, type GenerateBackend, type PageDefaults, type ServerLimits, startServer } from '../server/index.js';

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
  redis?: string;
  queue?: string;
  concurrency?: string;
  maxBatchSize?: string;
}

/** Jobs a queue-backed server hands to the queue at once unless told: enough for a few workers;
 * more wait in the server's own queue (positions, 429 when full). */
const QUEUE_CONCURRENCY = 8;

/** What the server runs on, and how to let go of it. */
interface Backend {
  backend: GenerateBackend;
  info: BackendInfo;
  concurrency: number;
  pageDefaults?: PageDefaults;
  /** The "serving ..." line's middle. */
  what: string;
  notice?: string;
  close(): Promise<void>;
}

function integerFlag(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max)
    throw invalidArgument(`integer between ${min} and ${max}`, flag, value);
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

async function modelBackend(flags: ServeFlags): Promise<Backend> {
  // With batching the model takes as many jobs at once as a batch holds images: the ones that
  // wait for it share its next UNet batch.
  const maxBatchSize = flags.maxBatchSize === undefined ? 1 : integerFlag('--max-batch-size', flags.maxBatchSize, 1, 64);
  const fc = await FastComposer.load(flags.model, { device: flags.device as DeviceSpec, dtype: flags.dtype as ModelDType, maxBatchSize });
  const model = fc.model.manifest.name ?? basename(fc.model.dir);
  const embedded = resolve(flags.model) === resolve(defaultModelDir);
  return {
    backend: fc,
    info: { model, device: fc.device, dtype: fc.dtype },
    concurrency: maxBatchSize,
    ...(embedded ? { pageDefaults: TINY_PAGE } : {}),
    what: `${model} on ${fc.device} (${fc.dtype}${maxBatchSize > 1 ? `, batches of up to ${maxBatchSize} images` : ''})`,
    ...(embedded
      ? {
          notice:
            'the embedded tiny model makes noise, quickly: the page starts at 128x128, 20 steps, 2 images (real pictures: npx fastcomposer pull, then --model fastcomposer)',
        }
      : {}),
    close: () => fc.dispose(),
  };
}

/** Redis's address without its credentials, for the log. */
function redisAddress(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return 'Redis';
  }
}

async function queueBackend(url: string, flags: ServeFlags): Promise<Backend> {
  const name = flags.queue ?? DEFAULT_QUEUE_NAME;
  const concurrency = flags.concurrency === undefined ? QUEUE_CONCURRENCY : integerFlag('--concurrency', flags.concurrency, 1, 1024);
  const queue = new FastComposerQueue({ connection: url, name });
  try {
    await queue.waitUntilReady(); // a Redis out of reach fails here with ERR_QUEUE, not at the first job
  } catch (error) {
    await queue.close();
    if (!(error instanceof FastComposerError)) throw error;
    throw new FastComposerError(error.code, `Cannot use the queue ${name} on ${redisAddress(url)}: ${error.message}`, { cause: error });
  }
  return {
    backend: queue,
    info: { model: 'queue', device: 'queue', dtype: 'queue', backend: 'queue', queueName: name },
    concurrency,
    what: `through queue ${name} on ${redisAddress(url)} (${concurrency} jobs at once)`,
    close: () => queue.close(),
  };
}

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('serve the HTTP API and the web demo page on one model, or in front of a queue of workers (--redis)')
    .option('-m, --model <dir>', 'model directory (from `fastcomposer export`)', defaultModelDir)
    .option('--host <address>', 'address to listen on (0.0.0.0: every interface)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', '7860')
    .option('--device <d>', 'cpu | cuda | cuda:N | auto', 'auto')
    .option('--dtype <t>', 'float32 | float16 | bfloat16', 'float32')
    .option('--max-queue <n>', 'jobs that may wait; one more is refused with 429 (default 32)')
    .option('--job-ttl <minutes>', 'how long finished jobs and their images are kept (default 15)')
    .option('-r, --redis <url>', 'load no model: send the jobs to a BullMQ queue in Redis, run by `fastcomposer worker`s')
    .option('-q, --queue <name>', `with --redis: the queue's name (default ${DEFAULT_QUEUE_NAME})`)
    .option(
      '--concurrency <n>',
      `with --redis: jobs handed to the queue at once (default ${QUEUE_CONCURRENCY}; about the number of workers)`,
    )
    .option(
      '--max-batch-size <n>',
      'without --redis: jobs that wait for the model share one UNet batch of up to n images (default 1: one job at a time)',
    )
    .action(async (flags: ServeFlags, command: Command) => {
      const port = integerFlag('--port', flags.port, 0, 65535);
      const limits: Partial<ServerLimits> = {};
      if (flags.maxQueue !== undefined) limits.maxQueued = integerFlag('--max-queue', flags.maxQueue, 1, 1_000_000);
      if (flags.jobTtl !== undefined) limits.jobTtlMs = integerFlag('--job-ttl', flags.jobTtl, 1, 7 * 24 * 60) * 60_000;
      checkFlagPairs(flags, command);
      // Listen for the signals before the (slow) load or connect, so that Ctrl-C during it also ends cleanly.
      let early: NodeJS.Signals | undefined;
      const stopping = stopSignal().then((signal) => (early = signal));
      const b = flags.redis !== undefined ? await queueBackend(flags.redis, flags) : await modelBackend(flags);
      if (early) {
        await b.close();
        process.stderr.write(`fastcomposer: ${early}: stopped before serving\n`);
        return;
      }
      let server;
      try {
        server = await startServer({
          backend: b.backend,
          info: b.info,
          concurrency: b.concurrency,
          limits,
          ...(b.pageDefaults ? { pageDefaults: b.pageDefaults } : {}),
          host: flags.host,
          port,
          onInternalError: (error) => process.stderr.write(`fastcomposer: internal error: ${(error as Error)?.stack ?? String(error)}\n`),
        });
      } catch (error) {
        await b.close();
        const code = (error as NodeJS.ErrnoException)?.code;
        if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
          throw new FastComposerError(
            'ERR_INVALID_ARGUMENT',
            `Cannot listen on ${flags.host}:${port} (${code}); pick another --host or --port`,
            { cause: error },
          );
        }
        throw error;
      }
      process.stdout.write(`fastcomposer: serving ${b.what} at ${server.url}\n`);
      if (b.notice) process.stderr.write(`fastcomposer: ${b.notice}\n`);
      const signal = await stopping;
      process.stderr.write(`fastcomposer: ${signal}: stopping (queued jobs cancelled, the running ones aborted)\n`);
      await server.close();
      await b.close();
      process.stderr.write('fastcomposer: stopped\n');
    });
}

/** The queue's flags need --redis; the model's flags make no sense with it (the workers load the model). */
function checkFlagPairs(flags: ServeFlags, command: Command): void {
  if (flags.redis === undefined) {
    for (const [flag, value] of [
      ['--queue', flags.queue],
      ['--concurrency', flags.concurrency],
    ] as const) {
      if (value !== undefined)
        throw new FastComposerError(
          'ERR_INVALID_ARGUMENT',
          `${flag} needs --redis (without it, one model in this process runs one job at a time)`,
        );
    }
    return;
  }
  for (const [option, flag] of [
    ['model', '--model'],
    ['device', '--device'],
    ['dtype', '--dtype'],
    ['maxBatchSize', '--max-batch-size'],
  ]) {
    if (command.getOptionValueSource(option!) === 'cli') {
      throw new FastComposerError(
        'ERR_INVALID_ARGUMENT',
        `${flag} does not go with --redis: the workers load the model (fastcomposer worker ${flag} ...)`,
      );
    }
  }
}
