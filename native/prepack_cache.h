// Prepacked weights kept on disk between loads (prepack.h).
//
// Reordering a full-size SD1.5 model's weights for oneDNN writes about 3.4 GB of fresh memory on
// every load, which took most of the load's time (docs/PERFORMANCE.md, "Load"). The reordered
// weights depend only on the weights, the CPU, torch and the prepack options, so the first load
// writes them to a cache file per module and later loads map that file read-only: its pages are
// the page cache's, shared by every process that loads the model, and nothing is reordered.
//
// The file is ours, never a user's: written under a temporary name and renamed into place, never
// changed after. It holds raw tensor bytes and a small header of names, shapes, oneDNN layout
// descriptors and offsets, with a digest of the header: a header damaged on disk is never read,
// and every field is checked against the file's size before use (and each layout's size against
// its bytes); anything unexpected makes it a miss. A file crafted to pass these checks needs
// write access to the user's cache folder, like the rest of the user's own files. Its name
// comes from the module file's path, and its header records what it was made from (the module
// file's device, inode, size and modification time, torch's version, the CPU, the options): any
// difference is a miss, and the next save replaces it. As a last check, the weights found in a
// file are reordered again and compared byte for byte until one of 64 kB or more has been (a CPU
// that reports the same features but picks other layouts; small weights can look the same in two
// layouts).
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fc {

class MappedFile;

// The bytes of a packed weight (oneDNN's opaque tensor) and its serialized memory descriptor.
struct PackedBytes {
  const char* data = nullptr;
  size_t nbytes = 0;
  std::string md;
};

// None where `t` is not a CPU oneDNN tensor, or this torch cannot say (then nothing is cached).
std::optional<PackedBytes> packedBytes(const at::Tensor& t);

// Same shape, dtype and bytes (a layout that differs shows in the bytes of any weight larger than
// its blocks).
bool samePackedBytes(const at::Tensor& a, const at::Tensor& b);

// A file's device, inode, size and modification time, as a cache file's header records them.
std::string moduleFileIdentity(const std::string& path);

class PackedWeightCache {
 public:
  // `dir` empty: finds nothing and saves nothing. Files whose packed weights total less than
  // `minBytes` are not saved. One file per module file and `dtype`, so that float32 and bfloat16
  // loads of one model keep a file each; `variant`: everything the packed bytes depend on besides
  // the module file (dtype, prepack options). `moduleFileAtRead`: moduleFileIdentity(modulePath)
  // taken before the load read the module file: the weights come from that file, and save()
  // writes nothing once the file is not the same any more.
  PackedWeightCache(std::string dir, const std::string& modulePath, const std::string& moduleFileAtRead, const std::string& dtype,
                    const std::string& variant, int64_t minBytes);

  // The stored packed copy of the weight at `name` (the op and its parameters included), made
  // from a weight of `dense`'s shape and dtype; undefined when there is none. It points into the
  // read-only mapping of the cache file: keep mapping() alive as long as it is used.
  at::Tensor find(const std::string& name, const at::Tensor& dense);

  // The cache file's mapping when find() returned anything from it, else null.
  std::shared_ptr<MappedFile> mapping() const { return found_ > 0 ? mapping_ : nullptr; }

  // A weight packed at this load, written by save().
  void add(const std::string& name, const at::Tensor& dense, const at::Tensor& packed);

  // Forgets the stored entries (they disagreed with a fresh reorder): nothing more is found.
  void discard();

  // Writes a new file when this load packed anything, with every entry it used, in place of the
  // old one; nothing when the module file or the old cache file changed since the constructor.
  // Failures (no space, no permission) become a warning: the load goes on without it.
  void save();

  int found() const { return found_; }

 private:
  struct Entry {
    c10::ScalarType dtype;
    std::vector<int64_t> dims;  // the weight's shape, packed or not
    std::string md;             // oneDNN's serialized memory descriptor of the packed layout
    at::Tensor packed;
    bool fromFile;  // points into mapping_
  };

  void readFile();
  void removeOtherVersions() const;

  std::string dir_;
  std::string stem_;        // the cache file's name without version suffix: one per module file
  std::string modulePath_;  // the module file, as the model names it
  std::string moduleFile_;  // its device, inode, size and time before the load read it
  std::string identity_;    // what the packed bytes were made from, recorded in the header
  std::string fileName_;    // stem_ + a digest of identity_
  int64_t minBytes_;
  size_t expectedMdSize_ = 0;
  std::shared_ptr<MappedFile> mapping_;
  std::map<std::string, Entry> stored_;
  std::map<std::string, Entry> used_;  // found or added at this load: what save() writes
  bool added_ = false;
  int found_ = 0;
};

}  // namespace fc
