// Reads of a file mapping that survive the file being cut short underneath them.
//
// A CPU load reads the module files through mappings (mapped_load.h). If another process
// truncates such a file meanwhile (a `cp` over it, a download rewriting it in place), the kernel
// takes the cut pages out of the mapping and the next read of one raises SIGBUS, whose default
// action ends the process: a server would die while loading a model. While a MappingGuard is
// alive, a SIGBUS on an address inside its range instead maps zero pages over the range from the
// faulting page to its end and marks the guard cut; the read goes on and sees zeros, and the
// load, which asks cut() before it gives the model out, fails with ERR_MODEL.
//
// The handler is installed once, at the first guard, and passes any other SIGBUS on to the
// handler that was there before (or to the default action, which then ends the process as it
// would have).
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>

namespace fc {

class MappingGuard {
 public:
  // Guards [data, data + size). Without a free slot (more than the table holds at once: 256),
  // the range is left unguarded as before.
  MappingGuard(const void* data, size_t size);
  ~MappingGuard();
  MappingGuard(const MappingGuard&) = delete;
  MappingGuard& operator=(const MappingGuard&) = delete;

  // Whether a read in the range faulted because the file behind it was cut short. The flag
  // outlives the guard: the mapping's last reads may come after its owner let go of it.
  std::shared_ptr<const std::atomic<bool>> cut() const { return cut_; }

 private:
  std::shared_ptr<std::atomic<bool>> cut_ = std::make_shared<std::atomic<bool>>(false);
  int slot_ = -1;
};

}  // namespace fc
