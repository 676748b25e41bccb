// `npx fastcomposer pull` end to end, as a user runs it: from a fake hub on 127.0.0.1 (HF_ENDPOINT)
// serving the tiny-a release in the released layout, with the checkpoint's connection dropped
// halfway; then `generate --model fastcomposer`, `list`, `info`, a second pull that has nothing
// to do, and a refusal. The pulled model must compute what the golden export computes.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

import { FastComposer } from '../../lib/index.js';
import { float32View } from '../../lib/tensor.js';
import { startFakeHub } from './fake-hub.mjs';

const root = join(import.meta.dirname, '..', '..');
const cli = join(root, 'dist', 'esm', 'cli', 'main.js');
const release = join(root, 'test', 'fixtures', 'tiny-a', 'release');
const CKPT = 'mit-han-lab/fastcomposer';

type Fake = Awaited<ReturnType<typeof startFakeHub>>;
let fake: Fake;
let tmp: string;
let env: NodeJS.ProcessEnv;

function run(
  args: string[],
  onSpawn?: (child: ReturnType<typeof spawn>) => void,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { env, cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
    onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

beforeAll(async () => {
  fake = await startFakeHub({
    repos: {
      'stable-diffusion-v1-5/stable-diffusion-v1-5': join(release, 'sd'),
      'openai/clip-vit-large-patch14': join(release, 'clip'),
      [CKPT]: join(release, 'fastcomposer'),
    },
    faults: { [`${CKPT}/pytorch_model.bin`]: { dropAfter: 6_000_000 } },
  });
  tmp = mkdtempSync(join(tmpdir(), 'fastcomposer-pull-'));
  const { HF_TOKEN: _t, HF_HUB_OFFLINE: _o, HF_HUB_CACHE: _c, HUGGINGFACE_HUB_CACHE: _h, ...rest } = process.env;
  env = { ...rest, HF_ENDPOINT: fake.endpoint, HF_HOME: join(tmp, 'hf'), FASTCOMPOSER_CACHE: join(tmp, 'fc') };
});
afterAll(async () => {
  await fake?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('fastcomposer pull, then generate --model fastcomposer', () => {
  const modelDir = (): string => join(tmp, 'fc', 'models', 'fastcomposer');

  it('pulls (resuming the dropped download) and exports into the models cache', async () => {
    const r = await run(['pull', '--no-progress']);
    expect(r.stderr).not.toContain('[ERR_');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(modelDir());
    expect(r.stderr).toMatch(/mit-han-lab\/fastcomposer pytorch_model.bin: 14\.8 MB in/);
    expect(r.stderr).toContain('generate --model fastcomposer');
    const ranges = fake.requests.filter((q) => q.server === 'cdn').map((q) => q.range);
    expect(ranges).toHaveLength(2); // the second resumes (bytes in flight at the drop may be lost)
    expect(ranges[0]).toBeUndefined();
    expect(ranges[1]).toMatch(/^bytes=[1-9]\d*-$/);
    expect(Number(/\d+/.exec(ranges[1])![0])).toBeLessThanOrEqual(6_000_000);
    const manifest = JSON.parse(readFileSync(join(modelDir(), 'model.json'), 'utf8'));
    expect(manifest.name).toBe('fastcomposer');
    expect(manifest.source.checkpoint).toBe(`hf://${CKPT}@${fake.commit(CKPT)}/pytorch_model.bin`);
    expect(manifest.source.endpoint).toBe(fake.endpoint);
  }, 600_000);

  it('computes what the golden export of the same release computes', async () => {
    const opts = {
      prompt: 'a man <|image|> and a woman <|image|> in a park',
      subjects: [join(release, 'subjects', 's0_224x224.png'), join(release, 'subjects', 's1_224x224.png')],
      steps: 3,
      width: 64,
      height: 64,
      seed: 11,
    };
    const pulled = await FastComposer.load(modelDir(), { device: 'cpu' });
    const golden = await FastComposer.load(inject('goldenModelDir'), { device: 'cpu' });
    try {
      const [a, b] = [await pulled.generate(opts), await golden.generate(opts)];
      expect(float32View(a.latents)).toEqual(float32View(b.latents));
    } finally {
      await Promise.all([pulled.dispose(), golden.dispose()]);
    }
  });

  it("generate --model fastcomposer (MMagic's prompt dialect too) writes a PNG", async () => {
    const out = join(tmp, 'out.png');
    const r = await run([
      'generate',
      '--model',
      'fastcomposer',
      '--prompt',
      'a man img and a woman img in a park',
      '--image-token',
      'img',
      '--subject',
      join(root, 'examples', 'subject-a.png'),
      '--subject',
      join(root, 'examples', 'subject-b.png'),
      '--steps',
      '2',
      '--width',
      '64',
      '--height',
      '64',
      '--device',
      'cpu',
      '--out',
      out,
      '--no-progress',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(out).readUInt32BE(0)).toBe(0x89504e47);
  }, 300_000);

  it('list and info show it', async () => {
    const list = await run(['list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^fastcomposer +\d+(\.\d)? MB +float32 +/);
    expect(list.stdout).toContain(`${CKPT}@${fake.commit(CKPT).slice(0, 12)} pytorch_model.bin`);
    const info = await run(['info', '--model', 'fastcomposer', '--json']);
    expect(JSON.parse(info.stdout).model.dir).toBe(modelDir());
  }, 120_000);

  it('a second pull finds everything in place and exports nothing', async () => {
    fake.requests.length = 0;
    const r = await run(['pull', '--no-progress']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('nothing to download; already exported');
    expect(fake.requests.filter((q) => q.server === 'cdn' || q.path.includes('/resolve/'))).toEqual([]);
  }, 120_000);

  it('an unknown repo is one line with its code, and an unknown model name says how to pull it', async () => {
    const r = await run(['pull', '--checkpoint', 'nobody/nothing', '--name', 'other', '--no-progress']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^fastcomposer: Repository nobody\/nothing was not found.*\[ERR_HUB_NOT_FOUND\]$/);
    expect(existsSync(join(tmp, 'fc', 'models', 'other'))).toBe(false);
    const g = await run(['generate', '--model', 'other', '--prompt', 'a cat']);
    expect(g.code).toBe(1);
    expect(g.stderr).toContain('npx fastcomposer pull --name other');
  }, 120_000);
});

describe('Ctrl-C during a pull', () => {
  it('stops with ERR_ABORTED, keeps the partial file, and the next pull resumes it', async () => {
    const blobs = join(tmp, 'ctrl-c', 'hub', 'models--mit-han-lab--fastcomposer', 'blobs');
    const saved = env;
    env = { ...env, HF_HOME: join(tmp, 'ctrl-c') };
    // Each drop costs a retry pause: time enough to interrupt the download halfway.
    fake.faults[`${CKPT}/pytorch_model.bin`] = { dropAfter: 1_000_000, dropTimes: 100 };
    fake.served.clear();
    try {
      const r = await run(['pull', '--download-only', '--no-progress'], (child) => {
        const timer = setInterval(() => {
          const partial = existsSync(blobs) && readdirSync(blobs).find((f) => f.endsWith('.incomplete'));
          if (partial && statSync(join(blobs, partial)).size >= 1_000_000) {
            clearInterval(timer);
            child.kill('SIGINT');
          }
        }, 20);
        child.on('close', () => clearInterval(timer));
      });
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n').at(-1)).toBe('fastcomposer: interrupted; run the same command again to resume [ERR_ABORTED]');
      const partial = readdirSync(blobs).find((f) => f.endsWith('.incomplete'))!;
      const kept = statSync(join(blobs, partial)).size;
      expect(kept).toBeGreaterThanOrEqual(1_000_000);
      delete fake.faults[`${CKPT}/pytorch_model.bin`];
      fake.requests.length = 0;
      const again = await run(['pull', '--download-only', '--no-progress']);
      expect(again.code, again.stderr).toBe(0);
      expect(fake.requests.filter((q) => q.server === 'cdn').map((q) => q.range)).toEqual([`bytes=${kept}-`]);
    } finally {
      env = saved;
    }
  }, 120_000);
});
