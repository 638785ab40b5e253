// A fixed pool of worker threads that runs every heavy CPU kernel. The calling thread works too, so a pool
// of n threads starts n - 1 workers. Workers spin briefly before sleeping: a decode step launches hundreds
// of short parallel regions, and a sleep/wake per region would cost more than the work.
//
// A background pool (a fine-tuning job in a serving process) does its work on n workers at the lowest CPU
// priority, the caller asleep meanwhile: where the process also decodes, the cores go to decoding first, and to
// training when they would otherwise idle.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dixie {

enum class ThreadPriority { normal, background };

class ThreadPool {
 public:
  explicit ThreadPool(int threads, ThreadPriority priority = ThreadPriority::normal);  // threads <= 0: one per core
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + (background_ ? 0 : 1); }

  // Runs task(i, thread) for i in [0, n_tasks), spread over the threads; returns when all are done.
  // Tasks are handed out dynamically, so uneven tasks balance. Not reentrant.
  void run(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& task);

  // Splits [0, n) into contiguous chunks of at least `grain` items, one or more per thread.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& body);

 private:
  void worker_loop(int thread);
  void work(int thread);

  const bool background_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;  // a background pool's caller waits on it for the last worker
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_task_{0};
  std::atomic<int> busy_workers_{0};
  int64_t n_tasks_ = 0;
  const std::function<void(int64_t, int)>* task_ = nullptr;
  bool stopping_ = false;
};

}  // namespace dixie
