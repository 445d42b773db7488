#pragma once
// Training a classifier head on cached codes (frozen-encoder codes in classify, raw pixels in the
// baseline): one Trainer loop with the LR schedule, progress, validation, history, log and
// best-state hooks, resumable when given a state file.
#include <torch/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "aefx/config/config.h"
#include "aefx/dist/dist.h"
#include "aefx/engine/trainer.h"
#include "aefx/metrics/metrics.h"
#include "aefx/models/autoencoder.h"

namespace aefx::engine {

/// How to train a head.
struct HeadTrainOptions {
  config::ClassifyConfig classify;  ///< epochs, batch, optimizer, schedule, hidden, dropout, ...
  int64_t classes = 0;
  torch::Device device = torch::kCPU;
  /// What the head's layers compute in (util/precision.h); its weights and loss stay fp32.
  torch::ScalarType dtype = torch::kFloat;
  int64_t seed = 0;                ///< the epochs' orders (dist::epoch_order)
  std::string stage = "classify";  ///< names the loop in progress lines, logs and records
  /// Where the resumable state goes after every epoch (empty: not resumable); with `resume` the
  /// loop continues from it when it exists.
  std::filesystem::path state_file;
  bool resume = false;
  /// Rank 0: every epoch's record also goes to the run folder's metrics.jsonl.
  metrics::EpochLog* epoch_log = nullptr;
  /// Hooks added after the standard ones (e.g. pictures).
  std::vector<std::shared_ptr<Hook>> extra_hooks;
};

/// What training the head produced.
struct HeadResult {
  models::Head head{nullptr};
  double best_val_accuracy = 0;
  int64_t best_epoch = 0;  ///< 1-based
  double seconds = 0;      ///< wall time of fit_head
  int64_t code_dim = 0;
  std::vector<metrics::EpochRecord> history;  ///< one per epoch
};

/// Per-column mean and (unbiased) standard deviation of N x D codes, in fp32, accumulated in
/// fp64 a block of rows at a time: the codes may be bf16, whose own reductions round the result.
std::pair<torch::Tensor, torch::Tensor> column_mean_std(const torch::Tensor& codes);

/// codes = (codes - mean) / std in place, in fp32 a block of rows at a time (the codes keep
/// their dtype).
void standardize_in_place(torch::Tensor& codes, const torch::Tensor& mean,
                          const torch::Tensor& std);

/// Trains a head on cached codes (N x D, rows matching `labels`; fp32, or bf16 when the head
/// computes in bf16): standardises them with their own mean/std (stored in the head), then runs
/// classify.epochs epochs and keeps the epoch with the best validation accuracy (on the
/// training codes when there are no validation codes).
/// Takes the code tensors by value because it standardises them in place. Each epoch visits the
/// codes in dist::epoch_order(seed). With several ranks in `group` (every rank holding all
/// codes), rank r trains on its slice of each global batch (classify.batch_size), the gradients
/// are averaged over the ranks, and the ranks keep identical heads; only rank 0 writes.
HeadResult fit_head(torch::Tensor codes, const torch::Tensor& labels, torch::Tensor val_codes,
                    const torch::Tensor& val_labels, const HeadTrainOptions& options,
                    dist::Group& group);

/// Accuracy and mean cross-entropy of the head on codes already standardised with its
/// statistics, in batches of `batch`, its layers computing in `dtype`.
std::pair<double, double> head_accuracy(models::Head& head, const torch::Tensor& codes,
                                        const torch::Tensor& labels, int64_t batch,
                                        torch::ScalarType dtype);

/// The batch size for `n` items ("training images", "codes"): `batch`, or `n` when there are
/// fewer, then with a warning naming `stage`.
int64_t fitted_batch(const std::string& stage, const std::string& items, int64_t n, int64_t batch);

}  // namespace aefx::engine
