#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "aefx/engine/checkpoint.h"
#include "aefx/stages/stages.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"
#include "aefx/viz/viz.h"

namespace aefx::stages {

engine::StageRegistry builtin_stages() {
  engine::StageRegistry r;
  r.add("pretrain", pretrain, kPretrainCheckpoint, true);
  r.add("classify", classify, kClassifyCheckpoint, true);
  r.add("baseline", baseline);
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

torch::Tensor epoch_order(int64_t n, int64_t seed, const std::string& stage, int64_t epoch,
                          const torch::Device& device) {
  const uint64_t salt = std::hash<std::string>{}(stage)&0xffffffULL;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(
      static_cast<uint64_t>(seed) * 1000003ULL + salt * 65537ULL + static_cast<uint64_t>(epoch));
  return torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong)).to(device);
}

int64_t local_batch_size(const std::string& key, int64_t batch, const dist::Group* group) {
  if (!group) return batch;
  if (batch % group->size() != 0) {
    throw std::invalid_argument(util::strfmt(
        "%s %lld (the global batch, split among the ranks) is not divisible by the world size "
        "%d",
        key.c_str(), static_cast<long long>(batch), group->size()));
  }
  return batch / group->size();
}

void sync_from_main(torch::nn::Module& module, dist::Group& group) {
  auto tensors = module.parameters();
  for (const auto& b : module.buffers()) tensors.push_back(b);
  group.broadcast(tensors);
}

void average_batch_norm_statistics(torch::nn::Module& module, dist::Group& group) {
  std::vector<torch::Tensor> stats;
  for (const auto& m : module.modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
      stats.push_back(bn->running_mean);
      stats.push_back(bn->running_var);
    }
  }
  group.all_reduce(stats, true);
}

bool decided_by_main(dist::Group* group, bool value) {
  if (!group) return value;
  return group->from_main(value ? "1" : "0") == "1";
}

void reseed_after_resume(dist::Group* group, int64_t seed, int64_t global_step) {
  if (!group || group->is_main()) return;
  torch::manual_seed(dist::rank_seed(seed, group->rank()) + static_cast<uint64_t>(global_step));
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
  const auto& cfg = ctx.config;
  const int64_t channels = config::input_channels(cfg.data);
  models::Autoencoder ae(cfg.model, channels, cfg.data.image_size);
  engine::load_checkpoint(
      ctx.run_dir / kAutoencoderFile,
      {"autoencoder", models::describe_architecture(cfg.model, channels, cfg.data.image_size)}, *ae,
      "pretrain", nullptr, nullptr, ctx.group);
  ae->to(ctx.device);
  to_channels_last(*ae);
  return ae;
}

models::Head load_head(const engine::RunContext& ctx, int64_t classes) {
  const auto& c = ctx.config.classify;
  models::Head head(models::code_dim(ctx.config.model, models::code_spec(ctx.config.model, c)),
                    c.hidden, c.dropout, classes);
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
  const util::Json summary = util::read_json_file(file);
  if (!summary.is_object() || !summary.contains(key)) return util::Json();
  const util::Json& value = summary[key];
  if (!value.is_number() && !value.is_null())
    throw std::runtime_error("cannot parse " + file.string() + ": " + key + " is not a number");
  return value;
}

std::string head_architecture(const config::Config& cfg, int64_t classes) {
  std::string grids;
  const auto spec = models::code_spec(cfg.model, cfg.classify);
  for (auto g : spec.grids) grids += (grids.empty() ? "" : ",") + std::to_string(g);
  return models::describe_head(models::code_dim(cfg.model, spec), cfg.classify.hidden, classes) +
         " grids=[" + grids + "] pooling=" + config::name_of(spec.pooling) + " on " +
         models::describe_architecture(cfg.model, config::input_channels(cfg.data),
                                       cfg.data.image_size);
}

namespace {

/// An image of a uint8 C x H x W tensor (CPU) for viz.
viz::Image to_viz_image(const torch::Tensor& chw) {
  auto hwc = chw.permute({1, 2, 0}).contiguous();
  viz::Image img;
  img.height = static_cast<int>(hwc.size(0));
  img.width = static_cast<int>(hwc.size(1));
  img.channels = static_cast<int>(hwc.size(2));
  img.pixels.assign(hwc.data_ptr<uint8_t>(), hwc.data_ptr<uint8_t>() + hwc.numel());
  return img;
}

}  // namespace

metrics::EpochRecord epoch_record(const std::string& stage, const engine::TrainState& s, double lr,
                                  double stage_start) {
  metrics::EpochRecord r;
  r.stage = stage;
  r.epoch = s.epoch + 1;
  r.epochs = s.epochs;
  r.loss = s.epoch_loss;
  r.lr = lr;
  r.images_per_second = static_cast<double>(s.samples_in_epoch) / s.epoch_seconds;
  r.seconds = s.epoch_seconds;
  r.wall_seconds = util::now_seconds() - stage_start;
  return r;
}

bool pictures_enabled(const config::Config& cfg) {
  if (!cfg.report.pictures) return false;
  if (viz::available()) return true;
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    util::log_info("no pictures: aefx was built without OpenCV (AEFX_WITH_OPENCV=OFF)");
  return false;
}

void draw_reconstructions(models::Autoencoder& ae, const data::Dataset& images,
                          const torch::Device& device, const std::filesystem::path& file,
                          const std::string& title) {
  const int64_t n = std::min<int64_t>(16, images.size());
  if (n == 0) return;
  torch::Tensor recon;
  {
    torch::NoGradGuard no_grad;
    const bool was_training = ae->is_training();
    ae->eval();
    auto x = data::to_float(images.images.narrow(0, 0, n), device);
    recon = ae->denormalize(ae->forward(ae->normalize(x)))
                .clamp(0, 1)
                .mul(255)
                .round()
                .to(torch::kU8)
                .cpu()
                .contiguous();
    if (was_training) ae->train();
  }
  std::vector<viz::Image> in, out;
  std::vector<std::string> captions;
  auto labels = images.labels.narrow(0, 0, n).cpu();
  for (int64_t i = 0; i < n; ++i) {
    in.push_back(to_viz_image(images.images[i].cpu()));
    out.push_back(to_viz_image(recon[i]));
    const auto c = static_cast<size_t>(labels[i].item<int64_t>());
    captions.push_back(c < images.class_names.size() ? images.class_names[c] : "");
  }
  viz::write_reconstructions(file, in, out, captions, title);
}

void draw_curves(const std::vector<metrics::EpochRecord>& records,
                 const std::filesystem::path& file) {
  auto series = [&](const std::string& stage, const std::string& label,
                    double metrics::EpochRecord::*field, double scale) {
    viz::Series s;
    s.label = label;
    for (const auto& r : records) {
      if (r.stage != stage) continue;
      s.x.push_back(static_cast<double>(r.epoch));
      s.y.push_back(r.*field * scale);
    }
    return s;
  };
  std::vector<viz::Chart> charts;
  using R = metrics::EpochRecord;
  charts.push_back({"pretrain: training loss",
                    "epoch",
                    "MSE (normalised input)",
                    {series("pretrain", "train loss", &R::loss, 1)},
                    true});
  charts.push_back({"pretrain: validation reconstruction",
                    "epoch",
                    "MSE (pixels in [0, 1])",
                    {series("pretrain", "val MSE", &R::val_mse, 1)},
                    true});
  charts.push_back({"classify: loss",
                    "epoch",
                    "cross-entropy",
                    {series("classify", "train loss", &R::loss, 1),
                     series("classify", "val loss", &R::val_loss, 1)},
                    true});
  charts.push_back({"classify: validation accuracy",
                    "epoch",
                    "accuracy (%)",
                    {series("classify", "val accuracy", &R::val_accuracy, 100)},
                    false});
  viz::write_charts(file, charts, "training curves");
}

std::pair<torch::Tensor, std::array<double, 2>> pca_2d(const torch::Tensor& codes, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto x = codes.to(torch::kCPU, torch::kFloat);
  x = x - x.mean(0, true);
  const int64_t d = x.size(1), k = std::min<int64_t>(d, 10);
  auto gen = at::detail::createCPUGenerator(seed);
  auto q = at::randn({d, k}, gen, torch::kFloat);
  // Subspace iteration: q spans the top-k right singular vectors after a few power steps.
  for (int i = 0; i < 6; ++i) q = std::get<0>(torch::linalg_qr(x.t().mm(x.mm(q))));
  auto small = x.mm(q);                                           // N x k
  auto [evals, evecs] = torch::linalg_eigh(small.t().mm(small));  // ascending
  auto top = evecs.narrow(1, k - std::min<int64_t>(k, 2), std::min<int64_t>(k, 2)).flip({1});
  auto proj = small.mm(top);
  if (proj.size(1) < 2)
    proj = torch::cat({proj, torch::zeros({proj.size(0), 1}, proj.options())}, 1);
  const double total = x.pow(2).sum(torch::kDouble).item<double>();
  std::array<double, 2> share{0, 0};
  for (int64_t i = 0; i < std::min<int64_t>(k, 2); ++i)
    share[static_cast<size_t>(i)] = total > 0 ? evals[k - 1 - i].item<double>() / total : 0;
  return {proj.to(torch::kDouble), share};
}

void draw_latents(const torch::Tensor& codes, const torch::Tensor& labels,
                  const std::vector<std::string>& class_names, const std::filesystem::path& file) {
  auto [proj, share] = pca_2d(codes);
  auto p = proj.to(torch::kDouble).contiguous();
  auto l = labels.cpu().to(torch::kLong).contiguous();
  std::vector<std::array<double, 2>> points;
  std::vector<int64_t> point_labels;
  for (int64_t i = 0; i < p.size(0); ++i) {
    points.push_back({p[i][0].item<double>(), p[i][1].item<double>()});
    point_labels.push_back(l[i].item<int64_t>());
  }
  viz::write_scatter(
      file, points, point_labels, class_names,
      util::strfmt("latent codes of %lld test images: first two principal components",
                   static_cast<long long>(points.size())),
      util::strfmt("PC1 (%.1f%% of variance)", 100 * share[0]),
      util::strfmt("PC2 (%.1f%% of variance)", 100 * share[1]));
}

}  // namespace aefx::stages
