#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <stdexcept>

#include "aefx/engine/checkpoint.h"
#include "aefx/stages/stages.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::stages {

engine::StageRegistry builtin_stages() {
  engine::StageRegistry r;
  r.add("pretrain", pretrain, kPretrainCheckpoint);
  r.add("classify", classify, kClassifyCheckpoint);
  r.add("evaluate", evaluate);
  r.add("export", export_models);
  return r;
}

std::pair<data::Dataset, data::Dataset> load_train_val(const config::Config& cfg) {
  const auto seed = static_cast<uint64_t>(cfg.seed);
  auto full = data::load_split(cfg.data, data::Split::kTrain, seed);
  return data::split_validation(full, cfg.data.val_size, seed);
}

int64_t fitted_batch(const std::string& stage, const std::string& items, int64_t n, int64_t batch) {
  if (n >= batch) return batch;
  util::log_warn(util::strfmt("%s: %lld %s are fewer than one batch of %lld; using batches of %lld",
                              stage.c_str(), static_cast<long long>(n), items.c_str(),
                              static_cast<long long>(batch), static_cast<long long>(n)));
  return n;
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
  }
}

void match_optimizer_state(torch::optim::Optimizer& opt, const torch::Device& device) {
  auto fit = [&](torch::Tensor t) {
    if (!t.defined()) return t;
    t = t.to(device);
    return t.dim() == 4 ? t.contiguous(torch::MemoryFormat::ChannelsLast) : t;
  };
  for (auto& entry : opt.state()) {
    auto& state = entry.second;
    if (auto* s = dynamic_cast<torch::optim::AdamWParamState*>(state.get())) {
      s->exp_avg(fit(s->exp_avg())).exp_avg_sq(fit(s->exp_avg_sq()));
      s->max_exp_avg_sq(fit(s->max_exp_avg_sq()));
    } else if (auto* s = dynamic_cast<torch::optim::AdamParamState*>(state.get())) {
      s->exp_avg(fit(s->exp_avg())).exp_avg_sq(fit(s->exp_avg_sq()));
      s->max_exp_avg_sq(fit(s->max_exp_avg_sq()));
    } else if (auto* s = dynamic_cast<torch::optim::SGDParamState*>(state.get())) {
      s->momentum_buffer(fit(s->momentum_buffer()));
    } else {
      throw std::logic_error("match_optimizer_state: unknown optimizer state type");
    }
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
  models::Head head(models::code_dim(ctx.config.model, models::code_spec(c)), c.hidden, c.dropout,
                    classes);
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
                            const models::CodeSpec& spec, int64_t batch_size,
                            const torch::Device& device, bool with_flips) {
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0);
  // Every batch is written into one preallocated N (or 2N) x D tensor: concatenating parts at
  // the end would hold the codes twice at the peak.
  torch::Tensor out;
  auto store = [&](int64_t row, const torch::Tensor& codes) {
    if (!out.defined())
      out = torch::empty({with_flips ? 2 * n : n, codes.size(1)}, codes.options());
    out.narrow(0, row, codes.size(0)).copy_(codes);
  };
  for (int64_t i = 0; i < n; i += batch_size) {
    util::throw_if_interrupted("while computing latent codes");
    const int64_t b = std::min(batch_size, n - i);
    auto x = ae->normalize(data::to_float(images.narrow(0, i, b), device));
    store(i, models::pool_codes(ae->encoder->forward(x), spec));
    if (with_flips) store(n + i, models::pool_codes(ae->encoder->forward(x.flip({3})), spec));
  }
  if (!out.defined()) {  // no images: an empty N x D, D from one blank image
    auto blank = torch::zeros({1, images.size(1), images.size(2), images.size(3)}, device);
    out = models::pool_codes(ae->encoder->forward(blank), spec).narrow(0, 0, 0);
  }
  return out;
}

util::Json summary_value(const std::filesystem::path& file, const std::string& key) {
  if (!std::filesystem::exists(file)) return util::Json();
  try {
    const YAML::Node node = YAML::LoadFile(file.string());
    if (node[key]) return util::Json(node[key].as<double>());
  } catch (const YAML::Exception& e) {
    throw std::runtime_error("cannot parse " + file.string() + ": " + e.msg);
  }
  return util::Json();
}

std::string head_architecture(const config::Config& cfg, int64_t classes) {
  std::string grids;
  for (auto g : cfg.classify.pool_grids) grids += (grids.empty() ? "" : ",") + std::to_string(g);
  return models::describe_head(models::code_dim(cfg.model, models::code_spec(cfg.classify)),
                               cfg.classify.hidden, classes) +
         " grids=[" + grids + "] pooling=" + cfg.classify.pooling + " on " +
         models::describe_architecture(cfg.model);
}

}  // namespace aefx::stages
