#include "aefx/engine/trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "aefx/dist/parallel.h"
#include "aefx/engine/checkpoint.h"
#include "aefx/engine/optim.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::engine {

Trainer::Trainer(std::string name, int64_t epochs, int64_t steps_per_epoch, dist::Group& group,
                 std::string remedy)
    : name_(std::move(name)),
      epochs_(epochs),
      steps_per_epoch_(steps_per_epoch),
      group_(group),
      remedy_(std::move(remedy)) {
  // Agreeing costs a collective and a host synchronisation per step: only with other ranks.
  if (group.size() > 1) agreement_ = [this](int sig, bool bad) { return group_.agree(sig, bad); };
  if (epochs < 1 || steps_per_epoch < 1) {
    throw std::invalid_argument(name_ + ": needs at least one epoch and one step per epoch (got " +
                                std::to_string(epochs) + " epochs of " +
                                std::to_string(steps_per_epoch) + " steps)");
  }
}

void Trainer::add_hook(std::shared_ptr<Hook> hook) { hooks_.push_back(std::move(hook)); }

/// Saves the loop's resumable state at the end of every epoch (as the start of the next) and
/// when a signal stops it. Rank 0 alone writes.
class Trainer::CheckpointHook : public Hook {
 public:
  explicit CheckpointHook(Trainer& trainer) : trainer_(trainer) {}
  void after_epoch(TrainState& s) override {
    save(next_epoch_start(s));
    trainer_.completed_epochs_ = s.epoch + 1;
  }
  void on_interrupt(TrainState& s) override { save(s); }

 private:
  void save(const TrainState& s) const {
    if (!trainer_.group_.is_main()) return;
    const auto& c = *trainer_.checkpoint_;
    save_checkpoint(c.file, {c.kind, c.architecture, s.epoch}, *c.module, c.optimizer,
                    [&](torch::serialize::OutputArchive& a) {
                      write_resume_state(a, s, c.device);
                      for (const auto& h : trainer_.hooks_) h->save_state(a);
                    });
  }
  Trainer& trainer_;
};

void Trainer::enable_checkpoints(CheckpointSpec spec) {
  TORCH_CHECK(spec.module != nullptr, "enable_checkpoints: no module");
  checkpoint_ = std::move(spec);
}

TrainState Trainer::load_checkpoint() {
  const auto& c = *checkpoint_;
  TrainState start;
  engine::load_checkpoint(c.file, {c.kind, c.architecture, 0}, *c.module, name_, group_,
                          c.optimizer, [&](torch::serialize::InputArchive& a) {
                            start = read_resume_state(a, c.device);
                            for (const auto& h : hooks_) h->load_state(a);
                          });
  c.module->to(c.device);
  to_channels_last(*c.module);
  if (c.optimizer) match_optimizer_state(*c.optimizer, c.device);
  dist::reseed_after_resume(group_, c.seed, start.global_step);
  util::log_info(util::strfmt("%s: resuming from %s at epoch %lld/%lld, step %lld/%lld",
                              name_.c_str(), c.file.string().c_str(),
                              static_cast<long long>(start.epoch + 1),
                              static_cast<long long>(epochs_), static_cast<long long>(start.step),
                              static_cast<long long>(steps_per_epoch_)));
  return start;
}

TrainState Trainer::run(const StepFn& step, bool resume) {
  TrainState start;
  bool resumed = false;
  completed_epochs_ = 0;
  if (checkpoint_) {
    resumed = dist::decided_by_main(group_, resume && std::filesystem::exists(checkpoint_->file));
    if (resumed) {
      start = load_checkpoint();
      completed_epochs_ = start.epoch;
    }
  }
  try {
    return run_from(step, resumed ? &start : nullptr);
  } catch (const NonFiniteLoss& e) {
    const bool kept = checkpoint_ && completed_epochs_ > 0;
    std::string msg =
        std::string(e.what()) +
        (kept ? util::strfmt("; the last good checkpoint, %s (after epoch %lld), is kept",
                             checkpoint_->file.string().c_str(),
                             static_cast<long long>(completed_epochs_))
              : std::string("; no epoch had finished, so nothing was saved"));
    if (!remedy_.empty())
      msg += ". " + remedy_ + " and run again (with --restart when a checkpoint was kept)";
    throw NonFiniteLoss(msg);
  }
}

void Trainer::check_losses(const TrainState& s, int64_t from) const {
  if (s.step <= from) return;
  auto recent = s.epoch_losses.narrow(0, from, s.step - from);
  if (recent.isfinite().all().item<bool>()) return;
  const int64_t bad = from + (~recent.isfinite()).nonzero()[0][0].item<int64_t>();
  const double value = s.epoch_losses[bad].item<double>();
  throw NonFiniteLoss(util::strfmt(
      "%s: the training loss is %s at epoch %lld/%lld, step %lld/%lld; stopped before saving "
      "anything from that step",
      name_.c_str(), std::isnan(value) ? "NaN" : "infinite", static_cast<long long>(s.epoch + 1),
      static_cast<long long>(epochs_), static_cast<long long>(bad + 1),
      static_cast<long long>(steps_per_epoch_)));
}

TrainState Trainer::run_from(const StepFn& step, const TrainState* resume) {
  std::vector<std::shared_ptr<Hook>> hooks = hooks_;
  if (checkpoint_) hooks.push_back(std::make_shared<CheckpointHook>(*this));
  TrainState s;
  if (resume) {
    s.epoch = resume->epoch;
    s.step = resume->step;
    s.global_step = resume->global_step;
    s.samples_in_epoch = resume->samples_in_epoch;
    s.epoch_losses = resume->epoch_losses;
    s.epoch_seconds = resume->epoch_seconds;
  }
  s.epochs = epochs_;
  s.steps_per_epoch = steps_per_epoch_;
  for (auto& h : hooks) h->before_train(s);
  try {
    for (; s.epoch < epochs_; ++s.epoch, s.step = 0) {
      if (s.step == 0) {
        s.epoch_losses = torch::Tensor();
        s.samples_in_epoch = 0;
        s.epoch_seconds = 0;
      }
      const double t0 = util::now_seconds() - s.epoch_seconds;
      s.metrics.clear();
      int64_t checked = s.step;  // steps before this one were checked before they were saved
      while (s.step < steps_per_epoch_) {
        for (auto& h : hooks) h->before_step(s);
        StepOutput out = step(s);
        auto weighted = out.loss.detach().to(torch::kDouble) * static_cast<double>(out.batch_size);
        if (!s.epoch_losses.defined())
          s.epoch_losses = torch::zeros({steps_per_epoch_}, weighted.options());
        s.epoch_losses.narrow(0, s.step, 1).copy_(weighted.reshape({1}));
        s.samples_in_epoch += out.batch_size;
        ++s.global_step;
        for (auto& h : hooks) h->after_step(s);
        ++s.step;
        int signal = util::interrupt_signal();
        if (agreement_) {
          const bool bad = !std::isfinite(weighted.item<double>());
          const auto [group_signal, any_bad] = agreement_(signal, bad);
          if (any_bad && !bad) {
            throw NonFiniteLoss(util::strfmt(
                "%s: another rank's training loss is NaN or infinite at epoch %lld/%lld, step "
                "%lld/%lld (see that rank's message); every rank stopped",
                name_.c_str(), static_cast<long long>(s.epoch + 1), static_cast<long long>(epochs_),
                static_cast<long long>(s.step), static_cast<long long>(steps_per_epoch_)));
          }
          // A signal counts once every rank knows of it: all stop after this same step.
          signal = group_signal;
          if (signal != 0 && util::interrupt_signal() == 0) util::set_interrupt_signal(signal);
        }
        const bool on_gpu = !s.epoch_losses.device().is_cpu();
        if (!on_gpu || agreement_ || s.step - checked >= kGpuCheckInterval) {
          check_losses(s, checked);
          checked = s.step;
        }
        if (signal != 0) {
          check_losses(s, checked);
          s.epoch_seconds = util::now_seconds() - t0;
          for (auto& h : hooks) h->on_interrupt(s);
          util::throw_if_interrupted(util::strfmt(
              "during %s at epoch %lld/%lld after step %lld/%lld", name_.c_str(),
              static_cast<long long>(s.epoch + 1), static_cast<long long>(epochs_),
              static_cast<long long>(s.step), static_cast<long long>(steps_per_epoch_)));
        }
      }
      check_losses(s, checked);
      s.epoch_loss = s.epoch_losses.sum().item<double>() /
                     static_cast<double>(std::max<int64_t>(1, s.samples_in_epoch));
      s.epoch_seconds = util::now_seconds() - t0;
      for (auto& h : hooks) h->after_epoch(s);
    }
  } catch (...) {
    for (auto& h : hooks) {
      try {
        h->after_train(s);
      } catch (...) {
        // The original error is the one worth reporting.
      }
    }
    throw;
  }
  for (auto& h : hooks) h->after_train(s);
  return s;
}

double scheduled_lr(config::Schedule schedule, double base_lr, int64_t step, int64_t total,
                    int64_t warmup) {
  if (warmup > 0 && step < warmup)
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (schedule == config::Schedule::kConstant) return base_lr;
  const double span = static_cast<double>(std::max<int64_t>(1, total - warmup));
  const double t = std::min(1.0, static_cast<double>(step - warmup) / span);
  return 0.5 * base_lr * (1.0 + std::cos(M_PI * t));
}

LrScheduleHook::LrScheduleHook(torch::optim::Optimizer& opt, config::Schedule schedule,
                               double base_lr, int64_t total_steps, int64_t warmup_steps)
    : opt_(opt),
      schedule_(schedule),
      base_lr_(base_lr),
      total_(total_steps),
      warmup_(warmup_steps) {}

void LrScheduleHook::before_step(TrainState& s) {
  lr_ = scheduled_lr(schedule_, base_lr_, s.global_step, total_, warmup_);
  for (auto& group : opt_.param_groups()) group.options().set_lr(lr_);
}

ProgressHook::ProgressHook(std::string stage, std::function<double()> lr)
    : stage_(std::move(stage)), lr_(std::move(lr)) {}

void ProgressHook::before_train(TrainState& s) {
  train_start_ = util::now_seconds();
  first_global_step_ = s.global_step;
  fresh_ = true;
}

void ProgressHook::before_step(TrainState& s) {
  if (s.step == 0 || fresh_)
    epoch_start_ = util::now_seconds() - (s.step == 0 ? 0 : s.epoch_seconds);
  fresh_ = false;
}

void ProgressHook::after_step(TrainState& s) {
  const double now = util::now_seconds();
  if (!display_.due(now)) return;
  util::ProgressInfo p;
  p.stage = stage_;
  p.epoch = s.epoch + 1;
  p.epochs = s.epochs;
  p.step = s.step + 1;
  p.steps = s.steps_per_epoch;
  p.images_per_second =
      static_cast<double>(s.samples_in_epoch) / std::max(1e-9, now - epoch_start_);
  p.loss = s.epoch_losses.narrow(0, 0, s.step + 1).sum().item<double>() /
           static_cast<double>(std::max<int64_t>(1, s.samples_in_epoch));
  p.lr = lr_ ? lr_() : 0.0;
  const int64_t done = s.global_step - first_global_step_;
  const int64_t left = s.epochs * s.steps_per_epoch - s.global_step;
  p.eta_seconds = static_cast<double>(left) * (now - train_start_) / static_cast<double>(done);
  display_.update(p, now);
}

}  // namespace aefx::engine
