#include "job_thread.h"

#include <exception>
#include <future>
#include <map>
#include <memory>

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

void JobThread::loop() {
  for (;;) {
    std::function<void()> next;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    next();
  }
}

JobThread& deviceJobThread(const std::string& device) {
  static std::mutex mutex;
  static auto* threads = new std::map<std::string, JobThread*>();
  std::lock_guard<std::mutex> lock(mutex);
  JobThread*& slot = (*threads)[device];
  if (!slot) slot = new JobThread();
  return *slot;
}

}  // namespace fc
