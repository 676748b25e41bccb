#!/usr/bin/env node
// The time cost of localized cross-attention: generate() with attentionMaps and with subject
// regions against the same generate() without them, same model / prompt / subjects / seed.
// Runs alternate (plain, maps, regions, plain, ...) so machine noise hits all three equally.
//
//   node bench/attention.mjs [--model DIR] [--device cpu|cuda|auto] [--steps 20] [--width 256]
//                            [--height 256] [--runs 5] [--warmup 1] [--alpha 0.7] [--json FILE]
//
// Target: generate() time with maps (and with maps + regions) <= 1.10 x plain. The ratio is
// taken on the fastest run of each (the least disturbed on a shared machine), the medians are
// printed beside it. Exit code 0 unless something failed to run.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const o = {
    model: join(root, 'models', 'tiny'),
    device: 'cpu',
    steps: 20,
    width: 256,
    height: 256,
    runs: 5,
    warmup: 1,
    alpha: 0.7,
    json: undefined,
  };
  const numeric = new Set(['steps', 'width', 'height', 'runs', 'warmup', 'alpha']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log(
        readFileSync(fileURLToPath(import.meta.url), 'utf8')
          .split('\n')
          .slice(1, 10)
          .map((l) => l.replace(/^\/\/ ?/, ''))
          .join('\n'),
      );
      process.exit(0);
    }
    const m = /^--([a-z]+)(?:=(.*))?$/.exec(a);
    if (!m || !(m[1] in o)) throw new Error(`unknown argument ${a} (see --help)`);
    const v = m[2] ?? argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    o[m[1]] = numeric.has(m[1]) ? Number(v) : v;
    if (numeric.has(m[1]) && !Number.isFinite(o[m[1]])) throw new Error(`${a} needs a number`);
  }
  o.model = resolve(o.model);
  return o;
}

/** A deterministic RGB test picture per subject. */
function subjectImage(k) {
  const width = 224,
    height = 224;
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const inside = (x - 112) ** 2 + (y - 112) ** 2 < 70 ** 2;
      data[i] = (x * 255) / width;
      data[i + 1] = inside ? 200 - 80 * k : (y * 255) / height;
      data[i + 2] = (37 * k + x + y) & 255;
    }
  return { data, width, height, channels: 3 };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Share of a subject's map mass whose latent cell centre lies in the box. */
function massInside(maps, subject, box) {
  const [, , h, w] = maps.shape;
  const d = new Float32Array(maps.data.buffer, maps.data.byteOffset, maps.data.byteLength / 4);
  let inside = 0,
    total = 0;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const v = d[subject * h * w + y * w + x];
      total += v;
      const cx = (x + 0.5) * 8,
        cy = (y + 0.5) * 8;
      if (cx >= box.x && cx < box.x + box.width && cy >= box.y && cy < box.y + box.height) inside += v;
    }
  return inside / total;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!existsSync(join(opts.model, 'model.json')))
    throw new Error(`no model at ${opts.model} (run npm install to make models/tiny, or pass --model DIR)`);
  const distEntry = join(root, 'dist', 'esm', 'index.js');
  if (!existsSync(distEntry)) throw new Error('dist/ is missing: run node scripts/build-ts.mjs');
  const { FastComposer } = await import(distEntry);

  const fc = await FastComposer.load(opts.model, { device: opts.device });
  const { width: W, height: H } = opts;
  const left = { x: 0, y: 0, width: W / 2, height: H };
  const right = { x: W / 2, y: 0, width: W / 2, height: H };
  const images = [subjectImage(0), subjectImage(1)];
  const base = {
    prompt: 'a man <|image|> and a woman <|image|> at the beach',
    negativePrompt: 'blurry',
    steps: opts.steps,
    width: W,
    height: H,
    seed: 0,
    alpha: opts.alpha,
  };
  const configs = {
    plain: { ...base, subjects: images },
    maps: { ...base, subjects: images, attentionMaps: true },
    regions: {
      ...base,
      subjects: [
        { image: images[0], region: left },
        { image: images[1], region: right },
      ],
      attentionMaps: true,
      regionStrength: 1,
    },
  };
  const names = Object.keys(configs);
  const times = Object.fromEntries(names.map((n) => [n, []]));
  const denoise = Object.fromEntries(names.map((n) => [n, []]));
  const last = {};
  console.log(
    `model ${opts.model} on ${fc.device}, ${W}x${H}, ${opts.steps} steps (alpha ${opts.alpha}), ${opts.warmup} warm-up + ${opts.runs} runs each, alternating`,
  );
  for (let r = 0; r < opts.warmup + opts.runs; r++) {
    for (const name of names) {
      const t0 = performance.now();
      const out = await fc.generate(configs[name]);
      const ms = performance.now() - t0;
      if (r >= opts.warmup) {
        times[name].push(ms);
        denoise[name].push(out.timings.denoiseMs);
      }
      last[name] = out;
    }
  }
  await fc.dispose();

  const med = Object.fromEntries(names.map((n) => [n, median(times[n])]));
  const best = Object.fromEntries(names.map((n) => [n, Math.min(...times[n])]));
  const bestDenoise = Object.fromEntries(names.map((n) => [n, Math.min(...denoise[n])]));
  const ratio = { maps: best.maps / best.plain, regions: best.regions / best.plain };
  const medianRatio = { maps: med.maps / med.plain, regions: med.regions / med.plain };
  const mass = {
    withoutRegions: [massInside(last.maps.attentionMaps, 0, left), massInside(last.maps.attentionMaps, 1, right)],
    withRegions: [massInside(last.regions.attentionMaps, 0, left), massInside(last.regions.attentionMaps, 1, right)],
  };
  for (const n of names) {
    console.log(
      `${n.padEnd(8)} generate ${best[n].toFixed(1)} ms (fastest), ${med[n].toFixed(1)} ms (median); denoise ${bestDenoise[n].toFixed(1)} ms (fastest)`,
    );
  }
  for (const n of ['maps', 'regions']) {
    console.log(
      `${n.padEnd(8)} / plain = ${ratio[n].toFixed(3)} fastest (median ${medianRatio[n].toFixed(3)}, denoise ${(bestDenoise[n] / bestDenoise.plain).toFixed(3)})  ` +
        `${ratio[n] <= 1.1 ? 'PASS' : 'FAIL'} (target <= 1.10)`,
    );
  }
  console.log(
    `attention mass inside each subject's half: without regions ${mass.withoutRegions.map((v) => v.toFixed(3)).join(', ')}; with regions (strength 1) ${mass.withRegions.map((v) => v.toFixed(3)).join(', ')}`,
  );
  if (opts.json)
    writeFileSync(
      opts.json,
      JSON.stringify({ opts, device: fc.device, times, denoise, median: med, fastest: best, ratio, medianRatio, mass }, null, 2),
    );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
