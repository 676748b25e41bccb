#!/usr/bin/env bash
# A short CUDA smoke test (about a minute): build against python3's torch, export the tiny model,
# and run bench/gpu-smoke.mjs (graph replay vs eager, the fused group norm vs ATen's, changing
# shapes on one model). bench/gpu-check.sh runs the same checks first, then the timings; the
# requirements are the same.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-smoke-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/exporter"
command -v node >/dev/null || { echo "gpu-smoke: Node.js 20.9+ is needed on PATH"; exit 1; }
[ -d node_modules ] || npm ci --ignore-scripts >"$OUT/npm.log" 2>&1 || { tail -20 "$OUT/npm.log"; exit 1; }
[ -f dist/esm/index.js ] || node scripts/build-ts.mjs || exit 1
export FASTCOMPOSER_PYTHON=python3
[ -n "${CUDACXX:-}" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || export CUDACXX=/usr/local/cuda/bin/nvcc
TORCH_ROOT=$(python3 -c "import torch, os; print(os.path.dirname(torch.__file__))")
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCH_ROOT="$TORCH_ROOT" \
  -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include;$PWD/node_modules/node-addon-api" \
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/build/Release" >"$OUT/build.log" 2>&1 &&
  cmake --build build/gpu -j "$(nproc)" >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "{\"torchVersion\": \"$(python3 -c 'import torch; print(torch.__version__)')\", \"cuda\": true}" >build/Release/torch.json
python3 -m fastcomposer_export --tiny --out /tmp/tiny >/dev/null || exit 1
node bench/gpu-smoke.mjs --model /tmp/tiny 2>&1 | tee "$OUT/smoke.txt"
exit "${PIPESTATUS[0]}"
