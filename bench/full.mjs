#!/usr/bin/env node
// `npm run bench -- --full` (or node bench/full.mjs): the full-size CPU benchmark, everything in
// one run on one full-size SD1.5 FastComposer export (random weights: pictures are noise, the cost
// is real), made with the exporter's `--preset sd15-random` when none is given or cached:
//   - the machine: CPU, the flags of the fast paths, load average before and after;
//   - the roofline: a large matrix product's measured rate, float32 and bfloat16
//     (bench/roofline.py peak), and each job's FLOPs (bench/roofline.py flops);
//   - load: FastComposer.load() in a fresh process with the files in the page cache, its phases
//     (manifest, tokenizer, read, deserialise, conversions, passes, prepacking, warm-up) and RSS,
//     three times: without the prepack cache, writing it, and reading it;
//   - float32 speed: generate() against the released diffusers pipeline on the same weights
//     (bench/diffusers_reference.py --model), alternating run by run, at each size: seconds and CPU
//     seconds per image, stages, the ratio, the share of the float32 peak (job and UNet);
//   - bfloat16: generate() in bfloat16 against float32, alternating, with the error against float32.
//
//   node bench/full.mjs [--model DIR] [--sizes 256x256:4,512x512:2] [--runs 2] [--warmup 1]
//                       [--threads 0] [--subjects 2] [--seed 0] [--parts load,float32,bfloat16]
//                       [--bf16-sizes 256x256:4] [--python PATH] [--baseline-python PATH] [--json FILE]
//   --sizes: WIDTHxHEIGHT:STEPS (PNDM steps; the UNet runs steps + 1 times); --threads 0: all cores.
//   --model: default $FASTCOMPOSER_FULL_MODEL, else <os temp>/fastcomposer-bench-cache/sd15-random
//   (exported there on first use: about 5 GB, a few minutes). --baseline-python: a Python with
//   diffusers and transformers (default $FASTCOMPOSER_DIFFUSERS_PYTHON, else python3; PYTHONPATH is
//   passed on, so a diffusers source tree works); without one the float32 part runs Node alone.
// Targets (printed PASS/FAIL): diffusers/node >= 2.0x at each size; UNet >= 60% of the float32 peak;
// load <= 5 s; bfloat16 >= 1.6x float32.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { machineInfo, loadAverageText, promptFor, subjectImage, writeJob } from './bench-common.mjs';
import { loadInFreshProcess, warmPageCache } from './full-load.mjs';
import { printReport } from './full-report.mjs';
import { ServedBaseline } from './served-baseline.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const o = {
    model: process.env.FASTCOMPOSER_FULL_MODEL || join(tmpdir(), 'fastcomposer-bench-cache', 'sd15-random'),
    sizes: '256x256:4,512x512:2',
    bf16Sizes: '256x256:4',
    runs: 2,
    warmup: 1,
    threads: 0,
    subjects: 2,
    seed: 0,
    parts: 'load,float32,bfloat16',
    python: process.env.FASTCOMPOSER_PYTHON || join(root, '.venv', 'bin', 'python'),
    baselinePython: process.env.FASTCOMPOSER_DIFFUSERS_PYTHON || 'python3',
    json: undefined,
  };
  const numeric = new Set(['runs', 'warmup', 'threads', 'subjects', 'seed']);
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
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a);
    const key = m?.[1].replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
    if (!m || !(key in o)) throw new Error(`unknown argument ${a} (see --help)`);
    const v = m[2] ?? argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    o[key] = numeric.has(key) ? Number(v) : v;
    if (numeric.has(key) && !Number.isFinite(o[key])) throw new Error(`${a} needs a number`);
  }
  const sizes = (text) =>
    text
      .split(',')
      .filter(Boolean)
      .map((s) => {
        const m = /^(\d+)x(\d+):(\d+)$/.exec(s.trim());
        if (!m) throw new Error(`sizes are WIDTHxHEIGHT:STEPS, got ${s}`);
        return { width: Number(m[1]), height: Number(m[2]), steps: Number(m[3]) };
      });
  o.sizes = sizes(o.sizes);
  o.bf16Sizes = sizes(o.bf16Sizes);
  o.parts = new Set(o.parts.split(','));
  o.model = resolve(o.model);
  return o;
}

/** The full-size model: the given or cached export, or a new one made with the exporter's preset. */
function ensureModel(opts) {
  if (existsSync(join(opts.model, 'model.json'))) return { dir: opts.model, exported: false };
  if (!existsSync(opts.python)) throw new Error(`no model at ${opts.model} and no Python at ${opts.python} to export one (--python)`);
  console.error(`bench: exporting a full-size random SD1.5 FastComposer to ${opts.model} (once; about 5 GB) ...`);
  mkdirSync(dirname(opts.model), { recursive: true });
  const t0 = performance.now();
  const r = spawnSync(opts.python, ['-m', 'fastcomposer_export', '--preset', 'sd15-random', '--out', opts.model], {
    encoding: 'utf8',
    env: { ...process.env, PYTHONPATH: join(root, 'exporter') },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  if (r.status !== 0) throw new Error(`exporting the sd15-random preset failed (status ${r.status ?? r.error?.message}):\n${r.stderr}`);
  return { dir: opts.model, exported: true, exportSeconds: (performance.now() - t0) / 1e3 };
}

/** bench/roofline.py with the project's Python (the exporter's modules for the FLOP counts). */
function roofline(opts, args) {
  const r = spawnSync(opts.python, [join(root, 'bench', 'roofline.py'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, PYTHONPATH: [join(root, 'exporter'), join(root, 'bench')].join(':') },
  });
  if (r.status !== 0) throw new Error(`bench/roofline.py ${args[0]} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

/** One timed generate(): wall and CPU seconds (all threads), stage timings, UNet calls. */
async function timeGenerate(fc, genOpts) {
  let unetCalls = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const res = await fc.generate({ ...genOpts, onStep: (e) => (unetCalls = e.steps) });
  const cpu = process.cpuUsage(cpu0);
  return { wallS: (performance.now() - t0) / 1e3, cpuS: (cpu.user + cpu.system) / 1e6, timings: res.timings, unetCalls, res };
}

/** float32: Node and the diffusers baseline alternate at each size. */
async function float32Part(opts, fc, baseline, job, latentsFile) {
  const out = [];
  for (const size of opts.sizes) {
    const genOpts = { ...job.genOpts, width: size.width, height: size.height, steps: size.steps };
    const overrides = { width: size.width, height: size.height, steps: size.steps };
    const node = [],
      python = [];
    let last;
    for (let r = 0; r < opts.warmup + opts.runs; r++) {
      const n = await timeGenerate(fc, genOpts);
      const p = baseline ? await baseline.run(overrides) : undefined;
      const tag = r < opts.warmup ? 'warm-up' : `run ${r - opts.warmup + 1}`;
      console.error(
        `  ${size.width}x${size.height}, ${size.steps} steps, ${tag}: node ${n.wallS.toFixed(2)} s` +
          (p ? `, baseline ${p.seconds.toFixed(2)} s` : ''),
      );
      if (r >= opts.warmup) {
        node.push(n);
        if (p) python.push(p);
      }
      last = n.res;
    }
    const pyLatents = baseline && existsSync(latentsFile) ? readFileSync(latentsFile) : undefined;
    const unetCalls = node[0].unetCalls;
    out.push({
      size,
      unetCalls,
      node,
      python,
      nodeLatents: last.latents.data,
      pyLatents,
      flops: roofline(opts, [
        'flops',
        '--model',
        opts.model,
        '--width',
        String(size.width),
        '--height',
        String(size.height),
        '--unet-calls',
        String(unetCalls),
        '--subjects',
        String(opts.subjects),
      ]),
    });
  }
  return out;
}

/** bfloat16 against float32 in this process, alternating. */
async function bfloat16Part(opts, FastComposer, fc32, job) {
  let fc16;
  try {
    fc16 = await FastComposer.load(opts.model, {
      device: 'cpu',
      dtype: 'bfloat16',
      ...(opts.threads > 0 ? { threads: opts.threads } : {}),
    });
  } catch (error) {
    return { skipped: `${error.code ?? ''} ${error.message}`.trim() };
  }
  const out = { loadTimings: fc16.loadTimings, sizes: [] };
  try {
    for (const size of opts.bf16Sizes) {
      const genOpts = { ...job.genOpts, width: size.width, height: size.height, steps: size.steps };
      const f32 = [],
        b16 = [];
      let last32, last16;
      for (let r = 0; r < opts.warmup + opts.runs; r++) {
        const a = await timeGenerate(fc32, genOpts);
        const b = await timeGenerate(fc16, genOpts);
        console.error(
          `  bfloat16 ${size.width}x${size.height}, ${size.steps} steps, ${r < opts.warmup ? 'warm-up' : `run ${r - opts.warmup + 1}`}: ` +
            `float32 ${a.wallS.toFixed(2)} s, bfloat16 ${b.wallS.toFixed(2)} s`,
        );
        if (r >= opts.warmup) {
          f32.push(a);
          b16.push(b);
        }
        last32 = a.res;
        last16 = b.res;
      }
      out.sizes.push({
        size,
        f32,
        b16,
        latents32: last32.latents.data,
        latents16: last16.latents.data,
        image32: last32.images[0].data,
        image16: last16.images[0].data,
      });
    }
  } finally {
    await fc16.dispose();
  }
  return out;
}

export async function runFull(argv) {
  const opts = parseArgs(argv);
  const distEntry = join(root, 'dist', 'esm', 'index.js');
  if (!existsSync(distEntry)) throw new Error('dist/ is missing: run npm run build');
  const report = { machine: machineInfo(), opts: { ...opts, parts: [...opts.parts] } };
  console.error(`bench: ${report.machine.cpu}, ${report.machine.cores} CPUs, load average ${loadAverageText(report.machine.loadAverage)}`);
  report.model = ensureModel(opts);
  report.peak = roofline(opts, ['peak', '--threads', String(opts.threads)]);
  // The prepack cache (native/prepack_cache.h) of this run: empty at first, so that the three
  // loads below are without it, writing it, and reading it; the float32 model loads from it.
  const prepackCache = mkdtempSync(join(tmpdir(), 'fastcomposer-full-bench-prepacked-'));
  process.once('exit', () => rmSync(prepackCache, { recursive: true, force: true })); // 5 GB at full size
  if (opts.parts.has('load')) {
    report.pageCache = warmPageCache(opts.model);
    report.loads = {
      noCache: loadInFreshProcess(root, opts, { FASTCOMPOSER_PREPACK_CACHE: '0' }),
      writesCache: loadInFreshProcess(root, opts, { FASTCOMPOSER_PREPACK_CACHE: prepackCache }),
      readsCache: loadInFreshProcess(root, opts, { FASTCOMPOSER_PREPACK_CACHE: prepackCache }),
    };
  }
  process.env.FASTCOMPOSER_PREPACK_CACHE = prepackCache;
  const { FastComposer, runtimeInfo } = await import(distEntry);
  const threadOpt = opts.threads > 0 ? { threads: opts.threads } : {};
  const fc = await FastComposer.load(opts.model, { device: 'cpu', dtype: 'float32', ...threadOpt });
  report.runtime = runtimeInfo();
  report.loadInProcess = fc.loadTimings;
  const work = mkdtempSync(join(tmpdir(), 'fastcomposer-full-bench-'));
  try {
    const subjects = Array.from({ length: opts.subjects }, (_, k) => subjectImage(k));
    const prompt = promptFor(opts.subjects);
    const job = {
      jobFile: await writeJob(root, fc, prompt, subjects, work),
      genOpts: { prompt, subjects, negativePrompt: '', seed: opts.seed, scheduler: 'pndm', output: 'raw' },
    };
    if (opts.parts.has('float32')) {
      const latentsFile = join(work, 'latents.f32');
      const started = startBaseline(opts, job.jobFile, latentsFile);
      const baseline = started?.served;
      try {
        if (baseline) {
          const ready = await baseline.next();
          report.baseline = {
            name: started.name,
            config: ready.config,
            loadSeconds: ready.loadSeconds,
            maxRssBytes: ready.maxRssBytes,
            thpMemAllocEnable: started.served.hugePages,
          };
        }
        report.float32 = await float32Part(opts, fc, baseline, job, latentsFile);
      } catch (error) {
        if (!baseline) throw error;
        report.baselineError = error.message;
        console.error(`bench: the ${started.name} baseline failed (${error.message}); Node alone`);
        report.float32 = await float32Part(opts, fc, undefined, job, latentsFile);
      } finally {
        await baseline?.close().catch(() => {});
      }
      report.nodeMaxRssBytes = process.resourceUsage().maxRSS * 1024;
    }
    if (opts.parts.has('bfloat16')) report.bfloat16 = await bfloat16Part(opts, FastComposer, fc, job);
  } finally {
    rmSync(work, { recursive: true, force: true });
    await fc.dispose();
  }
  report.loadAverageAfter = machineInfo().loadAverage;
  const summary = printReport(report);
  if (opts.json) writeFileSync(opts.json, JSON.stringify(summary, null, 2) + '\n');
}

/**
 * The baseline: the released pipeline (bench/diffusers_reference.py --model) when --baseline-python
 * has diffusers and transformers, else, saying so, the Python eager pipeline of the same modules
 * (bench/python_eager.py with the project's Python). Returns { name, served } or undefined.
 */
function startBaseline(opts, jobFile, latentsFile) {
  const first = opts.sizes[0];
  const common = [
    '--model',
    opts.model,
    '--steps',
    String(first.steps),
    '--width',
    String(first.width),
    '--height',
    String(first.height),
    '--seed',
    String(opts.seed),
    '--job',
    jobFile,
    '--save-latents',
    latentsFile,
    ...(opts.threads > 0 ? ['--threads', String(opts.threads)] : []),
  ];
  const probe = spawnSync(opts.baselinePython, ['-c', 'import diffusers, transformers'], { encoding: 'utf8' });
  if (probe.status === 0) {
    return { name: 'diffusers', served: new ServedBaseline(opts.baselinePython, join(root, 'bench', 'diffusers_reference.py'), common) };
  }
  console.error(
    `bench: ${opts.baselinePython} has no diffusers/transformers (--baseline-python, FASTCOMPOSER_DIFFUSERS_PYTHON): ` +
      'the baseline is the Python eager pipeline of the same modules (bench/python_eager.py), not the released pipeline',
  );
  if (!existsSync(opts.python)) return undefined;
  const env = { ...process.env, PYTHONPATH: [join(root, 'exporter'), process.env.PYTHONPATH].filter(Boolean).join(':') };
  return {
    name: 'python-eager',
    served: new ServedBaseline(
      opts.python,
      join(root, 'bench', 'python_eager.py'),
      [...common, '--device', 'cpu', '--dtype', 'float32'],
      env,
    ),
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runFull(process.argv.slice(2)).catch((error) => {
    console.error(`bench failed: ${error?.stack ?? error}`);
    process.exit(1);
  });
}
