// The load part of bench/full.mjs: FastComposer.load() of the full-size model in a fresh Node
// process (what every CLI run and restarted worker pays), with the files already in the page cache.
//   node bench/full-load.mjs MODEL_DIR THREADS   (the child: prints one JSON line and exits)
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(import.meta.url);

/** Reads every file of the model directory once, so that the timed load finds them in the page cache. */
export function warmPageCache(dir) {
  const t0 = performance.now();
  const chunk = Buffer.allocUnsafe(8 << 20);
  let bytes = 0;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (!statSync(path).isFile()) continue;
    const fd = openSync(path, 'r');
    try {
      for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0;) bytes += n;
    } finally {
      closeSync(fd);
    }
  }
  return { bytes, seconds: (performance.now() - t0) / 1e3 };
}

/** Spawns this file as a child that loads the model (`env` added to this process's); returns what it measured. */
export function loadInFreshProcess(root, opts, env = {}) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [here, opts.model, String(opts.threads)], {
    encoding: 'utf8',
    cwd: root,
    env: { ...process.env, ...env },
  });
  const processSeconds = (performance.now() - t0) / 1e3;
  if (r.status !== 0) throw new Error(`loading ${opts.model} in a fresh process failed:\n${r.stderr}`);
  return { ...JSON.parse(r.stdout.trim().split('\n').at(-1)), processSeconds };
}

async function child(model, threads) {
  const root = resolve(dirname(here), '..');
  const usage0 = process.resourceUsage();
  const t0 = performance.now();
  const { FastComposer } = await import(join(root, 'dist', 'esm', 'index.js'));
  const fc = await FastComposer.load(model, { device: 'cpu', dtype: 'float32', ...(threads > 0 ? { threads } : {}) });
  const seconds = (performance.now() - t0) / 1e3;
  const usage = process.resourceUsage();
  process.stdout.write(
    JSON.stringify({
      seconds,
      timings: fc.loadTimings,
      userSeconds: (usage.userCPUTime - usage0.userCPUTime) / 1e6,
      systemSeconds: (usage.systemCPUTime - usage0.systemCPUTime) / 1e6,
      minorPageFaults: usage.minorPageFault - usage0.minorPageFault,
      prepacked: fc.native.info().prepacked,
      maxRssBytes: usage.maxRSS * 1024,
    }) + '\n',
  );
  await fc.dispose();
}

if (process.argv[1] && resolve(process.argv[1]) === here) await child(process.argv[2], Number(process.argv[3] ?? 0));
