#include "device_memory.h"

#include <c10/core/CachingDeviceAllocator.h>
#include <torch/cuda.h>

namespace fc {

DeviceMemory cudaMemory(c10::DeviceIndex index, bool resetPeak) {
  TORCH_CHECK(torch::cuda::is_available(), "CUDA is not available");
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
}

void releaseCudaCache() noexcept {
  try {
    if (torch::cuda::is_available()) c10::getDeviceAllocator(c10::DeviceType::CUDA)->emptyCache();
  } catch (...) {
  }
}

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

}  // namespace fc
