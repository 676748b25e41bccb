#include "testing_exports.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>

#include "errors.h"
#include "job_thread.h"
#include "js_job.h"
#include "js_tensor.h"
#include "mapped_load.h"
#include "model.h"
#include "module_loader.h"
#include "schedulers/replay.h"
#include "subject_pixels.h"

namespace fc {
namespace {

// The bytes of the mapping that starts at `start` resident in this process (its smaps "Rss").
int64_t mappingResidentBytes(const void* start) {
  std::ifstream smaps("/proc/self/smaps");
  char head[32];
  std::snprintf(head, sizeof head, "%lx-", static_cast<unsigned long>(reinterpret_cast<uintptr_t>(start)));
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    if (line.rfind(head, 0) == 0)
      inside = true;
    else if (inside && line.rfind("Rss:", 0) == 0)
      return std::stoll(line.substr(4)) * 1024;
  }
  throw CodedError("ERR_NATIVE", "the mapping is not in /proc/self/smaps");
}

// (path, cutTo): the arguments of the functions below that cut a file.
std::pair<std::string, off_t> pathAndCut(const Napi::CallbackInfo& info) {
  return {info[0].As<Napi::String>(), static_cast<off_t>(info[1].As<Napi::Number>().Int64Value())};
}

void cutFile(const std::string& path, off_t size) {
  if (::truncate(path.c_str(), size) != 0) throw CodedError("ERR_NATIVE", "cannot truncate " + path);
}

// Every byte read, one at a time, through `data`.
double sumOf(const char* data, size_t size) {
  const auto* bytes = reinterpret_cast<const volatile unsigned char*>(data);
  double sum = 0;
  for (size_t i = 0; i < size; ++i) sum += bytes[i];
  return sum;
}

// replayScheduler(name, config, steps, x0, eps[], seed?) -> { timesteps, initNoiseSigma, steps, scaled }:
// runs one scheduler on given model outputs, for the golden-number tests.
Napi::Value ReplayScheduler(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    std::string name = info[0].As<Napi::String>();
    SchedulerConfig config = schedulerConfigFromJs(info[1]);
    int64_t steps = info[2].As<Napi::Number>().Int64Value();
    at::Tensor x0 = tensorFromJs(env, info[3], "x0");
    std::vector<at::Tensor> eps;
    Napi::Array epsArray = info[4].As<Napi::Array>();
    for (uint32_t i = 0; i < epsArray.Length(); ++i) eps.push_back(tensorFromJs(env, epsArray.Get(i), "eps"));
    std::optional<int64_t> seed;
    if (info[5].IsNumber()) seed = info[5].As<Napi::Number>().Int64Value();
    std::vector<at::Tensor> out;
    // torch work stays on the CPU job thread even here (job_thread.h); the caller waits.
    deviceJobThread("cpu").run([&] { out = replayScheduler(name, config, steps, x0, eps, seed); });
    // Layout (replay.h): timesteps, x_0..x_N, scaled_0..scaled_{N-1}, initNoiseSigma.
    if (out.size() < 2) throw CodedError("ERR_NATIVE", "replayScheduler returned no tensors");
    const size_t n = static_cast<size_t>(out.front().size(0));
    Napi::Object result = Napi::Object::New(env);
    result.Set("timesteps", tensorToJs(env, out[0]));
    Napi::Array xs = Napi::Array::New(env, n + 1);
    for (size_t i = 0; i <= n; ++i) xs.Set(static_cast<uint32_t>(i), tensorToJs(env, out[1 + i]));
    Napi::Array scaled = Napi::Array::New(env, n);
    for (size_t i = 0; i < n; ++i) scaled.Set(static_cast<uint32_t>(i), tensorToJs(env, out[n + 2 + i]));
    result.Set("x", xs);
    result.Set("scaled", scaled);
    result.Set("initNoiseSigma", Napi::Number::New(env, out.back().item<double>()));
    return result;
  });
}

// prepareSubjectPixels(images: uint8 [H,W,3][], size) -> uint8 [S,size,size,3]: the subject
// pad + resize that generate() and encodeSubjects() run on the worker, here synchronously.
Napi::Value PrepareSubjectPixels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    JsKeepAlive keepAlive;  // synchronous: the views are done with before this returns
    std::vector<at::Tensor> images = subjectImagesFromJs(env, info[0], "subjectImages", keepAlive);
    if (!info[1].IsNumber()) throw CodedError("ERR_INVALID_ARGUMENT", "Expected a number for size");
    const int64_t size = info[1].As<Napi::Number>().Int64Value();
    at::Tensor pixels;
    deviceJobThread("cpu").run([&] { pixels = prepareSubjectPixels(images, size); });
    return tensorToJs(env, pixels);
  });
}

// warnOnJobThread(message): raises a libtorch warning (TORCH_WARN) on the CPU job thread, where
// libtorch_log.h collects it instead of printing it.
Napi::Value WarnOnJobThread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (!info[0].IsString()) throw CodedError("ERR_INVALID_ARGUMENT", "Expected a string for message");
    const std::string message = info[0].As<Napi::String>();
    deviceJobThread("cpu").run([&] { TORCH_WARN(message); });
    return env.Undefined();
  });
}

// mappedRecordResidency(path, headerOffset, offset, size) -> { mapped, released, sum }: maps the file
// as a CPU load does (mapped_load.h), makes a record's storage point into it and frees that
// storage, as the load does once a weight has a copy of its own. `mapped` and `released` are the
// mapping's resident bytes before and after; `sum` adds up the record's bytes read afterwards.
Napi::Value MappedRecordResidency(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const std::string path = info[0].As<Napi::String>();
    const auto headerOffset = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
    const auto offset = static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value());
    const auto size = static_cast<size_t>(info[3].As<Napi::Number>().Int64Value());
    std::shared_ptr<MappedFile> file = mapFile(path);
    const int64_t mapped = mappingResidentBytes(file->data());
    {
      at::DataPtr record = mappedRecord(file, headerOffset, offset, size);
      if (!record) throw CodedError("ERR_NATIVE", "not a record mappedRecord() maps");
    }
    const int64_t released = mappingResidentBytes(file->data());
    double sum = 0;
    for (size_t i = 0; i < size; ++i) sum += static_cast<unsigned char>(file->data()[offset + i]);
    Napi::Object result = Napi::Object::New(env);
    result.Set("mapped", static_cast<double>(mapped));
    result.Set("released", static_cast<double>(released));
    result.Set("sum", sum);
    return result;
  });
}

// readCutMapping(path, cutTo) -> { cut, sum }: maps the file as a CPU load does, cuts it to
// `cutTo` bytes, then reads every byte of the mapping (mapping_guard.h): `sum` adds them up.
Napi::Value ReadCutMapping(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto [path, cutTo] = pathAndCut(info);
    std::shared_ptr<MappedFile> file = mapFile(path);
    cutFile(path, cutTo);
    Napi::Object result = Napi::Object::New(env);
    result.Set("sum", sumOf(file->data(), file->size()));
    result.Set("cut", file->status()->cut.load());
    return result;
  });
}

// readCutUnguarded(path, cutTo): the same read through a mapping of its own, which no guard covers:
// the SIGBUS must end the process as it would without mapping_guard.h.
Napi::Value ReadCutUnguarded(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto [path, cutTo] = pathAndCut(info);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) throw CodedError("ERR_NATIVE", "cannot open " + path);
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw CodedError("ERR_NATIVE", "cannot map " + path);
    cutFile(path, cutTo);
    const double sum = sumOf(static_cast<const char*>(p), static_cast<size_t>(st.st_size));
    ::munmap(p, static_cast<size_t>(st.st_size));
    return Napi::Number::New(env, sum);
  });
}

// loadCutModule(path, cutTo): maps a module file, cuts it to `cutTo` bytes (not at all when
// negative), then reads it as a CPU load does (module_loader.h). Throws what the load throws.
Napi::Value LoadCutModule(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto [path, cutTo] = pathAndCut(info);
    std::shared_ptr<MappedFile> file = mapFile(path);
    if (cutTo >= 0) cutFile(path, cutTo);
    deviceJobThread("cpu").run([&] { loadAuditedModule(path, at::Device(at::kCPU), Weights::Mapped, std::move(file)); });
    return env.Undefined();
  });
}

// changeAfterNextModelRead(path, how): the next model load, once it has read its module files and
// before it uses their weights, cuts the file at `path` to nothing ("cut") or writes it again in
// place with the same bytes, as `cp` over it would ("rewrite").
Napi::Value ChangeAfterNextModelRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const std::string path = info[0].As<Napi::String>();
    const std::string how = info[1].As<Napi::String>();
    if (how != "cut" && how != "rewrite") throw CodedError("ERR_INVALID_ARGUMENT", "how must be cut or rewrite");
    setAfterModulesReadForTesting([path, how] {
      std::string bytes;
      if (how == "rewrite") {
        std::ifstream in(path, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), {});
      }
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    });
    return env.Undefined();
  });
}

}  // namespace

Napi::Object testingExports(Napi::Env env) {
  Napi::Object testing = Napi::Object::New(env);
  testing.Set("replayScheduler", Napi::Function::New(env, ReplayScheduler, "replayScheduler"));
  testing.Set("prepareSubjectPixels", Napi::Function::New(env, PrepareSubjectPixels, "prepareSubjectPixels"));
  testing.Set("warnOnJobThread", Napi::Function::New(env, WarnOnJobThread, "warnOnJobThread"));
  testing.Set("mappedRecordResidency", Napi::Function::New(env, MappedRecordResidency, "mappedRecordResidency"));
  testing.Set("readCutMapping", Napi::Function::New(env, ReadCutMapping, "readCutMapping"));
  testing.Set("readCutUnguarded", Napi::Function::New(env, ReadCutUnguarded, "readCutUnguarded"));
  testing.Set("loadCutModule", Napi::Function::New(env, LoadCutModule, "loadCutModule"));
  testing.Set("changeAfterNextModelRead", Napi::Function::New(env, ChangeAfterNextModelRead, "changeAfterNextModelRead"));
  return testing;
}

}  // namespace fc
