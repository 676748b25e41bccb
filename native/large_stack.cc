#include "large_stack.h"

#include <pthread.h>

#include <exception>

#include "libtorch_log.h"

namespace fc {
namespace {

struct Task {
  const std::function<void()>* body;
  std::exception_ptr error;
};

void* runTask(void* arg) {
  auto* task = static_cast<Task*>(arg);
  try {
    collectWarningsOnThisThread();  // as on the job thread that waits for it
    (*task->body)();
  } catch (...) {
    task->error = std::current_exception();
  }
  return nullptr;
}

}  // namespace

void runOnLargeStack(const std::function<void()>& body, size_t bytes) {
  Task task{&body, nullptr};
  pthread_attr_t attr;
  pthread_t thread;
  bool started = false;
  if (pthread_attr_init(&attr) == 0) {
    started = pthread_attr_setstacksize(&attr, bytes) == 0 && pthread_create(&thread, &attr, &runTask, &task) == 0;
    pthread_attr_destroy(&attr);
  }
  if (!started) {
    body();
    return;
  }
  pthread_join(thread, nullptr);
  if (task.error) std::rethrow_exception(task.error);
}

}  // namespace fc
