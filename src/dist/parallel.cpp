#include "aefx/dist/parallel.h"

#include <torch/torch.h>

#include <functional>
#include <stdexcept>

#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::dist {

torch::Tensor epoch_order(int64_t n, int64_t seed, const std::string& stage, int64_t epoch,
                          const torch::Device& device) {
  const uint64_t salt = std::hash<std::string>{}(stage)&0xffffffULL;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(
      static_cast<uint64_t>(seed) * 1000003ULL + salt * 65537ULL + static_cast<uint64_t>(epoch));
  return torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong)).to(device);
}

int64_t local_batch_size(const std::string& key, int64_t batch, const Group& group) {
  if (batch % group.size() != 0) {
    throw std::invalid_argument(util::strfmt(
        "%s %lld (the global batch, split among the ranks) is not divisible by the world size "
        "%d",
        key.c_str(), static_cast<long long>(batch), group.size()));
  }
  return batch / group.size();
}

EpochSampler::EpochSampler(int64_t n, int64_t batch, const std::string& key, int64_t seed,
                           std::string stage, const Group& group, const torch::Device& device)
    : n_(n),
      batch_(batch),
      local_batch_(local_batch_size(key, batch, group)),
      offset_(group.rank() * local_batch_),
      seed_(seed),
      stage_(std::move(stage)),
      device_(device) {}

torch::Tensor EpochSampler::indices(int64_t epoch, int64_t step) {
  if (epoch != epoch_) {
    order_ = epoch_order(n_, seed_, stage_, epoch, device_);
    epoch_ = epoch;
  }
  return order_.narrow(0, step * batch_ + offset_, local_batch_);
}

void sync_from_main(torch::nn::Module& module, Group& group) {
  auto tensors = module.parameters();
  for (const auto& b : module.buffers()) tensors.push_back(b);
  group.broadcast(tensors);
}

void average_batch_norm_statistics(torch::nn::Module& module, Group& group) {
  std::vector<torch::Tensor> stats;
  for (const auto& m : module.modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
      stats.push_back(bn->running_mean);
      stats.push_back(bn->running_var);
    }
  }
  group.all_reduce(stats, true);
}

bool decided_by_main(Group& group, bool value) { return group.from_main(value ? "1" : "0") == "1"; }

void reseed_after_resume(const Group& group, int64_t seed, int64_t global_step) {
  if (group.is_main()) return;
  torch::manual_seed(rank_seed(seed, group.rank()) + static_cast<uint64_t>(global_step));
}

torch::Tensor sharded_rows(Group& group, int64_t n,
                           const std::function<torch::Tensor(int64_t, int64_t)>& compute,
                           const std::string& stage) {
  if (group.size() == 1) return compute(0, n);
  const auto [begin, end] = shard(n, group.rank(), group.size());
  const int64_t m = end - begin;
  const double t0 = util::now_seconds();
  auto local = compute(begin, m);
  const double t1 = util::now_seconds();
  auto full = torch::empty({n, local.size(1)}, local.options());
  group.gather_shards(local, full);
  util::log_info(
      util::strfmt("%s: %lld of %lld rows computed on this rank in %.1f s, the rows of "
                   "%d ranks gathered in %.1f s",
                   stage.c_str(), static_cast<long long>(m), static_cast<long long>(n), t1 - t0,
                   group.size(), util::now_seconds() - t1));
  return full;
}

}  // namespace aefx::dist
