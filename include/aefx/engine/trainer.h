#pragma once
// The one train loop of aefx (pretraining, head training, the baseline): epochs of steps, with
// everything around the step (LR schedule, progress, validation, logs, pictures, best state,
// checkpoints) as small hooks, and resume-or-start owned by the loop (see engine/hooks.h).
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "aefx/config/config.h"
#include "aefx/dist/dist.h"
#include "aefx/util/progress.h"

namespace aefx::engine {

/// What hooks see of the loop, and what a resumable checkpoint stores of it.
struct TrainState {
  int64_t epoch = 0;   ///< 0-based current epoch
  int64_t epochs = 0;  ///< total epochs
  /// 0-based step within the epoch: the step being run in before_step, the step step function
  /// and after_step; the number of steps done in the epoch in on_interrupt and after_epoch.
  int64_t step = 0;
  int64_t steps_per_epoch = 0;
  int64_t global_step = 0;  ///< steps done since the start
  int64_t samples_in_epoch = 0;
  /// Per step of the current epoch: the step's mean loss times its batch size (float64, on the
  /// loss's device). Kept on the device so that steps do not wait for the host.
  torch::Tensor epoch_losses;
  double epoch_loss = 0.0;     ///< mean training loss of the epoch (set before after_epoch)
  double epoch_seconds = 0.0;  ///< wall time of the epoch (of its steps, across resumptions)
  std::map<std::string, double> metrics;  ///< filled by hooks (e.g. validation)
};

/// Where the loop stands once the epoch `s` describes has ended: the start of the next epoch
/// (what an end-of-epoch checkpoint saves to resume from).
inline TrainState next_epoch_start(const TrainState& s) {
  TrainState next = s;
  next.epoch = s.epoch + 1;
  next.step = 0;
  return next;
}

/// Hooks called around the loop. after_train runs even when a step throws. A hook that keeps
/// state across epochs (a history, the best weights so far) saves it in the loop's resumable
/// checkpoint (save_state) and gets it back when a run resumes (load_state), so a resumed loop
/// continues exactly where the stopped one was.
class Hook {
 public:
  virtual ~Hook() = default;
  virtual void before_train(TrainState&) {}
  virtual void before_step(TrainState&) {}
  virtual void after_step(TrainState&) {}
  virtual void after_epoch(TrainState&) {}
  /// SIGINT/SIGTERM arrived: called after the step that was running finished (and its loss was
  /// checked), before the loop throws util::Interrupted. Save what resuming needs here.
  virtual void on_interrupt(TrainState&) {}
  virtual void after_train(TrainState&) {}
  virtual void save_state(torch::serialize::OutputArchive&) const {}
  virtual void load_state(torch::serialize::InputArchive&) {}
};

/// Thrown when a training loss is NaN or infinite; names the loop, the epoch and the step.
/// No hook runs after the bad step (after_epoch, on_interrupt), so no checkpoint holds its
/// weights.
class NonFiniteLoss : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One step: trains on a batch and returns its (detached) mean loss and the batch size.
struct StepOutput {
  torch::Tensor loss;
  int64_t batch_size = 0;
};
using StepFn = std::function<StepOutput(TrainState&)>;

/// Where a loop keeps its resumable state: after every epoch, and when a signal stops it, rank 0
/// writes `file` with the module, the optimizer, the loop's position, the random generators and
/// every hook's state; a resumed run reads it back on every rank.
struct CheckpointSpec {
  std::filesystem::path file;
  std::string kind;          ///< e.g. "autoencoder", "head-training"
  std::string architecture;  ///< the module's architecture line (checked on load)
  torch::nn::Module* module = nullptr;
  torch::optim::Optimizer* optimizer = nullptr;
  torch::Device device = torch::kCPU;
  int64_t seed = 0;  ///< the run's seed: the other ranks' random streams after a resume
};

/// Runs `epochs` x `steps_per_epoch` steps. Losses stay on the device; they are checked for
/// NaN/Inf after every step on the CPU and every kGpuCheckInterval steps on a GPU (always before
/// after_epoch and on_interrupt), so GPU steps stay asynchronous. After each step it checks for
/// SIGINT/SIGTERM (util::interrupt_signal): then hooks get on_interrupt and it throws
/// util::Interrupted. With several ranks in `group`, the ranks agree after every step on any
/// pending signal and on a non-finite loss on any rank, so all stop after the same step (losses
/// are then checked every step).
class Trainer {
 public:
  static constexpr int64_t kGpuCheckInterval = 50;
  /// `name` (e.g. "pretrain") names the loop in errors, progress and logs.
  /// `remedy` is appended to the message of a NaN loss (e.g. "Lower pretrain.lr").
  Trainer(std::string name, int64_t epochs, int64_t steps_per_epoch, dist::Group& group,
          std::string remedy = "");
  /// Hooks run in the order they were added.
  void add_hook(std::shared_ptr<Hook> hook);
  /// What the ranks agree on after every step: given this rank's pending signal (0 for none) and
  /// whether its step's loss is non-finite, the group's signal (the largest) and whether any
  /// rank's loss is non-finite. Set from the group when it has several ranks (Group::agree).
  using Agreement = std::function<std::pair<int, bool>(int signal, bool non_finite)>;
  void set_agreement(Agreement agreement) { agreement_ = std::move(agreement); }
  /// Makes the loop resumable: a checkpoint hook runs after every other hook (so it saves their
  /// state as of the end of the epoch), and run(step, true) continues from `spec.file`.
  void enable_checkpoints(CheckpointSpec spec);
  /// Resume or start: with `resume` and rank 0's checkpoint file present, every rank loads it
  /// (module, optimizer, position, generators, hooks' state) and continues from there; else the
  /// loop starts at epoch 0. Throws whatever the step or a hook throws, after calling after_train
  /// on every hook; a NaN loss says whether a checkpoint was kept.
  TrainState run(const StepFn& step, bool resume = false);
  /// The loop itself, from the start or from `resume` (epoch, step, global_step,
  /// samples_in_epoch, epoch_losses and epoch_seconds of a saved TrainState), without the
  /// checkpoint file: what run() calls, and what tests drive directly.
  TrainState run_from(const StepFn& step, const TrainState* resume);
  const std::string& name() const { return name_; }

 private:
  class CheckpointHook;
  void check_losses(const TrainState& s, int64_t from) const;
  TrainState load_checkpoint();
  std::string name_;
  int64_t epochs_, steps_per_epoch_;
  dist::Group& group_;
  std::string remedy_;
  std::vector<std::shared_ptr<Hook>> hooks_;
  Agreement agreement_;
  std::optional<CheckpointSpec> checkpoint_;
  int64_t completed_epochs_ = 0;  ///< epochs whose end the checkpoint hook saw (or resumed from)
};

/// Learning rate at `step` of `total` with linear warmup over `warmup` steps, then cosine
/// decay to 0 (cosine) or constant.
double scheduled_lr(config::Schedule schedule, double base_lr, int64_t step, int64_t total,
                    int64_t warmup);

/// A hook that sets the optimizer's learning rate before every step.
class LrScheduleHook : public Hook {
 public:
  LrScheduleHook(torch::optim::Optimizer& opt, config::Schedule schedule, double base_lr,
                 int64_t total_steps, int64_t warmup_steps);
  void before_step(TrainState& s) override;
  double current_lr() const { return lr_; }

 private:
  torch::optim::Optimizer& opt_;
  config::Schedule schedule_;
  double base_lr_;
  int64_t total_, warmup_;
  double lr_ = 0;
};

/// Shows the loop's progress (util::ProgressDisplay): epoch n/N, a bar, images/s, the epoch's
/// running loss, the LR `lr` returns and the time left for the whole loop.
class ProgressHook : public Hook {
 public:
  ProgressHook(std::string stage, std::function<double()> lr);
  void before_train(TrainState& s) override;
  void before_step(TrainState& s) override;
  void after_step(TrainState& s) override;
  void after_epoch(TrainState&) override { display_.clear(); }
  void on_interrupt(TrainState&) override { display_.clear(); }
  void after_train(TrainState&) override { display_.clear(); }

 private:
  std::string stage_;
  std::function<double()> lr_;
  util::ProgressDisplay display_;
  double train_start_ = 0, epoch_start_ = 0;
  int64_t first_global_step_ = 0;
  bool fresh_ = true;  ///< the next step is the first of this run (maybe mid-epoch on resume)
};

}  // namespace aefx::engine
