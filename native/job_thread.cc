#include "job_thread.h"

#include <torch/csrc/jit/runtime/graph_executor.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <future>
#include <map>
#include <stdexcept>
#include <vector>

#include "libtorch_log.h"
#include "process_exit.h"

namespace fc {

JobThread::JobThread() : thread_([this] { loop(); }) {}

JobThread::~JobThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void JobThread::run(const std::function<void()>& task) {
  std::promise<void> done;
  std::future<void> result = done.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // A task queued now would never run (loop() skips them): do not wait for it.
    if (processExiting()) throw std::runtime_error("the process is exiting");
    queue_.push_back([&task, &done] {
      try {
        task();
        done.set_value();
      } catch (...) {
        done.set_exception(std::current_exception());
      }
    });
  }
  wake_.notify_one();
  result.get();
}

void JobThread::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
}

bool JobThread::waitCurrent(int timeoutMs) {
  std::unique_lock<std::mutex> lock(mutex_);
  return idle_.wait_for(lock, std::chrono::milliseconds(timeoutMs), [this] { return !busy_; });
}

void JobThread::loop() {
  // TorchScript keeps its executor switch per thread: set it where the modules run. On (the
  // profiling executor, libtorch's default) unless FASTCOMPOSER_JIT_OPTIMIZE=0.
  const char* optimize = std::getenv("FASTCOMPOSER_JIT_OPTIMIZE");
  torch::jit::setGraphExecutorOptimize(!(optimize && std::strcmp(optimize, "0") == 0));
  // libtorch's warnings from the work here go to the caller, not to stderr (libtorch_log.h).
  collectWarningsOnThisThread();
  int backstops = 0;  // exit handlers this thread registered (process_exit.h armExitBackstop)
  for (;;) {
    std::function<void()> next;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      busy_ = false;
      idle_.notify_all();
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      next = std::move(queue_.front());
      queue_.pop_front();
      if (processExiting()) {
        // The process is exiting: run nothing more, and destroy nothing either (a task may
        // own references into JavaScript): leak it.
        new std::function<void()>(std::move(next));
        continue;
      }
      busy_ = true;
    }
    try {
      next();
    } catch (...) {
      // Tasks report their own errors; one that throws anyway must not end the thread.
    }
    // After this thread's first tasks (a load, a first generation), statics made on first use
    // exist; a handler registered now runs before their destructors.
    if (backstops < kBackstopsPerJobThread && armExitBackstop()) ++backstops;
  }
}

namespace {

std::mutex registryMutex;
std::map<std::string, JobThread*>& registry() {
  static auto* threads = new std::map<std::string, JobThread*>();  // never destroyed
  return *threads;
}

}  // namespace

JobThread& deviceJobThread(const std::string& device) {
  std::lock_guard<std::mutex> lock(registryMutex);
  JobThread*& slot = registry()[device];
  if (!slot) slot = new JobThread();
  return *slot;
}

bool waitForJobThreads(int timeoutMs) {
  std::vector<JobThread*> threads;
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    for (auto& entry : registry()) threads.push_back(entry.second);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
  bool all = true;
  for (JobThread* thread : threads) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    all = thread->waitCurrent(static_cast<int>(std::max<int64_t>(0, left.count()))) && all;
  }
  return all;
}
}  // namespace fc
