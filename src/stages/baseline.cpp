// baseline: the classify stage's head, trained the same way on the images' raw pixels instead of
// the frozen encoder's codes. What the autoencoder's features are worth is the difference
// between the two test accuracies.
#include <torch/torch.h>

#include <optional>

#include "aefx/data/dataset.h"
#include "aefx/engine/head_trainer.h"
#include "aefx/metrics/metrics.h"
#include "aefx/models/features.h"
#include "aefx/stages/stages.h"
#include "aefx/util/log.h"
#include "aefx/util/precision.h"
#include "aefx/util/runtime.h"

namespace aefx::stages {

void baseline(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const auto& c = cfg.classify;
  const double t0 = util::now_seconds();
  auto [train, val] = data::load_labelled_train_val(cfg);
  const auto test = data::load_split(cfg.data, data::Split::kTest, static_cast<uint64_t>(cfg.seed));
  util::throw_if_interrupted("during baseline while loading the data");
  const auto views = data::head_training_views(train, cfg);  // the same as classify's
  auto labels = views.labels.to(ctx.device);
  auto codes = models::pixel_features(views.images, ctx.device);
  util::log_info(util::strfmt("baseline: the classify head on %lld raw pixels per image, %lld rows",
                              static_cast<long long>(codes.size(1)),
                              static_cast<long long>(codes.size(0))));
  engine::HeadTrainOptions options;
  options.classify = c;
  options.classes = static_cast<int64_t>(train.class_names.size());
  options.device = ctx.device;
  options.dtype = ctx.compute_dtype();
  options.seed = cfg.seed;
  options.stage = "baseline";
  auto r =
      engine::fit_head(std::move(codes), labels, models::pixel_features(val.images, ctx.device),
                       val.labels.to(ctx.device), options, ctx.group);
  int64_t correct = 0;
  // k-NN on the raw pixels, by the protocol evaluate applies to the codes.
  std::optional<metrics::KnnClassifier> knn;
  if (cfg.evaluate.knn_k > 0 && train.size() > 0) {
    knn.emplace(models::pixel_features(train.images, ctx.device), train.labels, options.classes,
                cfg.evaluate.knn_k, cfg.evaluate.knn_temperature);
  }
  metrics::ConfusionMatrix knn_cm(options.classes);
  {
    torch::NoGradGuard no_grad;
    util::Autocast autocast(ctx.device, options.dtype);
    r.head->eval();
    const int64_t batch = cfg.evaluate.batch_size;
    for (int64_t i = 0; i < test.size(); i += batch) {
      const int64_t b = std::min(batch, test.size() - i);
      const auto pixels = models::pixel_features(test.images.narrow(0, i, b), ctx.device);
      auto pred = r.head->forward(pixels);
      correct += pred.argmax(1).cpu().eq(test.labels.narrow(0, i, b)).sum().item<int64_t>();
      if (knn) knn_cm.add(knn->predict(pixels), test.labels.narrow(0, i, b));
    }
  }
  engine::BaselineSummary summary;
  summary.inputs = engine::BaselineSummary::inputs_for(cfg);
  summary.input_dim = r.code_dim;
  summary.test_accuracy =
      test.size() > 0 ? static_cast<double>(correct) / static_cast<double>(test.size()) : 0.0;
  summary.test_images = test.size();
  summary.val_accuracy = r.best_val_accuracy;
  summary.best_epoch = r.best_epoch;
  if (knn && test.size() > 0) summary.knn_accuracy = knn_cm.accuracy();
  util::log_info(util::strfmt(
      "baseline: raw pixels, test accuracy %.4f on %lld images (best val_acc %.4f at epoch %lld)",
      summary.test_accuracy, static_cast<long long>(test.size()), r.best_val_accuracy,
      static_cast<long long>(r.best_epoch)));
  summary.seconds = util::now_seconds() - t0;
  summary.write(ctx.folder);
}

}  // namespace aefx::stages
