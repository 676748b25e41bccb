// Async work off the event loop: every native call that touches torch runs in one of these.
// Results and errors come back as promise settlements; progress through the queue worker.
#pragma once

#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>

#include "errors.h"
#include "job_thread.h"
#include "pipeline.h"

namespace fc {

using AbortFlag = std::shared_ptr<std::atomic<bool>>;

// The promise side of a worker, shared by both kinds: the deferred, the function that builds the
// resolved value on the main thread, and the classified error of a failed run.
class Settlement {
 public:
  using Finish = std::function<Napi::Value(Napi::Env)>;
  Settlement(Napi::Env env, Finish finish) : deferred_(Napi::Promise::Deferred::New(env)), finish_(std::move(finish)) {}
  Napi::Promise promise() const { return deferred_.Promise(); }

  // On the worker thread, inside a catch block.
  void recordCurrentException() { error_ = classifyCurrentException(); failed_ = true; }
  const std::string& message() const { return error_.message; }

  // On the main thread.
  void resolve(Napi::Env env);
  void reject(Napi::Env env, const Napi::Error& error);

 private:
  Napi::Promise::Deferred deferred_;
  Finish finish_;
  ErrorInfo error_;
  bool failed_ = false;
};

// Runs `work` on the thread pool, then `finish` on the main thread to build the resolved value.
// Any exception in either becomes a rejection carrying a `code`.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Finish = std::function<Napi::Value(Napi::Env)>;

  // With `thread`, the work runs there (the model's job thread) while this pool thread waits.
  PromiseWorker(Napi::Env env, Work work, Finish finish, JobThread* thread = nullptr);
  Napi::Promise promise() const { return settlement_.promise(); }

 protected:
  void Execute() override;
  void OnOK() override { settlement_.resolve(Env()); }
  void OnError(const Napi::Error& error) override { settlement_.reject(Env(), error); }

 private:
  Settlement settlement_;
  Work work_;
  JobThread* thread_;
};

// A denoising job (alone, or the middle of generate()): reports each step to `onStep` on the
// main thread and stops at the next step once the abort flag is set.
class DenoisingWorker : public Napi::AsyncProgressQueueWorker<StepEvent> {
 public:
  using Work = std::function<void(const ProgressFn&, const std::atomic<bool>&)>;
  using Finish = std::function<Napi::Value(Napi::Env)>;

  DenoisingWorker(Napi::Env env, Work work, Finish finish, Napi::Value onStep, AbortFlag abort, JobThread* thread);
  Napi::Promise promise() const { return settlement_.promise(); }

 protected:
  void Execute(const ExecutionProgress& progress) override;
  void OnProgress(const StepEvent* events, size_t count) override;
  void OnOK() override { settlement_.resolve(Env()); }
  void OnError(const Napi::Error& error) override { settlement_.reject(Env(), error); }

 private:
  Settlement settlement_;
  Work work_;
  Napi::FunctionReference onStep_;
  AbortFlag abort_;
  JobThread* thread_;
};

}  // namespace fc
