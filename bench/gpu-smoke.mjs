// Correctness checks for the CUDA paths, on a small model (the tiny export), in a minute:
//   graphs      CUDA graph replay against eager runs (FASTCOMPOSER_CUDA_GRAPHS=0), float16 and
//               float32, for a plain run, a CFG run and a run with maps and regions (maps sum to 1)
//   kernel      the fused NHWC group norm (graph passes) against ATen's, float32 channels_last
//               without TF32 or autotuning: they differ by rounding only
//   fp16        float16 with and without the graph passes: within float16 noise
//   shapes      alternating sizes and subject counts on one model (graph cache: recapture, pool
//               renewal, one method's capture replaced) give the same latents as fresh runs
// Prints one JSON line per check with `pass`, then `SMOKE PASS` or `SMOKE FAIL` (exit code 1).
// Usage: node bench/gpu-smoke.mjs --model DIR [--device cuda|cpu]   (cpu: a dry run of the script)
import { parseArgs } from 'node:util';

import { FastComposer } from '../dist/esm/index.js';

const { values } = parseArgs({ options: { model: { type: 'string' }, device: { type: 'string', default: 'cuda' } } });
if (!values.model) throw new Error('--model DIR is required');
const device = values.device;
const half = device === 'cpu' ? 'bfloat16' : 'float16';
// Half-precision noise between two correct runs: fp16 stays near 1e-3 here; bf16 (CPU dry run) ~2e-2.
const halfLimit = half === 'float16' ? 5e-3 : 5e-2;

const subject = (v) => ({ data: Buffer.alloc(224 * 224 * 3, v), width: 224, height: 224, channels: 3 });
const base = {
  prompt: 'a man <|image|> and a woman <|image|> in a park',
  subjects: [subject(90), subject(160)],
  steps: 10,
  width: 128,
  height: 96,
  seed: 5,
};
const jobs = {
  plain: { ...base, guidanceScale: 1 }, // PNDM keeps earlier outputs: graph outputs must be copied
  cfg: base,
  localized: {
    ...base,
    attentionMaps: true,
    subjects: [
      { image: subject(90), region: { x: 0, y: 0, width: 64, height: 96 } },
      { image: subject(160), region: { x: 64, y: 0, width: 64, height: 96 } },
    ],
  },
};

const f32 = (t) => new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
function relative(a, b) {
  let diff = 0,
    ref = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) return Infinity;
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return ref ? diff / ref : diff;
}

async function load(dtype, env = {}) {
  const saved = {};
  for (const [k, v] of Object.entries(env)) [saved[k], process.env[k]] = [process.env[k], v];
  try {
    return await FastComposer.load(values.model, { device, dtype });
  } finally {
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

async function runAll(dtype, env) {
  const fc = await load(dtype, env);
  const out = {};
  for (const [name, job] of Object.entries(jobs)) {
    const r = await fc.generate(job);
    out[name] = { latents: f32(r.latents).slice(), maps: r.attentionMaps ? f32(r.attentionMaps).slice() : undefined };
  }
  out.info = fc['native'].info();
  await fc.dispose();
  return out;
}

let failed = false;
function report(check, fields, pass) {
  if (!pass) failed = true;
  process.stdout.write(`${JSON.stringify({ check, pass, ...fields })}\n`);
}
async function check(name, fn) {
  try {
    await fn();
  } catch (error) {
    report(name, { error: String(error?.stack ?? error) }, false);
  }
}

// Deterministic float32 on CUDA: two loads may otherwise pick other cuDNN algorithms (TF32 too).
const exact = { FASTCOMPOSER_TF32: '0', FASTCOMPOSER_CUDNN_BENCHMARK: '0' };

// Graph replay: float32 equals eager to rounding; float16 within its noise.
for (const dtype of [half, 'float32']) {
  await check(`graphs-${dtype}`, async () => {
    // float32: no TF32 and no autotuning, so that both sides run the same kernels.
    const env = dtype === 'float32' ? exact : {};
    const graphs = await runAll(dtype, env);
    const eager = await runAll(dtype, { ...env, FASTCOMPOSER_CUDA_GRAPHS: '0' });
    const rel = Object.fromEntries(Object.keys(jobs).map((k) => [k, relative(graphs[k].latents, eager[k].latents)]));
    let mapsSum = 0;
    for (const v of graphs.localized.maps) mapsSum += v;
    const limit = dtype === 'float32' ? 1e-6 : halfLimit;
    report(
      `graphs-${dtype}`,
      { relative: rel, cudaGraph: graphs.info.cudaGraph, mapsSum, limit },
      Object.values(rel).every((r) => r <= limit) && Math.abs(mapsSum - 2) < 1e-3 && (device === 'cpu' || graphs.info.cudaGraph),
    );
  });
}

// The NHWC kernel against ATen's group norm, in float32 where only rounding differs.
await check('kernel', async () => {
  const env = { ...exact, FASTCOMPOSER_CHANNELS_LAST: '1' };
  const fused = await runAll('float32', env);
  const aten = await runAll('float32', { ...env, FASTCOMPOSER_GRAPH_PASSES: '0' });
  const rel = Object.fromEntries(Object.keys(jobs).map((k) => [k, relative(fused[k].latents, aten[k].latents)]));
  report(
    'kernel',
    { relative: rel, graphPasses: fused.info.graphPasses, limit: 1e-4 },
    Object.values(rel).every((r) => r <= 1e-4),
  );
});

await check('fp16-passes', async () => {
  const fused = await runAll(half, {});
  const aten = await runAll(half, { FASTCOMPOSER_GRAPH_PASSES: '0' });
  const rel = Object.fromEntries(Object.keys(jobs).map((k) => [k, relative(fused[k].latents, aten[k].latents)]));
  report(
    'fp16-passes',
    { dtype: half, relative: rel, limit: halfLimit },
    Object.values(rel).every((r) => r <= halfLimit),
  );
});

// One model through changing shapes: each result must equal a fresh model's.
await check('shapes', async () => {
  const sequence = [
    ['cfg', jobs.cfg],
    ['wide', { ...jobs.cfg, width: 160, height: 96 }],
    ['localized-2', jobs.localized],
    ['localized-1', { ...jobs.localized, prompt: 'a man <|image|> in a park', subjects: [jobs.localized.subjects[0]] }],
    ['localized-2-again', jobs.localized],
    ['cfg-again', jobs.cfg],
  ];
  const fc = await load('float32', exact);
  const seen = [];
  for (const [name, job] of sequence) seen.push([name, job, f32((await fc.generate(job)).latents).slice()]);
  await fc.dispose();
  const rel = {};
  for (const [name, job, latents] of seen) {
    const fresh = await load('float32', exact);
    rel[name] = relative(latents, f32((await fresh.generate(job)).latents));
    await fresh.dispose();
  }
  report(
    'shapes',
    { relative: rel, limit: 1e-6 },
    Object.values(rel).every((r) => r <= 1e-6),
  );
});

process.stdout.write(failed ? 'SMOKE FAIL\n' : 'SMOKE PASS\n');
process.exitCode = failed ? 1 : 0;
