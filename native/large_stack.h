// Work whose recursion depth a file decides, run on a thread of its own with a large stack.
//
// Reading a TorchScript file recurses as deep as the file nests: torch's unpickler destroys a
// value nested n deep through n nested destructor calls, its compiler compiles a chain of n
// methods calling each other through n nested compilations (about 4 kB of stack each), its parser
// parses an expression n operators deep with n nested calls. A crafted file overflows a job
// thread's 8 MB stack with a few thousand levels, and a stack overflow ends the process.
// module_limits.h bounds what a file may hold so that the read fits in kLargeStackBytes, and
// refuses anything left nested deeper than the rest of the process can walk.
#pragma once

#include <cstddef>
#include <functional>

namespace fc {

// Reserved address space, not memory: pages are only committed as the recursion reaches them.
constexpr size_t kLargeStackBytes = size_t{512} << 20;

// Runs `body` on a new thread with a stack of `bytes` and waits for it; rethrows what it throws.
// libtorch's warnings there are collected as on a job thread (libtorch_log.h). Where no such
// thread can be made (address space or thread limits), runs it on this thread.
void runOnLargeStack(const std::function<void()>& body, size_t bytes = kLargeStackBytes);

}  // namespace fc
