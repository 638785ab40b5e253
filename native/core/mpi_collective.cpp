// The Collective over MPI, loaded at run time (dlopen) rather than linked. Only the calls used here are declared,
// for the two ABIs that cover the libraries clusters run: Open MPI's (libmpi.so.40; handles are pointers to
// predefined objects the library exports) and MPICH's (libmpi.so.12, shared by Intel MPI and MVAPICH; handles
// are integers with fixed values). The constants are those of the two mpi.h headers.
#include <dlfcn.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "collective.h"

namespace dixie {

namespace {

constexpr int kThreadSerialized = 2;  // MPI_THREAD_SERIALIZED: Node's worker threads call MPI, one at a time
constexpr int kThreadMultiple = 3;
constexpr size_t kMaxCount = std::numeric_limits<int>::max();  // MPI counts are ints

// The entry points and predefined handles, with H the ABI's handle type.
template <typename H>
struct MpiApi {
  int (*Init_thread)(int*, char***, int, int*);
  int (*Finalize)();
  int (*Comm_rank)(H, int*);
  int (*Comm_size)(H, int*);
  int (*Comm_split_type)(H, int, int, H, H*);
  int (*Comm_free)(H*);
  int (*Allreduce)(const void*, void*, int, H, H, H);
  int (*Reduce_scatter)(const void*, void*, const int*, H, H, H);
  int (*Allgatherv)(const void*, int, H, void*, const int*, const int*, H, H);
  int (*Sendrecv)(const void*, int, H, int, int, void*, int, H, int, int, H, void*);
  int (*Bcast)(void*, int, H, int, H);
  int (*Ibarrier)(H, H*);
  int (*Test)(H*, int*, void*);
  int (*Abort)(H, int);
  int (*Get_library_version)(char*, int*);
  H comm_world, type_float, type_double, type_byte, op_sum, info_null;
  void* in_place;
  void* status_ignore;
  int comm_type_shared;
};

template <typename F>
void resolve(void* lib, const char* name, F*& fn) {
  fn = reinterpret_cast<F*>(dlsym(lib, name));
  if (!fn) throw std::runtime_error(std::string("the MPI library has no ") + name);
}

template <typename H>
void resolve_calls(void* lib, MpiApi<H>& api) {
  resolve(lib, "MPI_Init_thread", api.Init_thread);
  resolve(lib, "MPI_Finalize", api.Finalize);
  resolve(lib, "MPI_Comm_rank", api.Comm_rank);
  resolve(lib, "MPI_Comm_size", api.Comm_size);
  resolve(lib, "MPI_Comm_split_type", api.Comm_split_type);
  resolve(lib, "MPI_Comm_free", api.Comm_free);
  resolve(lib, "MPI_Allreduce", api.Allreduce);
  resolve(lib, "MPI_Reduce_scatter", api.Reduce_scatter);
  resolve(lib, "MPI_Allgatherv", api.Allgatherv);
  resolve(lib, "MPI_Sendrecv", api.Sendrecv);
  resolve(lib, "MPI_Bcast", api.Bcast);
  resolve(lib, "MPI_Ibarrier", api.Ibarrier);
  resolve(lib, "MPI_Test", api.Test);
  resolve(lib, "MPI_Abort", api.Abort);
  resolve(lib, "MPI_Get_library_version", api.Get_library_version);
}

MpiApi<void*> open_mpi_api(void* lib) {
  MpiApi<void*> api{};
  resolve_calls(lib, api);
  const auto object = [lib](const char* name) {
    void* p = dlsym(lib, name);
    if (!p) throw std::runtime_error(std::string("the Open MPI library has no ") + name);
    return p;
  };
  api.comm_world = object("ompi_mpi_comm_world");
  api.type_float = object("ompi_mpi_float");
  api.type_double = object("ompi_mpi_double");
  api.type_byte = object("ompi_mpi_byte");
  api.op_sum = object("ompi_mpi_op_sum");
  api.info_null = object("ompi_mpi_info_null");
  api.in_place = reinterpret_cast<void*>(1);
  api.status_ignore = nullptr;
  api.comm_type_shared = 0;
  return api;
}

MpiApi<int> mpich_api(void* lib) {
  MpiApi<int> api{};
  resolve_calls(lib, api);
  api.comm_world = 0x44000000;
  api.type_float = 0x4c00040a;
  api.type_double = 0x4c00080b;
  api.type_byte = 0x4c00010d;
  api.op_sum = 0x58000003;
  api.info_null = 0x1c000000;
  api.in_place = reinterpret_cast<void*>(-1);
  api.status_ignore = reinterpret_cast<void*>(1);
  api.comm_type_shared = 1;
  return api;
}

// Ends the job when a collective has waited longer than the timeout: MPI has no timeout of its own, and a rank
// that is alive but stuck (a hung disk, a lost network peer) would hold the others in the collective forever.
class Watchdog {
 public:
  explicit Watchdog(std::function<void()> on_timeout) : on_timeout_(std::move(on_timeout)) {}
  void set_timeout(double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    timeout_ = seconds;
    if (seconds > 0 && !watching_) {
      watching_ = true;
      std::thread([this] { watch(); }).detach();  // lives as long as the process, like the MPI library
    }
  }
  // Marks the span of one collective call.
  class Span {
   public:
    Span(Watchdog& w, const char* what) : w_(w) {
      std::lock_guard<std::mutex> lock(w_.mu_);
      w_.what_ = what;
      w_.since_ = std::chrono::steady_clock::now();
      w_.armed_ = true;
    }
    ~Span() {
      std::lock_guard<std::mutex> lock(w_.mu_);
      w_.armed_ = false;
    }
   private:
    Watchdog& w_;
  };
  const char* what() const { return what_; }
  double waited() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - since_).count(); }

 private:
  void watch() {
    std::unique_lock<std::mutex> lock(mu_);
    auto last = std::chrono::steady_clock::now();
    for (;;) {
      cv_.wait_for(lock, std::chrono::seconds(1));
      // Woken long after the second asked for: this process was stopped (SIGSTOP, Ctrl-Z). That time is not spent
      // waiting for the others, whom it would blame on coming back (as mpirun's SIGCONT before its kill brings it).
      const auto now = std::chrono::steady_clock::now();
      if (now - last > std::chrono::seconds(3)) since_ += now - last - std::chrono::seconds(1);
      last = now;
      if (armed_ && timeout_ > 0 && waited() > timeout_) on_timeout_();
    }
  }
  std::function<void()> on_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  double timeout_ = 0;
  bool watching_ = false;
  bool armed_ = false;
  const char* what_ = "";
  std::chrono::steady_clock::time_point since_;
};

template <typename H>
class MpiCollective : public Collective {
 public:
  MpiCollective(const MpiApi<H>& api, const std::string& soname)
      : api_(api), watchdog_([this] { timed_out(); }) {
    int provided = 0;
    check(api_.Init_thread(nullptr, nullptr, kThreadSerialized, &provided), "MPI_Init_thread");
    if (provided < kThreadSerialized)
      throw std::runtime_error("the MPI library (" + soname + ") gives thread level " + std::to_string(provided) +
                               "; dixie calls MPI from Node's worker threads, one at a time, and needs "
                               "MPI_THREAD_SERIALIZED (2)");
    thread_multiple_ = provided >= kThreadMultiple;
    check(api_.Comm_rank(api_.comm_world, &rank_), "MPI_Comm_rank");
    check(api_.Comm_size(api_.comm_world, &size_), "MPI_Comm_size");
    H local{};
    check(api_.Comm_split_type(api_.comm_world, api_.comm_type_shared, rank_, api_.info_null, &local),
          "MPI_Comm_split_type");
    check(api_.Comm_rank(local, &local_rank_), "MPI_Comm_rank");
    check(api_.Comm_size(local, &local_size_), "MPI_Comm_size");
    check(api_.Comm_free(&local), "MPI_Comm_free");
    std::vector<char> version(8192);
    int length = 0;
    check(api_.Get_library_version(version.data(), &length), "MPI_Get_library_version");
    library_ = std::string(version.data(), std::strcspn(version.data(), ",\n"));
    library_ += " (" + soname + ")";
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  std::string library() const override { return library_; }

  void allreduce_sum(float* data, size_t count) override {
    if (tree_order()) {  // a fixed tree's reduce-scatter over even parts, then every part to every rank
      const Shards even{count, size_, 0};
      reduce_scatter_sum(data, even.bounds());
      allgather(data, even.bounds());
      return;
    }
    Timed timed(*this, "MPI_Allreduce");
    for (size_t done = 0; done < count; done += kMaxCount) {
      const int n = static_cast<int>(std::min(kMaxCount, count - done));
      check(api_.Allreduce(api_.in_place, data + done, n, api_.type_float, api_.op_sum, api_.comm_world), "MPI_Allreduce");
    }
  }

  void allreduce_sum(double* data, size_t count) override {
    Watchdog::Span span(watchdog_, "MPI_Allreduce");
    check(api_.Allreduce(api_.in_place, data, int_count(count, "MPI_Allreduce"), api_.type_double, api_.op_sum,
                         api_.comm_world),
          "MPI_Allreduce");
  }

  void reduce_scatter_sum(float* data, const std::vector<size_t>& parts) override {
    const Layout l = layout(parts, "MPI_Reduce_scatter");
    if (tree_order()) {
      Timed timed(*this, "MPI_Sendrecv");
      tree_reduce_scatter(data, parts);
      return;
    }
    Timed timed(*this, "MPI_Reduce_scatter");
    check(api_.Reduce_scatter(api_.in_place, data, l.counts.data(), api_.type_float, api_.op_sum, api_.comm_world),
          "MPI_Reduce_scatter");
    // MPI leaves this rank's part at the start of the buffer.
    std::memmove(data + parts[rank_], data, sizeof(float) * l.counts[rank_]);
  }

  void allgather(float* data, const std::vector<size_t>& parts) override {
    Timed timed(*this, "MPI_Allgatherv");
    const Layout l = layout(parts, "MPI_Allgatherv");
    check(api_.Allgatherv(api_.in_place, 0, api_.type_float, data, l.counts.data(), l.displs.data(), api_.type_float,
                          api_.comm_world),
          "MPI_Allgatherv");
  }

  void broadcast(void* data, size_t bytes, int root) override {
    Watchdog::Span span(watchdog_, "MPI_Bcast");
    check(api_.Bcast(data, int_count(bytes, "MPI_Bcast"), api_.type_byte, root, api_.comm_world), "MPI_Bcast");
  }

  void barrier(bool timed) override {
    std::optional<Watchdog::Span> span;
    if (timed) span.emplace(watchdog_, "MPI_Ibarrier");
    H request{};
    check(api_.Ibarrier(api_.comm_world, &request), "MPI_Ibarrier");
    // Polled with growing sleeps: the ranks waiting here leave their cores to rank 0's work.
    for (int polls = 0;; ++polls) {
      int done = 0;
      check(api_.Test(&request, &done, api_.status_ignore), "MPI_Test");
      if (done) return;
      std::this_thread::sleep_for(std::chrono::microseconds(polls < 100 ? 100 : 5000));
    }
  }

  [[noreturn]] void abort(int code) override {
    api_.Abort(api_.comm_world, code);
    std::_Exit(code);  // MPI_Abort does not return; this is for the compiler
  }

  void finalize() override { check(api_.Finalize(), "MPI_Finalize"); }

  void set_timeout(double seconds) override { watchdog_.set_timeout(seconds); }
  double reduce_seconds() const override { return reduce_seconds_; }

 private:
  struct Layout {
    std::vector<int> counts, displs;
  };

  // A float collective: watched, and its time counted.
  class Timed {
   public:
    Timed(MpiCollective& c, const char* what) : c_(c), span_(c.watchdog_, what), start_(std::chrono::steady_clock::now()) {}
    ~Timed() { c_.reduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
   private:
    MpiCollective& c_;
    Watchdog::Span span_;
    std::chrono::steady_clock::time_point start_;
  };

  static int int_count(size_t n, const char* what) {
    if (n > kMaxCount)
      throw std::length_error(std::string(what) + ": " + std::to_string(n) + " elements are more than MPI's int counts hold");
    return static_cast<int>(n);
  }

  Layout layout(const std::vector<size_t>& parts, const char* what) const {
    if (parts.size() != static_cast<size_t>(size_) + 1)
      throw std::logic_error(std::string(what) + ": " + std::to_string(parts.size()) + " part bounds for " +
                             std::to_string(size_) + " ranks");
    Layout l;
    for (int r = 0; r < size_; ++r) {
      l.counts.push_back(int_count(parts[r + 1] - parts[r], what));
      l.displs.push_back(int_count(parts[r], what));
    }
    return l;
  }

  // The ranks' float sums take a fixed binary tree over the ranks when their number is a power of two: neighbours
  // first, then pairs of pairs, the tree the backends' gradients take over sequences (native/cpu/kernels.h), so that
  // a run on 2^k ranks sums as one process over the same global batch does. MPI leaves the order of its own
  // reductions to the library (typically a ring for large buffers), which only with two ranks is the same.
  bool tree_order() const { return size_ > 1 && (size_ & (size_ - 1)) == 0; }

  // Recursive halving: at distance d = 1, 2, 4, ... each rank hands its partner (rank ^ d) the parts the partner
  // keeps and adds the partner's copy of the parts it keeps, so rank r ends with part r summed over the tree.
  void tree_reduce_scatter(float* data, const std::vector<size_t>& parts) {
    constexpr size_t kChunk = 1 << 20;  // floats received a call (4 MB of staging)
    if (staging_.empty()) staging_.resize(kChunk);
    for (int d = 1; d < size_; d *= 2) {
      const int partner = rank_ ^ d;
      // Held before this step: the parts q with q = rank (mod d). Kept: q = rank (mod 2d); sent: q = partner (mod 2d).
      std::vector<int> kept, sent;
      for (int q = rank_ % d; q < size_; q += d) ((q % (2 * d)) == (rank_ % (2 * d)) ? kept : sent).push_back(q);
      for (size_t j = 0; j < kept.size(); ++j) {
        float* keep = data + parts[kept[j]];
        const float* send = data + parts[sent[j]];
        const size_t n_keep = parts[kept[j] + 1] - parts[kept[j]], n_send = parts[sent[j] + 1] - parts[sent[j]];
        for (size_t off = 0; off < std::max(n_keep, n_send); off += kChunk) {
          const size_t in = off < n_keep ? std::min(kChunk, n_keep - off) : 0;
          const size_t out = off < n_send ? std::min(kChunk, n_send - off) : 0;
          check(api_.Sendrecv(send + off, static_cast<int>(out), api_.type_float, partner, 0, staging_.data(),
                              static_cast<int>(in), api_.type_float, partner, 0, api_.comm_world, api_.status_ignore),
                "MPI_Sendrecv");
          for (size_t i = 0; i < in; ++i) keep[off + i] += staging_[i];
        }
      }
    }
  }

  void check(int rc, const char* what) const {
    if (rc != 0) throw std::runtime_error(std::string(what) + " failed on rank " + std::to_string(rank_) + " (error " + std::to_string(rc) + ")");
  }

  // On the watchdog's thread: MPI_Abort when the library allows a call from a second thread, else an exit, which
  // the launcher turns into the end of the job all the same.
  // Of two ranks the one waited for is the other, which the message names; of more, any of them may be the one
  // that stopped, and the others wait for it too.
  void timed_out() {
    const std::string waited_for = size_ == 2 ? "rank " + std::to_string(1 - rank_) : "the other ranks";
    std::fprintf(stderr,
                 "dixie: rank %d: %s has waited %.0f s for %s (--collective_timeout); %s has stopped without dying: "
                 "ending the job\n",
                 rank_, watchdog_.what(), watchdog_.waited(), waited_for.c_str(), size_ == 2 ? "it" : "a rank");
    std::fflush(stderr);
    if (thread_multiple_) api_.Abort(api_.comm_world, 1);
    std::_Exit(1);
  }

  MpiApi<H> api_;
  Watchdog watchdog_;
  bool thread_multiple_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::string library_;
  double reduce_seconds_ = 0;
  std::vector<float> staging_;  // the partner's chunk in tree_reduce_scatter
};

Collective* g_collective = nullptr;

}  // namespace

bool launched_by_mpi(std::string* launcher) {
  const struct {
    const char* variable;
    const char* launcher;
  } known[] = {{"OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun"}, {"PMI_SIZE", "an MPICH mpiexec"}, {"PMIX_RANK", "a PMIx launcher"}};
  for (const auto& k : known) {
    if (std::getenv(k.variable)) {
      if (launcher) *launcher = k.launcher;
      return true;
    }
  }
  return false;
}

Collective* process_collective() { return g_collective; }

Collective& init_process_collective() {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (g_collective) return *g_collective;
  // The launcher's own library first, so that Open MPI's mpirun never meets MPICH's libmpi or the reverse.
  const bool open_mpi = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  const char* env = std::getenv("DIXIE_LIBMPI");
  std::vector<const char*> names = {open_mpi ? "libmpi.so.40" : "libmpi.so.12", open_mpi ? "libmpi.so.12" : "libmpi.so.40", "libmpi.so"};
  if (env && *env) names = {env};
  std::string tried;
  for (const char* name : names) {
    // RTLD_GLOBAL: Open MPI's own plugins, loaded later, link against the library's symbols.
    void* lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
      tried += std::string(tried.empty() ? "" : "; ") + dlerror();
      continue;
    }
    if (dlsym(lib, "ompi_mpi_comm_world")) g_collective = new MpiCollective<void*>(open_mpi_api(lib), name);
    else g_collective = new MpiCollective<int>(mpich_api(lib), name);
    return *g_collective;
  }
  std::string launcher = "an MPI launcher";
  launched_by_mpi(&launcher);
  throw std::runtime_error("started by " + launcher + " but no MPI library could be loaded (" + tried +
                           "): install Open MPI (Debian and Ubuntu: apt-get install openmpi-bin; Fedora and RHEL: dnf "
                           "install openmpi) or MPICH (apt-get install mpich), or set DIXIE_LIBMPI to the path of "
                           "libmpi.so");
}

}  // namespace dixie
