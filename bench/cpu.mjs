#!/usr/bin/env node
// `npm run bench`: Node generate() against a Python baseline on CPU, same scheduler / steps / size /
// seed / inputs: by default the Python eager pipeline of the same modules and weights
// (bench/python_eager.py); with --baseline diffusers, the released FastComposer pipeline built with
// diffusers + transformers from a release folder (bench/diffusers_reference.py), Node running a model
// exported from that release (cached under the OS temp dir).
// Runs alternate (Node, Python, Node, ...) so machine noise hits both; Python is one long-lived
// process (--serve) so its start-up and model load are not timed.
//
//   node bench/cpu.mjs --full [...]   the full-size benchmark: bench/full.mjs (its --help)
//   node bench/cpu.mjs [--model DIR] [--steps 10] [--width 256] [--height 256] [--runs 3]
//                      [--warmup 2] [--seed 0] [--subjects 2] [--threads 1] [--python PATH] [--json FILE]
//                      [--omp-wait-policy passive|active|unset]   (both sides; default: the environment's)
//                      [--baseline eager|diffusers] [--release DIR] [--baseline-python PATH]
//   (diffusers: --baseline-python is a Python with diffusers + transformers, default
//    $FASTCOMPOSER_DIFFUSERS_PYTHON or python3; PYTHONPATH is passed on; --python runs the exporter)
//
// Targets: baseline/node time ratio >= 1.2; Node/N-API overhead (generate() wall time minus the
// native pipeline's own totalMs) < 2%. Exit code 0 unless something failed to run; the table
// says PASS/FAIL per target.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { float32View, fmtMs, fmtS, mean, median, promptFor, relativeError, subjectImage, writeJob } from './bench-common.mjs';
import { ServedBaseline } from './served-baseline.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const o = {
    model: undefined,
    steps: 10,
    width: 256,
    height: 256,
    runs: 3,
    warmup: 2,
    seed: 0,
    subjects: 2,
    guidance: 5,
    alpha: 0.7,
    // 1 by default: on a small shared machine OpenMP teams measure contention, not the pipeline.
    threads: 1,
    python: process.env.FASTCOMPOSER_PYTHON || join(root, '.venv', 'bin', 'python'),
    json: undefined,
    // With --threads > 1 on a machine that has other work, libgomp's default spin-wait can make
    // one side 5-20x slower than the other; 'passive' on both sides keeps it about the pipelines.
    ompWaitPolicy: process.env.OMP_WAIT_POLICY ?? 'unset',
    // eager: bench/python_eager.py on the model's own weights; diffusers: bench/diffusers_reference.py
    // (the released pipeline) on --release, against a model exported from it.
    baseline: 'eager',
    release: join(root, 'test', 'fixtures', 'tiny-a', 'release'),
    baselinePython: undefined,
  };
  const numeric = new Set(['steps', 'width', 'height', 'runs', 'warmup', 'seed', 'subjects', 'guidance', 'alpha', 'threads']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n');
      console.log(
        lines
          .slice(
            1,
            lines.findIndex((l) => l.startsWith('import ')),
          )
          .map((l) => l.replace(/^\/\/ ?/, ''))
          .join('\n'),
      );
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    const key = m?.[1].replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!m || !(key in o)) throw new Error(`unknown argument ${a} (see --help)`);
    const v = m[2] ?? argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    o[key] = numeric.has(key) ? Number(v) : v;
    if (numeric.has(key) && !Number.isFinite(o[key])) throw new Error(`${a} needs a number`);
  }
  if (!['eager', 'diffusers'].includes(o.baseline)) throw new Error('--baseline must be eager or diffusers');
  // With diffusers and no --model, Node runs a model exported from --release (see exportRelease).
  o.modelGiven = o.model !== undefined;
  o.model = resolve(o.model ?? join(root, 'models', 'tiny'));
  o.release = resolve(o.release);
  o.baselinePython ??= o.baseline === 'diffusers' ? process.env.FASTCOMPOSER_DIFFUSERS_PYTHON || 'python3' : o.python;
  if (!['passive', 'active', 'unset'].includes(o.ompWaitPolicy.toLowerCase())) {
    throw new Error('--omp-wait-policy must be passive, active or unset');
  }
  o.ompWaitPolicy = o.ompWaitPolicy.toLowerCase();
  return o;
}

/** The Python side (eager or diffusers), one served process. */
function startBaseline(opts, jobFile, latentsFile) {
  const diffusers = opts.baseline === 'diffusers';
  const script = join(root, 'bench', diffusers ? 'diffusers_reference.py' : 'python_eager.py');
  const args = [
    ...(diffusers ? ['--release', opts.release] : ['--model', opts.model]),
    '--device',
    'cpu',
    '--dtype',
    'float32',
    '--steps',
    String(opts.steps),
    '--width',
    String(opts.width),
    '--height',
    String(opts.height),
    '--seed',
    String(opts.seed),
    '--guidance',
    String(opts.guidance),
    '--alpha',
    String(opts.alpha),
    '--job',
    jobFile,
    '--save-latents',
    latentsFile,
    '--threads',
    String(opts.threads),
  ];
  // The eager baseline imports the exporter's modules; the diffusers one imports no project code.
  const env = diffusers
    ? { ...process.env }
    : { ...process.env, PYTHONPATH: [join(root, 'exporter'), process.env.PYTHONPATH].filter(Boolean).join(':') };
  return new ServedBaseline(opts.baselinePython, script, args, env);
}

/**
 * The model Node runs against the diffusers baseline: the release exported once with the project's
 * exporter CLI (the invocation of test/setup/golden-model.ts), cached under the OS temp dir by the
 * release path, its checkpoint's size and mtime and the exporter's sources.
 */
function exportRelease(opts) {
  const release = opts.release;
  const checkpoint = join(release, 'fastcomposer', 'pytorch_model.bin');
  for (const p of [checkpoint, join(release, 'sd', 'unet', 'config.json'), join(release, 'clip', 'config.json')]) {
    if (!existsSync(p)) throw new Error(`--release ${release} is not a FastComposer release folder (${p} is missing)`);
  }
  const hash = createHash('sha256');
  const st = statSync(checkpoint);
  hash.update(`${release}\0${st.size}\0${st.mtimeMs}\0`);
  const exporterDir = join(root, 'exporter', 'fastcomposer_export');
  const walk = (dir) =>
    readdirSync(dir, { withFileTypes: true })
      .sort((a, b) => a.name.localeCompare(b.name))
      .forEach((e) => {
        const p = join(dir, e.name);
        if (e.isDirectory()) {
          if (e.name !== '__pycache__') walk(p);
        } else if (/\.(py|json|txt)$/.test(e.name)) hash.update(p).update(readFileSync(p));
      });
  walk(exporterDir);
  for (const f of [
    'sd/unet/config.json',
    'sd/vae/config.json',
    'sd/text_encoder/config.json',
    'sd/scheduler/scheduler_config.json',
    'clip/config.json',
  ]) {
    if (existsSync(join(release, f))) hash.update(readFileSync(join(release, f)));
  }
  const cache = join(tmpdir(), 'fastcomposer-bench-cache');
  const out = join(cache, `release-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(join(out, 'model.json'))) return out;
  mkdirSync(cache, { recursive: true });
  const partial = mkdtempSync(join(cache, 'export-'));
  const modelDir = join(partial, 'model');
  console.error(`bench: exporting ${release} for Node (once; cached in ${out}) ...`);
  const r = spawnSync(
    opts.python,
    [
      '-m',
      'fastcomposer_export',
      '--checkpoint',
      checkpoint,
      '--base',
      join(release, 'sd'),
      '--image-encoder',
      join(release, 'clip'),
      '--out',
      modelDir,
    ],
    { encoding: 'utf8', env: { ...process.env, PYTHONPATH: join(root, 'exporter') } },
  );
  if (r.status !== 0) {
    rmSync(partial, { recursive: true, force: true });
    throw new Error(
      `exporting ${release} failed (${opts.python} -m fastcomposer_export, status ${r.status ?? r.error?.message}):\n${r.stderr}`,
    );
  }
  try {
    renameSync(modelDir, out);
  } catch (error) {
    if (!existsSync(join(out, 'model.json'))) throw error; // else a concurrent bench won the race
  }
  rmSync(partial, { recursive: true, force: true });
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const diffusers = opts.baseline === 'diffusers';
  if (diffusers && !opts.modelGiven) {
    if (!existsSync(opts.python)) throw new Error(`no Python at ${opts.python} to run the exporter (set --python or FASTCOMPOSER_PYTHON)`);
    opts.model = exportRelease(opts);
  }
  if (!existsSync(join(opts.model, 'model.json'))) {
    throw new Error(`no model at ${opts.model} (run npm install to make models/tiny, or pass --model DIR)`);
  }
  if (!diffusers && !existsSync(opts.baselinePython))
    throw new Error(`no Python at ${opts.baselinePython} (set --python or FASTCOMPOSER_PYTHON)`);
  const distEntry = join(root, 'dist', 'esm', 'index.js');
  if (!existsSync(distEntry)) throw new Error('dist/ is missing: run node scripts/build-ts.mjs');
  // Before libtorch (and its libgomp) loads in this process; the Python child inherits it.
  if (opts.ompWaitPolicy === 'unset') delete process.env.OMP_WAIT_POLICY;
  else process.env.OMP_WAIT_POLICY = opts.ompWaitPolicy.toUpperCase();
  // Node and Python must not run torch at the same time (they alternate), but the idle side's
  // pool must not spin either: Python sleeps on a pipe read, Node on its event loop.
  const { FastComposer, runtimeInfo } = await import(distEntry);

  const loadStart = performance.now();
  const fc = await FastComposer.load(opts.model, {
    device: 'cpu',
    dtype: 'float32',
    ...(opts.threads > 0 ? { threads: opts.threads } : {}),
  });
  const nodeLoadS = (performance.now() - loadStart) / 1e3;
  const loadStart1 = os.loadavg();
  const info = runtimeInfo();
  if (!(opts.threads > 0)) opts.threads = info.threads;

  // The same inputs for both: Node tokenizes and preprocesses, Python reads the result.
  const subjects = Array.from({ length: opts.subjects }, (_, k) => subjectImage(k));
  const prompt = promptFor(opts.subjects);
  const work = mkdtempSync(join(tmpdir(), 'fastcomposer-bench-'));
  const jobFile = await writeJob(root, fc, prompt, subjects, work);
  const latentsFile = join(work, 'latents.f32');

  const genOpts = {
    prompt,
    subjects,
    negativePrompt: '',
    steps: opts.steps,
    guidanceScale: opts.guidance,
    alpha: opts.alpha,
    seed: opts.seed,
    width: opts.width,
    height: opts.height,
    scheduler: 'pndm',
    output: 'raw',
  };
  const py = startBaseline(opts, jobFile, latentsFile);
  const node = [],
    python = [];
  let lastNode;
  let pyLoadS, baselineConfig;
  try {
    const ready = await py.next();
    if (ready.type !== 'ready') throw new Error(`${py.script}: unexpected ${JSON.stringify(ready)}`);
    pyLoadS = ready.loadSeconds;
    baselineConfig = ready.config;
    console.error(
      `bench: ${opts.model}${diffusers ? ` vs diffusers on ${opts.release}` : ''}, ${opts.width}x${opts.height}, ${opts.steps} steps (pndm), ` +
        `${opts.subjects} subjects, ${opts.threads} threads, ${opts.warmup} warm-up + ${opts.runs} runs each, alternating`,
    );
    for (let r = 0; r < opts.warmup + opts.runs; r++) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const res = await fc.generate(genOpts);
      const wallS = (performance.now() - t0) / 1e3;
      const cpu = process.cpuUsage(cpu0);
      const cpuS = (cpu.user + cpu.system) / 1e6;
      const p = await py.run();
      const tag = r < opts.warmup ? 'warm-up' : `run ${r - opts.warmup + 1}`;
      console.error(`  ${tag}: node ${wallS.toFixed(3)} s, ${diffusers ? 'diffusers' : 'python'} ${p.seconds.toFixed(3)} s`);
      if (r >= opts.warmup) {
        node.push({ wallS, cpuS, timings: res.timings });
        python.push(p);
      }
      lastNode = res;
    }
  } finally {
    await py.close().catch(() => {});
  }

  // ---- numbers (mean as the target is defined; median alongside, robust to a busy machine)
  const unetCalls = python[0].stages.unetCalls;
  const haveTimings = node.every((n) => n.timings && typeof n.timings.totalMs === 'number');
  const nodeStage = (f) => (haveTimings ? node.map((n) => f(n.timings) / 1e3) : undefined);
  const nodeSeries = {
    total: node.map((n) => n.wallS),
    cpu: node.map((n) => n.cpuS),
    encoders: nodeStage((t) => t.encodeSubjectsMs + t.encodePromptMs),
    step: nodeStage((t) => t.denoiseMs / unetCalls),
    decode: nodeStage((t) => t.decodeMs),
    native: nodeStage((t) => t.totalMs),
  };
  const pySeries = {
    total: python.map((p) => p.seconds),
    cpu: python.map((p) => p.cpuSeconds),
    encoders: python.map((p) => p.stages.encoders),
    step: python.map((p) => p.stages.meanStep),
    unet: python.map((p) => p.stages.meanUnet),
    decode: python.map((p) => p.stages.decode),
    tokenize: diffusers ? python.map((p) => p.stages.tokenize ?? 0) : undefined,
  };
  const stat = (series, f) => Object.fromEntries(Object.entries(series).map(([k, v]) => [k, v ? f(v) : undefined]));
  const nodeStages = stat(nodeSeries, mean),
    nodeMedian = stat(nodeSeries, median);
  const pyStages = stat(pySeries, mean),
    pyMedian = stat(pySeries, median);
  const nodeMean = nodeStages.total,
    pyMean = pyStages.total;
  const overhead = haveTimings ? mean(node.map((n) => (n.wallS - n.timings.totalMs / 1e3) / n.wallS)) : undefined;
  const ratio = pyMean / nodeMean;
  const ratioMedian = pyMedian.total / nodeMedian.total;
  const ratioCpu = pyMedian.cpu / nodeMedian.cpu;
  const spread = (xs) => Math.max(...xs) / Math.min(...xs);
  const noisy = spread(nodeSeries.total) > 1.5 || spread(pySeries.total) > 1.5;

  const nodeLatents = float32View(lastNode.latents.data);
  const pyLatents = float32View(readFileSync(latentsFile));
  const latentsErr = pyLatents.length === nodeLatents.length ? relativeError(nodeLatents, pyLatents) : Infinity;
  const latentsTol = diffusers ? 1e-4 : 1e-3;
  const tokenMismatch = Object.entries(python.at(-1).tokenizerMatches ?? {})
    .filter(([, ok]) => !ok)
    .map(([k]) => k);
  rmSync(work, { recursive: true, force: true });

  const both = (a, b) => `${a}  (median ${b})`;
  const rows = [
    ['', 'node (TorchScript, libtorch)', diffusers ? `diffusers ${baselineConfig?.diffusers ?? ''} (released pipeline)` : 'python eager'],
    ['per image', both(fmtS(nodeMean), fmtS(nodeMedian.total)), both(fmtS(pyMean), fmtS(pyMedian.total))],
    ['  runs (s)', nodeSeries.total.map((x) => x.toFixed(3)).join(' '), pySeries.total.map((x) => x.toFixed(3)).join(' ')],
    ['CPU time per image (all threads)', both(fmtS(nodeStages.cpu), fmtS(nodeMedian.cpu)), both(fmtS(pyStages.cpu), fmtS(pyMedian.cpu))],
    ...(diffusers ? [['  tokenize (node: in the overhead)', '', both(fmtMs(pyStages.tokenize), fmtMs(pyMedian.tokenize))]] : []),
    [
      diffusers
        ? '  encoders (subjects + 3 prompts + postfuse; diffusers: 3 batch-1 text calls)'
        : '  encoders (subjects + 3 prompts + postfuse)',
      both(fmtMs(nodeStages.encoders), fmtMs(nodeMedian.encoders)),
      both(fmtMs(pyStages.encoders), fmtMs(pyMedian.encoders)),
    ],
    [
      `  UNet step (mean of ${unetCalls}, CFG batch 2, + scheduler)`,
      both(fmtMs(nodeStages.step), fmtMs(nodeMedian.step)),
      both(fmtMs(pyStages.step), fmtMs(pyMedian.step)),
    ],
    ['    of which UNet forward', '', both(fmtMs(pyStages.unet), fmtMs(pyMedian.unet))],
    ['  VAE decode', both(fmtMs(nodeStages.decode), fmtMs(nodeMedian.decode)), both(fmtMs(pyStages.decode), fmtMs(pyMedian.decode))],
    ['  native pipeline total', both(fmtS(nodeStages.native), fmtS(nodeMedian.native)), ''],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length)),
    w1 = Math.max(...rows.map((r) => r[1].length));
  console.log(
    `\nCPU benchmark: ${opts.width}x${opts.height}, ${opts.steps} steps, ${opts.subjects} subjects, ${opts.threads} threads (OMP_WAIT_POLICY ${process.env.OMP_WAIT_POLICY ?? 'unset'}), ${opts.runs} runs, libtorch ${info.torchVersion}`,
  );
  console.log(
    `load average ${loadStart1.map((x) => x.toFixed(1)).join(' ')} at start, ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')} at end, ${os.availableParallelism()} CPUs`,
  );
  rows.forEach((r) => console.log(`${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2]}`));
  console.log(`model load (not in the ratio): node ${fmtS(nodeLoadS)}, ${diffusers ? 'diffusers' : 'python'} ${fmtS(pyLoadS)}`);
  const verdict = (ok) => (ok === undefined ? 'n/a' : ok ? 'PASS' : 'FAIL');
  console.log(
    `ratio ${diffusers ? 'diffusers' : 'python'}/node: ${ratio.toFixed(2)}x of means, ${ratioMedian.toFixed(2)}x of medians, ${ratioCpu.toFixed(2)}x of median CPU time  (target >= 1.2: ${verdict(ratio >= 1.2)})`,
  );
  console.log(
    `Node/N-API overhead (generate() wall - native totalMs): ${overhead === undefined ? 'n/a (the native result has no timings)' : `${(overhead * 100).toFixed(2)}%`}` +
      `  (target < 2%: ${verdict(overhead === undefined ? undefined : overhead < 0.02)})`,
  );
  console.log(
    `final latents, node vs ${diffusers ? 'diffusers' : 'python'}: max relative error ${latentsErr.toExponential(2)}  (${verdict(latentsErr < latentsTol)} at ${latentsTol.toExponential(0)})`,
  );
  if (tokenMismatch.length)
    console.log(`note: the release's tokenizer gives other ${tokenMismatch.join(', ')} than Node's (both sides computed on Node's)`);
  if (noisy)
    console.log('note: run times vary by more than 1.5x: the machine is busy; compare medians and CPU time, or rerun with more --runs');

  const summary = {
    config: { ...opts, unetCalls, nodeThreads: info.threads },
    baseline: opts.baseline,
    baselineConfig,
    nodeLoadSeconds: nodeLoadS,
    pythonLoadSeconds: pyLoadS,
    node: { meanSeconds: nodeMean, runs: node.map((n) => n.wallS), stages: nodeStages, timings: node.map((n) => n.timings ?? null) },
    python: {
      meanSeconds: pyMean,
      runs: python.map((p) => p.seconds),
      stages: pyStages,
      latents: python.at(-1).latents,
      ...(diffusers ? { tokenizerMatches: python.at(-1).tokenizerMatches ?? null } : {}),
    },
    nodeMedian,
    pythonMedian: pyMedian,
    ratio,
    ratioMedian,
    ratioCpu,
    overhead: overhead ?? null,
    latentsRelativeError: latentsErr,
  };
  if (opts.json) writeFileSync(opts.json, JSON.stringify(summary, null, 2) + '\n');
  await fc.dispose();
}

// `--full`: the full-size benchmark (bench/full.mjs) instead, with the other arguments.
const run = process.argv.includes('--full')
  ? import('./full.mjs').then(({ runFull }) => runFull(process.argv.slice(2).filter((a) => a !== '--full')))
  : main();
run.catch((error) => {
  console.error(`bench failed: ${error?.stack ?? error}`);
  process.exit(1);
});
