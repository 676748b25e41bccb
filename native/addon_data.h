// Per-environment state of the addon. Node may load it in the main thread and in worker
// threads, each with its own V8 isolate: class references must not be shared between them, so
// they live in the environment's instance data, not in statics.
#pragma once

#include <napi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

namespace fc {

// This environment's jobs (workers.cc), as seen from the job threads. When the environment
// shuts down (a worker thread terminated, the process exiting) its cleanup hook sets the jobs'
// abort flags (a job not yet started then does not start; a generation stops at its next step),
// waits a little for them, then marks the environment gone: from then on a job must not touch
// its thread-safe function (Node deletes those once the cleanup hooks have run) nor read the
// environment's memory (subject pictures are views of JS buffers).
class EnvJobs {
 public:
  static constexpr int kStopPollMs = 50;

  // On the environment's thread, as a job is queued.
  void add(const std::shared_ptr<std::atomic<bool>>& flag) {
    std::lock_guard<std::mutex> lock(mutex_);
    flags_.erase(std::remove_if(flags_.begin(), flags_.end(), [](const auto& f) { return f.expired(); }), flags_.end());
    flags_.push_back(flag);
  }
  // On a job thread, as a job starts: false if it is aborted already (it is then skipped);
  // else it counts as running until finished().
  bool start(const std::atomic<bool>& aborted) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (aborted.load()) return false;
    ++running_;
    return true;
  }
  void finished() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--running_ == 0) idle_.notify_all();
  }
  // Any thread.
  void abortAll() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& weak : flags_)
      if (auto flag = weak.lock()) flag->store(true);
  }
  // Waits up to `timeoutMs` for this environment's running jobs (queued ones are aborted and
  // will be skipped), or until `stop()` says to stop waiting (asked every kStopPollMs).
  template <typename Stop>
  bool waitFinished(int timeoutMs, Stop stop) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    std::unique_lock<std::mutex> lock(mutex_);
    while (running_ > 0 && !stop()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      idle_.wait_for(lock, std::chrono::milliseconds(kStopPollMs));
    }
    return running_ == 0;
  }
  void markGone() {
    std::unique_lock<std::shared_mutex> lock(aliveMutex_);
    alive_ = false;
  }

  // On a job thread: runs `f` only while the environment is alive, so that it cannot race the
  // environment's teardown; returns whether it ran. A shared lock (jobs of one environment on
  // two devices do not wait for each other); markGone waits for every `f` running.
  template <typename F>
  bool whileAlive(F&& f) {
    std::shared_lock<std::shared_mutex> lock(aliveMutex_);
    if (alive_) f();
    return alive_;
  }

 private:
  std::mutex mutex_;  // flags_, running_
  std::condition_variable idle_;
  std::vector<std::weak_ptr<std::atomic<bool>>> flags_;
  int running_ = 0;
  std::shared_mutex aliveMutex_;  // alive_
  bool alive_ = true;
};

struct AddonData {
  Napi::FunctionReference modelClass;
  Napi::FunctionReference abortFlagClass;
  std::shared_ptr<EnvJobs> jobs = std::make_shared<EnvJobs>();
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace fc
