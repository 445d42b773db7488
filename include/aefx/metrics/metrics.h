#pragma once
// Meters and classification metrics.
#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace aefx::metrics {

/// Weighted running mean: add(value, weight) with weight = batch size gives the per-sample mean.
class Meter {
 public:
  void add(double value, double weight = 1.0);
  /// The weighted mean so far; 0 when nothing was added.
  double value() const;
  double total_weight() const { return weight_; }
  void reset();

 private:
  double sum_ = 0.0;
  double weight_ = 0.0;
};

/// Confusion matrix over `classes` classes: rows are true labels, columns predictions.
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int64_t classes);
  /// Adds a batch of predicted and true labels (int64 tensors of equal length, any device).
  void add(const torch::Tensor& predicted, const torch::Tensor& target);
  double accuracy() const;
  /// Recall per class; a class with no samples gets 0.
  std::vector<double> per_class_accuracy() const;
  std::vector<std::vector<int64_t>> counts() const;
  int64_t total() const;

 private:
  int64_t classes_;
  torch::Tensor counts_;  ///< int64 classes x classes, on CPU
};

/// Peak signal-to-noise ratio in dB for a mean squared error of images in [0, 1].
double psnr(double mse);

}  // namespace aefx::metrics
