// fastcomposer::group_norm: what native/graph_passes.cc puts in place of aten::group_norm (and
// of aten::group_norm followed by aten::silu). A channels_last CUDA input runs the NHWC kernel
// of native/cuda/ (CUDA builds with nvcc); anything else runs the ATen ops it replaced, so the
// numbers there are unchanged.
#include <ATen/ATen.h>
#include <torch/library.h>

#ifdef FASTCOMPOSER_CUDA_KERNELS
#include "cuda/group_norm_nhwc.h"
#endif

namespace fc {
namespace {

at::Tensor groupNorm(const at::Tensor& input, int64_t groups, const std::optional<at::Tensor>& weight,
                     const std::optional<at::Tensor>& bias, double eps, bool cudnnEnabled, bool silu) {
#ifdef FASTCOMPOSER_CUDA_KERNELS
  if (weight && bias) {
    if (auto y = groupNormNhwcCuda(input, groups, *weight, *bias, eps, silu)) return *y;
  }
#endif
  at::Tensor y = at::group_norm(input, groups, weight, bias, eps, cudnnEnabled);
  return silu ? at::silu(y) : y;
}

}  // namespace

// A catch-all kernel: the op sees every backend and picks itself.
TORCH_LIBRARY(fastcomposer, m) {
  m.def(
      "group_norm(Tensor input, int num_groups, Tensor? weight, Tensor? bias, float eps, bool cudnn_enabled, "
      "bool silu) -> Tensor",
      &groupNorm);
}

bool hasNhwcGroupNormKernel() {
#ifdef FASTCOMPOSER_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

}  // namespace fc
