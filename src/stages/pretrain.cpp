// pretrain: the autoencoder learns to reconstruct the training images (no labels).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "aefx/dist/parallel.h"
#include "aefx/engine/checkpoint.h"
#include "aefx/engine/head_trainer.h"
#include "aefx/engine/hooks.h"
#include "aefx/engine/pretrainer.h"
#include "aefx/stages/stages.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"
#include "aefx/viz/pictures.h"

namespace aefx::stages {
namespace {

/// Images whose activations set the BatchNorm statistics of an untrained (epochs 0) encoder.
constexpr int64_t kCalibrationImages = 5000;

std::string epoch_line(const metrics::EpochRecord& e) {
  const double mse = std::isnan(e.val_mse) ? 0.0 : e.val_mse;
  return util::strfmt(
      "pretrain epoch %lld/%lld  loss %.5f  val_mse %.5f  val_psnr %.2f dB  lr %.2e  %.0f img/s  "
      "%.1f s",
      static_cast<long long>(e.epoch), static_cast<long long>(e.epochs), e.loss, mse,
      metrics::psnr(mse), e.lr, e.images_per_second, e.seconds);
}

/// What pretraining needs besides the Pretrainer: the sampler, the validation and pictured
/// images, the run's epoch log (rank 0) and the checkpoint's architecture line.
struct PretrainLoop {
  engine::RunContext& ctx;
  engine::Pretrainer& pt;
  dist::EpochSampler& sampler;
  int64_t steps;  ///< per epoch: the sampler's, or fewer with pretrain.epoch_images
  const data::Dataset& val;
  const data::Dataset& shown;
  metrics::EpochLog* epoch_log;  ///< rank 0 only
  bool pictures;
  std::string architecture;
  double stage_start;  ///< util::now_seconds() when the stage started
};

/// Trains the autoencoder for pretrain.epochs epochs (resuming when asked): the loop, its hooks
/// and its checkpoint. Returns one record per epoch.
std::vector<metrics::EpochRecord> train_autoencoder(const PretrainLoop& l) {
  const auto& cfg = l.ctx.config;
  const auto& p = cfg.pretrain;
  const auto& folder = l.ctx.folder;
  auto& ae = l.pt.model();
  const int64_t steps = l.steps;
  engine::Trainer trainer("pretrain", p.epochs, steps, l.ctx.group,
                          "Lower pretrain.lr (or check the data)");
  auto lr =
      std::make_shared<engine::LrScheduleHook>(l.pt.optimizer(), p.schedule, p.lr, p.epochs * steps,
                                               static_cast<int64_t>(p.warmup_epochs * steps));
  auto lr_now = [lr] { return lr->current_lr(); };
  trainer.add_hook(lr);
  trainer.add_hook(std::make_shared<engine::ProgressHook>("pretrain", lr_now));
  trainer.add_hook(std::make_shared<engine::RankAverageHook>(l.ctx.group, ae.ptr().get()));
  if (l.val.size() > 0) {
    trainer.add_hook(
        std::make_shared<engine::ValidationHook>([&]() -> std::map<std::string, double> {
          return {{"val_mse", engine::reconstruction_mse(ae, l.val.images, cfg.evaluate.batch_size,
                                                         l.ctx.device, l.pt.dtype(), l.ctx.group)}};
        }));
  }
  auto history = std::make_shared<engine::HistoryHook>("pretrain", lr_now, l.stage_start);
  trainer.add_hook(history);
  trainer.add_hook(std::make_shared<engine::EpochLogHook>(
      *history, l.epoch_log, std::vector<std::string>{"classify"}, epoch_line));
  if (l.pictures) {
    trainer.add_hook(std::make_shared<viz::CurvesHook>(*l.epoch_log, folder.curves_png()));
    trainer.add_hook(std::make_shared<viz::ReconstructionsHook>(
        ae, l.shown, l.ctx.device, folder.reconstructions_png(), cfg.report.reconstruction_every));
  }
  engine::CheckpointSpec spec;
  spec.file = folder.pretrain_state();
  spec.kind = "autoencoder";
  spec.architecture = l.architecture;
  spec.module = ae.ptr().get();
  spec.optimizer = &l.pt.optimizer();
  spec.device = l.ctx.device;
  spec.seed = cfg.seed;
  trainer.enable_checkpoints(spec);
  const int64_t batch = l.sampler.global_batch();
  trainer.run(
      [&](engine::TrainState& s) {
        return engine::StepOutput{l.pt.step(l.sampler.indices(s.epoch, s.step)), batch};
      },
      l.ctx.resume);
  return history->records();
}

/// The compression view, on rank 0 alone after the model is saved (the other ranks need no test
/// data): how well the trained autoencoder reconstructs unseen (test) images from its bottleneck,
/// and how much smaller that bottleneck is than the image. Reported, never used for a choice.
void measure_compression(models::Autoencoder& ae, const config::Config& cfg,
                         const torch::Device& device, torch::ScalarType dtype,
                         engine::PretrainSummary& summary) {
  const auto test = data::load_split(cfg.data, data::Split::kTest, static_cast<uint64_t>(cfg.seed));
  dist::Group alone;
  summary.test_images = test.size();
  summary.test_mse =
      engine::reconstruction_mse(ae, test.images, cfg.evaluate.batch_size, device, dtype, alone);
  summary.test_psnr = metrics::psnr(summary.test_mse);
  const int64_t side = ae->image_size();
  summary.input_values = ae->channels() * side * side;
  summary.code_values = models::bottleneck_size(cfg.model, side);
  summary.compression_ratio =
      static_cast<double>(summary.input_values) / static_cast<double>(summary.code_values);
  util::log_info(util::strfmt(
      "pretrain: test reconstruction MSE %.5f, PSNR %.2f dB on %lld images; %lld values -> "
      "%lld at the bottleneck (compression ratio %.2f)",
      summary.test_mse, summary.test_psnr, static_cast<long long>(test.size()),
      static_cast<long long>(summary.input_values), static_cast<long long>(summary.code_values),
      summary.compression_ratio));
}

}  // namespace

void pretrain(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const auto& p = cfg.pretrain;
  const auto& folder = ctx.folder;
  const double t_start = util::now_seconds();
  auto [train, val] = data::load_train_val(cfg);
  // The labelled train images and data.unlabeled's (cached and mapped), or these alone.
  const data::ImageRows rows = data::pretrain_rows(cfg, train);
  util::throw_if_interrupted("during pretrain while loading the data");
  const int64_t n = rows.size();
  const int64_t batch = engine::fitted_batch("pretrain", "training images", n, p.batch_size);
  // Each rank trains on its slice of every global batch.
  dist::EpochSampler sampler(n, batch, "pretrain.batch_size", cfg.seed, "pretrain", ctx.group,
                             ctx.device);
  // pretrain.epoch_images: the first batches of each epoch's shuffled order.
  const int64_t steps =
      p.epoch_images > 0 ? std::clamp<int64_t>(p.epoch_images / batch, 1, sampler.steps_per_epoch())
                         : sampler.steps_per_epoch();
  util::log_info(util::strfmt(
      "pretrain: %lld train / %lld val images, batch %lld%s, %lld steps/epoch",
      static_cast<long long>(n), static_cast<long long>(val.size()), static_cast<long long>(batch),
      ctx.group.size() > 1
          ? util::strfmt(" (%lld per rank x %d ranks)",
                         static_cast<long long>(sampler.local_batch()), ctx.group.size())
                .c_str()
          : "",
      static_cast<long long>(steps)));

  engine::Pretrainer pt(cfg, rows, ctx.device, ctx.group);
  auto& ae = pt.model();
  const bool main = ctx.is_main();
  if (main) std::filesystem::create_directories(folder.checkpoints());
  const int64_t channels = rows.channels(), side = rows.height();
  const std::string architecture = models::describe_architecture(cfg.model, channels, side);
  std::optional<metrics::EpochLog> epoch_log;  // rank 0 only: the others read and write nothing
  if (main) epoch_log.emplace(folder.metrics_jsonl(), folder.metrics_csv());
  const bool pictures = main && viz::pictures_enabled(cfg);
  // The pictured images: validation images when there are some, else training images.
  const data::Dataset& shown = val.size() > 0 ? val : train;
  std::vector<metrics::EpochRecord> history;
  double last_mse = 0;  // the validation MSE of the model as saved (0 without validation images)
  if (p.epochs > 0) {
    history = train_autoencoder({ctx, pt, sampler, steps, val, shown, main ? &*epoch_log : nullptr,
                                 pictures, architecture, t_start});
    if (!std::isnan(history.back().val_mse)) last_mse = history.back().val_mse;
  } else {
    const int64_t calibrated = pt.calibrate_batch_norm(kCalibrationImages, batch);
    if (val.size() > 0)
      last_mse = engine::reconstruction_mse(ae, val.images, cfg.evaluate.batch_size, ctx.device,
                                            pt.dtype(), ctx.group);
    const std::string statistics = calibrated > 0
                                       ? util::strfmt("; BatchNorm statistics from %lld images",
                                                      static_cast<long long>(calibrated))
                                       : std::string();
    util::log_info(
        util::strfmt("pretrain: epochs 0, the encoder keeps its random weights%s; "
                     "val_psnr %.2f dB",
                     statistics.c_str(), metrics::psnr(last_mse)));
  }

  ctx.group.check_same(ae->parameters(), "the trained weights");
  if (!main) return;
  if (p.epochs == 0) epoch_log->begin_stage("pretrain", 0, {"classify"});
  engine::save_checkpoint(folder.autoencoder(), {"autoencoder", architecture, p.epochs}, *ae);
  engine::PretrainSummary summary;
  measure_compression(ae, cfg, ctx.device, pt.dtype(), summary);
  if (pictures) {
    viz::draw_reconstructions(
        ae, shown, ctx.device, folder.reconstructions_png(),
        p.epochs > 0
            ? util::strfmt("reconstructions after pretraining (%lld epochs)",
                           static_cast<long long>(p.epochs))
            : std::string("reconstructions of the untrained autoencoder (pretrain.epochs 0)"));
    viz::draw_curves(epoch_log->records(), folder.curves_png());
  }
  for (const auto& t : ae->parameters()) summary.parameters += t.numel();
  for (const auto& e : history) {
    const double mse = std::isnan(e.val_mse) ? 0.0 : e.val_mse;
    summary.history.push_back(
        {e.epoch, e.loss, mse, metrics::psnr(mse), e.images_per_second, e.seconds});
    summary.train_seconds += e.seconds;
  }
  summary.epochs = p.epochs;
  summary.train_images = n;
  summary.epoch_images = p.epoch_images > 0 ? steps * batch : 0;
  summary.val_images = val.size();
  summary.val_mse = last_mse;
  summary.val_psnr = metrics::psnr(last_mse);
  if (p.epochs > 0)
    summary.images_per_second =
        static_cast<double>(steps * batch * p.epochs) / summary.train_seconds;
  summary.seconds = util::now_seconds() - t_start;
  summary.write(folder);
}

}  // namespace aefx::stages
