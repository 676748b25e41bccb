// One long-lived thread per device that runs all torch work for that device. OpenMP (libgomp)
// keeps a team of worker threads per calling thread, and once it manages more threads than
// there are CPUs it stops spinning between parallel regions and sleeps instead: with torch ops
// called from several libuv pool threads (or the main thread), every small op paid for a futex
// wake-up and two threads ran 3-5x slower than one (docs/PERFORMANCE.md). One calling thread
// per device keeps one team.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace fc {

class JobThread {
 public:
  JobThread();
  ~JobThread();  // finishes the queued tasks, then joins
  JobThread(const JobThread&) = delete;
  JobThread& operator=(const JobThread&) = delete;

  // Runs `task` on this thread and waits for it; rethrows what it threw (and throws once the
  // process is exiting). For short synchronous calls (testing_exports.cc); native calls queue
  // their jobs with post() (workers.h).
  void run(const std::function<void()>& task);

  // Queues `task` without waiting (it must not throw). Safe from any thread, the job thread too.
  void post(std::function<void()> task);

  // Waits up to `timeoutMs` for the task that is running now (if any) to end; false on a
  // timeout. Once the process is exiting (process_exit.h) no further task starts.
  bool waitCurrent(int timeoutMs);

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  bool busy_ = false;
  std::thread thread_;
};

// Waits, at most `timeoutMs` in all, for every job thread's running task; false if one is still
// running then. The exit paths (process_exit.h) call it before C++ static objects are destroyed
// under a running task.
bool waitForJobThreads(int timeoutMs);

// The job thread of a device ("cpu", "cuda:0", ...), created on first use and kept for the
// life of the process (never joined: a job still running at exit must not hold exit up).
JobThread& deviceJobThread(const std::string& device);

}  // namespace fc
