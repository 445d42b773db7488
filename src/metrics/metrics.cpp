#include "aefx/metrics/metrics.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace aefx::metrics {

void Meter::add(double value, double weight) {
  sum_ += value * weight;
  weight_ += weight;
}

double Meter::value() const { return weight_ > 0 ? sum_ / weight_ : 0.0; }

void Meter::reset() { sum_ = weight_ = 0.0; }

ConfusionMatrix::ConfusionMatrix(int64_t classes)
    : classes_(classes), counts_(torch::zeros({classes, classes}, torch::kLong)) {
  TORCH_CHECK(classes > 0, "ConfusionMatrix needs at least one class");
}

void ConfusionMatrix::add(const torch::Tensor& predicted, const torch::Tensor& target) {
  TORCH_CHECK(predicted.numel() == target.numel(), "ConfusionMatrix::add: ", predicted.numel(),
              " predictions for ", target.numel(), " targets");
  auto p = predicted.to(torch::kCPU, torch::kLong).flatten();
  auto t = target.to(torch::kCPU, torch::kLong).flatten();
  TORCH_CHECK(
      p.numel() == 0 || (p.min().item<int64_t>() >= 0 && p.max().item<int64_t>() < classes_ &&
                         t.min().item<int64_t>() >= 0 && t.max().item<int64_t>() < classes_),
      "ConfusionMatrix::add: label outside 0..", classes_ - 1);
  counts_ += torch::bincount(t * classes_ + p, {}, classes_ * classes_).view({classes_, classes_});
}

int64_t ConfusionMatrix::total() const { return counts_.sum().item<int64_t>(); }

double ConfusionMatrix::accuracy() const {
  const int64_t n = total();
  return n > 0 ? static_cast<double>(counts_.diagonal().sum().item<int64_t>()) / n : 0.0;
}

std::vector<double> ConfusionMatrix::per_class_accuracy() const {
  std::vector<double> out;
  for (int64_t c = 0; c < classes_; ++c) {
    const int64_t row = counts_[c].sum().item<int64_t>();
    out.push_back(row > 0 ? static_cast<double>(counts_[c][c].item<int64_t>()) / row : 0.0);
  }
  return out;
}

std::vector<std::vector<int64_t>> ConfusionMatrix::counts() const {
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(classes_));
  auto acc = counts_.accessor<int64_t, 2>();
  for (int64_t r = 0; r < classes_; ++r) {
    for (int64_t c = 0; c < classes_; ++c) out[static_cast<size_t>(r)].push_back(acc[r][c]);
  }
  return out;
}

double psnr(double mse) {
  if (mse <= 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(1.0 / mse);
}

}  // namespace aefx::metrics
