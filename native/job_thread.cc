#include "job_thread.h"

#include <exception>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <vector>

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

bool JobThread::drain(int timeoutMs) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  post([done] { done->set_value(); });
  return finished.wait_for(std::chrono::milliseconds(timeoutMs)) == std::future_status::ready;
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

void drainJobThreads(int timeoutMs) {
  std::vector<JobThread*> threads;
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    for (auto& entry : registry()) threads.push_back(entry.second);
  }
  for (JobThread* thread : threads) thread->drain(timeoutMs);
}

}  // namespace fc
