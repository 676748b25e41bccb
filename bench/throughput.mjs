// `npm run bench:throughput`: images per second on the CPU, as a server sees it, on one model
// (default the embedded tiny model): generate() with numImages 1, 2 and 4 (one UNet batch of
// 2 x numImages), and `concurrency` calls in flight at once on one model (they run one after the
// other: calls on one model are queued) and on two models of the same directory (their work
// shares the device's job thread, so they run one after the other too), and on one model loaded
// with `maxBatchSize: concurrency` (calls that wait for the model share a UNet batch: the first
// call runs alone, the ones queued behind it as one batch). Configurations alternate round by
// round, so machine noise hits all of them.
//
//   node bench/throughput.mjs [--model DIR] [--size 128] [--steps 10] [--rounds 3] [--images 1,2,4]
//                             [--concurrency 4] [--threads 0] [--json FILE]
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { median, printTable, promptFor, subjectImage } from './bench-common.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    size: { type: 'string', default: '128' },
    steps: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    images: { type: 'string', default: '1,2,4' },
    concurrency: { type: 'string', default: '4' },
    threads: { type: 'string', default: '0' },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(
    'node bench/throughput.mjs [--model DIR] [--size 128] [--steps 10] [--rounds 3] [--images 1,2,4] [--concurrency 4] [--threads 0] [--json FILE]',
  );
  process.exit(0);
}

const { FastComposer } = await import(join(root, 'dist', 'esm', 'index.js'));
const threads = Number(args.threads);
const loadOpts = { device: 'cpu', dtype: 'float32', ...(threads > 0 ? { threads } : {}) };
const size = Number(args.size);
const concurrency = Number(args.concurrency);
const job = {
  prompt: promptFor(2),
  subjects: [subjectImage(0), subjectImage(1)],
  steps: Number(args.steps),
  width: size,
  height: size,
  scheduler: 'pndm',
  output: 'raw',
};

const a = await FastComposer.load(args.model, loadOpts);
const b = await FastComposer.load(args.model, loadOpts);
const batching = await FastComposer.load(args.model, { ...loadOpts, maxBatchSize: concurrency });
/** How many calls shared each call's UNet batch (timings.batchedCalls), over the batching runs. */
const batchedCalls = new Map();
/** Each configuration: a name and one measured batch of work returning the images it made. */
const configs = [
  ...args.images
    .split(',')
    .map(Number)
    .map((n) => ({
      name: `numImages ${n}, one call at a time`,
      run: async () => (await a.generate({ ...job, numImages: n, seed: 1 })).images.length,
    })),
  {
    name: `${concurrency} calls at once, one model`,
    run: async () => (await Promise.all(Array.from({ length: concurrency }, (_, i) => a.generate({ ...job, seed: i })))).length,
  },
  {
    name: `${concurrency} calls at once, two models`,
    run: async () =>
      (await Promise.all(Array.from({ length: concurrency }, (_, i) => (i % 2 ? b : a).generate({ ...job, seed: i })))).length,
  },
  {
    name: `${concurrency} calls at once, one model, maxBatchSize ${concurrency}`,
    run: async () => {
      const results = await Promise.all(Array.from({ length: concurrency }, (_, i) => batching.generate({ ...job, seed: i })));
      for (const r of results) batchedCalls.set(r.timings.batchedCalls, (batchedCalls.get(r.timings.batchedCalls) ?? 0) + 1);
      return results.length;
    },
  },
];

await a.generate({ ...job, seed: 0 }); // warm-up: the profiling executor's first runs
await b.generate({ ...job, seed: 0 });
await Promise.all(Array.from({ length: concurrency }, (_, i) => batching.generate({ ...job, seed: i })));
const rates = configs.map(() => []);
for (let round = 0; round < Number(args.rounds); round++) {
  for (const [i, c] of configs.entries()) {
    const t0 = performance.now();
    const images = await c.run();
    rates[i].push(images / ((performance.now() - t0) / 1e3));
  }
}
await Promise.all([a.dispose(), b.dispose(), batching.dispose()]);

const base = median(rates[0]);
console.log(`\nThroughput, ${size}x${size}, ${job.steps} PNDM steps, two subjects, ${args.rounds} rounds (median images/s)`);
printTable([
  ['configuration', 'images/s', 'vs numImages 1', 'rounds'],
  ...configs.map((c, i) => [
    c.name,
    median(rates[i]).toFixed(2),
    `${(median(rates[i]) / base).toFixed(2)}x`,
    rates[i].map((r) => r.toFixed(2)).join(' '),
  ]),
]);
const unbatched = median(rates[configs.length - 3]);
const batched = median(rates[configs.length - 1]);
console.log(`batching: ${(batched / unbatched).toFixed(2)}x the images/s of the same ${concurrency} calls on one model without it`);
const shared = [...batchedCalls].sort(([x], [y]) => x - y);
console.log(
  `calls by the number of calls in their UNet batch (maxBatchSize ${concurrency}): ${shared.map(([n, c]) => `${n}: ${c}`).join(', ')}`,
);
if (args.json) {
  const results = configs.map((c, i) => ({ name: c.name, imagesPerSecond: rates[i] }));
  writeFileSync(args.json, JSON.stringify({ size, steps: job.steps, results, batchedCalls: Object.fromEntries(shared) }, null, 2) + '\n');
}
