#!/usr/bin/env node
// `npm run soak`: many generate() calls on one loaded model; the process RSS after warm-up and at
// the end must not grow by 5% or more (a leak of tensors, Buffers, callbacks or workers).
//
//   node bench/soak.mjs [--model DIR] [--iterations 100] [--warmup 30] [--size 64] [--steps 2] [--limit 0.05]
//
// The calls cycle through the paths that allocate on the native side: subjects (image encoder +
// postfuse), no subjects, attention maps, PNG output, a step callback, an aborted call.
// Prints PASS/FAIL; exits 1 on FAIL.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const o = { model: join(root, 'models', 'tiny'), iterations: 100, warmup: 30, size: 64, steps: 2, limit: 0.05 };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m || !(m[1] in o)) throw new Error(`unknown argument ${argv[i]}`);
    const v = m[2] ?? argv[++i];
    o[m[1]] = m[1] === 'model' ? resolve(v) : Number(v);
    if (m[1] !== 'model' && !Number.isFinite(o[m[1]])) throw new Error(`--${m[1]} needs a number`);
  }
  return o;
}

// A real collection before each measurement, without needing `node --expose-gc`.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

async function settle() {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

function picture(seed, width = 96, height = 80) {
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + seed * 17) & 255;
  return { data, width, height, channels: 3 };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!existsSync(join(o.model, 'model.json'))) {
    throw new Error(`no model at ${o.model} (run npm install to make models/tiny, or pass --model DIR)`);
  }
  const { FastComposer, AbortError } = await import(join(root, 'dist', 'esm', 'index.js'));
  const fc = await FastComposer.load(o.model, { device: 'cpu' });
  const subjects = [picture(1), picture(2)];
  const base = { steps: o.steps, width: o.size, height: o.size, guidanceScale: 5 };

  let aborted = 0;
  async function one(i) {
    switch (i % 6) {
      case 0:
        return fc.generate({ ...base, prompt: 'a man <|image|> and a woman <|image|>', subjects, seed: i });
      case 1:
        return fc.generate({ ...base, prompt: 'a cat on a sofa', seed: i });
      case 2:
        return fc.generate({ ...base, prompt: 'a man <|image|> and a woman <|image|>', subjects, attentionMaps: true, seed: i });
      case 3:
        return fc.generate({ ...base, prompt: 'a man <|image|>', subjects: [subjects[0]], output: 'png', seed: i });
      case 4:
        return fc.generate({ ...base, prompt: 'a dog <|image|>', subjects: [subjects[1]], onStep: () => {}, seed: i });
      default: {
        const ac = new AbortController();
        try {
          await fc.generate({ ...base, prompt: 'a dog', seed: i, onStep: () => ac.abort(), signal: ac.signal });
        } catch (error) {
          if (!(error instanceof AbortError)) throw error;
          aborted++;
        }
        return undefined;
      }
    }
  }

  const t0 = performance.now();
  for (let i = 0; i < o.warmup; i++) await one(i);
  const before = await settle();
  for (let i = 0; i < o.iterations; i++) {
    await one(i);
    if ((i + 1) % 25 === 0) {
      const m = process.memoryUsage();
      console.error(`  ${i + 1}/${o.iterations}: rss ${mib(m.rss)}`);
    }
  }
  const after = await settle();
  await fc.dispose();
  const seconds = (performance.now() - t0) / 1e3;

  const growth = (after.rss - before.rss) / before.rss;
  console.log(
    `soak: ${o.iterations} generate() calls after ${o.warmup} warm-up, ${o.size}x${o.size}, ${o.steps} steps, ` +
      `${seconds.toFixed(1)} s (${aborted} aborted on purpose)`,
  );
  console.log(`  rss          ${mib(before.rss)} -> ${mib(after.rss)}  (${(growth * 100).toFixed(2)}%)`);
  console.log(`  heapUsed     ${mib(before.heapUsed)} -> ${mib(after.heapUsed)}`);
  console.log(`  external     ${mib(before.external)} -> ${mib(after.external)}`);
  console.log(`  arrayBuffers ${mib(before.arrayBuffers)} -> ${mib(after.arrayBuffers)}`);
  const ok = growth < o.limit;
  console.log(`${ok ? 'PASS' : 'FAIL'}: RSS growth ${(growth * 100).toFixed(2)}% (limit ${(o.limit * 100).toFixed(0)}%)`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((error) => {
  console.error(`soak failed: ${error?.stack ?? error}`);
  process.exit(1);
});
