// Downloads from a fake hub on 127.0.0.1 (fake-hub.mjs) serving the tiny-a release in the
// released layout: resume after a dropped connection and after an interrupted process, a server
// that ignores Range, sizes and hashes that disagree, refusals (404, 401, gated), no network,
// a full disk, and a cache that Python's huggingface_hub filled.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { pull } from '../../lib/hub/index.js';
import { startFakeHub } from './fake-hub.mjs';

const release = join(import.meta.dirname, '..', 'fixtures', 'tiny-a', 'release');
const BASE = 'stable-diffusion-v1-5/stable-diffusion-v1-5';
const CLIP = 'openai/clip-vit-large-patch14';
const CKPT = 'mit-han-lab/fastcomposer';
const CKPT_KEY = `${CKPT}/pytorch_model.bin`;
const TOKEN = 'hf_fake_token_for_tests';
const checkpointBytes = readFileSync(join(release, 'fastcomposer', 'pytorch_model.bin'));
const checkpointSha = createHash('sha256').update(checkpointBytes).digest('hex');

type Fake = Awaited<ReturnType<typeof startFakeHub>>;
let fake: Fake;
let tmp: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  fake = await startFakeHub({
    repos: {
      [BASE]: join(release, 'sd'),
      [CLIP]: join(release, 'clip'),
      [CKPT]: join(release, 'fastcomposer'),
      'someone/gated-fastcomposer': { dir: join(release, 'fastcomposer'), gated: true },
      'someone/sd-without-tokenizer': join(release, 'sd', 'unet'),
    },
    token: TOKEN,
    mirror: { 'pytorch_model.bin': join(release, 'fastcomposer', 'pytorch_model.bin') },
  });
});
afterAll(() => fake?.close());

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fastcomposer-hub-'));
  env = { HF_ENDPOINT: fake.endpoint, HF_HOME: join(tmp, 'hf'), FASTCOMPOSER_CACHE: join(tmp, 'fc'), HF_TOKEN: '' };
  fake.requests.length = 0;
  fake.served.clear();
  for (const key of Object.keys(fake.faults)) delete fake.faults[key];
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

const hubCache = (): string => join(tmp, 'hf', 'hub');
const blobDir = (repo: string): string => join(hubCache(), `models--${repo.replace('/', '--')}`, 'blobs');
const downloadsOf = (key: string): number => fake.served.get(key) ?? 0;
const contentRequests = (): typeof fake.requests =>
  fake.requests.filter((r) => r.server === 'cdn' || (r.server === 'hub' && r.path.includes('/resolve/')));

async function pullCode(options: Parameters<typeof pull>[0]): Promise<{ code?: string; message: string; repo?: string; file?: string }> {
  try {
    await pull(options);
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error('expected pull() to fail');
}

describe('downloads into the hub cache', () => {
  it('fetches only the files the exporter reads, in the layout Python uses, and checks them', async () => {
    const events: string[] = [];
    const r = await pull({ env, downloadOnly: true, onProgress: (e) => e.type === 'file-done' && events.push(`${e.repo} ${e.file}`) });
    expect(events).toEqual([
      `${BASE} text_encoder/config.json`,
      `${BASE} unet/config.json`,
      `${BASE} vae/config.json`,
      `${BASE} scheduler/scheduler_config.json`,
      `${BASE} tokenizer/vocab.json`,
      `${BASE} tokenizer/merges.txt`,
      `${CLIP} config.json`,
      `${CKPT} pytorch_model.bin`,
    ]);
    expect(r.dir).toBeUndefined();
    expect(r.checkpoint).toBe(join(hubCache(), 'models--mit-han-lab--fastcomposer', 'snapshots', fake.commit(CKPT), 'pytorch_model.bin'));
    expect(readlinkSync(r.checkpoint)).toBe(`../../blobs/${checkpointSha}`);
    expect(readFileSync(r.checkpoint).equals(checkpointBytes)).toBe(true);
    expect(readFileSync(join(hubCache(), 'models--mit-han-lab--fastcomposer', 'refs', 'main'), 'utf8')).toBe(fake.commit(CKPT));
    // small files are named by their git blob sha1, as the hub's ETag and Python name them
    expect(readdirSync(blobDir(BASE)).sort()).toEqual(
      [
        'text_encoder/config.json',
        'unet/config.json',
        'vae/config.json',
        'scheduler/scheduler_config.json',
        'tokenizer/vocab.json',
        'tokenizer/merges.txt',
      ]
        .map((p) => fake.file(BASE, p).gitOid)
        .sort(),
    );
    expect(existsSync(join(r.base, 'model_index.json'))).toBe(false); // not read by the exporter, not downloaded
    expect(r.source.checkpoint).toBe(`hf://${CKPT}@${fake.commit(CKPT)}/pytorch_model.bin`);
    // the token never travels to the CDN (another host)
    expect(fake.requests.filter((q) => q.server === 'cdn').length).toBe(1);
  });

  it('resumes after the connection drops in the middle of a file', async () => {
    fake.faults[CKPT_KEY] = { dropAfter: 5_000_000 };
    const r = await pull({ env, downloadOnly: true });
    expect(readFileSync(r.checkpoint).equals(checkpointBytes)).toBe(true);
    // The second request asks for the rest from where the first stopped (the bytes in flight
    // when the socket closed may be lost, so at most where the server stopped).
    const ranges = fake.requests.filter((q) => q.server === 'cdn').map((q) => q.range);
    expect(ranges).toHaveLength(2);
    expect(ranges[0]).toBeUndefined();
    expect(resumedAt(ranges[1])).toBeGreaterThan(0);
    expect(resumedAt(ranges[1])).toBeLessThanOrEqual(5_000_000);
    expect(r.downloaded).toBe(checkpointBytes.length + smallFiles()); // every byte once
  });

  it('resumes a partial file left by an interrupted run (.incomplete, as Python names it)', async () => {
    mkdirSync(blobDir(CKPT), { recursive: true });
    writeFileSync(join(blobDir(CKPT), `${checkpointSha}.incomplete`), checkpointBytes.subarray(0, 1_000_000));
    const r = await pull({ env, downloadOnly: true });
    expect(readFileSync(r.checkpoint).equals(checkpointBytes)).toBe(true);
    expect(fake.requests.filter((q) => q.server === 'cdn').map((q) => q.range)).toEqual(['bytes=1000000-']);
    expect(existsSync(join(blobDir(CKPT), `${checkpointSha}.incomplete`))).toBe(false);
  });

  it('starts again when the server ignores Range', async () => {
    mkdirSync(blobDir(CKPT), { recursive: true });
    writeFileSync(join(blobDir(CKPT), `${checkpointSha}.incomplete`), checkpointBytes.subarray(0, 1_000_000));
    fake.faults[CKPT_KEY] = { ignoreRange: true };
    const r = await pull({ env, downloadOnly: true });
    expect(readFileSync(r.checkpoint).equals(checkpointBytes)).toBe(true);
  });

  it('gives up with ERR_NETWORK when the connection keeps dropping without progress', async () => {
    fake.faults[CKPT_KEY] = { dropAfter: 0, dropTimes: 100 };
    const e = await pullCode({ env, downloadOnly: true });
    expect(e.code).toBe('ERR_NETWORK');
    expect(e.message).toContain(`${CKPT}, file pytorch_model.bin`);
  }, 60_000);

  it('refuses a file whose size disagrees with the announced one, and keeps no part of it', async () => {
    fake.faults[CKPT_KEY] = { extraBytes: 10 };
    const e = await pullCode({ env, downloadOnly: true });
    expect(e.code).toBe('ERR_DOWNLOAD_INTEGRITY');
    expect(e.message).toContain(`${CKPT}, file pytorch_model.bin`);
    expect(e.message).toContain(String(checkpointBytes.length));
    expect(readdirSync(blobDir(CKPT))).toEqual([]);
  });

  it("refuses content whose sha256 differs from the hub's, and keeps no part of it", async () => {
    fake.faults[CKPT_KEY] = { corrupt: true };
    const e = await pullCode({ env, downloadOnly: true });
    expect(e.code).toBe('ERR_DOWNLOAD_INTEGRITY');
    expect(e.message).toContain('sha256');
    expect(readdirSync(blobDir(CKPT))).toEqual([]);
  });

  it("checks small files against their git hash (the hub's ETag)", async () => {
    fake.faults[`${CLIP}/config.json`] = { corrupt: true };
    const e = await pullCode({ env, downloadOnly: true });
    expect(e.code).toBe('ERR_DOWNLOAD_INTEGRITY');
    expect(e.message).toContain(`${CLIP}, file config.json`);
    expect(e.message).toContain('git hash');
  });

  it('says ERR_DISK_FULL when a write finds no space, and keeps the partial file for a resume', async () => {
    mkdirSync(blobDir(CKPT), { recursive: true });
    // Writes to /dev/full fail with ENOSPC, as on a full disk.
    symlinkSync('/dev/full', join(blobDir(CKPT), `${checkpointSha}.incomplete`));
    const e = await pullCode({ env, downloadOnly: true });
    expect(e.code).toBe('ERR_DISK_FULL');
    expect(e.message).toContain(`${CKPT}, file pytorch_model.bin`);
    expect(e.message).toContain('No space left');
    expect(existsSync(join(blobDir(CKPT), `${checkpointSha}.incomplete`))).toBe(true);
  });

  it('two pulls at once download a file once (the second waits for the first)', async () => {
    const [a, b] = await Promise.all([pull({ env, downloadOnly: true }), pull({ env, downloadOnly: true })]);
    expect(a.checkpoint).toBe(b.checkpoint);
    expect(downloadsOf(CKPT_KEY)).toBe(1);
    expect(readFileSync(a.checkpoint).equals(checkpointBytes)).toBe(true);
  });

  it('stops on abort, keeping what it has for the next run', async () => {
    fake.faults[CKPT_KEY] = { dropAfter: 2_000_000, dropTimes: 100 };
    const controller = new AbortController();
    let had = 0;
    const p = pull({
      env,
      downloadOnly: true,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.type !== 'progress' || e.file !== 'pytorch_model.bin' || e.bytes < 2_000_000 || controller.signal.aborted) return;
        had = e.bytes;
        controller.abort();
      },
    });
    await expect(p).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    // Exactly the bytes it had when aborted (more than the first 2 MB when a dropped connection
    // lost data still in flight and the resume crossed the mark), and they are the file's own.
    const kept = readFileSync(join(blobDir(CKPT), `${checkpointSha}.incomplete`));
    expect(had).toBeGreaterThanOrEqual(2_000_000);
    expect(kept.length).toBe(had);
    expect(kept.equals(checkpointBytes.subarray(0, had))).toBe(true);
    // The next run starts from them.
    delete fake.faults[CKPT_KEY];
    let resumedFrom: number | undefined;
    await pull({
      env,
      downloadOnly: true,
      onProgress: (e) => {
        if (e.type === 'progress' && e.file === 'pytorch_model.bin') resumedFrom ??= e.resumedFrom;
      },
    });
    expect(resumedFrom).toBe(had);
  });
});

describe('refusals name the repo and the file', () => {
  it('404: an unknown repo', async () => {
    const e = await pullCode({ env, checkpoint: 'nobody/nothing', downloadOnly: true });
    expect(e.code).toBe('ERR_HUB_NOT_FOUND');
    expect(e.message).toContain('nobody/nothing');
    expect(e.message).toContain('HF_TOKEN'); // the hub answers the same for a private repo
  });

  it('404: a file the repo lacks, before anything is downloaded', async () => {
    const e = await pullCode({ env, base: 'someone/sd-without-tokenizer', downloadOnly: true });
    expect(e.code).toBe('ERR_HUB_NOT_FOUND');
    expect(e).toMatchObject({ repo: 'someone/sd-without-tokenizer', file: 'text_encoder/config.json' });
    expect(contentRequests()).toEqual([]);
  });

  it('404: an unknown revision', async () => {
    const e = await pullCode({ env, checkpoint: `${CKPT}@v9`, downloadOnly: true });
    expect(e.code).toBe('ERR_HUB_NOT_FOUND');
    expect(e.message).toContain('no revision v9');
  });

  it('401: a gated repo without a token, then with a wrong one; with the right one it downloads', async () => {
    let e = await pullCode({ env, checkpoint: 'someone/gated-fastcomposer', downloadOnly: true });
    expect(e.code).toBe('ERR_HUB_AUTH');
    expect(e.message).toContain('someone/gated-fastcomposer is gated');
    e = await pullCode({ env: { ...env, HF_TOKEN: 'hf_wrong' }, checkpoint: 'someone/gated-fastcomposer', downloadOnly: true });
    expect(e.code).toBe('ERR_HUB_AUTH');
    expect(e.message).toContain('refused the token');
    expect(contentRequests()).toEqual([]);
    const r = await pull({ env: { ...env, HF_TOKEN: TOKEN }, checkpoint: 'someone/gated-fastcomposer', downloadOnly: true });
    expect(readFileSync(r.checkpoint).equals(checkpointBytes)).toBe(true);
    expect(fake.requests.some((q) => q.server === 'hub' && q.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(fake.requests.filter((q) => q.server === 'cdn').every((q) => q.authorization === undefined)).toBe(true);
  });

  it('reads the token the login saved (HF_HOME/token) when HF_TOKEN is unset', async () => {
    mkdirSync(join(tmp, 'hf'), { recursive: true });
    writeFileSync(join(tmp, 'hf', 'token'), `${TOKEN}\n`);
    const { HF_TOKEN: _, ...noToken } = env;
    const r = await pull({ env: noToken, checkpoint: 'someone/gated-fastcomposer', downloadOnly: true });
    expect(existsSync(r.checkpoint)).toBe(true);
  });

  it('a token that is not a hub token is ERR_HUB_AUTH', async () => {
    const e = await pullCode({ env: { ...env, HF_TOKEN: 'ghp_something' }, downloadOnly: true });
    expect(e.code).toBe('ERR_HUB_AUTH');
    expect(e.message).toContain('hf_');
  });

  it('no network: ERR_NETWORK naming the endpoint', async () => {
    const closed = await closedPort();
    const e = await pullCode({ env: { ...env, HF_ENDPOINT: closed }, downloadOnly: true });
    expect(e.code).toBe('ERR_NETWORK');
    expect(e.message).toContain('ECONNREFUSED');
    expect(e.message).toContain(closed);
  }, 30_000);

  it('bad arguments are ERR_INVALID_ARGUMENT before any request', async () => {
    for (const options of [
      { base: 'not a repo' },
      { checkpoint: '../x/y' },
      { revision: '../../etc' },
      { name: '../x' },
      { checkpointUrl: 'file:///etc/passwd' },
    ]) {
      expect((await pullCode({ env, downloadOnly: true, ...options })).code).toBe('ERR_INVALID_ARGUMENT');
    }
    expect(fake.requests).toEqual([]);
  });
});

describe('a cache that is already there', () => {
  /** Lays the files out as Python's huggingface_hub does: blobs by hash, relative symlinks, refs/main. */
  function pythonCache(repo: string, paths: string[], dir: string): void {
    const root = join(hubCache(), `models--${repo.replace('/', '--')}`);
    const commit = fake.commit(repo);
    mkdirSync(join(root, 'blobs'), { recursive: true });
    mkdirSync(join(root, 'refs'), { recursive: true });
    writeFileSync(join(root, 'refs', 'main'), commit);
    for (const path of paths) {
      const f = fake.file(repo, path);
      const etag = f.lfs?.oid ?? f.gitOid;
      writeFileSync(join(root, 'blobs', etag), readFileSync(join(dir, path)));
      const link = join(root, 'snapshots', commit, path);
      mkdirSync(join(link, '..'), { recursive: true });
      symlinkSync(`${'../'.repeat(path.split('/').length + 1)}blobs/${etag}`, link);
    }
  }

  it('reuses files Python downloaded without downloading them again', async () => {
    pythonCache(CKPT, ['pytorch_model.bin'], join(release, 'fastcomposer'));
    pythonCache(CLIP, ['config.json'], join(release, 'clip'));
    const cached: string[] = [];
    const r = await pull({ env, downloadOnly: true, onProgress: (e) => e.type === 'file-done' && e.cached && cached.push(e.file) });
    expect(cached).toEqual(['config.json', 'pytorch_model.bin']);
    expect(downloadsOf(CKPT_KEY)).toBe(0);
    expect(fake.requests.filter((q) => q.server === 'cdn')).toEqual([]);
    expect(r.downloaded).toBe(smallFiles() - fake.file(CLIP, 'config.json').size);
  });

  it('links a blob it has under another snapshot instead of downloading it', async () => {
    mkdirSync(blobDir(CKPT), { recursive: true });
    writeFileSync(join(blobDir(CKPT), checkpointSha), checkpointBytes);
    const r = await pull({ env, downloadOnly: true });
    expect(downloadsOf(CKPT_KEY)).toBe(0);
    expect(readlinkSync(r.checkpoint)).toBe(`../../blobs/${checkpointSha}`);
  });

  it("downloads again a cached file whose size is not the hub's", async () => {
    pythonCache(CKPT, ['pytorch_model.bin'], join(release, 'fastcomposer'));
    writeFileSync(join(blobDir(CKPT), checkpointSha), checkpointBytes.subarray(0, 100));
    const r = await pull({ env, downloadOnly: true });
    expect(downloadsOf(CKPT_KEY)).toBe(1);
    expect(readFileSync(r.checkpoint).equals(checkpointBytes)).toBe(true);
  });

  it('HF_HUB_OFFLINE=1 uses the cache and makes no request; without the files it says so', async () => {
    await pull({ env, downloadOnly: true });
    fake.requests.length = 0;
    const r = await pull({ env: { ...env, HF_HUB_OFFLINE: '1' }, downloadOnly: true });
    expect(fake.requests).toEqual([]);
    expect(readFileSync(r.checkpoint).equals(checkpointBytes)).toBe(true);
    const e = await pullCode({ env: { ...env, HF_HUB_OFFLINE: '1' }, checkpoint: 'someone/gated-fastcomposer', downloadOnly: true });
    expect(e.code).toBe('ERR_NETWORK');
    expect(e.message).toContain('HF_HUB_OFFLINE');
  });

  it('falls back to the cache when the hub cannot be reached', async () => {
    await pull({ env, downloadOnly: true });
    const r = await pull({ env: { ...env, HF_ENDPOINT: await closedPort() }, downloadOnly: true });
    expect(readFileSync(r.checkpoint).equals(checkpointBytes)).toBe(true);
  }, 30_000);
});

describe('--checkpoint-url: the checkpoint from a plain URL', () => {
  const url = (): string => `${fake.cdn}/mirror/pytorch_model.bin`;

  it("downloads it resumably into fastcomposer's cache, checks the sha256 given, and reuses it next time", async () => {
    fake.faults['mirror/pytorch_model.bin'] = { dropAfter: 3_000_000 };
    const r = await pull({ env, downloadOnly: true, checkpointUrl: url(), checkpointSha256: checkpointSha });
    expect(r.checkpoint.startsWith(join(tmp, 'fc', 'downloads'))).toBe(true);
    expect(readFileSync(r.checkpoint).equals(checkpointBytes)).toBe(true);
    expect(r.source.checkpoint).toBe(url());
    const ranges = fake.requests.filter((q) => q.path === '/mirror/pytorch_model.bin').map((q) => q.range);
    expect(ranges).toHaveLength(2);
    expect(ranges[0]).toBeUndefined();
    expect(resumedAt(ranges[1])).toBeGreaterThan(0);
    expect(resumedAt(ranges[1])).toBeLessThanOrEqual(3_000_000);
    fake.requests.length = 0;
    const again = await pull({ env, downloadOnly: true, checkpointUrl: url() });
    expect(again.checkpoint).toBe(r.checkpoint);
    expect(fake.requests.filter((q) => q.path.startsWith('/mirror/'))).toEqual([]);
  });

  it('refuses a file whose sha256 is not the one given', async () => {
    const e = await pullCode({ env, downloadOnly: true, checkpointUrl: url(), checkpointSha256: '0'.repeat(64) });
    expect(e.code).toBe('ERR_DOWNLOAD_INTEGRITY');
    expect(e.message).toContain('sha256');
  });

  it('404 names the URL', async () => {
    const e = await pullCode({ env, downloadOnly: true, checkpointUrl: `${fake.cdn}/mirror/nothing.bin` });
    expect(e.code).toBe('ERR_HUB_NOT_FOUND');
    expect(e.message).toContain('/mirror/nothing.bin');
  });
});

/** N of a `bytes=N-` Range header (NaN for anything else). */
function resumedAt(range: string | undefined): number {
  const m = /^bytes=(\d+)-$/.exec(range ?? '');
  return m ? Number(m[1]) : Number.NaN;
}

/** An endpoint on 127.0.0.1 where nothing listens (a port just freed). */
async function closedPort(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** Bytes of the small files a fresh pull downloads besides the checkpoint. */
function smallFiles(): number {
  const base = [
    'text_encoder/config.json',
    'unet/config.json',
    'vae/config.json',
    'scheduler/scheduler_config.json',
    'tokenizer/vocab.json',
    'tokenizer/merges.txt',
  ];
  return base.reduce((n, p) => n + fake.file(BASE, p).size, 0) + fake.file(CLIP, 'config.json').size;
}
