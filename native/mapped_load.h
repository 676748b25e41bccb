// Module files read on the CPU without copying their tensors out first (module_loader.h's
// Weights::Mapped).
//
// torch::jit::load, and a plain Weights::Read, copy every tensor record into memory of its own:
// for a full-size SD1.5 model that is 5 GB copied out of the page cache and as many fresh pages
// faulted in, before the load's own work on the weights (prepacking for oneDNN, dtype conversion)
// copies them once more. Here the file is mapped read-only and each tensor's storage points into
// the mapping, so that work reads the page cache directly; ownMappedTensors() then gives what is
// left memory of its own, so that no mapping outlives the load (a model file replaced or cut
// later must not fault a running model). A record's pages leave the process's resident set as
// soon as its storage is freed (the weight has a copy of its own), not when the file is unmapped:
// the load's peak resident set stays near the model's size instead of twice it (the file's
// pages stay in the page cache, which the kernel reclaims as it needs).
#pragma once

#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/script.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "mapping_guard.h"

namespace fc {

// What happened to a mapped file while it was mapped, readable after the mapping is gone: a
// mapping's last reads may come after its owner has let go of it (mapped_load.h's records).
struct MappedFileStatus {
  std::atomic<bool> cut{false};      // a read met the file cut short and saw zeros (mapping_guard.h)
  std::atomic<bool> changed{false};  // its size or modification time differed when last checked
  // What was read from the mapping may not be the file's bytes: it was cut, or written again in
  // place (a `cp` over it cuts it to nothing and writes it anew: a read can miss the cut and see
  // old and new bytes mixed).
  bool disturbed() const { return cut.load(std::memory_order_acquire) || changed.load(std::memory_order_acquire); }
};

// The whole file mapped read-only with its pages populated (read from disk if not cached). Reads
// of it survive the file being cut short meanwhile: they see zeros, and status() says so.
class MappedFile {
 public:
  // Throws c10::Error when it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();  // checks the file once more (checkUnchanged) before it unmaps it
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  std::shared_ptr<const MappedFileStatus> status() const { return status_; }
  // Compares the file's size and modification time with those it had when it was mapped, and
  // records a difference in status(). Renaming or deleting the file changes neither.
  void checkUnchanged() const;
  // checkUnchanged(), then whether anything read from the mapping may not be the file's bytes.
  bool disturbed() const {
    checkUnchanged();
    return status_->disturbed();
  }

 private:
  std::string path_;
  int fd_ = -1;  // kept open to ask the mapped file itself, whatever its path names now
  int64_t mtimeNs_ = 0;
  char* data_ = nullptr;
  size_t size_ = 0;
  std::shared_ptr<MappedFileStatus> status_ = std::make_shared<MappedFileStatus>();
  std::unique_ptr<MappingGuard> guard_;
};

std::shared_ptr<MappedFile> mapFile(const std::string& path);

// The archive reader's view of the mapping (copies what it is asked for: the small records).
std::shared_ptr<caffe2::serialize::ReadAdapterInterface> mappedReadAdapter(std::shared_ptr<MappedFile> file);

// Storage for a tensor record of `size` bytes whose data starts at `offset` (its zip entry's local
// header at `headerOffset`), pointing into the mapping, which it keeps alive. An empty DataPtr
// when the record is not stored uncompressed, not inside the file or not 64-byte aligned: the
// caller then reads it the plain way.
at::DataPtr mappedRecord(const std::shared_ptr<MappedFile>& file, uint64_t headerOffset, uint64_t offset, size_t size);

// Gives every dense tensor of `module` that still points into a file mapping memory of its own.
// Returns the bytes copied.
int64_t ownMappedTensors(torch::jit::Module& module);

}  // namespace fc
