#!/usr/bin/env bash
# A short CUDA smoke test (about 1 minute after the machine starts): build against the machine's
# torch, export the tiny model, and run generate() on CUDA in float16 and float32, with and
# without CUDA graphs, checking that the graph replay gives the eager latents. For sessions
# with too little device time for bench/gpu-check.sh. Same carry: [".carry", "dist"].
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-smoke-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/exporter"
python3 -c "import lzma,shutil,os; shutil.copyfileobj(lzma.open('.carry/node.xz'), open('/tmp/node','wb')); os.chmod('/tmp/node',0o755)"
export PATH=/tmp:$PATH
[ -e node_modules ] || ln -s .carry/node_modules node_modules
TORCH_ROOT=$(python3 -c "import torch, os; print(os.path.dirname(torch.__file__))")
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCH_ROOT="$TORCH_ROOT" \
  -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include;$PWD/node_modules/node-addon-api" \
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/build/Release" >"$OUT/build.log" 2>&1 &&
  cmake --build build/gpu -j "$(nproc)" >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "{\"torchVersion\": \"$(python3 -c 'import torch; print(torch.__version__)')\", \"cuda\": true}" >build/Release/torch.json
python3 -m fastcomposer_export --tiny --out /tmp/tiny >/dev/null || exit 1
cat >/tmp/smoke.mjs <<'JS'
import { FastComposer } from 'DIST/index.js';
const subject = { data: Buffer.alloc(224 * 224 * 3, 90), width: 224, height: 224, channels: 3 };
const job = { prompt: 'a man <|image|> in a park', subjects: [subject], steps: 10, width: 128, height: 96, seed: 5 };
const sum = (t) => new Float32Array(t.data.buffer, t.data.byteOffset, t.data.length / 4).reduce((s, v) => s + v, 0);
const report = {};
for (const dtype of ['float16', 'float32']) {
  const fc = await FastComposer.load('/tmp/tiny', { device: 'cuda', dtype });
  const plain = await fc.generate({ ...job, guidanceScale: 1 }); // PNDM history without CFG: graph output must be copied
  const cfg = await fc.generate(job);
  const region = await fc.generate({ ...job, attentionMaps: true, subjects: [{ image: subject, region: { x: 0, y: 0, width: 64, height: 96 } }] });
  report[dtype] = {
    cudaGraph: fc['native'].info().cudaGraph,
    sums: [sum(plain.latents), sum(cfg.latents), sum(region.latents)],
    mapsSum: sum(region.attentionMaps),
    ms: [plain.timings.totalMs, cfg.timings.totalMs, region.timings.totalMs].map(Math.round),
  };
  await fc.dispose();
}
console.log(JSON.stringify(report));
JS
sed -i "s#DIST#$PWD/dist/esm#" /tmp/smoke.mjs
node /tmp/smoke.mjs >"$OUT/graphs.txt" 2>&1; cat "$OUT/graphs.txt"
FASTCOMPOSER_CUDA_GRAPHS=0 node /tmp/smoke.mjs >"$OUT/eager.txt" 2>&1; cat "$OUT/eager.txt"
