// What a module file may hold, so that reading it, and everything done with it afterwards, stays
// within the stacks it runs on (large_stack.h says why this matters: a stack overflow ends the
// process). Each limit is far above what the exporter writes (figures of the full-size SD1.5
// export in the comments); a file past one is refused with ERR_MODEL naming the file and what
// it exceeds.
#pragma once

#include <torch/script.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace fc {

// Before the file's records are parsed (module_loader.cc reads them on a large stack):
constexpr size_t kMaxPickleBytes = size_t{2} << 20;  // one pickled archive (the UNet's data.pkl: 103 kB)
constexpr int kMaxFunctions = 16384;                 // `def`s in all the file's code (the UNet: 1110)
constexpr int kMaxStatementTokens = 4096;            // tokens in one logical line of code (the exports: 48)
constexpr int kMaxIndent = 64;                       // blocks within blocks in code (the exports: 2)
// After, for the rest of the process (job threads and JavaScript's thread have 8 MB stacks):
constexpr int kMaxValueDepth = 256;  // values within values: objects, lists, tuples, dicts (the UNet: 11)
constexpr int kMaxCallDepth = 256;   // functions calling functions, blocks within blocks (the UNet: 7)

// Refuses a pickled archive larger than kMaxPickleBytes: the unpickler can build a value nested
// as deep as the archive has bytes.
void checkPickleSize(const std::string& record, size_t bytes, const std::string& file);

// Counts the `def`s of a code record into `functions` and refuses code past the limits above.
void checkCode(const std::string& record, std::string_view code, int& functions, const std::string& file);

// Refuses a value nested deeper than kMaxValueDepth or holding itself (a cycle), which the
// process's recursive walks of values (torch's and ours) could not finish.
void checkValueNesting(const c10::IValue& root, const std::string& what, const std::string& file);

// Refuses a module whose compiled functions call each other (or nest blocks) deeper than
// kMaxCallDepth: inlining them, as the graph executor does at the first call, recurses as deep.
void checkCallDepth(const torch::jit::Module& module, const std::string& file);

}  // namespace fc
