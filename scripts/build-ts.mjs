// Compiles lib/ to dist/esm (tsc: JS + .d.ts), bundles dist/cjs/index.cjs and server.cjs for require()
// users (esbuild; dependencies stay external, import.meta.url shimmed from __filename).
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

const tsc = require.resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(pkgRoot, 'tsconfig.json')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

const esbuild = require('esbuild');
const shim = join(pkgRoot, 'dist', 'cjs', 'import-meta-url.js');
mkdirSync(dirname(shim), { recursive: true });
writeFileSync(shim, "export const importMetaUrl = require('node:url').pathToFileURL(__filename).href;\n");
// One bundle per public entry point: `fastcomposer` and `fastcomposer/server`.
for (const [entry, out] of [['index.js', 'index'], [join('server', 'index.js'), 'server']]) {
  esbuild.buildSync({
    entryPoints: [join(pkgRoot, 'dist', 'esm', entry)],
    outfile: join(pkgRoot, 'dist', 'cjs', `${out}.cjs`),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    packages: 'external',
    inject: [shim],
    define: { 'import.meta.url': 'importMetaUrl' },
    logLevel: 'warning',
  });
  // Types for require(): the same declarations, as a CommonJS module.
  writeFileSync(join(pkgRoot, 'dist', 'cjs', `${out}.d.cts`), `export * from '../esm/${entry.replace(/\\/g, '/')}';\n`);
}
// The demo page is served from next to the compiled server (lib/server/static.ts).
const pagesOut = join(pkgRoot, 'dist', 'esm', 'server', 'public');
rmSync(pagesOut, { recursive: true, force: true });
cpSync(join(pkgRoot, 'lib', 'server', 'public'), pagesOut, { recursive: true });
// The CLI is run by path (npx in this folder runs package.json's bin entry as a program), so it
// must be executable; tsc writes plain files.
const bins = JSON.parse(readFileSync(join(pkgRoot, 'package.json'), 'utf8')).bin ?? {};
for (const file of Object.values(typeof bins === 'string' ? { cli: bins } : bins)) chmodSync(join(pkgRoot, file), 0o755);
