// `npm run lint` / `format` for native/: clang-format (the npm package's bundled binary, else one
// on PATH) over every C++ and CUDA source, with the repository's .clang-format.
// `--check` reports files that would change (exit 1); `--write` rewrites them in place.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SOURCES = /\.(cc|cpp|h|hpp|cu|cuh)$/;

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return SOURCES.test(entry.name) ? [path] : [];
  });
}

function binary() {
  const bundled = join(dirname(createRequire(import.meta.url).resolve('clang-format')), 'bin', `${platform()}_${arch()}`, 'clang-format');
  return existsSync(bundled) ? bundled : 'clang-format';
}

const mode = process.argv[2];
if (mode !== '--check' && mode !== '--write') {
  console.error('usage: node scripts/dev/clang-format.mjs --check | --write');
  process.exit(2);
}
const files = sources(join(pkgRoot, 'native')).map((file) => relative(pkgRoot, file));
const args = mode === '--check' ? ['--dry-run', '--Werror', ...files] : ['-i', ...files];
const r = spawnSync(binary(), ['--style=file', ...args], { stdio: 'inherit', cwd: pkgRoot });
if (r.error) {
  console.error(
    `clang-format could not start (${r.error.message}): run npm install, or install clang-format (apt-get install clang-format)`,
  );
  process.exit(1);
}
if (r.status !== 0 && mode === '--check') console.error('clang-format: native/ is not formatted; npm run format fixes it');
process.exit(r.status ?? 1);
