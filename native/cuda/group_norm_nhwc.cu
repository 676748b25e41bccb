#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>

#include "group_norm_nhwc.h"

namespace fc {
namespace {

constexpr int kThreads = 256;

// Running mean and sum of squared deviations (Welford), merged pairwise (Chan et al.): stable
// where E[x^2] - E[x]^2 in float32 would cancel.
struct Moments {
  float mean, m2, n;
};

__device__ inline Moments merge(const Moments& a, const Moments& b) {
  const float n = a.n + b.n;
  if (n == 0.f) return {0.f, 0.f, 0.f};
  const float delta = b.mean - a.mean;
  const float wb = b.n / n;
  return {a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.n * wb, n};
}

__device__ inline Moments warpMerge(Moments m) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    Moments other{__shfl_down_sync(0xffffffffu, m.mean, offset), __shfl_down_sync(0xffffffffu, m.m2, offset),
                  __shfl_down_sync(0xffffffffu, m.n, offset)};
    m = merge(m, other);
  }
  return m;
}

// Block (n*groups + g, split): the moments of group g of image n over one run of pixels. In
// NHWC memory a group is a run of `cg` channels in every pixel, `c` elements apart.
template <typename T>
__global__ void partialMoments(const T* __restrict__ x, int hw, int c, int cg, int groups, int pixelsPerSplit,
                               float* __restrict__ partials) {
  const int ng = blockIdx.x;
  const int n = ng / groups, g = ng - n * groups;
  const int p0 = blockIdx.y * pixelsPerSplit;
  const int p1 = min(hw, p0 + pixelsPerSplit);
  const int count = max(0, p1 - p0) * cg;
  const T* base = x + (static_cast<int64_t>(n) * hw + p0) * c + g * cg;
  Moments m{0.f, 0.f, 0.f};
  for (int j = threadIdx.x; j < count; j += blockDim.x) {
    const int p = j / cg;
    const float v = static_cast<float>(base[static_cast<int64_t>(p) * c + (j - p * cg)]);
    m.n += 1.f;
    const float d = v - m.mean;
    m.mean += d / m.n;
    m.m2 += d * (v - m.mean);
  }
  __shared__ float shared[3][kThreads / 32];
  m = warpMerge(m);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    shared[0][warp] = m.mean;
    shared[1][warp] = m.m2;
    shared[2][warp] = m.n;
  }
  __syncthreads();
  if (warp == 0) {
    m = lane < kThreads / 32 ? Moments{shared[0][lane], shared[1][lane], shared[2][lane]} : Moments{0.f, 0.f, 0.f};
    m = warpMerge(m);
    if (lane == 0) {
      float* out = partials + 3 * (static_cast<int64_t>(ng) * gridDim.y + blockIdx.y);
      out[0] = m.mean;
      out[1] = m.m2;
      out[2] = m.n;
    }
  }
}

// One thread per (n, g): merges the splits into mean and 1/sqrt(var + eps) (biased variance,
// as group_norm uses).
__global__ void finishMoments(const float* __restrict__ partials, int count, int splits, float eps, float2* __restrict__ stats) {
  const int ng = blockIdx.x * blockDim.x + threadIdx.x;
  if (ng >= count) return;
  Moments m{0.f, 0.f, 0.f};
  for (int s = 0; s < splits; ++s) {
    const float* p = partials + 3 * (static_cast<int64_t>(ng) * splits + s);
    m = merge(m, Moments{p[0], p[1], p[2]});
  }
  const float var = m.n > 0.f ? fmaxf(m.m2 / m.n, 0.f) : 0.f;
  stats[ng] = make_float2(m.mean, rsqrtf(var + eps));
}

template <typename T, bool Silu>
__global__ void normalize(const T* __restrict__ x, const T* __restrict__ weight, const T* __restrict__ bias,
                          const float2* __restrict__ stats, T* __restrict__ y, int total, int hwc, int c, int cg, int groups) {
  // The loop counter is 64-bit: i + stride may pass INT_MAX on its way out. Below `total`
  // (< 2^31), 32-bit index arithmetic is exact and cheaper.
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += stride) {
    const int i = static_cast<int>(k);
    const int ch = i % c;
    const int n = i / hwc;
    const float2 s = stats[n * groups + ch / cg];
    float v = (static_cast<float>(x[i]) - s.x) * s.y * static_cast<float>(weight[ch]) + static_cast<float>(bias[ch]);
    if (Silu) v = v / (1.f + __expf(-v));
    y[i] = static_cast<T>(v);
  }
}

// Whether this binary carries code the current GPU can run (a build for other architectures, or
// a driver older than the toolkit, has none): then ATen's group norm runs instead of failing.
bool hasKernelImage() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  static std::mutex mutex;
  static std::map<int, bool> known;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = known.find(device);
  if (found != known.end()) return found->second;
  cudaFuncAttributes attributes;
  const bool ok = cudaFuncGetAttributes(&attributes, finishMoments) == cudaSuccess;
  cudaGetLastError();  // a failed probe must not leave a sticky error for the next launch check
  return known[device] = ok;
}

}  // namespace

std::optional<at::Tensor> groupNormNhwcCuda(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                                            double eps, bool silu) {
  if (!x.is_cuda() || x.dim() != 4 || !x.is_contiguous(at::MemoryFormat::ChannelsLast)) return std::nullopt;
  const auto dtype = x.scalar_type();
  if (dtype != at::kHalf && dtype != at::kBFloat16 && dtype != at::kFloat) return std::nullopt;
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  if (groups <= 0 || c % groups != 0 || n * hw * c == 0) return std::nullopt;
  if (!weight.defined() || !bias.defined() || weight.numel() != c || bias.numel() != c || weight.scalar_type() != dtype ||
      bias.scalar_type() != dtype || weight.device() != x.device() || bias.device() != x.device())
    return std::nullopt;
  if (n * hw * c >= std::numeric_limits<int>::max()) return std::nullopt;  // 32-bit indexing below

  c10::cuda::CUDAGuard guard(x.device());
  if (!hasKernelImage()) return std::nullopt;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index());
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  const int cg = static_cast<int>(c / groups);
  const int ng = static_cast<int>(n * groups);
  // Enough blocks to fill the GPU (about 1024), none with fewer than 64 pixels.
  const int splits = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(hw / 64, 1024 / ng)));
  const int pixelsPerSplit = static_cast<int>((hw + splits - 1) / splits);
  auto floatOpts = x.options().dtype(at::kFloat);
  at::Tensor partials = at::empty({ng * splits * 3}, floatOpts);
  at::Tensor stats = at::empty({ng * 2}, floatOpts);
  at::Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  const int total = static_cast<int>(n * hw * c);
  const int blocks = static_cast<int>(std::clamp<int64_t>((n * hw * c + kThreads - 1) / kThreads, 1, 65536));

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "fastcomposer_group_norm_nhwc", [&] {
    partialMoments<scalar_t><<<dim3(ng, splits), kThreads, 0, stream>>>(x.const_data_ptr<scalar_t>(), static_cast<int>(hw),
                                                                        static_cast<int>(c), cg, static_cast<int>(groups), pixelsPerSplit,
                                                                        partials.mutable_data_ptr<float>());
    finishMoments<<<(ng + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
        partials.const_data_ptr<float>(), ng, splits, static_cast<float>(eps), reinterpret_cast<float2*>(stats.mutable_data_ptr<float>()));
    auto args = std::make_tuple(x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(),
                                reinterpret_cast<const float2*>(stats.const_data_ptr<float>()), y.mutable_data_ptr<scalar_t>(), total,
                                static_cast<int>(hw * c), static_cast<int>(c), cg, static_cast<int>(groups));
    if (silu)
      std::apply([&](auto... a) { normalize<scalar_t, true><<<blocks, kThreads, 0, stream>>>(a...); }, args);
    else
      std::apply([&](auto... a) { normalize<scalar_t, false><<<blocks, kThreads, 0, stream>>>(a...); }, args);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

}  // namespace fc
