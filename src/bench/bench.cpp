#include "aefx/bench/bench.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <vector>

#include "aefx/engine/head_trainer.h"
#include "aefx/engine/precision.h"
#include "aefx/engine/pretrainer.h"
#include "aefx/engine/runner.h"
#include "aefx/models/autoencoder.h"
#include "aefx/models/features.h"
#include "aefx/stages/stages.h"
#include "aefx/util/fs.h"
#include "aefx/util/log.h"
#include "aefx/util/precision.h"
#include "aefx/util/runtime.h"

namespace aefx::bench {
namespace {

void sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Median wall seconds of `fn` over `reps` runs, after one untimed run.
double time_median(const torch::Device& device, int reps, const std::function<void()>& fn) {
  fn();
  sync(device);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double t0 = util::now_seconds();
    fn();
    sync(device);
    t.push_back(util::now_seconds() - t0);
  }
  return median(t);
}

/// GFLOP/s of a large matmul and of a large convolution.
std::pair<double, double> peaks(const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const auto opts = torch::TensorOptions().device(device);
  const int64_t n = 4096;
  auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
  const double mm = time_median(device, 5, [&] { torch::mm(a, b); });
  // A 3x3 convolution of the size where this model's layers run best, channels-last.
  const int64_t batch = 64, ch = 256, side = 16;
  auto x =
      torch::randn({batch, ch, side, side}, opts).contiguous(torch::MemoryFormat::ChannelsLast);
  auto w = torch::randn({ch, ch, 3, 3}, opts).contiguous(torch::MemoryFormat::ChannelsLast);
  const double conv = time_median(device, 5, [&] { torch::conv2d(x, w, {}, 1, 1); });
  const double conv_flops = 2.0 * batch * ch * ch * 9 * side * side;
  return {2.0 * n * n * n / mm / 1e9, conv_flops / conv / 1e9};
}

util::Json run_pipeline(const config::Config& cfg) {
  // A scratch run folder, removed afterwards: the bench never touches the config's own runs.
  std::string tmpl = (std::filesystem::temp_directory_path() / "aefx-bench-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("bench: cannot create a scratch folder " + tmpl);
  }
  const std::filesystem::path scratch(tmpl);
  auto c = cfg;
  c.output_dir = scratch.string();
  c.name = "bench";
  util::Json out = util::Json::object();
  try {
    const double t0 = util::now_seconds();
    const auto times = engine::run_stages(c, c.stages, stages::builtin_stages());
    out["pipeline_seconds"] = util::now_seconds() - t0;
    util::Json per_stage = util::Json::object();
    for (const auto& [name, sec] : times) per_stage[name] = sec;
    out["stage_seconds"] = per_stage;
    const engine::RunFolder run(scratch / "bench");
    const auto metrics = engine::Metrics::read(run);
    const auto pre = engine::PretrainSummary::read(run);
    out["test_accuracy"] = metrics ? util::Json(metrics->test_accuracy) : util::Json();
    out["val_psnr"] = pre ? util::Json(pre->val_psnr) : util::Json();
  } catch (...) {
    util::remove_tree(scratch);
    throw;
  }
  util::remove_tree(scratch);
  return out;
}

}  // namespace

util::Json run_bench(const config::Config& cfg, const BenchOptions& options) {
  if (options.steps < 1 || options.warmup < 0) {
    throw std::invalid_argument("bench: --steps must be >= 1 and --warmup >= 0");
  }
  const auto device = util::resolve_device(cfg.device);
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  const int threads = util::configure_threads(cfg.threads);
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  util::Json out = util::Json::object(
      {{"config", cfg.name},
       {"device", device.str()},
       {"precision", util::precision_name(engine::compute_dtype(cfg.precision, device))},
       {"threads", threads},
       {"libtorch",
        util::strfmt("%d.%d.%d", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH)}});
  // The whole pipeline first, in a fresh process, so that its peak RSS is its own.
  if (options.pipeline) {
    out["pipeline"] = run_pipeline(cfg);
    out["pipeline_peak_rss_bytes"] = util::peak_rss_bytes();
    torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  }
  const auto train = data::load_train_val(cfg).first;
  const int64_t n = train.size();
  const int64_t batch = std::min(cfg.pretrain.batch_size, n);

  // Pretrain: the stage's own step, on the stage's data, after warm-up.
  dist::Group alone;
  engine::Pretrainer pt(cfg, train, device, alone);
  auto perm = torch::randperm(n, torch::TensorOptions().dtype(torch::kLong).device(device));
  std::vector<double> step_seconds;
  for (int64_t s = 0; s < options.warmup + options.steps; ++s) {
    const int64_t at = (s * batch) % (n - batch + 1);
    const double t0 = util::now_seconds();
    pt.step(perm.narrow(0, at, batch));
    sync(device);
    if (s >= options.warmup) step_seconds.push_back(util::now_seconds() - t0);
  }
  const double step = median(step_seconds);
  const double ips = static_cast<double>(batch) / step;
  const int64_t flops =
      models::forward_flops(cfg.model, train.images.size(1), train.images.size(2));
  out["batch_size"] = batch;
  out["pretrain_images_per_second"] = ips;
  out["pretrain_step_ms"] = step * 1e3;
  out["forward_flops_per_image"] = flops;
  out["train_flops_per_image"] = 3 * flops;
  out["achieved_gflops"] = 3.0 * static_cast<double>(flops) * ips / 1e9;

  // Codes: the classify stage's extraction, on up to 5,000 training images.
  const auto& c = cfg.classify;
  models::FeatureExtractor features(pt.model(), models::code_spec(cfg.model, c), device,
                                    pt.dtype());
  const int64_t m = std::min<int64_t>(n, std::max<int64_t>(2 * c.code_batch_size, 5000));
  const auto sample = train.images.narrow(0, 0, m);
  features.encode(sample.narrow(0, 0, std::min(m, c.code_batch_size)), c.code_batch_size);
  sync(device);  // after a warm-up batch
  const double t_codes = util::now_seconds();
  auto codes = features.encode(sample, c.code_batch_size, features.storage_dtype());
  sync(device);
  out["code_images_per_second"] = static_cast<double>(m) / (util::now_seconds() - t_codes);

  // Head: two epochs on as many rows as classify trains on; the second one is reported.
  const int64_t rows = n * ((c.flip_codes ? 2 : 1) + c.augmented_copies);
  auto all = codes.repeat({(rows + m - 1) / m, 1}).narrow(0, 0, rows);
  auto labels = train.labels.to(device).repeat({(rows + n - 1) / n}).narrow(0, 0, rows);
  engine::HeadTrainOptions head;
  head.classify = c;
  head.classify.epochs = 2;
  head.classes = static_cast<int64_t>(train.class_names.size());
  head.device = device;
  head.dtype = pt.dtype();
  const int64_t v = std::min<int64_t>(rows, 1000);
  const auto r = engine::fit_head(all, labels, all.narrow(0, 0, v).clone(), labels.narrow(0, 0, v),
                                  head, alone);
  out["head_epoch_seconds"] = r.history.back().seconds;
  out["head_rows"] = rows;
  codes = all = labels = torch::Tensor();

  out["peak_rss_bytes"] = util::peak_rss_bytes();
  const auto [mm, conv] = peaks(device);
  out["matmul_peak_gflops"] = mm;
  out["conv_peak_gflops"] = conv;
  return out;
}

}  // namespace aefx::bench
