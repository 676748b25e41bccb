// GPU half of bench/gpu-check.sh. On CUDA, 512x512, 50 PNDM steps, two subjects, CFG:
//   default      fp16 generate(), alternating run by run with the Python eager pipeline of the
//                same modules and weights (bench/python_eager.py --serve), so that both see the
//                same GPU clocks and neighbours; s/image (runs, median, mean), UNet it/s, stage
//                times, peak GPU memory, Node/N-API overhead.
//   localized    the same model with attentionMaps and a box per subject (regionStrength 1),
//                alternating with plain runs: the cost of localized attention.
//   bfloat16, float32   one model each: latent agreement with fp16 / each other.
//   no-graph-passes, no-cuda-graphs, no-channels-last   the defaults turned off, for their
//                share of the speed.
//   kernel-fp32  the fused NHWC group norm against ATen's in float32 (agreement to rounding).
// Prints one JSON line per part as it finishes (a timeout keeps what is done).
// Usage: node bench/gpu-check.mjs --model DIR [--runs 5] [--warmup 2] [--steps 50] [--size 512]
//          [--python python3] [--parts default,localized,bfloat16,float32,no-cuda-graphs,no-channels-last]
//          [--device cuda|cpu]   (cpu: a dry run of this script without a GPU, bfloat16 for fp16)
import { writeFileSync, readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { FastComposer } from '../dist/esm/index.js';
import { loadNative } from '../dist/esm/native.js';
import { PromptTokenizer } from '../dist/esm/prompt.js';
import { ServedBaseline } from './served-baseline.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    runs: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '2' },
    steps: { type: 'string', default: '50' },
    size: { type: 'string', default: '512' },
    python: { type: 'string', default: 'python3' },
    parts: { type: 'string', default: 'default,localized,bfloat16,float32,no-graph-passes,no-cuda-graphs,no-channels-last,kernel-fp32' },
    device: { type: 'string', default: 'cuda' },
  },
});
if (!values.model) throw new Error('--model DIR is required');
const runs = Number(values.runs);
const warmup = Number(values.warmup);
const steps = Number(values.steps);
const size = Number(values.size);
const parts = new Set(values.parts.split(','));
const onCuda = values.device !== 'cpu';
const half = onCuda ? 'float16' : 'bfloat16';
const { binding, torch } = loadNative();
const work = mkdtempSync(join(tmpdir(), 'gpu-check-'));

// Two deterministic 224x224 subjects as raw pixels (no image decoding in the timed part).
function subject(seed) {
  const data = Buffer.alloc(224 * 224 * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761 + seed * 97) % 251;
  return { data, width: 224, height: 224, channels: 3 };
}
const job = {
  prompt: 'a man <|image|> and a woman <|image|> sitting in a park, oil painting',
  subjects: [subject(1), subject(2)],
  negativePrompt: 'blurry, ugly',
  steps,
  guidanceScale: 5,
  alpha: 0.7,
  seed: 42,
  width: size,
  height: size,
};
// Subject 1 in the left half, subject 2 in the right half, hard regions, maps returned.
const localizedJob = {
  ...job,
  subjects: [
    { image: job.subjects[0], region: { x: 0, y: 0, width: size / 2, height: size } },
    { image: job.subjects[1], region: { x: size / 2, y: 0, width: size / 2, height: size } },
  ],
  regionStrength: 1,
  attentionMaps: true,
};

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const round = (x, d = 4) => Number(x.toFixed(d));
const f32 = (t) => new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
function agreement(a, b) {
  let diff = 0,
    ref = 0,
    nonFinite = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) nonFinite++;
    else diff = Math.max(diff, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return { relative: ref ? diff / ref : diff, maxAbsDiff: diff, maxAbsRef: ref, nonFinite };
}
const emit = (part, report) => process.stdout.write(`${JSON.stringify({ part, ...report })}\n`);

// Per-run summary of generate() timings: seconds per image, UNet it/s, stage medians.
function summarize(timings) {
  const s = (key) => timings.map((t) => t[key] / 1000);
  const unetCalls = steps + 1; // PNDM (skip_prk_steps) repeats one timestep
  return {
    runsSeconds: s('generateMs').map((x) => round(x)),
    medianSeconds: round(median(s('generateMs'))),
    meanSeconds: round(mean(s('generateMs'))),
    itPerSecond: round(unetCalls / median(s('denoiseMs')), 2),
    medianStageSeconds: {
      encodeSubjects: round(median(s('encodeSubjectsMs'))),
      encodePrompt: round(median(s('encodePromptMs'))),
      denoise: round(median(s('denoiseMs'))),
      decode: round(median(s('decodeMs'))),
    },
    nodeOverheadPercent: round((100 * (mean(s('generateMs')) - mean(s('totalMs')))) / mean(s('generateMs')), 2),
  };
}

async function load(dtype, env = {}) {
  const saved = {};
  for (const [k, v] of Object.entries(env)) [saved[k], process.env[k]] = [process.env[k], v];
  try {
    const t0 = performance.now();
    const fc = await FastComposer.load(values.model, { device: values.device, dtype });
    return { fc, loadSeconds: round((performance.now() - t0) / 1000, 2) };
  } finally {
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

// The first calls at a new shape autotune cuDNN and capture the CUDA graphs; their times are
// reported, not counted.
async function warm(fc, j, n = warmup) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fc.generate(j);
    times.push(round((performance.now() - t0) / 1000, 3));
  }
  return times;
}

/** The Python eager pipeline of the same modules, served: one timed generate per run(). */
function startPythonEager(dtype) {
  const tokens = tokenizer.tokenize(job.prompt);
  const pixels = join(work, 'pixels.u8');
  writeFileSync(pixels, Buffer.concat(job.subjects.map((s) => s.data)));
  const jobFile = join(work, 'job.json');
  writeFileSync(
    jobFile,
    JSON.stringify({
      inputIds: tokens.inputIds,
      textOnlyIds: tokens.textOnlyIds,
      negativeIds: tokenizer.encodePlain(job.negativePrompt).ids,
      subjectPositions: tokens.subjectPositions,
      pixels,
    }),
  );
  const latentsFile = join(work, `python-${dtype}.bin`);
  const args = [
    '--model',
    values.model,
    '--device',
    values.device,
    '--dtype',
    dtype,
    '--steps',
    String(steps),
    '--width',
    String(size),
    '--height',
    String(size),
    '--seed',
    String(job.seed),
    '--guidance',
    String(job.guidanceScale),
    '--alpha',
    String(job.alpha),
    '--job',
    jobFile,
    '--save-latents',
    latentsFile,
  ];
  const env = { ...process.env, PYTHONPATH: [join(root, 'exporter'), process.env.PYTHONPATH].filter(Boolean).join(':') };
  const served = new ServedBaseline(values.python, join(root, 'bench', 'python_eager.py'), args, env);
  served.latentsFile = latentsFile;
  return served;
}
const tokenizer = await PromptTokenizer.load(join(values.model, 'tokenizer.json'));

const base = { torch: torch.version, builtAgainst: binding.torchVersion, cudaDevices: onCuda ? binding.cudaDeviceCount() : 0, steps, size };
emit('config', base);
let latents16; // fp16 default final latents, for the agreement checks

async function part(name, fn) {
  if (!parts.has(name)) return;
  try {
    emit(name, await fn());
  } catch (error) {
    emit(name, { failed: String(error?.stack ?? error) });
  }
}

await part('default', async () => {
  const { fc, loadSeconds } = await load(half);
  const python = startPythonEager(half);
  const ready = await python.next();
  const warmNode = await warm(fc, job);
  const warmPython = [];
  for (let i = 0; i < warmup; i++) warmPython.push(round((await python.run()).seconds, 3));
  if (onCuda) binding.cudaMemory(0, true);
  const node = [],
    py = [];
  let last;
  for (let r = 0; r < runs; r++) {
    last = await fc.generate(job);
    node.push(last.timings);
    py.push(await python.run());
  }
  const report = {
    loadSeconds,
    warmupSeconds: warmNode,
    ...summarize(node),
    cudaGraph: fc['native']?.info().cudaGraph,
    graphPasses: fc['native']?.info().graphPasses,
  };
  if (onCuda) {
    const mem = binding.cudaMemory(0, false);
    Object.assign(report, { peakAllocatedGB: round(mem.peakAllocated / 1e9, 3), peakReservedGB: round(mem.peakReserved / 1e9, 3) });
  }
  latents16 = f32(last.latents).slice();
  report.latentsNonFinite = latents16.filter((v) => !Number.isFinite(v)).length;
  await python.close();
  const pySeconds = py.map((r) => r.seconds);
  report.python = {
    loadSeconds: round(ready.loadSeconds, 2),
    warmupSeconds: warmPython,
    runsSeconds: pySeconds.map((x) => round(x)),
    medianSeconds: round(median(pySeconds)),
    meanSeconds: round(mean(pySeconds)),
    itPerSecond: round((steps + 1) / median(py.map((r) => r.stages.denoise ?? r.stages.unet ?? NaN)), 2),
    medianStageSeconds: Object.fromEntries(
      Object.keys(py[0].stages)
        .filter((k) => typeof py[0].stages[k] === 'number')
        .map((k) => [k, round(median(py.map((r) => r.stages[k])))]),
    ),
    peakAllocatedGB: py[0].peakCudaMemoryBytes ? round(Math.max(...py.map((r) => r.peakCudaMemoryBytes)) / 1e9, 3) : undefined,
  };
  report.speedupMedian = round(report.python.medianSeconds / report.medianSeconds, 3);
  report.speedupMean = round(report.python.meanSeconds / report.meanSeconds, 3);
  report.nodeVsPythonLatents = agreement(latents16, new Float32Array(readFileSync(python.latentsFile).buffer.slice(0)));
  globalThis.defaultModel = fc; // kept for the localized part
  return report;
});

await part('localized', async () => {
  const fc = globalThis.defaultModel ?? (await load(half)).fc;
  const warmSeconds = await warm(fc, localizedJob, 1);
  const plain = [],
    localized = [];
  let maps;
  for (let r = 0; r < runs; r++) {
    plain.push((await fc.generate(job)).timings);
    const out = await fc.generate(localizedJob);
    localized.push(out.timings);
    maps = out.attentionMaps;
  }
  const sums = [];
  const m = f32(maps),
    per = maps.shape[2] * maps.shape[3];
  for (let i = 0; i < m.length / per; i++)
    sums.push(
      round(
        m.subarray(i * per, (i + 1) * per).reduce((a, b) => a + b, 0),
        5,
      ),
    );
  const p = summarize(plain),
    l = summarize(localized);
  return {
    warmupSeconds: warmSeconds,
    plain: p,
    localized: l,
    mapsShape: maps.shape,
    mapsSums: sums,
    cudaGraph: fc['native']?.info().cudaGraph,
    extraPercentMedian: round((100 * (l.medianSeconds - p.medianSeconds)) / p.medianSeconds, 2),
    extraDenoisePercent: round((100 * (l.medianStageSeconds.denoise - p.medianStageSeconds.denoise)) / p.medianStageSeconds.denoise, 2),
  };
});
if (globalThis.defaultModel) await globalThis.defaultModel.dispose();

let latents32;
await part('float32', async () => {
  const { fc, loadSeconds } = await load('float32');
  const t0 = performance.now();
  const r = await fc.generate(job);
  const firstSeconds = (performance.now() - t0) / 1000;
  const again = await fc.generate(job);
  latents32 = f32(r.latents).slice();
  await fc.dispose();
  return {
    loadSeconds,
    firstCallSeconds: round(firstSeconds, 3),
    secondCallSeconds: round(again.timings.generateMs / 1000, 3),
    fp16VsFp32: latents16 ? agreement(latents16, latents32) : 'no fp16 run',
    repeatable: agreement(f32(again.latents), latents32).relative === 0,
  };
});

await part('bfloat16', async () => {
  const { fc, loadSeconds } = await load('bfloat16');
  const warmSeconds = await warm(fc, job, 1);
  const t = [];
  let last;
  for (let r = 0; r < 3; r++) t.push((last = await fc.generate(job)).timings);
  await fc.dispose();
  return {
    loadSeconds,
    warmupSeconds: warmSeconds,
    ...summarize(t),
    bf16VsFp32: latents32 ? agreement(f32(last.latents), latents32) : 'no fp32 run',
  };
});

for (const [name, env] of [
  ['no-graph-passes', { FASTCOMPOSER_GRAPH_PASSES: '0' }],
  ['no-cuda-graphs', { FASTCOMPOSER_CUDA_GRAPHS: '0' }],
  ['no-channels-last', { FASTCOMPOSER_CHANNELS_LAST: '0' }],
]) {
  await part(name, async () => {
    const { fc, loadSeconds } = await load(half, env);
    const warmSeconds = await warm(fc, job, 1);
    const t = [];
    let last;
    for (let r = 0; r < 3; r++) t.push((last = await fc.generate(job)).timings);
    await fc.dispose();
    return {
      loadSeconds,
      warmupSeconds: warmSeconds,
      ...summarize(t),
      vsDefaultLatents: latents16 ? agreement(f32(last.latents), latents16) : 'no default run',
    };
  });
}

// The fused NHWC group norm against ATen's, in float32 where they should agree to rounding:
// channels_last float32 with and without the graph passes (smaller job: 256x256, 10 steps).
await part('kernel-fp32', async () => {
  const small = { ...job, width: 256, height: 256, steps: 10 };
  const out = {};
  for (const [name, passes] of [
    ['fused', '1'],
    ['aten', '0'],
  ]) {
    // No TF32 and no autotuning: otherwise two float32 loads differ by ~1e-3 on their own.
    const { fc } = await load('float32', {
      FASTCOMPOSER_CHANNELS_LAST: '1',
      FASTCOMPOSER_GRAPH_PASSES: passes,
      FASTCOMPOSER_TF32: '0',
      FASTCOMPOSER_CUDNN_BENCHMARK: '0',
    });
    const r = await fc.generate(small);
    out[name] = { latents: f32(r.latents).slice(), info: fc['native']?.info() };
    await fc.dispose();
  }
  return { graphPasses: out.fused.info?.graphPasses, fusedVsAten: agreement(out.fused.latents, out.aten.latents) };
});
