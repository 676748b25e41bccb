#!/usr/bin/env bash
# The GPU check. Runs in one go, in a checkout, on a machine with an NVIDIA GPU, a CUDA PyTorch
# for python3, cmake, ninja and Node.js 20.9+ (nvcc too for the fused kernels):
#   1. installs the node packages (without install scripts) and compiles lib/ if not done yet,
#   2. builds the addon against python3's torch, with CUDA graphs and kernels when it can,
#   3. exports a full-size random SD1.5 FastComposer (exporter --preset sd15-random),
#   4. times 50-step 512x512 fp16 generate() against the Python eager pipeline of the same
#      modules and weights, alternating run by run, plus localized attention, bf16/fp32 latent
#      agreement and variants (bench/gpu-check.mjs).
# Everything lands in $OUT (or ./gpu-check-out): log.txt and results.jsonl.
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

# 1. Node: the packages and dist/; python3's torch at run time, not a .venv that npm install made
command -v node >/dev/null || { say "Node.js 20.9+ is needed on PATH"; exit 1; }
[ -d node_modules ] || npm ci --ignore-scripts >>"$LOG" 2>&1 || { say "npm ci failed"; exit 1; }
[ -f dist/esm/index.js ] || node scripts/build-ts.mjs >>"$LOG" 2>&1 || { say "compiling lib/ failed"; exit 1; }
export FASTCOMPOSER_PYTHON=python3
say "node $(node --version)"

# 2. Build against this machine's torch
[ -n "${CUDACXX:-}" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || export CUDACXX=/usr/local/cuda/bin/nvcc
TORCH_ROOT=$(python3 -c "import torch, os; print(os.path.dirname(torch.__file__))")
TORCH_VERSION=$(python3 -c "import torch; print(torch.__version__)")
start=$SECONDS
build() {
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCH_ROOT="$TORCH_ROOT" "$@" \
    -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include;$PWD/node_modules/node-addon-api" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/build/Release" >>"$LOG" 2>&1 &&
    cmake --build build/gpu -j "$(nproc)" >>"$LOG" 2>&1
}
build -DFASTCOMPOSER_CUDA_GRAPHS=ON -DFASTCOMPOSER_CUDA_KERNELS=ON || {
  say "build with CUDA graphs and kernels failed:"; grep -E "error" "$LOG" | head -20
  rm -rf build/gpu
  build -DFASTCOMPOSER_CUDA_GRAPHS=ON -DFASTCOMPOSER_CUDA_KERNELS=OFF || {
    say "build with CUDA graphs failed:"; grep -E "error" "$LOG" | tail -20
    rm -rf build/gpu
    build -DFASTCOMPOSER_CUDA_GRAPHS=OFF -DFASTCOMPOSER_CUDA_KERNELS=OFF || { say "BUILD FAILED"; tail -40 "$LOG"; exit 1; }
  }
}
grep -E "fastcomposer: (CUDA|no nvcc)" "$LOG" | tail -2
echo "{\"torchVersion\": \"$TORCH_VERSION\", \"cuda\": true}" >build/Release/torch.json
say "built in $((SECONDS - start)) s"

# Correctness first, on the tiny model (about 30 s): bench/gpu-smoke.mjs.
python3 -m fastcomposer_export --tiny --out /tmp/tiny >>"$LOG" 2>&1 &&
  timeout 180 node bench/gpu-smoke.mjs --model /tmp/tiny >"$OUT/smoke.jsonl" 2>>"$LOG"
say "smoke: $(tail -1 "$OUT/smoke.jsonl")"; grep '"pass":false' "$OUT/smoke.jsonl" | tee -a "$LOG"

# 3. A full-size random model (float16 weights on disk: the runs cast as asked)
start=$SECONDS
MODEL=/tmp/sd15-random
timeout 300 python3 -m fastcomposer_export --preset sd15-random --out "$MODEL" --threads "$(nproc)" >>"$LOG" 2>&1 ||
  { say "EXPORT FAILED"; tail -30 "$LOG"; exit 1; }
say "exported in $((SECONDS - start)) s ($(du -sh $MODEL | cut -f1))"

# Which attention kernel runs (fused SDPA expected: flash / memory-efficient), and where one UNet
# step's GPU time goes, in the configuration Node runs (fp16, channels_last, cuDNN autotuning).
[ -n "${SKIP_PROFILE:-}" ] || timeout 150 python3 - "$MODEL" <<'PY' 2>&1 | tee -a "$LOG"
import sys, torch
torch.backends.cudnn.benchmark = True
unet = torch.jit.load(f"{sys.argv[1]}/unet.pt", map_location="cuda").half().eval()
for p in unet.parameters():
    if p.dim() == 4:
        p.data = p.data.contiguous(memory_format=torch.channels_last)
x = torch.randn(2, 4, 64, 64, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
t = torch.full((2,), 500.0, device="cuda")
c = torch.randn(2, 77, 768, device="cuda", dtype=torch.half)
with torch.inference_mode():
    for _ in range(3):
        unet(x, t, c)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        unet(x, t, c); torch.cuda.synchronize()
names = sorted({e.name for e in prof.events() if any(k in e.name.lower() for k in ("flash", "fmha", "attention", "efficient", "cudnn_sdpa", "sdpa"))})
print("attention kernels:", names[:8])
rows = []
for e in prof.key_averages():
    us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
    if us > 0:
        rows.append((us, e.count, e.key))
rows.sort(reverse=True)
total = sum(r[0] for r in rows)
print(f"one UNet step (batch 2, 64x64 latents, fp16): {total / 1e3:.2f} ms of GPU kernel time, {sum(r[1] for r in rows)} kernels")
for us, count, key in rows[:15]:
    print(f"  {us / 1e3:7.3f} ms {100 * us / total:5.1f}% x{count:<4d} {key[:110]}")
PY

# 4. Side by side: Node and the Python eager pipeline alternating run by run, then the
#    localized-attention cost, bfloat16, float32 agreement, and the variants (bench/gpu-check.mjs).
start=$SECONDS
timeout 420 node bench/gpu-check.mjs --model "$MODEL" --runs 5 --warmup 2 ${PARTS:+--parts "$PARTS"} >>"$RESULTS" 2>>"$LOG" || say "gpu-check.mjs failed or timed out"
say "node + python done in $((SECONDS - start)) s"
say "results:"; cat "$RESULTS" | tee -a "$LOG"
