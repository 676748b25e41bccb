#include "prepack_cache.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/version.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "mapped_load.h"

namespace fc {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'F', 'C', 'P', 'A', 'C', 'K', '\x02', '\n'};
// magic, the header's size, the header's FNV-1a digest: a header damaged on disk is never parsed
// (its layout descriptors go to oneDNN, which trusts them).
constexpr size_t kPrefix = 24;
constexpr uint64_t kAlign = 4096;  // data offsets: page-aligned, as oneDNN wants its weights (64 at least)
constexpr size_t kMaxDims = 8;

uint64_t fnv1a(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
  return h;
}
uint64_t fnv1a(const std::string& s) { return fnv1a(s.data(), s.size()); }

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// What oneDNN's choice of layouts depends on besides the weights: the CPU's features and the
// switches that cap them.
std::string cpuSignature() {
  std::string sig;
#ifdef __linux__
  std::ifstream info("/proc/cpuinfo");
  std::string line;
  bool model = false, flags = false;
  while ((!model || !flags) && std::getline(info, line)) {
    if (!model && line.rfind("model name", 0) == 0) sig += line + ";", model = true;
    if (!flags && line.rfind("flags", 0) == 0) sig += line + ";", flags = true;
  }
#endif
  for (const char* var : {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE"})
    if (const char* v = std::getenv(var)) sig += std::string(var) + "=" + v + ";";
  return sig;
}

std::string fileIdentity(const std::string& path, std::string& real) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  real = resolved ? resolved : path;
  std::free(resolved);
  struct stat st {};
  if (::stat(real.c_str(), &st) != 0) return "unreadable";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

bool cachedDtype(int8_t code) {
  const auto t = static_cast<c10::ScalarType>(code);
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

// Reads the header of a cache file; every read is checked against the file's end.
class Reader {
 public:
  Reader(const char* data, size_t size) : p_(data), end_(data + size) {}
  bool ok() const { return ok_; }
  template <typename T>
  T get() {
    T v{};
    if (!ok_ || static_cast<size_t>(end_ - p_) < sizeof(T)) return ok_ = false, v;
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  std::string str() {
    const uint32_t n = get<uint32_t>();
    if (!ok_ || static_cast<size_t>(end_ - p_) < n) return ok_ = false, std::string();
    std::string s(p_, n);
    p_ += n;
    return s;
  }
  std::vector<int64_t> dims() {
    const uint8_t n = get<uint8_t>();
    if (n > kMaxDims) return ok_ = false, std::vector<int64_t>();
    std::vector<int64_t> d(n);
    for (int64_t& x : d) {
      x = get<int64_t>();
      if (x < 0 || x > (int64_t{1} << 40)) ok_ = false;
    }
    return d;
  }

 private:
  const char* p_;
  const char* end_;
  bool ok_ = true;
};

class Writer {
 public:
  template <typename T>
  void put(T v) {
    const char* p = reinterpret_cast<const char*>(&v);
    out_.append(p, sizeof(T));
  }
  void str(const std::string& s) {
    put(static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  void dims(at::IntArrayRef d) {
    put(static_cast<uint8_t>(d.size()));
    for (int64_t x : d) put(x);
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

uint64_t alignUp(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// Writes all of `n` bytes at `offset`; false (errno set) on failure.
bool writeAll(int fd, const char* p, size_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w, n -= static_cast<size_t>(w), offset += static_cast<uint64_t>(w);
  }
  return true;
}

// oneDNN's packed weights are opaque tensors (layout torch._mkldnn): their bytes and their memory
// descriptor (the blocked layout, serialized by oneDNN) are read through torch's mkldnn ops, the
// ones AOTInductor uses to save such weights, and a tensor is made again over bytes we own with
// torch's at::native::mkldnn_tensor_from_data_ptr. That function has no public header: it is
// looked up at run time, and where a torch lacks it nothing is cached.
using FromDataPtr = at::Tensor (*)(void*, c10::IntArrayRef, c10::ScalarType, c10::Device, const uint8_t*, int64_t);

FromDataPtr fromDataPtr() {
  static const FromDataPtr fn = reinterpret_cast<FromDataPtr>(
      ::dlsym(RTLD_DEFAULT, "_ZN2at6native27mkldnn_tensor_from_data_ptrEPvN3c108ArrayRefIlEENS2_10ScalarTypeENS2_6DeviceEPKhl"));
  return fn;
}

const c10::OperatorHandle* findOp(const char* name) {
  std::optional<c10::OperatorHandle> op = c10::Dispatcher::singleton().findSchema({name, ""});
  return op ? new c10::OperatorHandle(*op) : nullptr;  // kept for the process's life
}

struct OpaqueOps {
  const c10::OperatorHandle* md = findOp("mkldnn::_get_mkldnn_serialized_md");
  const c10::OperatorHandle* nbytes = findOp("mkldnn::_nbytes");
  const c10::OperatorHandle* dataPtr = findOp("mkldnn::data_ptr");
  bool available() const { return md && nbytes && dataPtr && fromDataPtr(); }
};

const OpaqueOps& opaqueOps() {
  static const OpaqueOps ops;
  return ops;
}

c10::IValue callOp(const c10::OperatorHandle& op, const at::Tensor& t) {
  std::vector<c10::IValue> stack{t};
  op.callBoxed(&stack);
  return stack.at(0);
}

}  // namespace

std::optional<PackedBytes> packedBytes(const at::Tensor& t) {
  const OpaqueOps& ops = opaqueOps();
  if (!ops.available() || !t.defined() || !t.is_mkldnn() || t.device() != at::kCPU) return std::nullopt;
  const at::Tensor md = callOp(*ops.md, t).toTensor().contiguous();
  PackedBytes out;
  out.md.assign(static_cast<const char*>(md.data_ptr()), md.nbytes());
  out.nbytes = static_cast<size_t>(callOp(*ops.nbytes, t).toInt());
  out.data = reinterpret_cast<const char*>(static_cast<uintptr_t>(callOp(*ops.dataPtr, t).toInt()));
  return out;
}

bool samePackedBytes(const at::Tensor& a, const at::Tensor& b) {
  std::optional<PackedBytes> x = packedBytes(a), y = packedBytes(b);
  // Not the descriptors: oneDNN serializes its whole struct, fields a layout leaves unset included.
  return x && y && a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && x->nbytes == y->nbytes &&
         std::memcmp(x->data, y->data, x->nbytes) == 0;
}

std::string moduleFileIdentity(const std::string& path) {
  std::string real;
  return fileIdentity(path, real);
}

PackedWeightCache::PackedWeightCache(std::string dir, const std::string& modulePath, const std::string& moduleFileAtRead,
                                     const std::string& dtype, const std::string& variant, int64_t minBytes)
    : dir_(std::move(dir)), minBytes_(minBytes) {
  if (dir_.empty() || !opaqueOps().available()) {
    dir_.clear();
    return;
  }
  // The descriptor's serialized size is fixed for a oneDNN build: one small reorder tells it.
  if (std::optional<PackedBytes> probe = packedBytes(at::empty({1, 1}).fill_(0).to_mkldnn())) expectedMdSize_ = probe->md.size();
  std::string real;
  fileIdentity(modulePath, real);
  const std::string& file = moduleFileAtRead;
  modulePath_ = modulePath;
  moduleFile_ = file;
  stem_ = fs::path(real).stem().string() + "-" + hex(fnv1a(real + "|" + dtype));
  identity_ = "torch " TORCH_VERSION "|" + variant + "|" + real + "|" + file + "|" + cpuSignature();
  fileName_ = stem_ + "-" + hex(fnv1a(identity_)) + ".fcpack";
  readFile();
}

void PackedWeightCache::readFile() {
  const std::string path = (fs::path(dir_) / fileName_).string();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return;
  std::shared_ptr<MappedFile> file;
  try {
    file = mapFile(path);
  } catch (const c10::Error&) {
    return;  // unreadable: a miss, replaced at save()
  }
  const char* base = file->data();
  const size_t size = file->size();
  if (size < kPrefix || std::memcmp(base, kMagic, sizeof kMagic) != 0) return;
  uint64_t headerBytes = 0, digest = 0;
  std::memcpy(&headerBytes, base + 8, sizeof headerBytes);
  std::memcpy(&digest, base + 16, sizeof digest);
  if (headerBytes > size - kPrefix || fnv1a(base + kPrefix, headerBytes) != digest) return;
  Reader r(base + kPrefix, headerBytes);
  if (r.str() != identity_ || !r.ok()) return;
  const uint32_t count = r.get<uint32_t>();
  std::map<std::string, Entry> entries;
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    std::string name = r.str();
    const int8_t dtype = r.get<int8_t>();
    std::vector<int64_t> dims = r.dims();
    std::string md = r.str();
    const uint64_t offset = r.get<uint64_t>();
    const uint64_t nbytes = r.get<uint64_t>();
    if (!r.ok() || !cachedDtype(dtype) || md.size() != expectedMdSize_) return;
    if (offset % kAlign != 0 || offset > size || nbytes > size - offset) return;
    const auto type = static_cast<c10::ScalarType>(dtype);
    at::Tensor t;
    try {
      t = fromDataPtr()(const_cast<char*>(base + offset), dims, type, at::Device(at::kCPU), reinterpret_cast<const uint8_t*>(md.data()),
                        static_cast<int64_t>(md.size()));
    } catch (const std::exception&) {  // c10::Error, or oneDNN's own (ideep::error) for a descriptor it refuses
      return;
    }
    // The layout the descriptor describes must fit in the bytes recorded for it.
    std::optional<PackedBytes> check = packedBytes(t);
    if (!check || check->nbytes != nbytes || check->data != base + offset) return;
    entries.emplace(std::move(name), Entry{type, std::move(dims), std::move(md), std::move(t), true});
  }
  if (!r.ok()) return;
  mapping_ = std::move(file);
  stored_ = std::move(entries);
}

at::Tensor PackedWeightCache::find(const std::string& name, const at::Tensor& dense) {
  auto it = stored_.find(name);
  if (it == stored_.end() || it->second.dtype != dense.scalar_type() || it->second.dims != dense.sizes().vec()) return {};
  used_[name] = it->second;
  ++found_;
  return it->second.packed;
}

void PackedWeightCache::add(const std::string& name, const at::Tensor& dense, const at::Tensor& packed) {
  if (dir_.empty() || !cachedDtype(static_cast<int8_t>(packed.scalar_type())) || packed.sizes() != dense.sizes() ||
      dense.dim() > static_cast<int64_t>(kMaxDims))
    return;
  std::optional<PackedBytes> bytes = packedBytes(packed);
  if (!bytes || bytes->md.size() != expectedMdSize_) return;  // a kind of packed weight this file cannot hold
  used_[name] = Entry{dense.scalar_type(), dense.sizes().vec(), std::move(bytes->md), packed, false};
  added_ = true;
}

void PackedWeightCache::discard() {
  stored_.clear();
  for (auto it = used_.begin(); it != used_.end();) it = it->second.fromFile ? used_.erase(it) : std::next(it);
  found_ = 0;
  added_ = true;  // the file on disk is wrong: rewrite it
}

void PackedWeightCache::save() {
  if (dir_.empty() || !added_ || used_.empty()) return;
  std::vector<std::pair<const Entry*, PackedBytes>> bytes;
  int64_t total = 0;
  for (const auto& [name, e] : used_) {
    std::optional<PackedBytes> b = packedBytes(e.packed);
    if (!b) return;
    total += static_cast<int64_t>(b->nbytes);
    bytes.emplace_back(&e, std::move(*b));
  }
  if (total < minBytes_) return;
  // The module file changed since the load read it (written again, cut short): these weights
  // may not be its weights, and the header would name it as it was.
  std::string real;
  if (fileIdentity(modulePath_, real) != moduleFile_) return;
  // Entries found in the old cache file are copied from its mapping: not if it changed.
  if (mapping_ && mapping_->disturbed()) return;

  // Offsets depend on the header's size, which depends on nothing but names and shapes: size it first.
  auto writeHeader = [&](Writer& w, const std::vector<uint64_t>& offsets) {
    w.str(identity_);
    w.put(static_cast<uint32_t>(used_.size()));
    size_t i = 0;
    for (const auto& [name, e] : used_) {
      w.str(name);
      w.put(static_cast<int8_t>(e.dtype));
      w.dims(e.dims);
      w.str(e.md);
      w.put(offsets.empty() ? uint64_t{0} : offsets[i]);
      w.put(static_cast<uint64_t>(bytes[i].second.nbytes));
      ++i;
    }
  };
  Writer sizing;
  writeHeader(sizing, {});
  const uint64_t headerBytes = sizing.bytes().size();
  std::vector<uint64_t> offsets;
  uint64_t offset = alignUp(kPrefix + headerBytes);
  for (const auto& [e, b] : bytes) {
    offsets.push_back(offset);
    offset = alignUp(offset + b.nbytes);
  }
  Writer header;
  writeHeader(header, offsets);

  std::error_code ec;
  fs::create_directories(dir_, ec);
  const std::string finalPath = (fs::path(dir_) / fileName_).string();
  const std::string tmpPath = finalPath + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmpPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0;
  char prefix[kPrefix];
  const uint64_t digest = fnv1a(header.bytes());
  std::memcpy(prefix, kMagic, 8);
  std::memcpy(prefix + 8, &headerBytes, 8);
  std::memcpy(prefix + 16, &digest, 8);
  ok = ok && writeAll(fd, prefix, sizeof prefix, 0) && writeAll(fd, header.bytes().data(), header.bytes().size(), kPrefix);
  for (size_t i = 0; ok && i < bytes.size(); ++i) ok = writeAll(fd, bytes[i].second.data, bytes[i].second.nbytes, offsets[i]);
  // Data on disk before the name: a crash must not leave a complete-looking file of holes.
  ok = ok && ::fdatasync(fd) == 0;
  const int err = errno;
  if (fd >= 0) ::close(fd);
  ok = ok && ::rename(tmpPath.c_str(), finalPath.c_str()) == 0;
  if (!ok) {
    const int cause = err ? err : errno;
    ::unlink(tmpPath.c_str());
    TORCH_WARN("the prepacked weights could not be cached in ", dir_, " (", std::strerror(cause),
               "): this load is unaffected, the next one packs them again. FASTCOMPOSER_PREPACK_CACHE=0 stops trying.");
    return;
  }
  removeOtherVersions();
}

// Files of the same module file made from another version of it (or another torch, CPU or
// options): at most one per module file is kept.
void PackedWeightCache::removeOtherVersions() const {
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == fileName_ || name.rfind(stem_ + "-", 0) != 0 || it->path().extension() != ".fcpack") continue;
    std::error_code ignored;
    fs::remove(it->path(), ignored);
  }
}

}  // namespace fc
