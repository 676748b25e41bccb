#include "module_loader.h"

#include <caffe2/serialize/inline_container.h>
#include <sys/mman.h>
#include <torch/csrc/jit/serialization/import_source.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <new>
#include <unordered_map>

#include "errors.h"
#include "large_stack.h"
#include "mapped_load.h"
#include "module_audit.h"
#include "module_limits.h"

namespace fc {
namespace {

using caffe2::serialize::PyTorchStreamReader;

// The TorchScript source of a qualifier (`__torch__.a.b` -> code/__torch__/a/b.py), as
// torch::jit::load finds it, checked against module_limits.h before anything parses it (its
// `def`s counted into `functions`). The `.debug_pkl` beside it (the original Python source
// ranges, for error messages) is not read: messages then quote the serialized code.
std::shared_ptr<torch::jit::Source> sourceOf(PyTorchStreamReader& reader, const std::string& qualifier, int& functions,
                                             const std::string& file) {
  std::string path = qualifier;
  std::replace(path.begin(), path.end(), '.', '/');
  path = "code/" + path + ".py";
  if (!reader.hasRecord(path)) return nullptr;
  auto [data, size] = reader.getRecord(path);
  const std::string_view code(static_cast<const char*>(data.get()), size);
  checkCode(path, code, functions, file);
  return std::make_shared<torch::jit::Source>(code, path, 1);
}

// `bytes` of zero pages that cost no memory until read (and nothing reads them): tensor storage
// for an audit that does not need the weights.
at::DataPtr zeroPages(size_t bytes) {
  if (bytes == 0) return at::DataPtr(nullptr, at::Device(at::kCPU));
  void* pages = mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (pages == MAP_FAILED) throw std::bad_alloc();
  struct Mapping {
    void* pages;
    size_t bytes;
  };
  return at::DataPtr(
      pages, new Mapping{pages, bytes},
      [](void* ctx) {
        auto* m = static_cast<Mapping*>(ctx);
        munmap(m->pages, m->bytes);
        delete m;
      },
      at::Device(at::kCPU));
}

class Reader {
 public:
  // `file`: the file mapped (Weights::Mapped), or null to read it with plain reads.
  Reader(const std::string& path, std::optional<at::Device> device, std::shared_ptr<MappedFile> file)
      : path_(path),
        device_(device),
        file_(std::move(file)),
        reader_(file_ ? std::make_shared<PyTorchStreamReader>(mappedReadAdapter(file_)) : std::make_shared<PyTorchStreamReader>(path)),
        cu_(std::make_shared<torch::jit::CompilationUnit>()),
        importer_(
            cu_, &constants_, [this](const std::string& q) { return sourceOf(*reader_, q, functions_, path_); }, reader_->version()) {}

  torch::jit::Module read(Weights weights) {
    // torch::jit::load reads this pre-1.4 layout another way; no export of ours has it.
    std::error_code ec;
    checkRecordSizes(*reader_, file_ ? file_->size() : std::filesystem::file_size(path_, ec), path_);
    if (reader_->hasRecord("model.json"))
      throw CodedError("ERR_MODEL", refusalMessage(path_, "it is in TorchScript's legacy (pre-1.4) format"));
    c10::IValue table = readArchive("constants", Weights::Read);
    checkValueNesting(table, "constants.pkl", path_);
    checkStorageSizes(table, recordBytes_, path_);
    for (const c10::IValue& constant : table.toTupleRef().elements()) constants_.push_back(constant);
    c10::IValue data = readArchive("data", weights);
    checkValueNesting(data, "data.pkl", path_);
    checkStorageSizes(data, recordBytes_, path_);
    if (!data.isObject() || !data.toObjectRef().type()->is_module())
      throw CodedError("ERR_MODEL", "The file " + path_ + " holds no TorchScript module");
    return torch::jit::Module(data.toObject());
  }

 private:
  // As torch::jit::readArchiveAndTensors, with this file's class resolver and object builder.
  c10::IValue readArchive(const std::string& name, Weights weights) {
    auto [pickle, size] = reader_->getRecord(name + ".pkl");
    const char* bytes = static_cast<const char*>(pickle.get());
    checkPickle(bytes, size, name + ".pkl", path_);
    size_t offset = 0;
    auto read = [&](char* buffer, size_t length) -> size_t {
      length = std::min(length, size - offset);
      std::memcpy(buffer, bytes + offset, length);
      offset += length;
      return length;
    };
    // Each record's bytes, remembered by address: the pickle says how large a storage is, and
    // checkStorageSizes holds that against what its record really has.
    auto record = [this, name, weights](const std::string& key) -> at::DataPtr {
      const std::string path = name + "/" + key;
      const size_t bytes = reader_->getRecordSize(path);
      at::DataPtr data;
      if (weights == Weights::Skip) data = zeroPages(bytes);
      if (!data && weights == Weights::Mapped && file_)
        data = mappedRecord(file_, reader_->getRecordHeaderOffset(path), reader_->getRecordOffset(path), bytes);
      if (!data && weights != Weights::Skip) data = std::get<0>(reader_->getRecord(path));
      recordBytes_[data.get()] = bytes;
      return data;
    };
    auto resolveClass = [this](const c10::QualifiedName& name) {
      checkTypeName(name.qualifiedName(), path_);  // before TorchScript's parser reads it
      checkLoadableClass(name.qualifiedName(), path_);
      return c10::StrongTypePtr(cu_, importer_.loadType(name));
    };
    auto makeObject = [this](const at::StrongTypePtr& type, c10::IValue state) { return buildObject(type, std::move(state)); };
    torch::jit::Unpickler unpickler(read, resolveClass, makeObject, record, device_);
    unpickler.set_version(reader_->version());
    return unpickler.parse_ivalue();
  }

  // An object from its pickled attributes. torch::jit::load would call the class's __setstate__
  // here, before anyone could look at it: such classes are refused (no export of ours has one).
  c10::intrusive_ptr<c10::ivalue::Object> buildObject(const at::StrongTypePtr& type, c10::IValue state) {
    auto cls = type.type_->expect<at::ClassType>();
    const std::string name = cls->name() ? cls->name()->qualifiedName() : "(unnamed class)";
    if (cls->findMethod("__setstate__"))
      throw CodedError("ERR_MODEL",
                       refusalMessage(path_, "the class " + name + " defines __setstate__, which would run while the file is read"));
    if (!state.isGenericDict()) throw CodedError("ERR_MODEL", "The file " + path_ + " stores an object of " + name + " in an unknown form");
    const c10::Dict<c10::IValue, c10::IValue> attributes = state.toGenericDict();
    const size_t n = cls->numAttributes();
    auto object = c10::ivalue::Object::create(type, n);
    for (size_t i = 0; i < n; ++i) object->setSlot(i, attributes.at(cls->getAttributeName(i)));
    return object;
  }

  std::string path_;
  std::optional<at::Device> device_;
  std::shared_ptr<MappedFile> file_;
  std::shared_ptr<PyTorchStreamReader> reader_;
  std::shared_ptr<torch::jit::CompilationUnit> cu_;
  std::vector<c10::IValue> constants_;
  int functions_ = 0;                                    // `def`s in the code read so far (module_limits.h)
  std::unordered_map<const void*, size_t> recordBytes_;  // each tensor record read: its address -> its size
  torch::jit::SourceImporter importer_;
};

}  // namespace

CodedError fileChangedError(const std::string& path) {
  return CodedError("ERR_MODEL", "The file " + path +
                                     " changed while it was being read (cut short or written again by another program); load the "
                                     "model again once the file is complete");
}

AuditedModule loadAuditedModule(const std::string& path, std::optional<at::Device> device, Weights weights,
                                std::shared_ptr<MappedFile> mapped) {
  using Clock = std::chrono::steady_clock;
  const auto ms = [](Clock::time_point from) { return std::chrono::duration<double, std::milli>(Clock::now() - from).count(); };
  std::shared_ptr<MappedFile> file;
  // Zeros read where the file was cut, or bytes of two versions, make any error or none: say
  // what happened instead.
  const auto refuseIfChanged = [&] {
    if (file && file->disturbed()) throw fileChangedError(path);
  };
  try {
    if (weights == Weights::Mapped && device && !device->is_cpu()) weights = Weights::Read;
    AuditedModule out;
    auto start = Clock::now();
    if (weights == Weights::Mapped) {
      file = mapped ? std::move(mapped) : mapFile(path);
      out.fileStatus = file->status();
      out.readMs = ms(start);
      start = Clock::now();
    }
    // Everything that recurses as deep as the file nests, on a stack of its own (large_stack.h),
    // the reader and whatever it built destroyed there too.
    runOnLargeStack([&] {
      // Without the weights there is nothing to put on a device.
      Reader reader(path, weights == Weights::Skip ? std::nullopt : device, file);
      out.module = reader.read(weights);
      out.deserializeMs = ms(start);
      refuseIfChanged();
      start = Clock::now();
      out.operators = auditModule(out.module, path);
      checkCallDepth(out.module, path);
      out.auditMs = ms(start);
    });
    return out;
  } catch (...) {
    refuseIfChanged();
    try {
      throw;
    } catch (const CodedError&) {
      throw;
    } catch (const c10::Error& e) {
      throw CodedError("ERR_MODEL", "Cannot load TorchScript module " + path + ": " + e.what_without_backtrace());
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      throw CodedError("ERR_MODEL", "Cannot load TorchScript module " + path + ": " + e.what());
    }
  }
}

}  // namespace fc
