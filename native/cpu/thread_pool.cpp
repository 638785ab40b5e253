#include "thread_pool.h"

#include <algorithm>

#if defined(__linux__)
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace dixie {

namespace {
constexpr int kSpinIterations = 200000;  // a few hundred microseconds

// One turn of a spin-wait. PAUSE only every 64th turn: under a hypervisor, a run of PAUSEs is taken for a
// spinning lock waiter and the vCPU is descheduled (pause-loop exiting), which on the 2-vCPU VMs this runs on
// left the worker late for most tasks of a short parallel region (it took ~25% of them, not ~50%).
inline void cpu_relax(int spin) {
#if defined(__x86_64__) || defined(__i386__)
  if (spin % 64 == 63) __builtin_ia32_pause();
#else
  (void)spin;
#endif
}
// Names the worker for `top -H` and debuggers; a background one also drops to nice 19, which on Linux is a
// thread's own (elsewhere it keeps the process's priority).
void label_worker(bool background) {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), background ? "dixie-bg" : "dixie-worker");
  if (background) setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19);
#else
  (void)background;
#endif
}
}  // namespace

ThreadPool::ThreadPool(int threads, ThreadPriority priority) : background_(priority == ThreadPriority::background) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int t = background_ ? 0 : 1; t < threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::thread& w : workers_) w.join();
}

void ThreadPool::work(int thread) {
  for (;;) {
    const int64_t i = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_tasks_) return;
    (*task_)(i, thread);
  }
}

void ThreadPool::worker_loop(int thread) {
  label_worker(background_);
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations) {
      cpu_relax(spins);
      ++spins;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_) return;
    work(thread);
    if (busy_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1 && background_) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller checks the count under it: no wake-up is lost
      done_.notify_one();
    }
  }
}

void ThreadPool::run(int64_t n_tasks, const std::function<void(int64_t, int)>& task) {
  if (n_tasks <= 0) return;
  if (!background_ && (workers_.empty() || n_tasks == 1)) {
    for (int64_t i = 0; i < n_tasks; ++i) task(i, 0);
    return;
  }
  task_ = &task;
  n_tasks_ = n_tasks;
  next_task_.store(0, std::memory_order_relaxed);
  busy_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  if (background_) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_workers_.load(std::memory_order_acquire) == 0; });
    task_ = nullptr;
    return;
  }
  work(0);
  // A worker still busy here may have been preempted (a loaded machine): after a short spin, yield the core so
  // that it can finish rather than burning the time slice it needs.
  for (int spins = 0; busy_workers_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinIterations / 10) cpu_relax(spins);
    else std::this_thread::yield();
  }
  task_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int64_t chunks = std::min<int64_t>(max_chunks, size());
  const int64_t per_chunk = (n + chunks - 1) / chunks;
  run(chunks, [&](int64_t c, int) {
    const int64_t begin = c * per_chunk;
    const int64_t end = std::min(n, begin + per_chunk);
    if (begin < end) body(begin, end);
  });
}

}  // namespace dixie
