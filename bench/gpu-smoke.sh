#!/usr/bin/env bash
# A short CUDA smoke test (about 1 minute after the machine starts): build against the machine's
# torch, export the tiny model, and run bench/gpu-smoke.mjs (graph replay vs eager, the fused
# group norm vs ATen's, changing shapes on one model). For sessions with too little device time
# for bench/gpu-check.sh, which runs the same checks first. Same carry: [".carry", "dist"].
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-smoke-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/exporter"
python3 -c "import lzma,shutil,os; shutil.copyfileobj(lzma.open('.carry/node.xz'), open('/tmp/node','wb')); os.chmod('/tmp/node',0o755)"
export PATH=/tmp:$PATH
[ -e node_modules ] || ln -s .carry/node_modules node_modules
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
