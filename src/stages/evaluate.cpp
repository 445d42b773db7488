// evaluate: the frozen encoder and the head on the test set, once.
#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>

#include "aefx/engine/artifacts.h"
#include "aefx/metrics/metrics.h"
#include "aefx/models/features.h"
#include "aefx/stages/stages.h"
#include "aefx/util/fs.h"
#include "aefx/util/log.h"
#include "aefx/util/precision.h"
#include "aefx/util/runtime.h"
#include "aefx/viz/pictures.h"
#include "aefx/viz/viz.h"

namespace aefx::stages {
namespace {

/// The folder's baseline.json when it was made for this config's data and head settings; a
/// stale one (another data set or head) is named in a warning and not reported.
std::optional<engine::BaselineSummary> current_baseline(const engine::RunContext& ctx) {
  auto b = engine::BaselineSummary::read(ctx.folder);
  if (!b || b->inputs == engine::BaselineSummary::inputs_for(ctx.config)) return b;
  util::log_warn(ctx.folder.baseline_summary().string() +
                 " was made with other data.* or classify.* settings (or seed): not reported; "
                 "run the baseline stage again to compare");
  return std::nullopt;
}

}  // namespace

void evaluate(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const auto& folder = ctx.folder;
  const double t0 = util::now_seconds();
  util::require_file(folder.head(), "classify");
  models::FeatureExtractor features(engine::load_autoencoder(cfg, folder, ctx.device, ctx.group),
                                    models::code_spec(cfg.model, cfg.classify), ctx.device,
                                    ctx.compute_dtype());
  auto test = data::load_split(cfg.data, data::Split::kTest, static_cast<uint64_t>(cfg.seed));
  const auto classes = static_cast<int64_t>(test.class_names.size());
  auto head = engine::load_head(cfg, folder, classes, ctx.device);

  metrics::ConfusionMatrix cm(classes);
  const bool pictures = viz::pictures_enabled(cfg);
  // latents.png shows the codes of a fixed random subset of the test images.
  torch::Tensor drawn;  // bool per test image
  std::vector<torch::Tensor> drawn_codes, drawn_labels;
  const bool knn = cfg.evaluate.knn_k > 0;
  std::vector<torch::Tensor> test_codes;  // for the k-NN accuracy
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
      auto codes = features.encode(test.images.narrow(0, i, b), b);
      torch::Tensor logits;
      {
        util::Autocast autocast(ctx.device, features.dtype());
        logits = head->forward(codes);
      }
      cm.add(logits.argmax(1), test.labels.narrow(0, i, b));
      if (knn) test_codes.push_back(codes);
      if (pictures) {
        auto rows = drawn.narrow(0, i, b).nonzero().flatten();
        // Standardised as the head sees them, so no feature dominates by its scale alone.
        auto picked = codes.index_select(0, rows.to(codes.device()));
        drawn_codes.push_back(picked.sub(head->code_mean).div(head->code_std).cpu());
        drawn_labels.push_back(test.labels.narrow(0, i, b).index_select(0, rows));
      }
    }
  }
  std::optional<double> knn_accuracy;
  int64_t knn_k = 0;
  if (knn && test.size() > 0) {
    // The labelled images the head learnt from (classify.labels_per_class), without flips.
    const auto train = data::load_labelled_train_val(cfg).first;
    util::throw_if_interrupted("during evaluate while loading the data");
    if (train.size() == 0)
      throw std::runtime_error("evaluate.knn_k: no labelled train images to compare with");
    // The train codes go into the classifier's bank (in the compute dtype) a chunk at a time:
    // float32 codes of the whole split at once (1.5 GB for the CPU preset's 45,000 x 8,192)
    // would set the peak.
    metrics::KnnClassifier classifier(features.code_dim(), train.labels, classes,
                                      cfg.evaluate.knn_k, cfg.evaluate.knn_temperature,
                                      features.dtype(), features.device());
    constexpr int64_t kChunk = 4096;
    for (int64_t i = 0; i < train.size(); i += kChunk) {
      const int64_t n = std::min(kChunk, train.size() - i);
      classifier.set_rows(
          i, features.encode(train.images.narrow(0, i, n), cfg.classify.code_batch_size));
    }
    knn_k = classifier.k();
    metrics::ConfusionMatrix knn_cm(classes);
    int64_t at = 0;
    for (const auto& codes : test_codes) {
      util::throw_if_interrupted("during evaluate's k-NN");
      knn_cm.add(classifier.predict(codes), test.labels.narrow(0, at, codes.size(0)));
      at += codes.size(0);
    }
    knn_accuracy = knn_cm.accuracy();
    util::log_info(
        util::strfmt("evaluate: k-NN accuracy %.4f (k %lld, temperature %g, %lld train codes)",
                     *knn_accuracy, static_cast<long long>(knn_k), cfg.evaluate.knn_temperature,
                     static_cast<long long>(train.size())));
  }
  const auto pre = engine::PretrainSummary::read(folder);
  const auto cls = engine::ClassifySummary::read(folder);
  engine::Metrics m;
  m.test_accuracy = cm.accuracy();
  m.test_images = cm.total();
  if (cls) m.val_accuracy = cls->val_accuracy;
  m.class_names = test.class_names;
  m.per_class_accuracy = cm.per_class_accuracy();
  m.confusion_matrix = cm.counts();
  if (pre) m.val_psnr = pre->val_psnr;
  m.code_dim = head->code_mean.size(0);
  m.knn_accuracy = knn_accuracy;
  m.knn_k = knn_k;
  m.knn_temperature = knn ? cfg.evaluate.knn_temperature : 0.0;
  m.reconstruction = pre;
  m.baseline = current_baseline(ctx);
  if (pre) m.pretrain_seconds = pre->seconds;
  if (cls) m.classify_seconds = cls->seconds;
  m.evaluate_seconds = util::now_seconds() - t0;
  m.device = ctx.device.str();
  m.write(folder);
  if (pictures) {
    viz::write_confusion(folder.confusion_png(), cm.counts(), test.class_names,
                         util::strfmt("test set confusion matrix (%lld images)",
                                      static_cast<long long>(cm.total())));
    if (!drawn_codes.empty() && test.size() > 0)
      viz::draw_latents(torch::cat(drawn_codes), torch::cat(drawn_labels), test.class_names,
                        folder.latents_png());
  }
  util::log_info(util::strfmt("evaluate: test accuracy %.4f on %lld images", cm.accuracy(),
                              static_cast<long long>(cm.total())));
}

}  // namespace aefx::stages
