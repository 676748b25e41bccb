// Reads a TorchScript file as torch::jit::load does, minus what would run code before
// module_audit.h has looked: while unpickling, torch::jit::load calls the __setstate__ method of
// any object whose class defines one, and C++ classes (TorchBind) run native code to rebuild
// their state. Both are refused here, and the module is audited before it is returned, so that
// nothing of a file runs before it has passed.
#pragma once

#include <torch/script.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "errors.h"
#include "mapped_load.h"

namespace fc {

enum class Weights {
  Read,  // the module's tensors are read (and moved to the device)
  Skip,  // only code and structure: each tensor is backed by zero pages of its size, nothing read
  // CPU only (elsewhere as Read): the tensors point into a read-only mapping of the file, no copy
  // (mapped_load.h). The caller gives them memory of their own (ownMappedTensors) before the load
  // ends, and writes none of them in place before that.
  Mapped,
};

struct AuditedModule {
  torch::jit::Module module;
  std::vector<std::string> operators;  // what its code uses, sorted (module_audit.h)
  double readMs = 0;                   // Mapped: the file mapped, its pages in memory
  double deserializeMs = 0;            // the archives read and the module built
  double auditMs = 0;                  // its code inspected
  // Mapped: what became of the file while its mapping was read (mapped_load.h), kept up to date
  // as long as the module's tensors point into it. The caller asks once they have memory of their
  // own (ownMappedTensors) and the mapping is gone.
  std::shared_ptr<const MappedFileStatus> fileStatus;
};

// Throws CodedError("ERR_MODEL") naming `path`, for a refused or unreadable file, or one that
// changed while it was read. `mapped`: the file already mapped (Weights::Mapped only; tests cut it).
AuditedModule loadAuditedModule(const std::string& path, std::optional<at::Device> device, Weights weights,
                                std::shared_ptr<MappedFile> mapped = nullptr);

// What a load says when a file of it changed under it (MappedFileStatus::disturbed()).
CodedError fileChangedError(const std::string& path);

}  // namespace fc
