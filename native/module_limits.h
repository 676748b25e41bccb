// What a module file may hold, so that reading it, and everything done with it afterwards, stays
// within the stacks it runs on (large_stack.h says why this matters: a stack overflow ends the
// process). Each limit is far above what the exporter writes (figures of the full-size SD1.5
// export in the comments); a file past one is refused with ERR_MODEL naming the file and what
// it exceeds.
#pragma once

#include <caffe2/serialize/inline_container.h>
#include <torch/script.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace fc {

// Before the file's records are parsed (module_loader.cc reads them on a large stack):
constexpr size_t kMaxPickleBytes = size_t{2} << 20;  // one pickled archive (the UNet's data.pkl: 103 kB)
constexpr size_t kMaxCodeBytes = size_t{512} << 10;  // one code file (the UNet's largest: 76 kB); the parser
                                                     // recurses once per line, blank ones too (~250 B each)
constexpr size_t kMaxTypeNameBytes = 1024;           // a class or type an archive names (the exports: under 100)
constexpr int kMaxFunctions = 16384;                 // `def`s in all the file's code (the UNet: 1110)
constexpr int kMaxStatementTokens = 4096;            // tokens in one logical line of code (the exports: 48)
constexpr int kMaxIndent = 64;                       // blocks within blocks in code (the exports: 2)
// After, for the rest of the process (job threads and JavaScript's thread have 8 MB stacks):
constexpr int kMaxValueDepth = 256;  // values within values: objects, lists, tuples, dicts (the UNet: 11)
constexpr int kMaxCallDepth = 256;   // functions calling functions, blocks within blocks (the UNet: 7)

// Before any record is read: refuses a record that claims more bytes than the whole file holds
// (a compressed one, which torch's writer never makes: it would be unpacked into that much
// memory), a pickled archive over kMaxPickleBytes (the unpickler can build a value nested as deep
// as the archive has bytes) and a code file over kMaxCodeBytes.
void checkRecordSizes(caffe2::serialize::PyTorchStreamReader& reader, uint64_t fileBytes, const std::string& file);

// Walks a pickled archive's opcodes as torch's unpickler reads them, before it does: refuses an
// opcode it does not know, a string longer than what is left, and a memo index past the archive's
// size (the unpickler grows its memo table to the index: 16 bytes per entry, up to 64 GB).
void checkPickle(const char* data, size_t size, const std::string& record, const std::string& file);

// A class or type named by an archive (a GLOBAL, a restore_type_tag string), parsed by TorchScript's
// parser as it is resolved: refused past kMaxTypeNameBytes.
void checkTypeName(const std::string& name, const std::string& file);

// Counts the `def`s of a code record into `functions` and refuses code past the limits above.
void checkCode(const std::string& record, std::string_view code, int& functions, const std::string& file);

// Refuses a value nested deeper than kMaxValueDepth or holding itself (a cycle), which the
// process's recursive walks of values (torch's and ours) could not finish.
void checkValueNesting(const c10::IValue& root, const std::string& what, const std::string& file);

// Refuses a tensor whose storage claims more bytes than the record it was read from holds
// (`recordBytes`: each record's address -> its size): the pickle sets the size, and the load's
// copies and conversions would read past the record. After checkValueNesting.
void checkStorageSizes(const c10::IValue& root, const std::unordered_map<const void*, size_t>& recordBytes, const std::string& file);

// Refuses a module whose compiled functions call each other (or nest blocks) deeper than
// kMaxCallDepth: inlining them, as the graph executor does at the first call, recurses as deep.
void checkCallDepth(const torch::jit::Module& module, const std::string& file);

}  // namespace fc
