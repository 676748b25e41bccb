#include "workers.h"

namespace fc {

PromiseWorker::PromiseWorker(Napi::Env env, Work work, Finish finish, JobThread* thread)
    : Napi::AsyncWorker(env, "fastcomposer"), deferred_(Napi::Promise::Deferred::New(env)),
      work_(std::move(work)), finish_(std::move(finish)), thread_(thread) {}

void PromiseWorker::Execute() {
  try {
    if (thread_) thread_->run(work_);
    else work_();
  } catch (...) {
    error_ = classifyCurrentException();
    failed_ = true;
    SetError(error_.message);
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  try {
    deferred_.Resolve(finish_(env));
  } catch (...) {
    deferred_.Reject(toJsError(env, classifyCurrentException()).Value());
  }
}

void PromiseWorker::OnError(const Napi::Error& error) {
  Napi::Env env = Env();
  deferred_.Reject(failed_ ? toJsError(env, error_).Value() : error.Value());
}

DenoisingWorker::DenoisingWorker(Napi::Env env, Work work, Finish finish, Napi::Value onStep, AbortFlag abort,
                                 JobThread* thread)
    : Napi::AsyncProgressQueueWorker<StepEvent>(env, "fastcomposer.denoise"),
      deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), finish_(std::move(finish)),
      abort_(abort ? std::move(abort) : std::make_shared<std::atomic<bool>>(false)), thread_(thread) {
  if (onStep.IsFunction()) onStep_ = Napi::Persistent(onStep.As<Napi::Function>());
}

void DenoisingWorker::Execute(const ExecutionProgress& progress) {
  try {
    ProgressFn report = [&progress](const StepEvent& event) { progress.Send(&event, 1); };
    thread_->run([&] { work_(report, *abort_); });
  } catch (...) {
    error_ = classifyCurrentException();
    failed_ = true;
    SetError(error_.message);
  }
}

void DenoisingWorker::OnProgress(const StepEvent* events, size_t count) {
  if (onStep_.IsEmpty()) return;
  Napi::Env env = Env();
  for (size_t i = 0; i < count; ++i) {
    Napi::Object info = Napi::Object::New(env);
    info.Set("step", Napi::Number::New(env, static_cast<double>(events[i].step)));
    info.Set("steps", Napi::Number::New(env, static_cast<double>(events[i].steps)));
    info.Set("timestep", Napi::Number::New(env, events[i].timestep));
    try {
      onStep_.Call({info});
    } catch (const Napi::Error& e) {
      // A throwing progress callback must not take the process down; it stops the job instead.
      abort_->store(true);
    }
  }
}

void DenoisingWorker::OnOK() {
  Napi::Env env = Env();
  try {
    deferred_.Resolve(finish_(env));
  } catch (...) {
    deferred_.Reject(toJsError(env, classifyCurrentException()).Value());
  }
}

void DenoisingWorker::OnError(const Napi::Error& error) {
  Napi::Env env = Env();
  deferred_.Reject(failed_ ? toJsError(env, error_).Value() : error.Value());
}

}  // namespace fc
