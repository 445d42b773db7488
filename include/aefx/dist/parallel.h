#pragma once
// Data parallelism on top of a Group: which samples each rank trains on, keeping the ranks'
// modules identical, and rank 0's decisions on every rank. With the single-process Group every
// function here does what one process does alone.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <string>

#include "aefx/dist/dist.h"

namespace aefx::dist {

/// The order in which epoch `epoch` of `stage` visits `n` items: a permutation drawn from its
/// own generator seeded by (seed, stage, epoch), so every rank of a group draws the same one
/// and a resumed run redraws it.
torch::Tensor epoch_order(int64_t n, int64_t seed, const std::string& stage, int64_t epoch,
                          const torch::Device& device);

/// The per-rank share of the global batch `batch` (config key `key`): batch / world size.
/// Throws std::invalid_argument naming the key when it does not divide evenly.
int64_t local_batch_size(const std::string& key, int64_t batch, const Group& group);

/// Which items each step of an epoch trains on: step s of epoch e takes the s-th global batch of
/// epoch_order(e), and this rank its slice of it (batch / world size items). The ranks together
/// see exactly the batches one process would.
class EpochSampler {
 public:
  /// `key` names the batch size's config key in errors (local_batch_size).
  EpochSampler(int64_t n, int64_t batch, const std::string& key, int64_t seed, std::string stage,
               const Group& group, const torch::Device& device);
  /// This rank's indices (a long tensor on the device) for `step` of `epoch`.
  torch::Tensor indices(int64_t epoch, int64_t step);
  int64_t global_batch() const { return batch_; }
  int64_t local_batch() const { return local_batch_; }
  int64_t steps_per_epoch() const { return n_ / batch_; }

 private:
  int64_t n_, batch_, local_batch_, offset_, seed_;
  std::string stage_;
  torch::Device device_;
  int64_t epoch_ = -1;  ///< the epoch `order_` belongs to
  torch::Tensor order_;
};

/// Copies rank 0's parameters and buffers of `module` to every rank.
void sync_from_main(torch::nn::Module& module, Group& group);

/// Averages the BatchNorm running statistics of `module` over the ranks. BatchNorm normalises
/// each rank's batch with that batch's statistics (per-rank BatchNorm, as PyTorch's DDP does);
/// the running statistics that evaluation uses are averaged after every epoch so that all ranks
/// (and the saved model) hold the same ones.
void average_batch_norm_statistics(torch::nn::Module& module, Group& group);

/// Rank 0's `value` on every rank (a decision that depends on rank 0's run folder).
bool decided_by_main(Group& group, bool value);

/// After a resume restored rank 0's random generators on every rank: gives each other rank its
/// own stream again (seeded by seed, rank and the global step).
void reseed_after_resume(const Group& group, int64_t seed, int64_t global_step);

/// Rows computed in shards: rank r computes rows shard(n, r, world) of an n-row result with
/// `compute(begin, count)` and every rank gets all n rows. With one process it is
/// `compute(0, n)` itself (no copy); with several, each rank logs its share and times, prefixed
/// with `stage`.
torch::Tensor sharded_rows(Group& group, int64_t n,
                           const std::function<torch::Tensor(int64_t, int64_t)>& compute,
                           const std::string& stage);

}  // namespace aefx::dist
