// Printing bench/full.mjs's measurements: tables on stdout, and the JSON summary it returns.
import { float32View, fmtGB, loadAverageText, mean, median, printTable, relativeError } from './bench-common.mjs';

const TARGET_RATIO = 2.0;
const TARGET_UNET_SHARE = 0.6;
const TARGET_LOAD_SECONDS = 5;
const TARGET_BF16_GAIN = 1.6;

const verdict = (ok) => (ok === undefined ? 'n/a' : ok ? 'PASS' : 'FAIL');
const s = (x, digits = 2) => (x === undefined || Number.isNaN(x) ? 'n/a' : `${x.toFixed(digits)} s`);
const pct = (x) => (x === undefined || Number.isNaN(x) ? 'n/a' : `${(100 * x).toFixed(0)}%`);
const tflop = (x) => `${(x / 1e12).toFixed(2)} TFLOP`;
const gflops = (x) => `${(x / 1e9).toFixed(0)} GFLOP/s`;

/** The float32 roofline: the faster of the measured matrix products (BLAS and oneDNN). */
function fp32Peak(peak) {
  return Math.max(
    ...Object.entries(peak)
      .filter(([k]) => k.startsWith('float32'))
      .map(([, v]) => v.flopsPerSecond),
  );
}

function nodeStats(runs, unetCalls) {
  const t = (f) => median(runs.map((r) => f(r.timings) / 1e3));
  return {
    median: median(runs.map((r) => r.wallS)),
    mean: mean(runs.map((r) => r.wallS)),
    runs: runs.map((r) => r.wallS),
    cpu: median(runs.map((r) => r.cpuS)),
    encoders: t((x) => x.encodeSubjectsMs + x.encodePromptMs),
    step: t((x) => x.denoiseMs / unetCalls),
    decode: t((x) => x.decodeMs),
  };
}

function pythonStats(runs) {
  if (runs.length === 0) return undefined;
  const st = (f) => median(runs.map((r) => f(r.stages)));
  return {
    median: median(runs.map((r) => r.seconds)),
    mean: mean(runs.map((r) => r.seconds)),
    runs: runs.map((r) => r.seconds),
    cpu: median(runs.map((r) => r.cpuSeconds)),
    encoders: st((x) => x.encoders),
    step: st((x) => x.meanStep),
    unet: st((x) => x.meanUnet),
    decode: st((x) => x.decode),
  };
}

function printLoad(report) {
  const loads = report.loads;
  if (!loads) return undefined;
  const runs = [loads.noCache, loads.writesCache, loads.readsCache];
  const row = (label, pick) => [label, ...runs.map((c) => s(pick(c.timings) / 1e3))];
  console.log(`\nLoad (FastComposer.load() in a fresh process, model files in the page cache: ${fmtGB(report.pageCache.bytes)})`);
  printTable([
    ['', 'no prepack cache', 'first load (writes it)', 'later load (reads it)'],
    row('load() total', (t) => t.loadMs),
    row('  manifest + tokenizer', (t) => t.manifestMs + t.tokenizerMs),
    row('  native (job thread)', (t) => t.totalMs),
    row('    map files', (t) => t.readMs),
    row('    read archives', (t) => t.deserializeMs),
    row('    audit', (t) => t.auditMs),
    row('    dtype / layout conversions', (t) => t.convertMs),
    row('    graph passes', (t) => t.passesMs),
    row('    weight prepacking (or the cache)', (t) => t.prepackMs),
    row('    warm-up', (t) => t.warmupMs),
    row('  addon start, queueing, other', (t) => t.loadMs - t.manifestMs - t.tokenizerMs - t.totalMs),
    ['CPU time, user + system', ...runs.map((c) => `${s(c.userSeconds)} + ${s(c.systemSeconds)}`)],
    ['minor page faults', ...runs.map((c) => String(c.minorPageFaults))],
    ['weights from the cache', ...runs.map((c) => `${c.prepacked.fromCache} of ${c.prepacked.weights}`)],
    ['peak RSS (mapped files count)', ...runs.map((c) => fmtGB(c.maxRssBytes))],
    ['whole child process', ...runs.map((c) => s(c.processSeconds))],
  ]);
  const seconds = loads.readsCache.timings.loadMs / 1e3;
  console.log(`later load ${s(seconds)}: target <= ${TARGET_LOAD_SECONDS} s: ${verdict(seconds <= TARGET_LOAD_SECONDS)}`);
  const summary = (c) => ({
    seconds: c.timings.loadMs / 1e3,
    timings: c.timings,
    cpuSeconds: c.userSeconds + c.systemSeconds,
    maxRssBytes: c.maxRssBytes,
  });
  return { noCache: summary(loads.noCache), writesCache: summary(loads.writesCache), readsCache: summary(loads.readsCache) };
}

const BASELINE_LABEL = { diffusers: 'diffusers (released pipeline)', 'python-eager': 'Python eager (same modules; no diffusers here)' };

function printFloat32(report, peak) {
  const out = [];
  const name = report.baseline?.name ?? 'baseline';
  for (const part of report.float32 ?? []) {
    const { size, unetCalls, flops } = part;
    const n = nodeStats(part.node, unetCalls);
    const p = pythonStats(part.python);
    const unetFlops = flops.unetCall;
    const share = (seconds, f) => f / seconds / peak;
    const latentsErr =
      part.pyLatents && part.pyLatents.length === part.nodeLatents.length
        ? relativeError(float32View(part.nodeLatents), float32View(part.pyLatents))
        : undefined;
    console.log(
      `\nfloat32, ${size.width}x${size.height}, ${size.steps} PNDM steps (${unetCalls} UNet calls, batch 2), ` +
        `${part.node.length} runs: ${tflop(flops.total)} per image (UNet ${tflop(flops.unet)}, VAE ${tflop(flops.vaeDecoder)}, ` +
        `encoders ${tflop(flops.textEncoder + flops.imageEncoder)})`,
    );
    const row = (label, a, b) => [label, a, b ?? ''];
    printTable([
      ['', 'node', p ? (BASELINE_LABEL[name] ?? name) : ''],
      row('s/image, median (mean)', `${s(n.median)} (${s(n.mean)})`, p && `${s(p.median)} (${s(p.mean)})`),
      row('  runs', n.runs.map((x) => x.toFixed(2)).join(' '), p?.runs.map((x) => x.toFixed(2)).join(' ')),
      row('CPU s/image (all threads)', s(n.cpu), p && s(p.cpu)),
      row('  encoders', s(n.encoders), p && s(p.encoders)),
      row('  UNet step (+ scheduler)', s(n.step), p && `${s(p.step)} (UNet ${s(p.unet)})`),
      row('  VAE decode', s(n.decode), p && s(p.decode)),
      row('share of the float32 peak: job', pct(share(n.median, flops.total)), p && pct(share(p.median, flops.total))),
      row(
        '  UNet',
        `${pct(share(n.step, unetFlops))} (target >= ${pct(TARGET_UNET_SHARE)}: ${verdict(share(n.step, unetFlops) >= TARGET_UNET_SHARE)})`,
        p && pct(share(p.unet, unetFlops)),
      ),
    ]);
    const ratio = p ? p.median / n.median : undefined;
    if (p) {
      console.log(
        `ratio ${name}/node: ${ratio.toFixed(2)}x (medians), ${(p.cpu / n.cpu).toFixed(2)}x (CPU time)  ` +
          `(target >= ${TARGET_RATIO}: ${verdict(ratio >= TARGET_RATIO)})`,
      );
      console.log(`final latents, node vs ${name}: max relative error ${latentsErr?.toExponential(2) ?? 'n/a'}`);
    }
    out.push({
      size,
      unetCalls,
      flops,
      node: n,
      baseline: name,
      python: p,
      ratio,
      ratioCpu: p ? p.cpu / n.cpu : undefined,
      latentsErr,
      unetShare: share(n.step, unetFlops),
      jobShare: share(n.median, flops.total),
    });
  }
  return out;
}

function printBfloat16(report) {
  const b = report.bfloat16;
  if (!b) return undefined;
  if (b.skipped) {
    console.log(`\nbfloat16: not run: ${b.skipped}`);
    return b;
  }
  const out = [];
  for (const part of b.sizes) {
    const f = median(part.f32.map((r) => r.wallS)),
      h = median(part.b16.map((r) => r.wallS));
    const fc = median(part.f32.map((r) => r.cpuS)),
      hc = median(part.b16.map((r) => r.cpuS));
    const err = relativeError(float32View(part.latents16), float32View(part.latents32));
    let diff = 0,
      maxDiff = 0;
    for (let i = 0; i < part.image32.length; i++) {
      const d = Math.abs(part.image16[i] - part.image32[i]);
      diff += d;
      maxDiff = Math.max(maxDiff, d);
    }
    console.log(
      `\nbfloat16 vs float32, ${part.size.width}x${part.size.height}, ${part.size.steps} steps, ${part.f32.length} runs, alternating`,
    );
    printTable([
      ['s/image, median', `float32 ${s(f)}`, `bfloat16 ${s(h)}`],
      ['CPU s/image', `float32 ${s(fc)}`, `bfloat16 ${s(hc)}`],
      [
        'gain',
        `${(f / h).toFixed(2)}x (CPU time ${(fc / hc).toFixed(2)}x)`,
        `target >= ${TARGET_BF16_GAIN}: ${verdict(f / h >= TARGET_BF16_GAIN)}`,
      ],
      [
        'error against float32',
        `latents max relative ${err.toExponential(2)}`,
        `image mean |diff| ${(diff / part.image32.length).toFixed(2)} of 255, max ${maxDiff}`,
      ],
    ]);
    out.push({
      size: part.size,
      float32: f,
      bfloat16: h,
      gain: f / h,
      gainCpu: fc / hc,
      latentsErr: err,
      imageMeanAbsDiff: diff / part.image32.length,
      imageMaxDiff: maxDiff,
    });
  }
  console.log(`bfloat16 load: ${s(b.loadTimings.loadMs / 1e3)} (in the same process as the float32 model)`);
  return { sizes: out, loadTimings: b.loadTimings };
}

/** Prints everything; returns the JSON summary (no raw buffers). */
export function printReport(report) {
  const m = report.machine;
  const peak = fp32Peak(report.peak);
  console.log(
    `\nFull-size CPU benchmark: ${m.cpu}, ${m.cores} CPUs, ${m.memoryGB.toFixed(0)} GB, flags ${m.flags.join(' ') || 'none of note'}; ` +
      `libtorch ${report.runtime?.torchVersion ?? '?'}, ${report.runtime?.threads ?? '?'} threads`,
  );
  console.log(`load average ${loadAverageText(m.loadAverage)} at start, ${loadAverageText(report.loadAverageAfter)} at the end`);
  console.log(`model ${report.opts.model}${report.model.exported ? ` (exported now in ${s(report.model.exportSeconds, 0)})` : ''}`);
  console.log(
    'peak (best large matrix product): ' +
      Object.entries(report.peak)
        .map(([k, v]) => `${k} ${gflops(v.flopsPerSecond)}`)
        .join(', ') +
      `; float32 roofline ${gflops(peak)}`,
  );
  const load = printLoad(report);
  const float32 = printFloat32(report, peak);
  if (report.baseline)
    console.log(
      `\n${report.baseline.name} baseline: load ${s(report.baseline.loadSeconds)}, ${JSON.stringify(report.baseline.config?.diffusers ?? report.baseline.config?.torch)}, ` +
        `THP_MEM_ALLOC_ENABLE ${report.baseline.thpMemAllocEnable} (node: ${process.env.THP_MEM_ALLOC_ENABLE})`,
    );
  if (report.baselineError) console.log(`baseline failed: ${report.baselineError}`);
  const lastPy = report.float32?.at(-1)?.python.at(-1);
  console.log(`peak RSS: node ${fmtGB(report.nodeMaxRssBytes)} (float32 model, all sizes), baseline ${fmtGB(lastPy?.maxRssBytes)}`);
  const bfloat16 = printBfloat16(report);
  return {
    machine: m,
    loadAverageAfter: report.loadAverageAfter,
    peak: report.peak,
    fp32Peak: peak,
    runtime: report.runtime,
    load,
    loadInProcess: report.loadInProcess,
    float32,
    bfloat16,
    baseline: report.baseline,
    nodeMaxRssBytes: report.nodeMaxRssBytes,
  };
}
