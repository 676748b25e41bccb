#!/usr/bin/env bash
# CI's check of binding.gyp: builds the addon with node-gyp into build-gyp/ (apart from the
# cmake-js build in build/, which it leaves alone), loads that binary through the library
# (FASTCOMPOSER_PREBUILD, node-gyp-build's override of the package folder) and runs a small
# generate on the embedded tiny model; its latents must match the cmake-js binary's.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=$root/build-gyp
start=$SECONDS

# binding.gyp names its sources and its helper script relative to its own folder.
mkdir -p "$dir"
cp binding.gyp "$dir/"
ln -sfn "$root/native" "$dir/native"
ln -sfn "$root/scripts" "$dir/scripts"

gyp=(node "$root/node_modules/node-gyp/bin/node-gyp.js")
# Node's own headers when they sit beside the node binary (node-gyp downloads them otherwise).
prefix=$(dirname "$(dirname "$(command -v node)")")
[ -f "$prefix/include/node/common.gypi" ] && gyp+=(--nodedir "$prefix")
(cd "$dir" && "${gyp[@]}" configure build --jobs max >"$dir/build.log" 2>&1) || {
  tail -40 "$dir/build.log"
  echo "gyp-check: the node-gyp build failed (log: $dir/build.log)"
  exit 1
}
echo "gyp-check: node-gyp build done in $((SECONDS - start)) s"

# The same small generate with each binary; prints the addon path and a checksum of the latents.
run() {
  node --input-type=module -e "
import { FastComposer, runtimeInfo } from './dist/esm/index.js';
const fc = await FastComposer.load(undefined, { device: 'cpu' });
const r = await fc.generate({ prompt: 'a man <|image|> in a park', subjects: ['examples/subject-a.png'], steps: 2, width: 64, height: 64, seed: 7 });
await fc.dispose();
const x = new Float32Array(r.latents.data.buffer, r.latents.data.byteOffset, r.latents.data.length / 4);
console.log(JSON.stringify({ addon: runtimeInfo().addonPath, sum: x.reduce((a, v) => a + v, 0), absSum: x.reduce((a, v) => a + Math.abs(v), 0) }));"
}
gyp_out=$(FASTCOMPOSER_PREBUILD="$dir" run)
cmake_out=$(run)
node -e "
const [g, c] = process.argv.slice(1).map((s) => JSON.parse(s));
if (!g.addon.startsWith('$dir/')) { console.error('gyp-check: loaded', g.addon, 'instead of the node-gyp binary'); process.exit(1); }
if (!Number.isFinite(g.absSum) || g.absSum === 0) { console.error('gyp-check: no latents from the node-gyp binary'); process.exit(1); }
const rel = Math.abs(g.absSum - c.absSum) / c.absSum + Math.abs(g.sum - c.sum) / c.absSum;
console.log('gyp-check: node-gyp binary', g.addon, 'latents', g.absSum.toFixed(4), 'vs cmake-js', c.absSum.toFixed(4), 'relative difference', rel.toExponential(1));
if (rel > 1e-5) process.exit(1);" "$gyp_out" "$cmake_out"
echo "gyp-check: ok in $((SECONDS - start)) s"
