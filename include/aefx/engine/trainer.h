#pragma once
// A small epoch/step train loop. Everything around the step (LR schedule, validation,
// checkpoints, logging) hangs off it as hooks.
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace aefx::engine {

/// What hooks see of the loop.
struct TrainState {
  int64_t epoch = 0;   ///< 0-based current epoch
  int64_t epochs = 0;  ///< total epochs
  int64_t step = 0;    ///< 0-based step within the epoch
  int64_t steps_per_epoch = 0;
  int64_t global_step = 0;  ///< steps done since the start
  int64_t samples_in_epoch = 0;
  double epoch_loss = 0.0;  ///< mean training loss of the epoch (set before after_epoch)
  double epoch_seconds = 0.0;
  std::map<std::string, double> metrics;  ///< filled by hooks (e.g. validation)
};

/// Hooks called around the loop. after_train runs even when a step throws.
class Hook {
 public:
  virtual ~Hook() = default;
  virtual void before_train(TrainState&) {}
  virtual void before_step(TrainState&) {}
  virtual void after_step(TrainState&) {}
  virtual void after_epoch(TrainState&) {}
  virtual void after_train(TrainState&) {}
};

/// One step: trains on a batch and returns its (detached) mean loss and the batch size.
struct StepOutput {
  torch::Tensor loss;
  int64_t batch_size = 0;
};
using StepFn = std::function<StepOutput(TrainState&)>;

/// Runs `epochs` x `steps_per_epoch` steps. Losses stay on the device and are summed there;
/// the only host sync per epoch is reading the epoch's mean loss, which keeps GPU steps async.
class Trainer {
 public:
  Trainer(int64_t epochs, int64_t steps_per_epoch);
  void add_hook(std::shared_ptr<Hook> hook);
  /// Throws whatever the step or a hook throws, after calling after_train on every hook.
  TrainState run(const StepFn& step);

 private:
  int64_t epochs_, steps_per_epoch_;
  std::vector<std::shared_ptr<Hook>> hooks_;
};

/// Learning rate at `step` of `total` with linear warmup over `warmup` steps, then cosine
/// decay to 0 (schedule "cosine") or constant (schedule "constant").
double scheduled_lr(const std::string& schedule, double base_lr, int64_t step, int64_t total,
                    int64_t warmup);

/// A hook that sets the optimizer's learning rate before every step.
class LrScheduleHook : public Hook {
 public:
  LrScheduleHook(torch::optim::Optimizer& opt, std::string schedule, double base_lr,
                 int64_t total_steps, int64_t warmup_steps);
  void before_step(TrainState& s) override;
  double current_lr() const { return lr_; }

 private:
  torch::optim::Optimizer& opt_;
  std::string schedule_;
  double base_lr_;
  int64_t total_, warmup_;
  double lr_ = 0;
};

/// A hook that calls `fn` after every epoch (validation, checkpointing, logging).
class EpochHook : public Hook {
 public:
  explicit EpochHook(std::function<void(TrainState&)> fn) : fn_(std::move(fn)) {}
  void after_epoch(TrainState& s) override { fn_(s); }

 private:
  std::function<void(TrainState&)> fn_;
};

/// Builds the optimizer named by the config (adamw | adam | sgd with momentum 0.9).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::string& name,
                                                        std::vector<torch::Tensor> params,
                                                        double lr, double weight_decay);

}  // namespace aefx::engine
