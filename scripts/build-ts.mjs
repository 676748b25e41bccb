// Compiles lib/ to dist/esm (tsc: JS + .d.ts) and converts the modules of the public entries to
// CommonJS in dist/cjs for require() users (esbuild; import.meta.url shimmed from __filename).
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

const tsc = require.resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', join(pkgRoot, 'tsconfig.json')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);

const esbuild = require('esbuild');
const esm = join(pkgRoot, 'dist', 'esm');
const cjs = join(pkgRoot, 'dist', 'cjs');
// The public entries (package.json "exports"). Each ES module they reach becomes one CommonJS
// module (dist/cjs/<same path>.cjs) requiring its siblings, so that both entries share one copy
// of every module: a FastComposerError from fastcomposer/queue is the one of fastcomposer.
const entries = ['index.js', 'queue/index.js', 'server/index.js'];
rmSync(cjs, { recursive: true, force: true });
mkdirSync(cjs, { recursive: true });
const shim = join(cjs, 'import-meta-url.js');
writeFileSync(shim, "export const importMetaUrl = require('node:url').pathToFileURL(__filename).href;\n");
const graph = esbuild.buildSync({
  entryPoints: entries.map((e) => join(esm, e)),
  bundle: true,
  write: false,
  metafile: true,
  platform: 'node',
  format: 'esm',
  packages: 'external',
  outdir: cjs,
  logLevel: 'warning',
});
// Modules outside lib/ (scripts/torch-discovery.mjs, reached through the #torch-discovery import)
// are bundled into the modules that import them.
const modules = Object.keys(graph.metafile.inputs)
  .map((input) => join(pkgRoot, input))
  .filter((path) => path.startsWith(esm + sep));
await esbuild.build({
  entryPoints: modules,
  outbase: esm,
  outdir: cjs,
  outExtension: { '.js': '.cjs' },
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  inject: [shim],
  define: { 'import.meta.url': 'importMetaUrl' },
  logLevel: 'warning',
  plugins: [
    {
      // Relative imports stay imports, of the sibling .cjs module.
      name: 'sibling-modules',
      setup(build) {
        build.onResolve({ filter: /^\.\.?\// }, (args) => ({ path: args.path.replace(/\.js$/, '.cjs'), external: true }));
      },
    },
  ],
});
rmSync(shim);
// Types for require(): the same declarations, as CommonJS modules.
for (const entry of entries) {
  const out = join(cjs, entry.replace(/\.js$/, '.d.cts'));
  const back = relative(dirname(out), join(esm, entry));
  writeFileSync(out, `export * from '${back.startsWith('.') ? back : `./${back}`}';\n`);
}
// The demo page is served from next to the compiled server (lib/server/static.ts).
const pagesOut = join(pkgRoot, 'dist', 'esm', 'server', 'public');
rmSync(pagesOut, { recursive: true, force: true });
cpSync(join(pkgRoot, 'lib', 'server', 'public'), pagesOut, { recursive: true });
// The CLI is run by path (npx in this folder runs package.json's bin entry as a program), so it
// must be executable; tsc writes plain files.
const bins = JSON.parse(readFileSync(join(pkgRoot, 'package.json'), 'utf8')).bin ?? {};
for (const file of Object.values(typeof bins === 'string' ? { cli: bins } : bins)) chmodSync(join(pkgRoot, file), 0o755);
