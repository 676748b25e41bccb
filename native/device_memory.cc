#include "device_memory.h"

#include <torch/cuda.h>
#include <torch/version.h>

// c10's device-agnostic allocator interface arrived in torch 2.9; older libtorch builds get
// an error from cudaMemory() and no cache release.
#if __has_include(<c10/core/CachingDeviceAllocator.h>) && \
    (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9))
#include <c10/core/CachingDeviceAllocator.h>
#define FASTCOMPOSER_DEVICE_ALLOCATOR 1
#endif

namespace fc {

DeviceMemory cudaMemory(c10::DeviceIndex index, bool resetPeak) {
  TORCH_CHECK(torch::cuda::is_available(), "CUDA is not available");
#ifndef FASTCOMPOSER_DEVICE_ALLOCATOR
  TORCH_CHECK(false, "CUDA memory statistics need libtorch 2.9 or newer");
#else
  c10::DeviceAllocator* allocator = c10::getDeviceAllocator(c10::DeviceType::CUDA);
  auto stats = allocator->getDeviceStats(index);
  constexpr size_t kAggregate = static_cast<size_t>(c10::CachingDeviceAllocator::StatType::AGGREGATE);
  DeviceMemory out;
  out.allocated = stats.allocated_bytes[kAggregate].current;
  out.peakAllocated = stats.allocated_bytes[kAggregate].peak;
  out.reserved = stats.reserved_bytes[kAggregate].current;
  out.peakReserved = stats.reserved_bytes[kAggregate].peak;
  if (resetPeak) allocator->resetPeakStats(index);
  return out;
#endif
}

void releaseCudaCache() noexcept {
#ifdef FASTCOMPOSER_DEVICE_ALLOCATOR
  try {
    if (torch::cuda::is_available()) c10::getDeviceAllocator(c10::DeviceType::CUDA)->emptyCache();
  } catch (...) {
  }
#endif
}

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace fc
