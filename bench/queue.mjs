// `npm run bench:queue`: N generate() jobs through FastComposerQueue to 1 and to 2 worker
// processes (`fastcomposer worker`) on a private redis-server, printed side by side: images/s,
// latency p50/p95 as the caller sees it, and the queue's own overhead per job (the caller's time
// minus the worker's generate() time, measured one job at a time so no job waits for another).
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { startRedis } from '../test/helpers/redis-server.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '16' },
    steps: { type: 'string', default: '8' },
    size: { type: 'string', default: '64' },
    workers: { type: 'string', default: '1,2' },
    threads: { type: 'string', default: '1' },
    sequential: { type: 'string', default: '6' },
    model: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log('node bench/queue.mjs [--jobs 16] [--steps 8] [--size 64] [--workers 1,2] [--threads 1] [--sequential 6] [--model DIR]');
  process.exit(0);
}
const { FastComposerQueue } = await import(join(root, 'dist', 'esm', 'queue', 'index.js'));
const cli = join(root, 'dist', 'esm', 'cli', 'main.js');
const size = Number(args.size);
const job = {
  prompt: 'a man <|image|> in a park',
  subjects: [join(root, 'examples', 'subject-a.png')],
  width: size,
  height: size,
  steps: Number(args.steps),
  output: 'png',
};

function startWorker(url, queue, name) {
  const extra = args.model ? ['--model', args.model] : [];
  const child = spawn(
    process.execPath,
    [cli, 'worker', '--redis', url, '--queue', queue, '--name', name, '--device', 'cpu', '--threads', args.threads, ...extra],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (d) => {
      out += d;
      if (out.includes(`worker ${name} ready`)) resolve(child);
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.on('exit', (code) => reject(new Error(`worker ${name} exited with ${code}:\n${out}`)));
  });
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

async function measure(url, count) {
  const name = `bench-${count}`;
  const workers = await Promise.all(Array.from({ length: count }, (_, i) => startWorker(url, name, `w${i + 1}`)));
  const queue = new FastComposerQueue({ connection: url, name });
  try {
    // Warm-up: each worker's first jobs pay TorchScript's optimisation.
    await Promise.all(Array.from({ length: 3 * count }, (_, i) => queue.generate({ ...job, seed: i })));
    const overhead = [];
    const sequentialWorker = [];
    for (let i = 0; i < Number(args.sequential); i++) {
      const r = await queue.generate({ ...job, seed: 100 + i });
      overhead.push(r.timings.generateMs - r.timings.workerMs);
      sequentialWorker.push(r.timings.workerMs);
    }
    const n = Number(args.jobs);
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: n }, (_, i) => queue.generate({ ...job, seed: 1000 + i })));
    const wall = (performance.now() - started) / 1000;
    const latency = results.map((r) => r.timings.generateMs);
    const worker = results.map((r) => r.timings.workerMs);
    const perWorker = new Map();
    for (const r of results) perWorker.set(r.worker, (perWorker.get(r.worker) ?? 0) + 1);
    return {
      imagesPerSecond: n / wall,
      p50: quantile(latency, 0.5),
      p95: quantile(latency, 0.95),
      workerP50: quantile(worker, 0.5),
      sequentialWorkerP50: quantile(sequentialWorker, 0.5),
      overheadP50: quantile(overhead, 0.5),
      overheadP95: quantile(overhead, 0.95),
      spread: [...perWorker.values()].join('/'),
    };
  } finally {
    await queue.close();
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => (w.exitCode === null ? new Promise((r) => w.once('exit', r)) : Promise.resolve())));
  }
}

const redis = await startRedis();
try {
  const counts = args.workers.split(',').map(Number);
  console.log(
    `queue bench: ${args.jobs} jobs of ${size}x${size}, ${args.steps} steps, PNG out, ${args.model ?? 'the embedded tiny model'}; ` +
      `workers on the CPU with ${args.threads} thread(s) each`,
  );
  /** @type {[number, Awaited<ReturnType<typeof measure>>][]} */
  const rows = [];
  for (const count of counts) rows.push([count, await measure(redis.url, count)]);
  const col = (s) => String(s).padStart(14);
  const line = (label, f) => console.log(label.padEnd(30) + rows.map(([, m]) => col(f(m))).join(''));
  console.log(''.padEnd(30) + rows.map(([c]) => col(`${c} worker${c > 1 ? 's' : ''}`)).join(''));
  line('images/s', (m) => m.imagesPerSecond.toFixed(2));
  line('latency p50 (ms)', (m) => m.p50.toFixed(0));
  line('latency p95 (ms)', (m) => m.p95.toFixed(0));
  line('worker generate() p50 (ms)', (m) => m.workerP50.toFixed(0));
  line('queue overhead p50 (ms/job)', (m) => m.overheadP50.toFixed(1));
  line('queue overhead p95 (ms/job)', (m) => m.overheadP95.toFixed(1));
  line('overhead / worker time (p50)', (m) => `${((100 * m.overheadP50) / m.sequentialWorkerP50).toFixed(1)}%`);
  line('jobs per worker', (m) => m.spread);
  if (rows.length > 1) {
    const [a, b] = [rows[0][1], rows.at(-1)[1]];
    console.log(`throughput ${rows.at(-1)[0]} vs ${rows[0][0]} worker(s): ${(b.imagesPerSecond / a.imagesPerSecond).toFixed(2)}x`);
  }
} finally {
  await redis.stop();
}
