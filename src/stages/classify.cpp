// classify: the frozen encoder's codes of the labelled images, and a head trained on them.
#include <torch/torch.h>

#include <optional>

#include "aefx/dist/parallel.h"
#include "aefx/engine/artifacts.h"
#include "aefx/engine/checkpoint.h"
#include "aefx/engine/head_trainer.h"
#include "aefx/models/features.h"
#include "aefx/stages/stages.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"
#include "aefx/viz/pictures.h"

namespace aefx::stages {

void classify(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const auto& c = cfg.classify;
  const double t0 = util::now_seconds();
  models::FeatureExtractor features(
      engine::load_autoencoder(cfg, ctx.folder, ctx.device, ctx.group),
      models::code_spec(cfg.model, c), ctx.device, ctx.compute_dtype());
  auto [labelled, val] = data::load_labelled_train_val(cfg);
  util::throw_if_interrupted("during classify while loading the data");
  if (c.labels_per_class > 0) {
    util::log_info(util::strfmt("classify: %lld labelled train images (%lld per class)",
                                static_cast<long long>(labelled.size()),
                                static_cast<long long>(c.labels_per_class)));
  }
  const auto train = data::head_training_views(labelled, cfg);
  const bool main = ctx.is_main();
  std::optional<metrics::EpochLog> epoch_log;  // rank 0 only: the others read and write nothing
  if (main) epoch_log.emplace(ctx.folder.metrics_jsonl(), ctx.folder.metrics_csv());

  // Each rank encodes its shard of the images (the training views: the images, then the mirrored
  // and the augmented copies), and every rank gets all codes, in bf16 when the encoder computes
  // in bf16: the head's first layer reads them in bf16 anyway, and the cache is what sets
  // classify's peak memory (the CPU preset's 180,000 x 28,800 codes: 10.4 GB instead of 20.7).
  auto encode = [&](const data::Dataset& d) {
    return dist::sharded_rows(
        ctx.group, d.size(),
        [&](int64_t begin, int64_t n) {
          return features.encode(d.images.narrow(0, begin, n), c.code_batch_size,
                                 features.storage_dtype());
        },
        "classify");
  };
  const double t_codes = util::now_seconds();
  auto codes = encode(train);
  auto val_codes = encode(val);
  auto labels = train.labels.to(ctx.device);
  const double code_seconds = util::now_seconds() - t_codes;
  util::log_info(util::strfmt(
      "classify: %lld codes of %lld values in %.1f s (%.0f img/s)",
      static_cast<long long>(codes.size(0)), static_cast<long long>(codes.size(1)), code_seconds,
      static_cast<double>(codes.size(0) + val_codes.size(0)) / code_seconds));

  engine::HeadTrainOptions options;
  options.classify = c;
  options.classes = static_cast<int64_t>(labelled.class_names.size());
  options.device = ctx.device;
  options.dtype = features.dtype();
  options.seed = cfg.seed;
  options.state_file = ctx.folder.classify_state();
  options.resume = ctx.resume;
  if (main) options.epoch_log = &*epoch_log;
  if (main && viz::pictures_enabled(cfg))
    options.extra_hooks.push_back(
        std::make_shared<viz::CurvesHook>(*epoch_log, ctx.folder.curves_png()));
  auto r = engine::fit_head(std::move(codes), labels, std::move(val_codes),
                            val.labels.to(ctx.device), options, ctx.group);
  if (!main) return;
  engine::save_checkpoint(ctx.folder.head(),
                          {"head", models::head_architecture(cfg, options.classes), r.best_epoch},
                          *r.head);
  util::log_info(util::strfmt("classify: best val_acc %.4f at epoch %lld", r.best_val_accuracy,
                              static_cast<long long>(r.best_epoch)));
  engine::ClassifySummary summary;
  summary.code_dim = r.code_dim;
  summary.best_epoch = r.best_epoch;
  summary.val_accuracy = r.best_val_accuracy;
  summary.code_seconds = code_seconds;
  summary.head_seconds = r.seconds;
  summary.seconds = util::now_seconds() - t0;
  summary.class_names = labelled.class_names;
  for (const auto& e : r.history)
    summary.history.push_back({e.epoch, e.loss, e.val_accuracy, e.val_loss, e.seconds});
  summary.write(ctx.folder);
}

}  // namespace aefx::stages
