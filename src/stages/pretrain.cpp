#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include "aefx/engine/checkpoint.h"
#include "aefx/engine/trainer.h"
#include "aefx/metrics/metrics.h"
#include "aefx/stages/stages.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::stages {
namespace {

/// Reconstruction MSE of uncorrupted images, in [0, 1] pixel units. In a group each rank
/// reconstructs its shard of the images and the squared errors are summed over the ranks.
double reconstruction_mse(models::Autoencoder& ae, const torch::Tensor& images, int64_t batch,
                          const torch::Device& device, dist::Group* group) {
  torch::NoGradGuard no_grad;
  ae->eval();
  torch::Tensor sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  const auto [begin, n] = group ? dist::shard(images.size(0), group->rank(), group->size())
                                : std::make_pair(int64_t{0}, images.size(0));
  for (int64_t i = begin; i < n; i += batch) {
    auto x = data::to_float(images.narrow(0, i, std::min(batch, n - i)), device);
    auto recon = ae->denormalize(ae->forward(ae->normalize(x))).clamp(0, 1);
    sum += (recon - x).pow(2).sum().to(torch::kDouble);
  }
  ae->train();
  const double total = group ? group->sum(sum.item<double>()) : sum.item<double>();
  return total / static_cast<double>(images.numel());
}

/// Images whose activations set the BatchNorm statistics of an untrained (epochs 0) encoder.
constexpr int64_t kCalibrationImages = 5000;

}  // namespace

Pretrainer::Pretrainer(const config::Config& cfg, const data::Dataset& train,
                       const torch::Device& device, dist::Group* group)
    : cfg_(cfg.pretrain),
      ae_(cfg.model, train.images.size(1), train.images.size(2)),
      group_(group) {
  auto [mean, std] = data::channel_stats(train.images);
  ae_->set_normalization(mean, std);
  ae_->to(device);
  to_channels_last(*ae_);
  ae_->train();
  // The whole training set lives on the device as uint8; batches are gathered and augmented
  // there.
  images_ = train.images.to(device);
  opt_ = engine::make_optimizer(cfg_.optimizer, ae_->parameters(), cfg_.lr, cfg_.weight_decay);
  if (group_) sync_from_main(*ae_, *group_);
}

torch::Tensor Pretrainer::step(const torch::Tensor& indices) {
  auto x = data::to_float(images_.index_select(0, indices), images_.device());
  if (cfg_.augment) x = data::augment_batch(x, cfg_.crop_padding, true);
  auto target = ae_->normalize(x);
  auto input = models::corrupt(target, cfg_.mask_ratio, cfg_.mask_patch, cfg_.noise);
  auto loss = torch::mse_loss(ae_->forward(input), target);
  opt_->zero_grad();
  loss.backward();
  if (group_) group_->average_gradients(ae_->parameters());
  opt_->step();
  return loss.detach();
}

void Pretrainer::calibrate_batch_norm(int64_t images, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  std::vector<torch::nn::BatchNorm2dImpl*> norms;
  for (auto& m : ae_->modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) norms.push_back(bn);
  }
  // Momentum "none" makes the running statistics a cumulative average over the batches seen.
  std::vector<c10::optional<double>> momentum;
  for (auto* bn : norms) {
    momentum.push_back(bn->options.momentum());
    bn->reset_running_stats();
    bn->options.momentum(c10::nullopt);
  }
  ae_->train();
  const int64_t n = std::min(images, images_.size(0));
  for (int64_t i = 0; i < n; i += batch_size) {
    ae_->forward(ae_->normalize(
        data::to_float(images_.narrow(0, i, std::min(batch_size, n - i)), images_.device())));
  }
  for (size_t i = 0; i < norms.size(); ++i) norms[i]->options.momentum(momentum[i]);
}

namespace {

/// One pretraining epoch's figures, as pretrain.json lists them.
struct PretrainEpoch {
  double epoch, loss, val_mse, images_per_second, seconds;
};

torch::Tensor history_tensor(const std::vector<PretrainEpoch>& h) {
  auto t = torch::empty({static_cast<int64_t>(h.size()), 5}, torch::kDouble);
  for (size_t i = 0; i < h.size(); ++i) {
    const auto& e = h[i];
    t[static_cast<int64_t>(i)] =
        torch::tensor({e.epoch, e.loss, e.val_mse, e.images_per_second, e.seconds}, torch::kDouble);
  }
  return t;
}

std::vector<PretrainEpoch> history_from(const torch::Tensor& t) {
  std::vector<PretrainEpoch> h;
  auto a = t.contiguous();
  const double* d = a.data_ptr<double>();
  for (int64_t i = 0; i < a.size(0); ++i, d += 5) h.push_back({d[0], d[1], d[2], d[3], d[4]});
  return h;
}

}  // namespace

void pretrain(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const auto& p = cfg.pretrain;
  const double t_start = util::now_seconds();
  auto [train, val] = load_train_val(cfg);
  util::throw_if_interrupted("during pretrain while loading the data");
  const int64_t n = train.size();
  const int64_t batch = fitted_batch("pretrain", "training images", n, p.batch_size);
  const int64_t steps = n / batch;
  // Each rank trains on its slice of every global batch.
  const int64_t local_batch = local_batch_size("pretrain.batch_size", batch, ctx.group);
  const int64_t local_offset = ctx.group ? ctx.group->rank() * local_batch : 0;
  util::log_info(util::strfmt(
      "pretrain: %lld train / %lld val images, batch %lld%s, %lld steps/epoch",
      static_cast<long long>(n), static_cast<long long>(val.size()), static_cast<long long>(batch),
      ctx.group ? util::strfmt(" (%lld per rank x %d ranks)", static_cast<long long>(local_batch),
                               ctx.group->size())
                      .c_str()
                : "",
      static_cast<long long>(steps)));

  Pretrainer pt(cfg, train, ctx.device, ctx.group);
  auto& ae = pt.model();
  auto& opt = pt.optimizer();
  const auto run_dir = ctx.run_dir;
  const auto state_file = run_dir / kPretrainCheckpoint;
  const bool main = ctx.is_main();
  if (main) std::filesystem::create_directories(run_dir / "checkpoints");
  const int64_t channels = train.images.size(1), side = train.images.size(2);
  const engine::CheckpointMeta meta{"autoencoder",
                                    models::describe_architecture(cfg.model, channels, side), 0};
  std::vector<PretrainEpoch> history;
  double last_mse = 0, train_seconds = 0;
  std::optional<metrics::EpochLog> epoch_log;  // rank 0 only: the others read and write nothing
  if (main) epoch_log.emplace(run_dir);
  const bool pictures = main && pictures_enabled(cfg);
  // The pictured images: validation images when there are some, else training images.
  const data::Dataset& shown = val.size() > 0 ? val : train;
  auto val_mse = [&] {
    return val.size() > 0
               ? reconstruction_mse(ae, val.images, cfg.evaluate.batch_size, ctx.device, ctx.group)
               : 0.0;
  };
  if (p.epochs > 0) {
    engine::Trainer trainer("pretrain", p.epochs, steps);
    if (ctx.group)
      trainer.set_agreement([g = ctx.group](int sig, bool bad) { return g->agree(sig, bad); });
    auto lr_hook = std::make_shared<engine::LrScheduleHook>(
        opt, p.schedule, p.lr, p.epochs * steps, static_cast<int64_t>(p.warmup_epochs * steps));
    trainer.add_hook(lr_hook);
    trainer.add_hook(std::make_shared<engine::ProgressHook>(
        "pretrain", [lr_hook] { return lr_hook->current_lr(); }));
    torch::Tensor perm;
    // The resumable state: weights, optimizer, loop position, RNG, this epoch's permutation and
    // the history so far. Written after every epoch and when a signal stops the loop.
    auto save_state = [&](const engine::TrainState& s) {
      if (!main) return;
      auto m = meta;
      m.epoch = s.epoch;  // epochs completed
      engine::save_checkpoint(state_file, m, *ae, &opt, [&](torch::serialize::OutputArchive& a) {
        engine::write_resume_state(a, s, ctx.device);
        if (s.step > 0) a.write("aefx_pretrain_perm", perm.cpu());
        a.write("aefx_pretrain_history", history_tensor(history));
        a.write("aefx_pretrain_train_seconds", c10::IValue(train_seconds));
        a.write("aefx_pretrain_last_mse", c10::IValue(last_mse));
      });
    };
    trainer.add_hook(std::make_shared<engine::EpochHook>(
        [&](engine::TrainState& s) {
          train_seconds += s.epoch_seconds;
          if (ctx.group) {
            s.epoch_loss = ctx.group->sum(s.epoch_loss) / ctx.group->size();
            average_batch_norm_statistics(*ae, *ctx.group);
          }
          last_mse = val_mse();
          const double ips = static_cast<double>(s.samples_in_epoch) / s.epoch_seconds;
          util::log_info(util::strfmt(
              "pretrain epoch %lld/%lld  loss %.5f  val_mse %.5f  val_psnr %.2f dB  lr %.2e  "
              "%.0f img/s  %.1f s",
              static_cast<long long>(s.epoch + 1), static_cast<long long>(s.epochs), s.epoch_loss,
              last_mse, metrics::psnr(last_mse), lr_hook->current_lr(), ips, s.epoch_seconds));
          history.push_back(
              {static_cast<double>(s.epoch + 1), s.epoch_loss, last_mse, ips, s.epoch_seconds});
          auto rec = epoch_record("pretrain", s, lr_hook->current_lr(), t_start);
          if (val.size() > 0) {
            rec.val_mse = last_mse;
            rec.val_psnr = metrics::psnr(last_mse);
          }
          if (main) epoch_log->add(rec);
          if (pictures) {
            draw_curves(epoch_log->records(), run_dir / kCurvesPng);
            if ((s.epoch + 1) % cfg.report.reconstruction_every == 0 && s.epoch + 1 < s.epochs)
              draw_reconstructions(ae, shown, ctx.device, run_dir / kReconstructionsPng,
                                   util::strfmt("reconstructions after epoch %lld/%lld",
                                                static_cast<long long>(s.epoch + 1),
                                                static_cast<long long>(s.epochs)));
          }
          save_state(engine::next_epoch_start(s));
        },
        [&](engine::TrainState& s) { save_state(s); }));

    engine::TrainState start;
    const bool resuming =
        decided_by_main(ctx.group, ctx.resume && std::filesystem::exists(state_file));
    if (resuming) {
      engine::load_checkpoint(
          state_file, meta, *ae, "pretrain", &opt,
          [&](torch::serialize::InputArchive& a) {
            start = engine::read_resume_state(a, ctx.device);
            if (start.step > 0) {
              a.read("aefx_pretrain_perm", perm);
              perm = perm.to(ctx.device);
            }
            torch::Tensor h;
            a.read("aefx_pretrain_history", h);
            history = history_from(h);
            c10::IValue secs, mse;
            a.read("aefx_pretrain_train_seconds", secs);
            a.read("aefx_pretrain_last_mse", mse);
            train_seconds = secs.toDouble();
            last_mse = mse.toDouble();
          },
          ctx.group);
      ae->to(ctx.device);
      to_channels_last(*ae);
      match_optimizer_state(opt, ctx.device);
      reseed_after_resume(ctx.group, cfg.seed, start.global_step);
      util::log_info(
          util::strfmt("pretrain: resuming from %s at epoch %lld/%lld, step %lld/%lld",
                       state_file.string().c_str(), static_cast<long long>(start.epoch + 1),
                       static_cast<long long>(p.epochs), static_cast<long long>(start.step),
                       static_cast<long long>(steps)));
    }
    if (main) epoch_log->begin_stage("pretrain", resuming ? start.epoch : 0, {"classify"});
    try {
      trainer.run(
          [&](engine::TrainState& s) {
            if (s.step == 0) perm = epoch_order(n, cfg.seed, "pretrain", s.epoch, ctx.device);
            return engine::StepOutput{
                pt.step(perm.narrow(0, s.step * batch + local_offset, local_batch)), batch};
          },
          resuming ? &start : nullptr);
    } catch (const engine::NonFiniteLoss& e) {
      throw engine::NonFiniteLoss(
          std::string(e.what()) +
          (history.empty() ? "; no epoch had finished, so nothing was saved"
                           : util::strfmt("; the last good checkpoint, %s (after epoch %lld), is "
                                          "kept",
                                          state_file.string().c_str(),
                                          static_cast<long long>(history.size()))) +
          ". Lower pretrain.lr (or check the data) and run again (with --restart when a "
          "checkpoint was kept)");
    }
  } else {
    pt.calibrate_batch_norm(kCalibrationImages, batch);
    last_mse = val_mse();
    util::log_info(util::strfmt(
        "pretrain: epochs 0, the encoder keeps its random weights; BatchNorm statistics from "
        "%lld images; val_psnr %.2f dB",
        static_cast<long long>(std::min(kCalibrationImages, n)), metrics::psnr(last_mse)));
  }

  if (ctx.group) ctx.group->check_same(dist::fingerprint(ae->parameters()), "the trained weights");
  if (!main) return;
  if (p.epochs == 0) epoch_log->begin_stage("pretrain", 0, {"classify"});
  auto m = meta;
  m.epoch = p.epochs;
  engine::save_checkpoint(run_dir / kAutoencoderFile, m, *ae);
  // The compression view, on rank 0 alone after the model is saved (the other ranks need no test
  // data): how well the trained autoencoder reconstructs unseen (test) images from its
  // bottleneck, and how much smaller that bottleneck is than the image. Reported, never used for
  // a choice.
  const auto test = data::load_split(cfg.data, data::Split::kTest, static_cast<uint64_t>(cfg.seed));
  const double test_mse =
      reconstruction_mse(ae, test.images, cfg.evaluate.batch_size, ctx.device, nullptr);
  const int64_t input_values = channels * side * side;
  const int64_t code_values = models::bottleneck_size(cfg.model, side);
  const double ratio = static_cast<double>(input_values) / static_cast<double>(code_values);
  util::log_info(util::strfmt(
      "pretrain: test reconstruction MSE %.5f, PSNR %.2f dB on %lld images; %lld values -> "
      "%lld at the bottleneck (compression ratio %.2f)",
      test_mse, metrics::psnr(test_mse), static_cast<long long>(test.size()),
      static_cast<long long>(input_values), static_cast<long long>(code_values), ratio));
  if (pictures) {
    draw_reconstructions(ae, shown, ctx.device, run_dir / kReconstructionsPng,
                         p.epochs > 0 ? util::strfmt("reconstructions after pretraining (%lld "
                                                     "epochs)",
                                                     static_cast<long long>(p.epochs))
                                      : std::string("reconstructions of the untrained "
                                                    "autoencoder (pretrain.epochs 0)"));
    draw_curves(epoch_log->records(), run_dir / kCurvesPng);
  }
  int64_t params = 0;
  for (const auto& t : ae->parameters()) params += t.numel();
  const double total = util::now_seconds() - t_start;
  util::Json history_json = util::Json::array();
  for (const auto& e : history) {
    history_json.push_back(util::Json::object({{"epoch", static_cast<int64_t>(e.epoch)},
                                               {"loss", e.loss},
                                               {"val_mse", e.val_mse},
                                               {"val_psnr", metrics::psnr(e.val_mse)},
                                               {"images_per_second", e.images_per_second},
                                               {"seconds", e.seconds}}));
  }
  const util::Json summary = util::Json::object(
      {{"stage", "pretrain"},
       {"epochs", p.epochs},
       {"train_images", n},
       {"val_images", val.size()},
       {"parameters", params},
       {"val_mse", last_mse},
       {"val_psnr", metrics::psnr(last_mse)},
       {"test_images", test.size()},
       {"test_mse", test_mse},
       {"test_psnr", metrics::psnr(test_mse)},
       {"input_values", input_values},
       {"code_values", code_values},
       {"compression_ratio", ratio},
       {"train_seconds", train_seconds},
       {"images_per_second",
        p.epochs > 0 ? util::Json(static_cast<double>(steps * batch * p.epochs) / train_seconds)
                     : util::Json()},
       {"seconds", total},
       {"history", history_json}});
  util::write_json_file(run_dir / kPretrainSummary, summary);
}

}  // namespace aefx::stages
