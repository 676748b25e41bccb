// CUDA memory statistics and cache release through c10's device-agnostic allocator interface,
// so the addon needs no CUDA headers and builds the same against CPU and CUDA libtorch.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>

namespace fc {

struct DeviceMemory {
  int64_t allocated = 0, peakAllocated = 0, reserved = 0, peakReserved = 0;
};

// Throws c10::Error when CUDA is not available.
DeviceMemory cudaMemory(c10::DeviceIndex index, bool resetPeak);

// Returns cached blocks to the driver after an out-of-memory error; a no-op without CUDA.
void releaseCudaCache() noexcept;

// Waits for the device's queued work (timing); a no-op on CPU.
void synchronize(const c10::Device& device);

}  // namespace fc
