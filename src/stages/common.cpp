#include <torch/torch.h>

#include "aefx/engine/checkpoint.h"
#include "aefx/stages/stages.h"

namespace aefx::stages {

engine::StageRegistry builtin_stages() {
  engine::StageRegistry r;
  r.add("pretrain", pretrain);
  r.add("classify", classify);
  r.add("evaluate", evaluate);
  r.add("export", export_models);
  return r;
}

std::pair<data::Dataset, data::Dataset> load_train_val(const config::Config& cfg) {
  const auto seed = static_cast<uint64_t>(cfg.seed);
  auto full = data::load_split(cfg.data, data::Split::kTrain, seed);
  return data::split_validation(full, cfg.data.val_size, seed);
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

models::Autoencoder load_autoencoder(const engine::RunContext& ctx) {
  models::Autoencoder ae(ctx.config.model);
  engine::load_checkpoint(ctx.run_dir / kAutoencoderFile,
                          {"autoencoder", models::describe_architecture(ctx.config.model)}, *ae,
                          "pretrain");
  ae->to(ctx.device);
  to_channels_last(*ae);
  return ae;
}

models::Head load_head(const engine::RunContext& ctx, int64_t classes) {
  const auto& c = ctx.config.classify;
  models::Head head(models::code_dim(ctx.config.model, c.pool_grids), c.hidden, c.dropout, classes);
  engine::load_checkpoint(ctx.run_dir / kHeadFile, {"head", head_architecture(ctx.config, classes)},
                          *head, "classify");
  head->to(ctx.device);
  head->eval();
  return head;
}

void freeze(models::Autoencoder& ae) {
  for (auto& p : ae->parameters()) p.requires_grad_(false);
  ae->eval();
}

torch::Tensor compute_codes(models::Autoencoder& ae, const torch::Tensor& images,
                            const std::vector<int64_t>& grids, int64_t batch_size,
                            const torch::Device& device, bool flip) {
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0);
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < n; i += batch_size) {
    auto x = data::to_float(images.narrow(0, i, std::min(batch_size, n - i)), device);
    if (flip) x = x.flip({3});
    parts.push_back(models::pool_codes(ae->encoder->forward(ae->normalize(x)), grids));
  }
  return torch::cat(parts, 0);
}

std::string head_architecture(const config::Config& cfg, int64_t classes) {
  std::string grids;
  for (auto g : cfg.classify.pool_grids) grids += (grids.empty() ? "" : ",") + std::to_string(g);
  return models::describe_head(models::code_dim(cfg.model, cfg.classify.pool_grids),
                               cfg.classify.hidden, classes) +
         " grids=[" + grids + "] on " + models::describe_architecture(cfg.model);
}

}  // namespace aefx::stages
