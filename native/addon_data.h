// Per-environment state of the addon. Node may load it in the main thread and in worker
// threads, each with its own V8 isolate: class references must not be shared between them, so
// they live in the environment's instance data, not in statics.
#pragma once

#include <napi.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

namespace fc {

// This environment's running jobs (workers.cc), as seen from the job threads. When the
// environment shuts down (process exit, a worker thread terminated), its cleanup hook sets the
// jobs' abort flags, so that the shutdown does not wait for their generations, waits a little for
// the job threads, then marks the environment gone: from then on a job must not touch its
// thread-safe function (Node deletes those once the cleanup hooks have run).
class EnvJobs {
 public:
  // On the environment's thread.
  void add(const std::shared_ptr<std::atomic<bool>>& flag) {
    flags_.erase(std::remove_if(flags_.begin(), flags_.end(), [](const auto& f) { return f.expired(); }), flags_.end());
    flags_.push_back(flag);
  }
  void abortAll() {
    for (const auto& weak : flags_)
      if (auto flag = weak.lock()) flag->store(true);
  }
  void markGone() {
    std::lock_guard<std::mutex> lock(mutex_);
    alive_ = false;
  }

  // On a job thread: runs `f` only while the environment is alive, so that it cannot race
  // the environment's teardown; returns whether it ran.
  template <typename F>
  bool whileAlive(F&& f) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (alive_) f();
    return alive_;
  }

 private:
  std::vector<std::weak_ptr<std::atomic<bool>>> flags_;
  std::mutex mutex_;
  bool alive_ = true;
};

struct AddonData {
  Napi::FunctionReference modelClass;
  Napi::FunctionReference abortFlagClass;
  std::shared_ptr<EnvJobs> jobs = std::make_shared<EnvJobs>();
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace fc
