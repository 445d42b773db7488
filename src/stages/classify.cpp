#include <torch/torch.h>

#include "aefx/engine/checkpoint.h"
#include "aefx/engine/trainer.h"
#include "aefx/stages/stages.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::stages {
namespace {

/// Accuracy of the head on codes already standardised with its statistics.
double head_accuracy(models::Head& head, const torch::Tensor& codes, const torch::Tensor& labels,
                     int64_t batch) {
  torch::NoGradGuard no_grad;
  head->eval();
  torch::Tensor correct =
      torch::zeros({}, torch::TensorOptions().dtype(torch::kLong).device(codes.device()));
  for (int64_t i = 0; i < codes.size(0); i += batch) {
    const int64_t b = std::min(batch, codes.size(0) - i);
    correct +=
        (head->net->forward(codes.narrow(0, i, b)).argmax(1) == labels.narrow(0, i, b)).sum();
  }
  head->train();
  return static_cast<double>(correct.item<int64_t>()) /
         static_cast<double>(std::max<int64_t>(1, codes.size(0)));
}

}  // namespace

HeadResult train_head(models::Autoencoder& ae, const data::Dataset& train, const data::Dataset& val,
                      const config::ClassifyConfig& cfg, const torch::Device& device) {
  freeze(ae);
  const double t0 = util::now_seconds();
  auto codes = compute_codes(ae, train.images, models::code_spec(cfg), cfg.code_batch_size, device,
                             cfg.flip_codes);
  auto labels = train.labels.to(device);
  if (cfg.flip_codes) labels = torch::cat({labels, labels});
  auto val_codes =
      compute_codes(ae, val.images, models::code_spec(cfg), cfg.code_batch_size, device);
  const double code_seconds = util::now_seconds() - t0;
  util::log_info(util::strfmt(
      "classify: %lld codes of %lld values in %.1f s (%.0f img/s)",
      static_cast<long long>(codes.size(0)), static_cast<long long>(codes.size(1)), code_seconds,
      static_cast<double>(codes.size(0) + val_codes.size(0)) / code_seconds));
  const auto classes = static_cast<int64_t>(train.class_names.size());
  auto r = fit_head(std::move(codes), labels, std::move(val_codes), val.labels.to(device), cfg,
                    classes, device);
  r.code_seconds = code_seconds;
  return r;
}

HeadResult fit_head(torch::Tensor codes, const torch::Tensor& labels, torch::Tensor val_codes,
                    const torch::Tensor& val_labels, const config::ClassifyConfig& cfg,
                    int64_t classes, const torch::Device& device) {
  HeadResult r;
  const double t0 = util::now_seconds();
  r.code_dim = codes.size(1);
  r.head = models::Head(r.code_dim, cfg.hidden, cfg.dropout, classes);
  r.head->set_standardization(codes.mean(0).cpu(), codes.std(0).clamp_min(1e-6).cpu());
  r.head->to(device);
  // Standardised once, in place, instead of in every step: training then calls head->net.
  {
    torch::NoGradGuard no_grad;
    codes.sub_(r.head->code_mean).div_(r.head->code_std);
    val_codes.sub_(r.head->code_mean).div_(r.head->code_std);
  }
  auto opt = engine::make_optimizer(cfg.optimizer, r.head->parameters(), cfg.lr, cfg.weight_decay);

  const int64_t n = codes.size(0);
  const int64_t batch = std::min(cfg.batch_size, n);
  const int64_t steps = n / batch;
  engine::Trainer trainer(cfg.epochs, steps);
  auto lr_hook =
      std::make_shared<engine::LrScheduleHook>(*opt, cfg.schedule, cfg.lr, cfg.epochs * steps, 0);
  trainer.add_hook(lr_hook);
  // Best epoch by validation accuracy: its weights are copied aside and restored at the end.
  std::vector<torch::Tensor> best_state;
  r.best_val_accuracy = -1;
  trainer.add_hook(std::make_shared<engine::EpochHook>([&](engine::TrainState& s) {
    const double acc = val_codes.size(0) > 0 ? head_accuracy(r.head, val_codes, val_labels, 4096)
                                             : head_accuracy(r.head, codes, labels, 4096);
    r.history.push_back({s.epoch_loss, acc, s.epoch_seconds});
    util::log_info(
        util::strfmt("classify epoch %lld/%lld  loss %.4f  val_acc %.4f  lr %.2e  %.1f s",
                     static_cast<long long>(s.epoch + 1), static_cast<long long>(s.epochs),
                     s.epoch_loss, acc, lr_hook->current_lr(), s.epoch_seconds));
    if (acc > r.best_val_accuracy) {
      r.best_val_accuracy = acc;
      r.best_epoch = s.epoch + 1;
      torch::NoGradGuard no_grad;
      best_state.clear();
      for (const auto& t : r.head->parameters()) best_state.push_back(t.detach().clone());
    }
  }));
  const auto ce =
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(cfg.label_smoothing);
  torch::Tensor perm;
  r.head->train();
  trainer.run([&](engine::TrainState& s) {
    if (s.step == 0)
      perm = torch::randperm(n, torch::TensorOptions().dtype(torch::kLong).device(device));
    auto idx = perm.narrow(0, s.step * batch, batch);
    auto loss = torch::nn::functional::cross_entropy(
        r.head->net->forward(codes.index_select(0, idx)), labels.index_select(0, idx), ce);
    opt->zero_grad();
    loss.backward();
    opt->step();
    return engine::StepOutput{loss.detach(), batch};
  });
  {
    torch::NoGradGuard no_grad;
    auto params = r.head->parameters();
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(best_state[i]);
  }
  r.head->eval();
  r.head_seconds = util::now_seconds() - t0;
  return r;
}

void classify(engine::RunContext& ctx) {
  const auto& cfg = ctx.config;
  const double t0 = util::now_seconds();
  auto ae = load_autoencoder(ctx);
  auto [train, val] = load_train_val(cfg);
  auto r = train_head(ae, train, val, cfg.classify, ctx.device);
  const auto classes = static_cast<int64_t>(train.class_names.size());
  engine::save_checkpoint(ctx.run_dir / kHeadFile,
                          {"head", head_architecture(cfg, classes), r.best_epoch}, *r.head);
  util::log_info(util::strfmt("classify: best val_acc %.4f at epoch %lld", r.best_val_accuracy,
                              static_cast<long long>(r.best_epoch)));
  util::Json history = util::Json::Array{};
  for (size_t e = 0; e < r.history.size(); ++e) {
    history.push_back(util::Json::object({{"epoch", static_cast<int64_t>(e + 1)},
                                          {"loss", r.history[e].loss},
                                          {"val_accuracy", r.history[e].val_accuracy},
                                          {"seconds", r.history[e].seconds}}));
  }
  auto summary = util::Json::object({{"stage", "classify"},
                                     {"code_dim", r.code_dim},
                                     {"best_epoch", r.best_epoch},
                                     {"val_accuracy", r.best_val_accuracy},
                                     {"code_seconds", r.code_seconds},
                                     {"head_seconds", r.head_seconds},
                                     {"seconds", util::now_seconds() - t0},
                                     {"class_names", util::Json::array(train.class_names)},
                                     {"history", history}});
  util::atomic_write_text(ctx.run_dir / kClassifySummary, summary.dump() + "\n");
}

}  // namespace aefx::stages
