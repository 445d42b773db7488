#pragma once
// Small stateful hooks around the train loop (engine/trainer.h), each with one job, as
// detectron2's hooks are: averaging over ranks, validation, the per-epoch history, its log
// lines and metrics.jsonl, and the best state. Pictures hang off the loop the same way
// (viz/pictures.h); checkpoints are the loop's own (Trainer::enable_checkpoints).
#include <torch/nn/module.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "aefx/dist/dist.h"
#include "aefx/engine/trainer.h"
#include "aefx/metrics/metrics.h"

namespace aefx::engine {

/// After every epoch: the epoch's mean loss averaged over the ranks and, when `batch_norm_of` is
/// given, that module's BatchNorm running statistics averaged too (dist::
/// average_batch_norm_statistics). Nothing changes with one process.
class RankAverageHook : public Hook {
 public:
  explicit RankAverageHook(dist::Group& group, torch::nn::Module* batch_norm_of = nullptr)
      : group_(group), module_(batch_norm_of) {}
  void after_epoch(TrainState& s) override;

 private:
  dist::Group& group_;
  torch::nn::Module* module_;
};

/// After every epoch: runs `validate` and puts what it returns into TrainState::metrics
/// ("val_mse", "val_loss", "val_accuracy"), where the hooks after it read them.
class ValidationHook : public Hook {
 public:
  using Fn = std::function<std::map<std::string, double>()>;
  explicit ValidationHook(Fn validate) : validate_(std::move(validate)) {}
  void after_epoch(TrainState& s) override {
    for (const auto& [k, v] : validate_()) s.metrics[k] = v;
  }

 private:
  Fn validate_;
};

/// The figures every training epoch has, as one record: stage, epoch n/N, mean loss, `lr`,
/// images/s, the epoch's seconds, the wall seconds since `stage_start` (util::now_seconds()),
/// and the validation figures in s.metrics (val_mse also gives val_psnr).
metrics::EpochRecord epoch_record(const std::string& stage, const TrainState& s, double lr,
                                  double stage_start);

/// Keeps one metrics::EpochRecord per epoch (epoch_record of the loop's figures, wall seconds
/// since `stage_start`); saved in the loop's checkpoint, so a resumed loop's history is the whole
/// history.
class HistoryHook : public Hook {
 public:
  HistoryHook(std::string stage, std::function<double()> lr, double stage_start);
  void after_epoch(TrainState& s) override;
  void save_state(torch::serialize::OutputArchive& archive) const override;
  void load_state(torch::serialize::InputArchive& archive) override;
  const std::vector<metrics::EpochRecord>& records() const { return records_; }
  const std::string& stage() const { return stage_; }

 private:
  std::string stage_;
  std::function<double()> lr_;
  double start_ = 0;
  std::vector<metrics::EpochRecord> records_;
};

/// Each epoch's line in the log (`format` of the newest record), and on rank 0 the record in the
/// run folder's metrics.jsonl / metrics.csv (`log`; none for the other ranks). When the loop
/// starts it drops the records the loop will redo, and those of `later` stages.
class EpochLogHook : public Hook {
 public:
  using Format = std::function<std::string(const metrics::EpochRecord&)>;
  EpochLogHook(const HistoryHook& history, metrics::EpochLog* log, std::vector<std::string> later,
               Format format)
      : history_(history), log_(log), later_(std::move(later)), format_(std::move(format)) {}
  void before_train(TrainState& s) override;
  void after_epoch(TrainState& s) override;

 private:
  const HistoryHook& history_;
  metrics::EpochLog* log_;
  std::vector<std::string> later_;
  Format format_;
};

/// Keeps a copy of `module`'s parameters from the epoch with the largest s.metrics[metric] (the
/// first such epoch on ties); `restore` puts them back at the end. Saved in the checkpoint.
class BestStateHook : public Hook {
 public:
  BestStateHook(torch::nn::Module& module, std::string metric, const torch::Device& device)
      : module_(module), metric_(std::move(metric)), device_(device) {}
  void after_epoch(TrainState& s) override;
  void save_state(torch::serialize::OutputArchive& archive) const override;
  void load_state(torch::serialize::InputArchive& archive) override;
  /// Copies the best epoch's parameters into the module.
  void restore();
  double best() const { return best_; }
  int64_t best_epoch() const { return best_epoch_; }  ///< 1-based; 0 before the first epoch

 private:
  torch::nn::Module& module_;
  std::string metric_;
  torch::Device device_;
  double best_ = -1;
  int64_t best_epoch_ = 0;
  std::vector<torch::Tensor> state_;
};

}  // namespace aefx::engine
