#!/usr/bin/env bash
# The GPU check (issue: CUDA and performance). Runs in one go on a machine with an NVIDIA GPU, a
# CUDA PyTorch for python3, nvcc, cmake and ninja, but no Node.js and no network:
#   1. unpacks the Node binary carried in .carry/node.xz (made by bench/gpu-carry.sh),
#   2. builds the addon against that machine's torch,
#   3. exports a full-size random SD1.5 FastComposer (exporter --preset sd15-random),
#   4. times 50-step 512x512 fp16 generate() against the Python eager pipeline of the same
#      modules and weights, in the same run, plus fp16-vs-fp32 latent agreement and variants.
# Everything lands in $OUT (or ./gpu-check-out): log.txt and results.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
say() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/exporter"

say "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
python3 -c "import torch; print('python torch', torch.__version__, torch.version.cuda)" 2>&1 | tee -a "$LOG"

# 1. Node
python3 - <<'PY' || { say "cannot unpack node"; exit 1; }
import lzma, shutil, os
with lzma.open('.carry/node.xz') as src, open('/tmp/node', 'wb') as dst:
    shutil.copyfileobj(src, dst)
os.chmod('/tmp/node', 0o755)
PY
export PATH=/tmp:$PATH
[ -e node_modules ] || ln -s .carry/node_modules node_modules
say "node $(node --version)"

# 2. Build against this machine's torch
TORCH_ROOT=$(python3 -c "import torch, os; print(os.path.dirname(torch.__file__))")
TORCH_VERSION=$(python3 -c "import torch; print(torch.__version__)")
start=$SECONDS
build() {
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCH_ROOT="$TORCH_ROOT" "$@" \
    -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include;$PWD/node_modules/node-addon-api" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/build/Release" >>"$LOG" 2>&1 &&
    cmake --build build/gpu -j "$(nproc)" >>"$LOG" 2>&1
}
build -DFASTCOMPOSER_CUDA_GRAPHS=ON || {
  say "build with CUDA graphs failed:"; grep -E "error" "$LOG" | head -20
  build -DFASTCOMPOSER_CUDA_GRAPHS=OFF || { say "BUILD FAILED"; tail -40 "$LOG"; exit 1; }
}
grep -E "fastcomposer: CUDA" "$LOG" | tail -1
echo "{\"torchVersion\": \"$TORCH_VERSION\", \"cuda\": true}" >build/Release/torch.json
say "built in $((SECONDS - start)) s"

# 3. A full-size random model (float16 weights on disk: the runs cast as asked)
start=$SECONDS
MODEL=/tmp/sd15-random
timeout 300 python3 -m fastcomposer_export --preset sd15-random --out "$MODEL" --threads "$(nproc)" >>"$LOG" 2>&1 ||
  { say "EXPORT FAILED"; tail -30 "$LOG"; exit 1; }
say "exported in $((SECONDS - start)) s ($(du -sh $MODEL | cut -f1))"

# Which attention kernel runs (fused SDPA expected: flash / memory-efficient).
timeout 120 python3 - "$MODEL" <<'PY' 2>&1 | tee -a "$LOG"
import sys, torch
unet = torch.jit.load(f"{sys.argv[1]}/unet.pt", map_location="cuda").half().eval()
x = torch.randn(2, 4, 64, 64, device="cuda", dtype=torch.half)
t = torch.full((2,), 500.0, device="cuda")
c = torch.randn(2, 77, 768, device="cuda", dtype=torch.half)
with torch.inference_mode():
    unet(x, t, c); torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        unet(x, t, c); torch.cuda.synchronize()
names = sorted({e.name for e in prof.events() if any(k in e.name.lower() for k in ("flash", "fmha", "attention", "efficient", "cudnn_sdpa", "sdpa"))})
print("attention kernels:", names[:8])
PY

# 4. Side by side: Node (fp16, then fp32 for agreement), Python eager, variants
start=$SECONDS
timeout 240 node bench/gpu-check.mjs --model "$MODEL" --runs 3 --fp32 --save-latents /tmp/node16.bin --write-job /tmp/job.json >>"$RESULTS" 2>>"$LOG" || say "node default run failed"
say "node default done in $((SECONDS - start)) s"
start=$SECONDS
timeout 240 python3 bench/python_eager.py --model "$MODEL" --device cuda --dtype float16 --steps 50 --width 512 --height 512 \
  --runs 3 --warmup 1 --seed 42 --guidance 5 --alpha 0.7 --job /tmp/job.json --json --save-latents /tmp/py16.bin >>"$RESULTS" 2>>"$LOG" || say "python eager run failed"
say "python eager done in $((SECONDS - start)) s"
FASTCOMPOSER_CUDA_GRAPHS=0 timeout 120 node bench/gpu-check.mjs --model "$MODEL" --runs 3 --variant no-cuda-graphs --save-latents /tmp/node16-eager.bin >>"$RESULTS" 2>>"$LOG" || say "variant no-cuda-graphs failed"
FASTCOMPOSER_CHANNELS_LAST=0 timeout 120 node bench/gpu-check.mjs --model "$MODEL" --runs 2 --variant no-channels-last >>"$RESULTS" 2>>"$LOG" || say "variant no-channels-last failed"
python3 - <<'PY' 2>&1 | tee -a "$LOG"
import numpy as np, os
if os.path.exists('/tmp/node16.bin') and os.path.exists('/tmp/py16.bin'):
    a = np.fromfile('/tmp/node16.bin', dtype=np.float32); b = np.fromfile('/tmp/py16.bin', dtype=np.float32)
    if a.shape == b.shape:
        print("node fp16 vs python eager fp16 latents: relative", float(np.abs(a - b).max() / np.abs(b).max()))
if os.path.exists('/tmp/node16.bin') and os.path.exists('/tmp/node16-eager.bin'):
    a = np.fromfile('/tmp/node16.bin', dtype=np.float32); b = np.fromfile('/tmp/node16-eager.bin', dtype=np.float32)
    print("node fp16 CUDA graph vs eager latents: relative", float(np.abs(a - b).max() / np.abs(b).max()))
PY
say "results:"; cat "$RESULTS" | tee -a "$LOG"
