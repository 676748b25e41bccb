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
  // On the environment's thread, as a job is queued; `finished` is called by the job's end.
  void add(const std::shared_ptr<std::atomic<bool>>& flag) {
    std::lock_guard<std::mutex> lock(mutex_);
    flags_.erase(std::remove_if(flags_.begin(), flags_.end(), [](const auto& f) { return f.expired(); }), flags_.end());
    flags_.push_back(flag);
    ++outstanding_;
  }
  // On a job thread, when a job has ended (settled or given up).
  void finished() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--outstanding_ == 0) idle_.notify_all();
  }
  // Any thread.
  void abortAll() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& weak : flags_)
      if (auto flag = weak.lock()) flag->store(true);
  }
  bool waitFinished(int timeoutMs) {
    std::unique_lock<std::mutex> lock(mutex_);
    return idle_.wait_for(lock, std::chrono::milliseconds(timeoutMs), [this] { return outstanding_ == 0; });
  }
  void markGone() {
    std::lock_guard<std::mutex> lock(aliveMutex_);
    alive_ = false;
  }

  // On a job thread: runs `f` only while the environment is alive, so that it cannot race the
  // environment's teardown; returns whether it ran.
  // Its own mutex: `f` may take a while (reading a large picture), and the environment's thread
  // must not wait for that when it queues a job, only when it ends.
  template <typename F>
  bool whileAlive(F&& f) {
    std::lock_guard<std::mutex> lock(aliveMutex_);
    if (alive_) f();
    return alive_;
  }

 private:
  std::mutex mutex_;       // flags_, outstanding_
  std::mutex aliveMutex_;  // alive_
  std::condition_variable idle_;
  std::vector<std::weak_ptr<std::atomic<bool>>> flags_;
  int outstanding_ = 0;
  bool alive_ = true;
};

// Every environment's EnvJobs, for the process-exit handler (addon.cc), which must stop the jobs
// of all of them.
inline std::mutex& allEnvJobsMutex() {
  static auto* m = new std::mutex();
  return *m;
}
inline std::vector<std::weak_ptr<EnvJobs>>& allEnvJobs() {
  static auto* all = new std::vector<std::weak_ptr<EnvJobs>>();  // never destroyed: used at exit
  return *all;
}

struct AddonData {
  Napi::FunctionReference modelClass;
  Napi::FunctionReference abortFlagClass;
  std::shared_ptr<EnvJobs> jobs = std::make_shared<EnvJobs>();
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace fc
