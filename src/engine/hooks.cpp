#include "aefx/engine/hooks.h"

#include <torch/torch.h>

#include <cmath>

#include "aefx/dist/parallel.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::engine {

void RankAverageHook::after_epoch(TrainState& s) {
  s.epoch_loss = group_.sum(s.epoch_loss) / group_.size();
  if (module_) dist::average_batch_norm_statistics(*module_, group_);
}

metrics::EpochRecord epoch_record(const std::string& stage, const TrainState& s, double lr,
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
  auto metric = [&](const char* key) {
    const auto it = s.metrics.find(key);
    return it == s.metrics.end() ? metrics::EpochRecord::kNone : it->second;
  };
  r.val_loss = metric("val_loss");
  r.val_accuracy = metric("val_accuracy");
  r.val_mse = metric("val_mse");
  if (!std::isnan(r.val_mse)) r.val_psnr = metrics::psnr(r.val_mse);
  return r;
}

HistoryHook::HistoryHook(std::string stage, std::function<double()> lr, double stage_start)
    : stage_(std::move(stage)), lr_(std::move(lr)), start_(stage_start) {}

void HistoryHook::after_epoch(TrainState& s) {
  records_.push_back(epoch_record(stage_, s, lr_ ? lr_() : metrics::EpochRecord::kNone, start_));
}

namespace {
// The numeric fields of an EpochRecord, in the order a checkpoint stores them.
constexpr double metrics::EpochRecord::*kFields[] = {&metrics::EpochRecord::loss,
                                                     &metrics::EpochRecord::lr,
                                                     &metrics::EpochRecord::images_per_second,
                                                     &metrics::EpochRecord::val_loss,
                                                     &metrics::EpochRecord::val_accuracy,
                                                     &metrics::EpochRecord::val_mse,
                                                     &metrics::EpochRecord::val_psnr,
                                                     &metrics::EpochRecord::seconds,
                                                     &metrics::EpochRecord::wall_seconds};
constexpr int64_t kColumns = 2 + static_cast<int64_t>(std::size(kFields));
}  // namespace

void HistoryHook::save_state(torch::serialize::OutputArchive& archive) const {
  auto t = torch::empty({static_cast<int64_t>(records_.size()), kColumns}, torch::kDouble);
  auto a = t.accessor<double, 2>();
  for (size_t i = 0; i < records_.size(); ++i) {
    const auto& r = records_[i];
    const auto row = static_cast<int64_t>(i);
    a[row][0] = static_cast<double>(r.epoch);
    a[row][1] = static_cast<double>(r.epochs);
    for (size_t f = 0; f < std::size(kFields); ++f)
      a[row][2 + static_cast<int64_t>(f)] = r.*kFields[f];
  }
  archive.write("aefx_history", t);
}

void HistoryHook::load_state(torch::serialize::InputArchive& archive) {
  torch::Tensor t;
  // A stage stopped by an aefx before the hooks kept their own state saved no such entry.
  if (!archive.try_read("aefx_history", t))
    throw std::runtime_error(
        "its resume state is from an earlier aefx (no epoch history); "
        "start the stage over with --restart");
  if (t.dim() != 2 || t.size(1) != kColumns)
    throw std::runtime_error("its epoch history has another layout");
  auto a = t.to(torch::kDouble).contiguous();
  auto acc = a.accessor<double, 2>();
  records_.clear();
  for (int64_t i = 0; i < a.size(0); ++i) {
    metrics::EpochRecord r;
    r.stage = stage_;
    r.epoch = static_cast<int64_t>(acc[i][0]);
    r.epochs = static_cast<int64_t>(acc[i][1]);
    for (size_t f = 0; f < std::size(kFields); ++f)
      r.*kFields[f] = acc[i][2 + static_cast<int64_t>(f)];
    records_.push_back(r);
  }
}

void EpochLogHook::before_train(TrainState& s) {
  if (log_) log_->begin_stage(history_.stage(), s.epoch, later_);
}

void EpochLogHook::after_epoch(TrainState&) {
  const auto& rec = history_.records().back();
  util::log_info(format_(rec));
  if (log_) log_->add(rec);
}

void BestStateHook::after_epoch(TrainState& s) {
  const double value = s.metrics.at(metric_);
  if (value <= best_) return;
  best_ = value;
  best_epoch_ = s.epoch + 1;
  torch::NoGradGuard no_grad;
  state_.clear();
  for (const auto& t : module_.parameters()) state_.push_back(t.detach().clone());
}

void BestStateHook::save_state(torch::serialize::OutputArchive& archive) const {
  for (size_t i = 0; i < state_.size(); ++i)
    archive.write("aefx_best_" + std::to_string(i), state_[i]);
  archive.write("aefx_best", c10::IValue(best_));
  archive.write("aefx_best_epoch", c10::IValue(best_epoch_));
}

void BestStateHook::load_state(torch::serialize::InputArchive& archive) {
  c10::IValue best, best_epoch;
  archive.read("aefx_best", best);
  archive.read("aefx_best_epoch", best_epoch);
  best_ = best.toDouble();
  best_epoch_ = best_epoch.toInt();
  state_.clear();
  for (size_t i = 0; best_epoch_ > 0 && i < module_.parameters().size(); ++i) {
    torch::Tensor t;
    archive.read("aefx_best_" + std::to_string(i), t);
    state_.push_back(t.to(device_));
  }
}

void BestStateHook::restore() {
  torch::NoGradGuard no_grad;
  auto params = module_.parameters();
  for (size_t i = 0; i < params.size() && i < state_.size(); ++i) params[i].copy_(state_[i]);
}

}  // namespace aefx::engine
