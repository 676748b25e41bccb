#include "workers.h"

namespace fc {

void Settlement::resolve(Napi::Env env) {
  try {
    deferred_.Resolve(finish_(env));
  } catch (...) {
    deferred_.Reject(toJsError(env, classifyCurrentException()).Value());
  }
}

void Settlement::reject(Napi::Env env, const Napi::Error& error) {
  deferred_.Reject(failed_ ? toJsError(env, error_).Value() : error.Value());
}

PromiseWorker::PromiseWorker(Napi::Env env, Work work, Finish finish, JobThread* thread)
    : Napi::AsyncWorker(env, "fastcomposer"), settlement_(env, std::move(finish)), work_(std::move(work)),
      thread_(thread) {}

void PromiseWorker::Execute() {
  try {
    if (thread_) thread_->run(work_);
    else work_();
  } catch (...) {
    settlement_.recordCurrentException();
    SetError(settlement_.message());
  }
}

DenoisingWorker::DenoisingWorker(Napi::Env env, Work work, Finish finish, Napi::Value onStep, AbortFlag abort,
                                 JobThread* thread)
    : Napi::AsyncProgressQueueWorker<StepEvent>(env, "fastcomposer.denoise"), settlement_(env, std::move(finish)),
      work_(std::move(work)), abort_(abort ? std::move(abort) : std::make_shared<std::atomic<bool>>(false)),
      thread_(thread) {
  if (onStep.IsFunction()) onStep_ = Napi::Persistent(onStep.As<Napi::Function>());
}

void DenoisingWorker::Execute(const ExecutionProgress& progress) {
  try {
    ProgressFn report = [&progress](const StepEvent& event) { progress.Send(&event, 1); };
    thread_->run([&] { work_(report, *abort_); });
  } catch (...) {
    settlement_.recordCurrentException();
    SetError(settlement_.message());
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
    } catch (const Napi::Error&) {
      // A throwing progress callback must not take the process down; it stops the job instead.
      abort_->store(true);
    }
  }
}

}  // namespace fc
