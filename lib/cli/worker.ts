/**
 * `fastcomposer worker`: one model on one device taking generate() jobs from a BullMQ queue in
 * Redis (lib/queue/). Runs until SIGTERM or SIGINT: the first lets the running job finish (for
 * --grace seconds, then hands it back to the queue) and exits 0; a second hands it back at once.
 */
import type { Command } from 'commander';

import { FastComposerError } from '../errors.js';
import type { DeviceSpec, ModelDType } from '../options.js';
import { DEFAULT_QUEUE_NAME } from '../queue/connection.js';
import { FastComposerWorker, type WorkerEvent } from '../queue/worker.js';

interface WorkerFlags {
  redis: string;
  queue: string;
  prefix?: string;
  model?: string;
  device: string;
  dtype: string;
  threads?: string;
  maxBatchSize?: string;
  name?: string;
  grace: string;
  lockDuration?: string;
  stalledInterval?: string;
}

function number(flag: string | undefined): number | undefined {
  return flag === undefined ? undefined : Number(flag);
}

/** One line per job on stdout; connection trouble on stderr, once per outage. */
function logger(): (event: WorkerEvent) => void {
  let lastError = '';
  return (event) => {
    const now = new Date().toISOString();
    if (event.type === 'error') {
      if (event.error.message !== lastError) process.stderr.write(`${now} error: ${event.error.message}\n`);
      lastError = event.error.message;
      return;
    }
    lastError = '';
    const job = `${now} job ${event.jobId}`;
    if (event.type === 'active') process.stdout.write(`${job} started\n`);
    if (event.type === 'completed') process.stdout.write(`${job} completed in ${(event.ms / 1000).toFixed(2)} s (seed ${event.seed})\n`);
    if (event.type === 'failed') process.stdout.write(`${job} failed${event.willRetry ? ' (will retry)' : ''}: ${event.reason}\n`);
    if (event.type === 'handed-back') process.stdout.write(`${job} handed back to the queue\n`);
    if (event.type === 'cancelled')
      process.stdout.write(`${job} cancelled by its caller at step ${event.atStep}, stopped after step ${event.lastStep}\n`);
  };
}

export function workerCommand(program: Command): void {
  program
    .command('worker')
    .description('take generate() jobs from a BullMQ queue in Redis (one model, one device, one job at a time)')
    .requiredOption('-r, --redis <url>', 'Redis URL, e.g. redis://127.0.0.1:6379')
    .option('-q, --queue <name>', 'queue name', DEFAULT_QUEUE_NAME)
    .option('--prefix <prefix>', 'BullMQ key prefix (default bull)')
    .option('-m, --model <dir>', 'model directory (default: the embedded tiny model)')
    .option('--device <d>', 'cpu | cuda | cuda:N | auto', 'auto')
    .option('--dtype <t>', 'float32 | float16 | bfloat16', 'float32')
    .option('--threads <n>', 'CPU threads for the model (default: one per core)')
    .option('--max-batch-size <n>', "take up to n jobs at once; they share the model's UNet batches (default 1)")
    .option('--name <name>', "this worker's name in the queue (default host:pid)")
    .option('--grace <s>', 'on SIGTERM, seconds the running job may go on before it is handed back', '20')
    .option('--lock-duration <ms>', 'how long a dead worker keeps its job before another takes it over (default 30000)')
    .option('--stalled-interval <ms>', 'how often this worker looks for jobs of dead workers (default 30000)')
    .action(async (flags: WorkerFlags) => {
      const grace = Number(flags.grace);
      if (!Number.isFinite(grace) || grace < 0) {
        throw new FastComposerError('ERR_INVALID_ARGUMENT', `Expected seconds >= 0 for --grace but received ${flags.grace}`);
      }
      const log = logger();
      const worker = await FastComposerWorker.start(
        {
          connection: flags.redis,
          name: flags.queue,
          ...(flags.prefix !== undefined ? { prefix: flags.prefix } : {}),
          ...(flags.model !== undefined ? { model: flags.model } : {}),
          device: flags.device as DeviceSpec,
          dtype: flags.dtype as ModelDType,
          ...(flags.threads !== undefined ? { threads: number(flags.threads)! } : {}),
          ...(flags.maxBatchSize !== undefined ? { maxBatchSize: number(flags.maxBatchSize)! } : {}),
          ...(flags.name !== undefined ? { workerName: flags.name } : {}),
          ...(flags.lockDuration !== undefined ? { lockDuration: number(flags.lockDuration)! } : {}),
          ...(flags.stalledInterval !== undefined ? { stalledInterval: number(flags.stalledInterval)! } : {}),
          grace: Math.round(grace * 1000),
        },
        log,
      );
      const batches = worker.model.maxBatchSize > 1 ? `, up to ${worker.model.maxBatchSize} jobs at once` : '';
      process.stdout.write(
        `worker ${worker.name} ready: queue ${flags.queue}, device ${worker.model.device}, ${worker.model.dtype}${batches}\n`,
      );
      await new Promise<void>((resolve, reject) => {
        let signals = 0;
        const stop = (signal: NodeJS.Signals): void => {
          signals += 1;
          if (signals > 1) {
            process.stdout.write(`${signal} again: handing the running job back\n`);
            worker.handBackNow();
            return;
          }
          process.stdout.write(`${signal}: finishing the running job (up to ${grace} s), taking no more\n`);
          worker.close().then(resolve, reject);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
      process.stdout.write('worker stopped\n');
      // A timer a library leaves behind (BullMQ's, when Redis is gone) must not keep a stopped worker alive.
      setTimeout(() => process.exit(), 2000).unref();
    });
}
