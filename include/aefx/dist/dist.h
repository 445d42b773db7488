#pragma once
// Data-parallel training over processes and machines with LibTorch's c10d: a TCPStore for
// rendezvous and small messages, and a Gloo (CPU) or NCCL (CUDA) process group for the
// collectives. Launch follows torchrun's contract (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so `torchrun`, `aefx launch` or variables set by
// hand on each machine all work with the same binary.
#include <torch/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "aefx/config/config.h"

namespace aefx::dist {

/// Where this process stands in the group, as torchrun describes it.
struct Env {
  bool enabled = false;  ///< the variables were set: join a group (even of one process)
  /// torchrun's agent already serves the store at MASTER_ADDR:MASTER_PORT
  /// (TORCHELASTIC_USE_AGENT_STORE=True): every rank connects to it, under the key prefix of the
  /// agent's restart count (TORCHELASTIC_RESTART_COUNT).
  bool agent_store = false;
  int restart_count = 0;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        ///< index among the processes on this machine (picks cuda:N)
  int local_world_size = 1;  ///< processes on this machine (divides the CPU cores)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

/// Reads the torchrun variables from `vars` (normally the process environment). Without RANK
/// and WORLD_SIZE the process runs alone (enabled false). Throws std::invalid_argument naming
/// the variable when one is malformed or out of range, or when only some are set.
Env env_from(const std::map<std::string, std::string>& vars);

/// The torchrun variables of the process environment.
std::map<std::string, std::string> environment_variables();

/// Thrown when a collective or the store fails because another rank died, hung past the
/// timeout or could not be reached: names this rank, the operation and the cause. (When a
/// SIGINT/SIGTERM is pending, util::Interrupted is thrown instead: the other rank stopped for
/// the same signal.)
class PeerFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Whether this build has the Gloo (CPU) and NCCL (CUDA) backends.
bool has_gloo();
bool has_nccl();

/// A process group: every rank runs the same sequence of calls (collectives); each call blocks
/// until all ranks reached it, or throws PeerFailure after `timeout`, at once when a peer's
/// connection closes (a dead rank). A default-constructed Group is the single process: rank 0 of
/// 1, and every collective is the identity (nothing is sent, nothing is changed), so code passes
/// one Group by reference and never asks whether it runs distributed.
class Group {
 public:
  /// The single process: rank 0 of 1, collectives are the identity.
  Group();
  /// Joins the group `env` describes: rank 0 serves the TCPStore at MASTER_ADDR:MASTER_PORT and
  /// waits for the others; `backend` is auto (nccl for a CUDA device, else gloo), gloo or nccl.
  /// Throws PeerFailure when the group is not complete within `timeout`.
  Group(const Env& env, config::Backend backend, const torch::Device& device,
        std::chrono::milliseconds timeout);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return env_.rank; }
  int size() const { return env_.world_size; }
  bool is_main() const { return env_.rank == 0; }
  /// "none" for the single process, else the backend in use (gloo, nccl).
  std::string backend() const { return impl_ ? config::name_of(backend_) : "none"; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  /// Sums each tensor over all ranks, in place; with `average`, divides by the world size.
  /// Tensors are flattened into buckets of at most `bucket_bytes` (one collective per bucket),
  /// whatever their layout (channels-last included). All must be on the group's device.
  void all_reduce(const std::vector<torch::Tensor>& tensors, bool average,
                  int64_t bucket_bytes = 25 << 20);
  /// Averages the gradients of `params` (those that have one) over all ranks: after backward,
  /// before the optimizer step.
  void average_gradients(const std::vector<torch::Tensor>& params);
  /// Copies rank 0's values of `tensors` to every rank, in place.
  void broadcast(const std::vector<torch::Tensor>& tensors);
  /// Fills `full` (n rows, a contiguous tensor or dim-0 slice of one, on every rank) with every
  /// rank's `local` rows: rank r holds rows shard(n, r, world) of it. One broadcast per rank,
  /// straight into `full`, so the gathered rows need no second copy.
  void gather_shards(const torch::Tensor& local, torch::Tensor full);
  /// A double summed over all ranks.
  double sum(double value);
  /// After a training step: the largest pending signal of the ranks (0: none) and whether any
  /// rank's loss was non-finite (engine::Trainer::Agreement).
  std::pair<int, bool> agree(int signal, bool non_finite);
  /// Rank 0's `value` on every rank (through the store).
  std::string from_main(const std::string& value);
  /// Rank 0's bytes of `file` on every rank (rank 0 reads it; the others need no copy of the
  /// run folder). When rank 0 cannot read it (missing: util::require_file's message naming the
  /// `written_by` stage), every rank throws: rank 0 its own error, the others one naming rank 0
  /// and the file.
  std::string file_from_main(const std::string& file, const std::string& written_by = "");
  /// Throws std::runtime_error naming `what` and the ranks when `value` differs between ranks
  /// (e.g. a fingerprint of the weights, which data parallelism keeps identical).
  void check_same(double value, const std::string& what);
  /// check_same on the fingerprint of `tensors` (computed only when there are other ranks).
  void check_same(const std::vector<torch::Tensor>& tensors, const std::string& what);
  /// Waits until every rank got here.
  void barrier(const std::string& what);

 private:
  struct Impl;
  [[noreturn]] void fail(const std::string& op, const std::exception& e) const;
  Env env_;
  config::Backend backend_ = config::Backend::kAuto;
  torch::Device device_ = torch::kCPU;
  std::chrono::milliseconds timeout_;
  int64_t seq_ = 0;              ///< numbers the store keys of from_main calls (same on every rank)
  mutable bool failed_ = false;  ///< a collective failed: the group is unusable
  std::unique_ptr<Impl> impl_;
};

/// Rows [begin, end) of `n` rows that rank `rank` of `world` handles: contiguous, sizes differ by
/// at most one.
std::pair<int64_t, int64_t> shard(int64_t n, int rank, int world);

/// The random seed of rank `rank`: `seed` for rank 0 (so rank 0 draws what a single process
/// draws), a different stream for every other rank (its own augmentation and dropout draws).
uint64_t rank_seed(int64_t seed, int rank);

/// A fingerprint of the values of `tensors` (float64 sums), equal on ranks that hold the same
/// values.
double fingerprint(const std::vector<torch::Tensor>& tensors);

/// A TCP port of the loopback address that nothing listens on now (the kernel picks it).
int free_port();

/// Options of `aefx launch`.
struct LaunchOptions {
  int nproc = 1;      ///< processes on this machine
  int nnodes = 1;     ///< machines
  int node_rank = 0;  ///< this machine's index (0 hosts the store)
  std::string master_addr = "127.0.0.1";
  int master_port = 0;        ///< 0: a free port (one machine only)
  double grace_seconds = 30;  ///< after one rank fails, the others get this long to stop
  std::string executable;     ///< the aefx binary to start (default: this one)
};

/// Starts `nproc` processes `executable args...` with the torchrun variables set, forwards
/// SIGINT/SIGTERM to them and waits for all. When one fails, the others are given
/// `grace_seconds` to stop on their own, then killed. Returns 0 when all succeeded, else the
/// exit status of the first that failed (128 + N for signal N), and prints which rank failed.
int launch(const LaunchOptions& options, const std::vector<std::string>& args);

}  // namespace aefx::dist
