// Compiles lib/ to dist/esm (tsc: JS + .d.ts) and bundles dist/cjs/index.cjs for require()
// users (esbuild; dependencies stay external, import.meta.url shimmed from __filename).
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
esbuild.buildSync({
  entryPoints: [join(pkgRoot, 'dist', 'esm', 'index.js')],
  outfile: join(pkgRoot, 'dist', 'cjs', 'index.cjs'),
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
writeFileSync(join(pkgRoot, 'dist', 'cjs', 'index.d.cts'), "export * from '../esm/index.js';\n");
// The CLI is run by path (npx in this folder runs package.json's bin entry as a program), so it
// must be executable; tsc writes plain files.
const bins = JSON.parse(readFileSync(join(pkgRoot, 'package.json'), 'utf8')).bin ?? {};
for (const file of Object.values(typeof bins === 'string' ? { cli: bins } : bins)) chmodSync(join(pkgRoot, file), 0o755);
