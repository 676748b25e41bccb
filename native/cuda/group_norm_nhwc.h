// Group norm (optionally followed by SiLU) over a channels_last CUDA tensor, without leaving
// that layout. ATen's CUDA group_norm makes its input NCHW-contiguous and returns NCHW, so in a
// channels_last UNet every GroupNorm cost two layout copies plus a separate SiLU pass: 15-25% of
// an SD1.5 step on an H100 (docs/PERFORMANCE.md). Built only with nvcc (FASTCOMPOSER_CUDA_KERNELS).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace fc {

// y = silu?(group_norm(x)) for x [N,C,H,W] channels_last-contiguous on CUDA, float16, bfloat16
// or float32, with weight and bias [C] of x's dtype. std::nullopt when the inputs are outside
// that (the caller then uses ATen).
std::optional<at::Tensor> groupNormNhwcCuda(const at::Tensor& x, int64_t groups, const at::Tensor& weight, const at::Tensor& bias,
                                            double eps, bool silu);

}  // namespace fc
