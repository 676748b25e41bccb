#include "workers.h"

#include <variant>

#include "addon_data.h"

namespace fc {
namespace {

struct Done {};
using Message = std::variant<StepEvent, Done>;

// One call's state. The thread-safe function's context holds one reference and drops it in its
// finalizer, on the main thread; the job holds another only until it has queued its Done
// message, so in a normal run the state (with the JS references it owns) dies on the main thread.
// The queue is unbounded, so queuing never blocks the job thread.
struct JobState {
  Napi::Promise::Deferred deferred;
  Finish finish;
  DenoisingWork work;
  Napi::FunctionReference onStep;
  AbortFlag abort;
  ErrorInfo error;
  bool failed = false;  // written by the job before Done, read on the main thread after it

  JobState(Napi::Env env, Finish f, DenoisingWork w, AbortFlag a)
      : deferred(Napi::Promise::Deferred::New(env)), finish(std::move(f)), work(std::move(w)), abort(std::move(a)) {}

  void step(Napi::Env env, const StepEvent& event) {
    if (onStep.IsEmpty()) return;
    Napi::Object info = Napi::Object::New(env);
    info.Set("step", Napi::Number::New(env, static_cast<double>(event.step)));
    info.Set("steps", Napi::Number::New(env, static_cast<double>(event.steps)));
    info.Set("timestep", Napi::Number::New(env, event.timestep));
    try {
      onStep.Call({info});
    } catch (const Napi::Error&) {
      // A throwing progress callback must not take the process down; it stops the job instead.
      abort->store(true);
    }
  }

  void settle(Napi::Env env) {
    if (failed) {
      deferred.Reject(toJsError(env, error).Value());
      return;
    }
    try {
      deferred.Resolve(finish(env));
    } catch (...) {
      deferred.Reject(toJsError(env, classifyCurrentException()).Value());
    }
  }
};

using Holder = std::shared_ptr<JobState>;

void deliver(Napi::Env env, Napi::Function, Holder* state, Message* message) {
  std::unique_ptr<Message> owned(message);
  if (env == nullptr) return;  // the environment is going away: nothing left to settle
  // Exceptions must not escape into N-API's callback.
  try {
    if (const StepEvent* event = std::get_if<StepEvent>(owned.get())) (*state)->step(env, *event);
    else (*state)->settle(env);
  } catch (...) {
  }
}

using Channel = Napi::TypedThreadSafeFunction<Holder, Message, deliver>;

Napi::Promise start(Napi::Env env, JobThread& thread, DenoisingWork work, Finish finish, Napi::Value onStep,
                    AbortFlag abort) {
  auto state = std::make_shared<JobState>(env, std::move(finish), std::move(work),
                                          abort ? std::move(abort) : std::make_shared<std::atomic<bool>>(false));
  if (onStep.IsFunction()) state->onStep = Napi::Persistent(onStep.As<Napi::Function>());
  std::shared_ptr<EnvJobs> envJobs = addonData(env).jobs;
  envJobs->add(state->abort);
  Napi::Promise promise = state->deferred.Promise();
  auto* context = new Holder(state);
  Channel channel = Channel::New(env, "fastcomposer", 0, 1, context, [](Napi::Env, void*, Holder* held) { delete held; });
  thread.post([state = std::move(state), channel, envJobs]() mutable {
    // Every use of the channel goes through whileAlive: after its environment's cleanup the
    // channel is deleted (addon_data.h).
    auto send = [&](Message* message) {
      bool sent = false;
      envJobs->whileAlive([&] { sent = channel.NonBlockingCall(message) == napi_ok; });
      if (!sent) delete message;
      return sent;
    };
    ProgressFn report = [&](const StepEvent& event) { send(new Message(event)); };
    try {
      state->work(report, *state->abort);
    } catch (...) {
      state->error = classifyCurrentException();
      state->failed = true;
    }
    if (!send(new Message(Done{}))) {
      // The environment is going away: the state would die here, off its thread, with JS
      // references of a dead environment. Leak it instead (the environment is ending).
      new Holder(std::move(state));
    }
    state.reset();
    envJobs->whileAlive([&] { channel.Release(); });
  });
  return promise;
}

}  // namespace

Napi::Promise startJob(Napi::Env env, JobThread& thread, Work work, Finish finish) {
  return start(
      env, thread, [work = std::move(work)](const ProgressFn&, const std::atomic<bool>&) { work(); }, std::move(finish),
      env.Undefined(), nullptr);
}

Napi::Promise startDenoisingJob(Napi::Env env, JobThread& thread, DenoisingWork work, Finish finish, Napi::Value onStep,
                                AbortFlag abort) {
  return start(env, thread, std::move(work), std::move(finish), onStep, std::move(abort));
}

}  // namespace fc
