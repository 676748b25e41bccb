// What the CPU benchmarks share (bench/cpu.mjs, bench/full.mjs): the test job (prompts, subject
// pictures, the job file the Python baselines read), statistics, formatting, machine facts.
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

export const PROMPTS = [
  'a photo of a man <|image|>',
  'a man <|image|> and a woman <|image|> at the beach',
  'a man <|image|>, a woman <|image|> and a child <|image|> in a park',
];

/** The prompt for `subjects` subjects (one `<|image|>` each). */
export function promptFor(subjects) {
  if (subjects === 0) return 'a photo of a man at the beach';
  return PROMPTS[Math.min(subjects, 3) - 1] + ' <|image|>'.repeat(Math.max(0, subjects - 3));
}

/** A deterministic, non-square RGB test picture (gradients and a disc), so preprocessing pads and resizes. */
export function subjectImage(k) {
  const width = 320 + 40 * k,
    height = 256;
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const inside = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 3) ** 2;
      data[i] = (x * 255) / width;
      data[i + 1] = inside ? 200 - 50 * k : (y * 255) / height;
      data[i + 2] = (37 * k + x + y) & 255;
    }
  }
  return { data, width, height, channels: 3 };
}

/**
 * The inputs both sides compute on: Node tokenizes and pads/resizes the subjects (the native
 * function generate() uses), and writes them as the job file of bench/baseline_common.py.
 */
export async function writeJob(root, fc, prompt, subjects, dir) {
  const { decodeSubjects, rgbTensor } = await import(join(root, 'dist', 'esm', 'subjects.js'));
  const { loadNative } = await import(join(root, 'dist', 'esm', 'native.js'));
  const tokens = fc.tokenizer.tokenize(prompt);
  const negativeIds = fc.tokenizer.encodePlain('').ids;
  const pixelsFile = join(dir, 'pixels.u8');
  const jobFile = join(dir, 'job.json');
  if (subjects.length > 0) {
    const decoded = (await decodeSubjects(subjects)).map(rgbTensor);
    writeFileSync(pixelsFile, loadNative().binding.testing.prepareSubjectPixels(decoded, fc.model.manifest.imageSize).data);
  }
  // prompt / negativePrompt: the diffusers baseline tokenizes them in its timed run, as the release
  // does, and checks its ids against these (it computes on these either way).
  writeFileSync(
    jobFile,
    JSON.stringify({
      inputIds: tokens.inputIds,
      textOnlyIds: tokens.textOnlyIds,
      negativeIds,
      subjectPositions: tokens.subjectPositions,
      pixels: pixelsFile,
      prompt,
      negativePrompt: '',
    }),
  );
  return jobFile;
}

export const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
export const fmtS = (s) => (s === undefined || Number.isNaN(s) ? 'n/a' : `${s.toFixed(3)} s`);
export const fmtMs = (s) => (s === undefined || Number.isNaN(s) ? 'n/a' : `${(s * 1e3).toFixed(1)} ms`);
export const fmtGB = (bytes) => (bytes === undefined ? 'n/a' : `${(bytes / 1e9).toFixed(2)} GB`);

/** max |a - b| / max |b|. */
export function relativeError(a, b) {
  let diff = 0,
    scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

export const float32View = (buf) => new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);

/** Prints rows of columns, the first columns padded to their widest cell. */
export function printTable(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c] ?? '').length)));
  for (const r of rows) console.log(r.map((cell, c) => (c < r.length - 1 ? String(cell ?? '').padEnd(widths[c]) : cell)).join('  '));
}

/** The CPU's name, core count, the flags that decide the fast paths, memory, load average. */
export function machineInfo() {
  let flags = [];
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    flags = line ? line.split(':')[1].trim().split(/\s+/) : [];
  } catch {
    // not Linux: no flags to report
  }
  const wanted = ['avx2', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'amx_bf16', 'amx_tile'];
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGB: os.totalmem() / 1e9,
    flags: wanted.filter((f) => flags.includes(f)),
    loadAverage: os.loadavg(),
  };
}

export const loadAverageText = (l) => l.map((x) => x.toFixed(1)).join(' ');
