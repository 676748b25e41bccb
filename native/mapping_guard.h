// Reads of a file mapping that survive the file being cut short underneath them.
//
// A CPU load reads the module files through mappings (mapped_load.h), and a model's prepacked
// weights stay mapped from their cache files. If another process truncates such a file meanwhile
// (a `cp` over it, a download rewriting it in place), the kernel takes the cut pages out of the
// mapping and the next read of one raises SIGBUS, whose default action ends the process: a server
// would die while loading a model. While a MappingGuard is alive, a SIGBUS on an address inside
// its range instead maps zero pages over the range from the faulting page to its end and sets the
// guard's flag; the read goes on and sees zeros, and whoever reads the mapping asks the flag
// before it trusts what it read (mapped_load.h's MappedFileStatus).
//
// The handler is installed once, at the first guard, and passes any other SIGBUS on to the action
// that was there before (a handler, or the default, which then ends the process as it would have).
// A SIGBUS handler installed after it (process.on('SIGBUS') in JavaScript, say) replaces it: cut
// files then end the process again.
#pragma once

#include <atomic>
#include <cstddef>

namespace fc {

class MappingGuard {
 public:
  // Guards [data, data + size); `cut` is set when a read in it meets the file cut short, and must
  // outlive the guard. Without a free slot (more ranges than the table holds at once: 256), the
  // range is left unguarded, as before there was a guard.
  MappingGuard(const void* data, size_t size, std::atomic<bool>* cut);
  ~MappingGuard();
  MappingGuard(const MappingGuard&) = delete;
  MappingGuard& operator=(const MappingGuard&) = delete;

 private:
  int slot_ = -1;
};

}  // namespace fc
