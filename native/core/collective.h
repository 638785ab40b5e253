// Data parallelism across processes: what the backends and the training loop ask of the group of ranks that train
// one model, behind one interface so that no backend sees MPI. The implementation (core/mpi_collective.cpp) loads
// libmpi at run time, as the CUDA backend loads cuBLASLt, so the addon builds and loads where there is no MPI.
//
// Every rank makes the same calls with the same sizes in the same order; the buffers are host memory. A call that
// waits longer than the timeout for the other ranks ends the job (a rank that stopped without dying would
// otherwise hold the others forever); a rank that dies is the launcher's to notice, which ends the job.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dixie {

// A flat buffer of `total` elements cut into one contiguous part per rank, in rank order, as even as can be
// (ZeRO-1's shards): rank r owns [begin(r), end(r)).
struct Shards {
  size_t total = 0;
  int ranks = 1;
  size_t first = 0;  // the offset of the first parameter shared out (an adapter's, when only it trains)
  size_t per_rank() const { return (total + ranks - 1) / ranks; }
  size_t begin(int r) const { return first + std::min(total, per_rank() * r); }
  size_t end(int r) const { return first + std::min(total, per_rank() * (r + 1)); }
  // begin(0), begin(1), ..., end(ranks - 1), relative to first: the parts the collectives below take.
  std::vector<size_t> bounds() const { return within(first, total); }
  // The same over the range [offset, offset + count) alone, relative to offset: each rank's part of that range.
  std::vector<size_t> within(size_t offset, size_t count) const {
    std::vector<size_t> b(ranks + 1);
    for (int r = 0; r <= ranks; ++r) b[r] = std::clamp(begin(r), offset, offset + count) - offset;
    return b;
  }
};

class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;   // among the ranks on this machine
  virtual int local_size() const = 0;
  virtual std::string library() const = 0;  // the MPI library and its version, for the start-up line

  virtual void allreduce_sum(float* data, size_t count) = 0;   // in place
  virtual void allreduce_sum(double* data, size_t count) = 0;  // in place
  // In place; parts has size() + 1 ascending entries, rank r's part being data[parts[r], parts[r + 1]).
  // reduce_scatter_sum: afterwards this rank's part holds the sum over the ranks of that part; the rest of the
  // buffer is left undefined. allgather: each rank's part of data, to every rank.
  virtual void reduce_scatter_sum(float* data, const std::vector<size_t>& parts) = 0;
  virtual void allgather(float* data, const std::vector<size_t>& parts) = 0;
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Waits for every rank without spinning: for the ranks that wait while rank 0 alone works (a checkpoint, samples),
  // without a timeout, however long that takes (timed false); for rank 0, which comes last, within the timeout
  // (timed true), as a rank that stopped meanwhile would hold it there.
  virtual void barrier(bool timed) = 0;
  // Ends every rank of the job now (MPI_Abort), with `code` as the launcher's exit status.
  [[noreturn]] virtual void abort(int code) = 0;
  virtual void finalize() = 0;

  // How long one call may wait for the other ranks before the job is ended (0: forever).
  virtual void set_timeout(double seconds) = 0;
  // Seconds spent in the float collectives (the gradients and parameters), since the start: the benchmark's
  // measure of what the reduction costs a step, waiting for the slowest rank included.
  virtual double reduce_seconds() const = 0;
};

// The ranks of this process's job when it was started by an MPI launcher (mpirun, mpiexec), with MPI
// initialised; null before init_process_collective().
Collective* process_collective();
// Loads libmpi ($DIXIE_LIBMPI alone when set, else Open MPI's libmpi.so.40 or MPICH's libmpi.so.12, the
// launcher's first), initialises MPI and returns the job's ranks; the same object on later calls. Throws, saying
// what to install, when no MPI library can be loaded.
Collective& init_process_collective();
// Whether an MPI launcher started this process (its rank variables are in the environment), and which.
bool launched_by_mpi(std::string* launcher);

}  // namespace dixie
