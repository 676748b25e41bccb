// A local stand-in for the Hugging Face Hub, on 127.0.0.1, answering the calls fastcomposer makes
// (through @huggingface/hub, and the downloads) the way the hub does:
//   GET  /api/models/<repo>/revision/<rev>          repo info with the commit sha
//   POST /api/models/<repo>/paths-info/<rev>        size, git oid and LFS sha256 of each path
//   GET  /api/models/<repo>/tree/<rev>              the file list (Python's snapshot_download)
//   GET  /<repo>/resolve/<rev>/<path>               small files directly (ETag = git blob sha1);
//                                                   LFS files by a redirect to a second server
//                                                   (on `localhost`: another host, like the hub's CDN) with
//                                                   X-Linked-Size / X-Linked-Etag
// Refusals carry X-Error-Code as the hub's do (RepoNotFound, GatedRepo, RevisionNotFound,
// EntryNotFound). Faults can be injected per file: a connection dropped after N bytes (for the
// first dropTimes requests), a body whose size disagrees with the announced one, a flipped byte,
// a server that ignores Range.
// Also serves plain files at /mirror/<name> (ETag, Last-Modified, Range, If-Range).
//
// Run by hand: node test/hub/fake-hub.mjs owner/name=DIR ... [--token hf_x --gated owner/name]
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import http from 'node:http';
import { join, relative } from 'node:path';

const LFS = /\.(bin|safetensors|pt|ckpt|onnx|msgpack|h5)$/;

function sha(algo, ...parts) {
  const h = createHash(algo);
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

function walk(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(path));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}

/** A repo's files as the hub describes them (content is read lazily). */
function describeRepo(name, dir) {
  const files = new Map();
  for (const abs of walk(dir)) {
    const path = relative(dir, abs).split('\\').join('/');
    const content = readFileSync(abs);
    const size = content.length;
    const gitOid = sha('sha1', `blob ${size}\0`, content);
    const lfs = LFS.test(path) ? { oid: sha('sha256', content), size, pointerSize: 134 } : undefined;
    files.set(path, { path, abs, size, gitOid, lfs });
  }
  const commit = sha('sha1', name, ...[...files.values()].map((f) => `${f.path}:${f.gitOid}:${f.lfs?.oid ?? ''}`).sort());
  return { name, files, commit };
}

/**
 * @param {{
 *   repos: Record<string, string | { dir: string, gated?: boolean, private?: boolean }>,
 *   token?: string,
 *   mirror?: Record<string, string>,
 *   faults?: Record<string, { dropAfter?: number, dropTimes?: number, extraBytes?: number, corrupt?: boolean, ignoreRange?: boolean }>,
 * }} options  faults are keyed "owner/name/path" (hub files) or "mirror/<name>"
 */
export async function startFakeHub(options) {
  const repos = new Map();
  for (const [name, spec] of Object.entries(options.repos)) {
    const s = typeof spec === 'string' ? { dir: spec } : spec;
    repos.set(name, { ...describeRepo(name, s.dir), gated: !!s.gated, private: !!s.private });
  }
  const faults = options.faults ?? {};
  const served = new Map(); // fault key -> content requests so far
  const requests = [];

  /** Sends `content` honouring Range / If-Range, with the fault for `key` if any. */
  function sendContent(req, res, key, content, headers) {
    const fault = faults[key] ?? {};
    const n = (served.get(key) ?? 0) + 1;
    served.set(key, n);
    let body = content;
    if (fault.extraBytes) body = Buffer.concat([content, Buffer.alloc(fault.extraBytes, 7)]);
    if (fault.corrupt) {
      body = Buffer.from(content);
      body[body.length >> 1] ^= 0xff;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    const rangeOk = range && !fault.ignoreRange && (!ifRange || ifRange === headers.ETag || ifRange === headers['Last-Modified']);
    let start = 0;
    if (rangeOk) {
      start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'Content-Range': `bytes */${body.length}` });
        return res.end();
      }
      res.writeHead(206, {
        ...headers,
        'Accept-Ranges': 'bytes',
        'Content-Length': body.length - start,
        'Content-Range': `bytes ${start}-${body.length - 1}/${body.length}`,
      });
    } else {
      res.writeHead(200, { ...headers, 'Accept-Ranges': 'bytes', 'Content-Length': body.length });
    }
    if (req.method === 'HEAD') return res.end();
    const part = body.subarray(start);
    if (fault.dropAfter !== undefined && n <= (fault.dropTimes ?? 1) && fault.dropAfter < part.length) {
      res.write(part.subarray(0, fault.dropAfter), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(part);
  }

  function refuse(res, status, errorCode, message) {
    res.writeHead(status, {
      'Content-Type': 'application/json',
      ...(errorCode ? { 'X-Error-Code': errorCode, 'X-Error-Message': message } : {}),
    });
    res.end(JSON.stringify({ error: message }));
  }

  /** The repo if the request may see it, else answers the refusal and returns undefined. */
  function access(req, res, name) {
    const auth = req.headers.authorization;
    if (auth !== undefined && auth !== `Bearer ${options.token}`) {
      refuse(res, 401, undefined, 'Invalid credentials in Authorization header');
      return undefined;
    }
    const repo = repos.get(name);
    if (!repo || (repo.private && !auth)) {
      refuse(res, 401, 'RepoNotFound', 'Repository not found');
      return undefined;
    }
    if (repo.gated && !auth) {
      refuse(res, 401, 'GatedRepo', `Access to model ${name} is restricted. You must have access to it and be authenticated to access it.`);
      return undefined;
    }
    return repo;
  }

  function commitOf(res, repo, rev) {
    if (rev === 'main' || rev === repo.commit) return repo.commit;
    refuse(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
    return undefined;
  }

  async function readBody(req) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    return Buffer.concat(chunks).toString('utf8');
  }

  let cdnOrigin = '';
  const answer = async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const path = decodeURIComponent(url.pathname);
    requests.push({ server: 'hub', method: req.method, path, range: req.headers.range, authorization: req.headers.authorization });
    let m;
    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(path)) && req.method === 'GET') {
      const repo = access(req, res, m[1]);
      if (!repo) return;
      const commit = commitOf(res, repo, m[2]);
      if (!commit) return;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(
        JSON.stringify({
          _id: sha('sha1', repo.name).slice(0, 24),
          id: repo.name,
          sha: commit,
          private: repo.private,
          gated: repo.gated ? 'manual' : false,
          downloads: 0,
          likes: 0,
          lastModified: '2023-05-01T00:00:00.000Z',
          pipeline_tag: 'text-to-image',
          siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })),
        }),
      );
    }
    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/paths-info\/(.+)$/.exec(path)) && req.method === 'POST') {
      const body = JSON.parse((await readBody(req)) || '{}');
      const repo = access(req, res, m[1]);
      if (!repo || !commitOf(res, repo, m[2])) return;
      const items = (body.paths ?? []).flatMap((p) => {
        const f = repo.files.get(p);
        return f ? [{ type: 'file', oid: f.gitOid, size: f.size, path: f.path, ...(f.lfs ? { lfs: f.lfs } : {}) }] : [];
      });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify(items));
    }
    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(path)) && req.method === 'GET') {
      // Python's snapshot_download lists the files this way (we don't).
      const repo = access(req, res, m[1]);
      if (!repo || !commitOf(res, repo, m[2])) return;
      const items = [...repo.files.values()].map((f) => ({
        type: 'file',
        oid: f.gitOid,
        size: f.size,
        path: f.path,
        ...(f.lfs ? { lfs: f.lfs } : {}),
      }));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify(items));
    }
    if ((m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path)) && (req.method === 'GET' || req.method === 'HEAD')) {
      const repo = access(req, res, m[1]);
      if (!repo) return;
      const commit = commitOf(res, repo, m[2]);
      if (!commit) return;
      const file = repo.files.get(m[3]);
      if (!file) return refuse(res, 404, 'EntryNotFound', `${m[3]} does not exist on "${m[2]}"`);
      if (file.lfs) {
        res.writeHead(302, {
          Location: `${cdnOrigin}/lfs/${repo.name}/${file.lfs.oid}`,
          'X-Repo-Commit': commit,
          'X-Linked-Size': String(file.lfs.size),
          'X-Linked-Etag': `"${file.lfs.oid}"`,
          ETag: `"${file.gitOid}"`,
        });
        return res.end();
      }
      return sendContent(req, res, `${repo.name}/${file.path}`, readFileSync(file.abs), {
        ETag: `"${file.gitOid}"`,
        'X-Repo-Commit': commit,
      });
    }
    refuse(res, 404, undefined, 'Not found');
  };
  const hub = http.createServer((req, res) => void answer(req, res));

  const mirrorStamp = new Date('2023-09-01T00:00:00Z').toUTCString();
  const cdn = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push({ server: 'cdn', method: req.method, path, range: req.headers.range, authorization: req.headers.authorization });
    let m;
    if ((m = /^\/lfs\/([^/]+\/[^/]+)\/([0-9a-f]{64})$/.exec(path))) {
      const repo = repos.get(m[1]);
      const file = repo && [...repo.files.values()].find((f) => f.lfs?.oid === m[2]);
      if (file) return sendContent(req, res, `${repo.name}/${file.path}`, readFileSync(file.abs), { ETag: `"${m[2]}"` });
    }
    if ((m = /^\/mirror\/(.+)$/.exec(path)) && options.mirror?.[m[1]]) {
      const content = readFileSync(options.mirror[m[1]]);
      return sendContent(req, res, `mirror/${m[1]}`, content, {
        ETag: `"${sha('sha256', content).slice(0, 32)}"`,
        'Last-Modified': mirrorStamp,
      });
    }
    refuse(res, 404, undefined, 'Not found');
  });

  const listen = (server) =>
    new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`)));
  const endpoint = await listen(hub);
  // The CDN is another host, as the hub's is: clients must not send the token there, and
  // Python's huggingface_hub reads the file's metadata from the redirect itself.
  cdnOrigin = (await listen(cdn)).replace('127.0.0.1', 'localhost');
  return {
    endpoint,
    cdn: cdnOrigin,
    requests,
    /** Faults by key, changeable between calls; `served` counts content requests by the same keys. */
    faults,
    served,
    /** Commit sha of a repo's main. */
    commit: (name) => repos.get(name).commit,
    file: (name, path) => repos.get(name).files.get(path),
    close: () =>
      Promise.all(
        [hub, cdn].map(
          (s) =>
            new Promise((r) => {
              s.closeAllConnections();
              s.close(() => r(undefined));
            }),
        ),
      ),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  /** @type {Record<string, { dir: string, gated?: boolean }>} */
  const repos = {};
  /** @type {Record<string, string>} */
  const mirror = {};
  let token;
  const gated = [];
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--token') token = args[++i];
    else if (args[i] === '--gated') gated.push(args[++i]);
    else if (args[i] === '--mirror') {
      const [name, file] = args[++i].split('=');
      mirror[name] = file;
    } else {
      const [name, dir] = args[i].split('=');
      repos[name] = { dir };
    }
  }
  for (const name of gated) repos[name].gated = true;
  const fake = await startFakeHub({ repos, token, mirror });
  process.stdout.write(`HF_ENDPOINT=${fake.endpoint}\n`);
  for (const name of Object.keys(mirror)) process.stdout.write(`mirror: ${fake.cdn}/mirror/${name}\n`);
}
