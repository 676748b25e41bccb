#include "mapped_load.h"

#include <c10/core/CPUAllocator.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "value_walk.h"

namespace fc {

namespace {

int64_t mtimeNs(const struct stat& st) { return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec; }

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TORCH_CHECK(fd_ >= 0, "cannot open ", path, ": ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    TORCH_CHECK(false, "cannot stat ", path, ": ", std::strerror(err));
  }
  size_ = static_cast<size_t>(st.st_size);
  mtimeNs_ = mtimeNs(st);
  if (size_ > 0) {
    // Read-only: MAP_POPULATE on a writable private mapping would copy every page.
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd_, 0);
    const int err = errno;
    if (p == MAP_FAILED) ::close(fd_);
    TORCH_CHECK(p != MAP_FAILED, "cannot map ", path, ": ", std::strerror(err));
    data_ = static_cast<char*>(p);
    guard_ = std::make_unique<MappingGuard>(data_, size_, &status_->cut);
  }
}

MappedFile::~MappedFile() {
  checkUnchanged();
  guard_.reset();  // before the addresses can be mapped again
  if (data_) ::munmap(data_, size_);
  ::close(fd_);
}

void MappedFile::checkUnchanged() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || static_cast<size_t>(st.st_size) != size_ || mtimeNs(st) != mtimeNs_)
    status_->changed.store(true, std::memory_order_release);
}

namespace {

class MappedReadAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit MappedReadAdapter(std::shared_ptr<MappedFile> file) : file_(std::move(file)) {}
  size_t size() const override { return file_->size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= file_->size()) return 0;
    n = std::min<size_t>(n, file_->size() - pos);
    std::memcpy(buf, file_->data() + pos, n);
    return n;
  }

 private:
  std::shared_ptr<MappedFile> file_;
};

// The deleter context of a storage that points into a mapping: keeps the mapping alive.
struct MappingRef {
  std::shared_ptr<MappedFile> file;
  const char* data;
  size_t size;
};

// A record's storage is freed once the load has given its tensor a copy of its own (a dtype or
// layout conversion, a prepacked weight, ownMappedTensors()). Its pages are dropped from this
// process at once rather than when the last record of the file goes: without that, the whole
// file stayed resident next to all the copies, and a full-size float32 load peaked at twice the
// model's size. Only pages wholly inside the record: the ones at its ends may hold its
// neighbours. The mapping is read-only and never written, so a dropped page that something
// read again would come back from the file (nothing does: the record's storage is gone).
void releaseMappingRef(void* ctx) {
  auto* ref = static_cast<MappingRef*>(ctx);
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(ref->data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(ref->data) + ref->size) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  delete ref;
}

}  // namespace

std::shared_ptr<MappedFile> mapFile(const std::string& path) { return std::make_shared<MappedFile>(path); }

std::shared_ptr<caffe2::serialize::ReadAdapterInterface> mappedReadAdapter(std::shared_ptr<MappedFile> file) {
  return std::make_shared<MappedReadAdapter>(std::move(file));
}

at::DataPtr mappedRecord(const std::shared_ptr<MappedFile>& file, uint64_t headerOffset, uint64_t offset, size_t size) {
  // torch's archive writer stores tensor records uncompressed and 64-byte aligned; anything else
  // (a compressed entry's bytes are not the tensor's) is read the plain way.
  const size_t n = file->size();
  if (size == 0 || offset % 64 != 0 || offset > n || size > n - offset) return {};
  if (headerOffset > n || n - headerOffset < 30) return {};
  const auto* header = reinterpret_cast<const unsigned char*>(file->data() + headerOffset);
  const uint32_t signature = header[0] | header[1] << 8 | header[2] << 16 | static_cast<uint32_t>(header[3]) << 24;
  const uint16_t method = header[8] | header[9] << 8;
  if (signature != 0x04034b50 || method != 0) return {};
  void* p = const_cast<char*>(file->data()) + offset;
  return at::DataPtr(p, new MappingRef{file, file->data() + offset, size}, &releaseMappingRef, at::Device(at::kCPU));
}

int64_t ownMappedTensors(torch::jit::Module& module) {
  int64_t bytes = 0;
  forEachTensor(c10::IValue(module._ivalue()), [&](const at::Tensor& t) {
    c10::Storage storage = t.storage();
    if (storage.data_ptr().get_deleter() != &releaseMappingRef) return;
    const size_t n = storage.nbytes();
    at::DataPtr owned = c10::GetCPUAllocator()->allocate(n);
    if (n > 0) std::memcpy(owned.get(), storage.data(), n);
    storage.set_data_ptr_noswap(std::move(owned));
    bytes += static_cast<int64_t>(n);
  });
  return bytes;
}

}  // namespace fc
