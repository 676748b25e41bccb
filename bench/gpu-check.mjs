// GPU half of bench/gpu-check.sh: times generate() on CUDA (fp16, 512x512, 50 steps), reports
// s/image, it/s, peak GPU memory, and fp16-vs-fp32 latent agreement, as one JSON object.
// Usage: node bench/gpu-check.mjs --model DIR [--runs 3] [--steps 50] [--size 512] [--variant NAME] [--fp32]
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { FastComposer } from '../dist/esm/index.js';
import { loadNative } from '../dist/esm/native.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    runs: { type: 'string', default: '3' },
    steps: { type: 'string', default: '50' },
    size: { type: 'string', default: '512' },
    variant: { type: 'string', default: 'default' },
    fp32: { type: 'boolean', default: false },
    'save-latents': { type: 'string' },
    'write-job': { type: 'string' },
    device: { type: 'string', default: 'cuda' }, // cpu: a dry run of this script without a GPU
  },
});
const runs = Number(values.runs);
const steps = Number(values.steps);
const size = Number(values.size);
const { binding, torch } = loadNative();

// Two deterministic 224x224 subjects as raw pixels (no image decoding on the device machine).
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

function f32(t) {
  return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
}
function agreement(a, b) {
  let diff = 0;
  let ref = 0;
  let nonFinite = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) nonFinite++;
    else diff = Math.max(diff, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return { maxAbsDiff: diff, maxAbsRef: ref, relative: ref ? diff / ref : diff, nonFinite };
}

// The same inputs for the Python eager baseline (bench/python_eager.py --job FILE).
if (values['write-job']) {
  const tokenizer = (await import('../dist/esm/prompt.js')).PromptTokenizer;
  const fcTok = await tokenizer.load(`${values.model}/tokenizer.json`);
  const tokens = fcTok.tokenize(job.prompt);
  const pixels = `${values['write-job']}.pixels.u8`;
  writeFileSync(pixels, Buffer.concat(job.subjects.map((s) => s.data)));
  writeFileSync(
    values['write-job'],
    JSON.stringify({
      inputIds: tokens.inputIds,
      textOnlyIds: tokens.textOnlyIds,
      negativeIds: fcTok.encodePlain(job.negativePrompt).ids,
      subjectPositions: tokens.subjectPositions,
      pixels,
    }),
  );
}

const report = { variant: values.variant, torch: torch.version, builtAgainst: binding.torchVersion, cudaDevices: binding.cudaDeviceCount(), steps, size };
let t0 = performance.now();
const fc = await FastComposer.load(values.model, { device: values.device, dtype: values.device === 'cpu' ? 'bfloat16' : 'float16' });
report.loadSeconds = (performance.now() - t0) / 1000;

// First call at the real shape: cuDNN autotuning, the CUDA graph capture and the GPU clocks
// ramping up happen here, not in the timed runs.
t0 = performance.now();
await fc.generate(job);
report.firstCallSeconds = (performance.now() - t0) / 1000;

const onCuda = values.device !== 'cpu';
if (onCuda) binding.cudaMemory(0, true);
const times = [];
let last;
for (let r = 0; r < runs; r++) {
  last = await fc.generate(job);
  times.push(last.timings);
}
if (onCuda) try {
  report.peakAllocatedGB = binding.cudaMemory(0, false).peakAllocated / 1e9;
  report.peakReservedGB = binding.cudaMemory(0, false).peakReserved / 1e9;
} catch (error) {
  report.peakAllocatedGB = `unavailable: ${error.message}`;
}
const mean = (key) => times.reduce((a, t) => a + t[key], 0) / times.length / 1000;
const unetCalls = steps + 1; // PNDM (skip_prk_steps) repeats one timestep
report.secondsPerImage = mean('generateMs');
report.nativeSeconds = mean('totalMs');
report.itPerSecond = unetCalls / mean('denoiseMs');
report.stageSeconds = { encodeSubjects: mean('encodeSubjectsMs'), encodePrompt: mean('encodePromptMs'), denoise: mean('denoiseMs'), decode: mean('decodeMs') };
report.nodeOverheadPercent = (100 * (mean('generateMs') - mean('totalMs'))) / mean('generateMs');
report.runsSeconds = times.map((t) => t.generateMs / 1000);
report.cudaGraph = fc['native']?.info().cudaGraph;
const lat16 = f32(last.latents);
report.latentsNonFinite16 = lat16.filter((v) => !Number.isFinite(v)).length;
if (values['save-latents']) writeFileSync(values['save-latents'], last.latents.data);
await fc.dispose();

if (values.fp32) {
  const fc32 = await FastComposer.load(values.model, { device: values.device, dtype: 'float32' });
  t0 = performance.now();
  const r32 = await fc32.generate(job);
  report.fp32SecondsPerImage = (performance.now() - t0) / 1000; // one run, autotuning included
  report.fp16VsFp32 = agreement(lat16, f32(r32.latents));
  await fc32.dispose();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
