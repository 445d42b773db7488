#include <torch/torch.h>

#include <filesystem>

#include "aefx/engine/checkpoint.h"
#include "aefx/metrics/metrics.h"
#include "aefx/stages/stages.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"
#include "aefx/viz/viz.h"

namespace aefx::stages {
namespace {

/// Whether the run folder holds a baseline.json made for this config's data and head settings; a
/// stale one (another data set or head) is named in a warning and not reported.
bool baseline_current(const engine::RunContext& ctx) {
  const auto file = ctx.run_dir / kBaselineSummary;
  if (!std::filesystem::exists(file)) return false;
  std::string inputs;
  try {
    const util::Json b = util::read_json_file(file);
    if (b.contains("inputs")) inputs = b["inputs"].get<std::string>();
  } catch (const util::Json::exception& e) {
    throw std::runtime_error("cannot parse " + file.string() + ": " + e.what());
  }
  if (inputs == baseline_inputs(ctx.config)) return true;
  util::log_warn(file.string() +
                 " was made with other data.* or classify.* settings (or seed): not reported; "
                 "run the baseline stage again to compare");
  return false;
}

}  // namespace

void evaluate(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const double t0 = util::now_seconds();
  util::require_file(ctx.run_dir / kHeadFile, "classify");
  auto ae = load_autoencoder(ctx);
  freeze(ae);
  auto test = data::load_split(cfg.data, data::Split::kTest, static_cast<uint64_t>(cfg.seed));
  const auto classes = static_cast<int64_t>(test.class_names.size());
  auto head = load_head(ctx, classes);

  metrics::ConfusionMatrix cm(classes);
  const bool pictures = pictures_enabled(cfg);
  // latents.png shows the codes of a fixed random subset of the test images.
  torch::Tensor drawn;  // bool per test image
  std::vector<torch::Tensor> drawn_codes, drawn_labels;
  if (pictures) {
    const int64_t k = std::min(cfg.report.latent_points, test.size());
    auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(cfg.seed));
    drawn = torch::zeros({test.size()}, torch::kBool);
    drawn.index_fill_(0, at::randperm(test.size(), gen, torch::kLong).narrow(0, 0, k), true);
  }
  {
    torch::NoGradGuard no_grad;
    const int64_t batch = cfg.evaluate.batch_size;
    for (int64_t i = 0; i < test.size(); i += batch) {
      const int64_t b = std::min(batch, test.size() - i);
      auto codes = compute_codes(ae, test.images.narrow(0, i, b),
                                 models::code_spec(cfg.model, cfg.classify), b, ctx.device);
      cm.add(head->forward(codes).argmax(1), test.labels.narrow(0, i, b));
      if (pictures) {
        auto rows = drawn.narrow(0, i, b).nonzero().flatten();
        // Standardised as the head sees them, so no feature dominates by its scale alone.
        auto picked = codes.index_select(0, rows.to(codes.device()));
        drawn_codes.push_back(picked.sub(head->code_mean).div(head->code_std).cpu());
        drawn_labels.push_back(test.labels.narrow(0, i, b).index_select(0, rows));
      }
    }
  }
  util::Json confusion = util::Json::array();
  for (const auto& row : cm.counts()) confusion.push_back(row);
  const auto per_class = cm.per_class_accuracy();
  util::Json per_class_named = util::Json::object();
  for (size_t c = 0; c < per_class.size(); ++c) per_class_named[test.class_names[c]] = per_class[c];
  const double seconds = util::now_seconds() - t0;
  auto pretrain_value = [&](const std::string& key) {
    return summary_value(ctx.run_dir / kPretrainSummary, key);
  };
  const util::Json m = util::Json::object(
      {{"test_accuracy", cm.accuracy()},
       {"test_images", cm.total()},
       {"val_accuracy", summary_value(ctx.run_dir / kClassifySummary, "val_accuracy")},
       {"class_names", test.class_names},
       {"per_class_accuracy", per_class},
       {"per_class_accuracy_by_name", per_class_named},
       {"confusion_matrix", confusion},
       {"val_psnr", summary_value(ctx.run_dir / kPretrainSummary, "val_psnr")},
       {"code_dim", head->code_mean.size(0)},
       // The compression view, as pretrain measured it on the test set.
       {"reconstruction",
        util::Json::object({{"test_mse", pretrain_value("test_mse")},
                            {"test_psnr", pretrain_value("test_psnr")},
                            {"input_values", pretrain_value("input_values")},
                            {"code_values", pretrain_value("code_values")},
                            {"compression_ratio", pretrain_value("compression_ratio")}})},
       // The same head on raw pixels, when the baseline stage ran for this config (else null).
       {"baseline",
        baseline_current(ctx)
            ? util::Json::object(
                  {{"input", "pixels"},
                   {"input_dim", summary_value(ctx.run_dir / kBaselineSummary, "input_dim")},
                   {"test_accuracy",
                    summary_value(ctx.run_dir / kBaselineSummary, "test_accuracy")},
                   {"val_accuracy", summary_value(ctx.run_dir / kBaselineSummary, "val_accuracy")}})
            : util::Json()},
       {"timings",
        util::Json::object(
            {{"pretrain_seconds", summary_value(ctx.run_dir / kPretrainSummary, "seconds")},
             {"classify_seconds", summary_value(ctx.run_dir / kClassifySummary, "seconds")},
             {"evaluate_seconds", seconds}})},
       {"device", ctx.device.str()},
       {"aefx_version", AEFX_VERSION}});
  util::write_json_file(ctx.run_dir / kMetricsFile, m);
  if (pictures) {
    viz::write_confusion(ctx.run_dir / kConfusionPng, cm.counts(), test.class_names,
                         util::strfmt("test set confusion matrix (%lld images)",
                                      static_cast<long long>(cm.total())));
    if (!drawn_codes.empty() && test.size() > 0)
      draw_latents(torch::cat(drawn_codes), torch::cat(drawn_labels), test.class_names,
                   ctx.run_dir / kLatentsPng);
  }
  util::log_info(util::strfmt("evaluate: test accuracy %.4f on %lld images", cm.accuracy(),
                              static_cast<long long>(cm.total())));
}

}  // namespace aefx::stages
