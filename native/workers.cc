#include "workers.h"

#include <variant>

#include "addon_data.h"

namespace fc {
namespace {

struct Done {};
using Message = std::variant<StepEvent, Done>;

// One call's state. The JS-owned part (deferred, onStep, js) lives and dies on the main thread:
// the thread-safe function's context holds the state and drops it in its finalizer, and the
// job lets go of its reference before it queues its Done message. The native part (work,
// finish, and the model and tensors they capture) is released as soon as it has served: work on
// the job thread right after running, finish on the main thread after settling. The queue is
// unbounded, so queuing never blocks the job thread.
struct JobState {
  Napi::Promise::Deferred deferred;
  Napi::FunctionReference onStep;
  JsOwned js;
  Finish finish;
  DenoisingWork work;
  AbortFlag abort;
  ErrorInfo error;
  bool failed = false;  // written by the job before Done, read on the main thread after it

  JobState(Napi::Env env, Finish f, DenoisingWork w, AbortFlag a, JsOwned j)
      : deferred(Napi::Promise::Deferred::New(env)), js(std::move(j)), finish(std::move(f)), work(std::move(w)), abort(std::move(a)) {}

  void step(Napi::Env env, const StepEvent& event) {
    if (onStep.IsEmpty()) return;
    Napi::Object info = Napi::Object::New(env);
    info.Set("step", Napi::Number::New(env, static_cast<double>(event.step)));
    info.Set("steps", Napi::Number::New(env, static_cast<double>(event.steps)));
    info.Set("timestep", Napi::Number::New(env, event.timestep));
    if (event.member >= 0) info.Set("member", Napi::Number::New(env, static_cast<double>(event.member)));
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
    } else {
      try {
        deferred.Resolve(finish(env));
      } catch (...) {
        deferred.Reject(toJsError(env, classifyCurrentException()).Value());
      }
    }
    finish = nullptr;
    js.reset();
  }
};

using Holder = std::shared_ptr<JobState>;

void deliver(Napi::Env env, Napi::Function, Holder* state, Message* message) {
  std::unique_ptr<Message> owned(message);
  if (env == nullptr) return;  // the environment is going away: nothing left to settle
  // Exceptions must not escape into N-API's callback.
  try {
    if (const StepEvent* event = std::get_if<StepEvent>(owned.get()))
      (*state)->step(env, *event);
    else
      (*state)->settle(env);
  } catch (...) {
  }
}

using Channel = Napi::TypedThreadSafeFunction<Holder, Message, deliver>;

Napi::Promise start(Napi::Env env, JobThread& thread, DenoisingWork work, Finish finish, Napi::Value onStep, AbortFlag abort, JsOwned js) {
  auto state = std::make_shared<JobState>(env, std::move(finish), std::move(work),
                                          abort ? std::move(abort) : std::make_shared<std::atomic<bool>>(false), std::move(js));
  if (onStep.IsFunction()) state->onStep = Napi::Persistent(onStep.As<Napi::Function>());
  std::shared_ptr<EnvJobs> envJobs = addonData(env).jobs;
  Napi::Promise promise = state->deferred.Promise();
  auto* context = new Holder(state);
  Channel channel = Channel::New(env, "fastcomposer", 0, 1, context, [](Napi::Env, void*, Holder* held) { delete held; });
  envJobs->add(state->abort);
  thread.post([state = std::move(state), channel, envJobs]() mutable {
    // Every use of the channel goes through whileAlive: after its environment's cleanup the
    // channel is deleted (addon_data.h).
    auto send = [&](Message* message) {
      bool sent = false;
      envJobs->whileAlive([&] { sent = channel.NonBlockingCall(message) == napi_ok; });
      if (!sent) delete message;
      return sent;
    };
    const bool started = envJobs->start(*state->abort);
    // Whatever happens below, the channel is released and a started job counted out.
    struct Ending {
      EnvJobs& jobs;
      Channel& channel;
      bool started;
      ~Ending() {
        jobs.whileAlive([&] { channel.Release(); });
        if (started) jobs.finished();
      }
    } ending{*envJobs, channel, started};
    ProgressFn report = [&](const StepEvent& event) { send(new Message(event)); };
    try {
      // Aborted before it started (a signal while queued, or its environment ending): skip it.
      if (!started) throw AbortedError();
      state->work(report, *state->abort);
    } catch (...) {
      state->error = classifyCurrentException();
      state->failed = true;
    }
    state->work = nullptr;  // the model and inputs it captured go now, on this thread
    if (!send(new Message(Done{}))) {
      // The environment is going away. What is left of the state owns JS handles of that
      // environment, which must not be released on this thread: leak that part.
      state->finish = nullptr;
      new Holder(std::move(state));
    }
    state.reset();
  });
  return promise;
}

}  // namespace

Napi::Promise startJob(Napi::Env env, JobThread& thread, Work work, Finish finish, JsOwned js) {
  return start(
      env, thread, [work = std::move(work)](const ProgressFn&, const std::atomic<bool>&) { work(); }, std::move(finish), env.Undefined(),
      nullptr, std::move(js));
}

Napi::Promise startDenoisingJob(Napi::Env env, JobThread& thread, DenoisingWork work, Finish finish, Napi::Value onStep, AbortFlag abort,
                                JsOwned js) {
  return start(env, thread, std::move(work), std::move(finish), onStep, std::move(abort), std::move(js));
}

}  // namespace fc
