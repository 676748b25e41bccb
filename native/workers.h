// Async work off the event loop: every native call that touches torch runs as a job on its
// device's job thread (job_thread.h) and settles a promise on the main thread through a
// thread-safe function, which also carries the denoising progress. No libuv pool thread waits
// for a job, so long generations leave the pool to fs, dns, zlib and sharp.
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

// Builds the resolved value on the main thread, once the work is done.
using Finish = std::function<Napi::Value(Napi::Env)>;
using Work = std::function<void()>;
// Denoising work: reports steps through `progress` and stops at the next step once `aborted`.
using DenoisingWork = std::function<void(const ProgressFn& progress, const std::atomic<bool>& aborted)>;

// What a job keeps of JavaScript (references to the buffers that its views read): released on
// the main thread once the job has settled, never on a job thread.
using JsOwned = std::shared_ptr<void>;

// Queues `work` on `thread`; the promise resolves with finish(env), or rejects with a coded
// error when either throws. `work` must not capture JS references (pass them as `js`): it is
// destroyed on the job thread as soon as it has run, so that what it holds (a model) goes then.
Napi::Promise startJob(Napi::Env env, JobThread& thread, Work work, Finish finish, JsOwned js = nullptr);

// As startJob, for denoising: each step is reported to `onStep` (a function, or undefined) on the
// main thread; a throwing onStep sets the abort flag, which stops the job at its next step.
Napi::Promise startDenoisingJob(Napi::Env env, JobThread& thread, DenoisingWork work, Finish finish, Napi::Value onStep, AbortFlag abort,
                                JsOwned js = nullptr);

}  // namespace fc
