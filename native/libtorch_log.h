// libtorch's own messages, kept off the user's terminal. Two kinds reach stderr raw otherwise:
// - C++ log lines. NNPACK (a CPU convolution backend) logs "Could not initialize NNPACK! Reason:
//   Unsupported hardware." every time a float32 CPU convolution asks whether it is available, on
//   CPUs it does not support: dozens of lines per generate. quietNnpack() asks once, quietly, and
//   where NNPACK cannot work switches it off, so that no convolution asks again (nothing else
//   changes: it could not run there anyway). Other log lines are rare and left alone
//   (TORCH_CPP_LOG_LEVEL=ERROR, libtorch's own switch, hides them).
// - Warnings (TORCH_WARN) raised by the work on our job threads: collected instead of printed;
//   TypeScript takes them after each call and emits them as process warnings (lib/warnings.ts).
#pragma once

#include <string>
#include <vector>

namespace fc {

// Once per process (addon init; later calls return at once).
void quietNnpack();

// Installs the collecting warning handler on the calling thread (c10 keeps one per thread); each
// job thread calls it as it starts.
void collectWarningsOnThisThread();

// The warnings collected since the last call, oldest first (at most 100 are kept between calls).
std::vector<std::string> takeWarnings();

}  // namespace fc
