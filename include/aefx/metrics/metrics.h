#pragma once
// Meters and classification metrics.
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
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

/// One training epoch of a stage, as metrics.jsonl and metrics.csv list it. NaN = not measured
/// (omitted from the JSON line, an empty CSV cell).
struct EpochRecord {
  static constexpr double kNone = std::numeric_limits<double>::quiet_NaN();
  std::string stage;
  int64_t epoch = 0, epochs = 0;  ///< 1-based epoch of epochs
  double loss = kNone;            ///< mean training loss of the epoch
  double lr = kNone;              ///< learning rate at the epoch's last step
  double images_per_second = kNone;
  double val_loss = kNone, val_accuracy = kNone;  ///< classify
  double val_mse = kNone, val_psnr = kNone;       ///< pretrain (pixels in [0, 1])
  double seconds = kNone;                         ///< wall time of the epoch's training steps
  double wall_seconds = kNone;  ///< since the stage (classify: its head training) started
  std::string time;             ///< when the epoch ended, UTC, ISO 8601
};

/// The per-epoch figures of a run folder: a JSON Lines file (one JSON object per epoch per stage,
/// the run folder's metrics.jsonl) and a CSV file (the same, a row each, for spreadsheets:
/// metrics.csv), rewritten atomically after every epoch, so a stopped run keeps the epochs it
/// finished.
class EpochLog {
 public:
  /// Reads `jsonl` when it exists (std::runtime_error naming the file and line when it does not
  /// parse).
  EpochLog(std::filesystem::path jsonl, std::filesystem::path csv);
  /// A stage starts: drops its records after epoch `keep` (0: all; a resumed stage keeps what
  /// it has) and every record of `later` stages, then rewrites the files.
  void begin_stage(const std::string& stage, int64_t keep, const std::vector<std::string>& later);
  /// Adds an epoch (its `time` filled in when empty), replacing records of the same stage from
  /// that epoch on (an epoch redone after a resume), and rewrites the files.
  void add(EpochRecord record);
  const std::vector<EpochRecord>& records() const { return records_; }
  /// The records of one stage, in order.
  std::vector<EpochRecord> of(const std::string& stage) const;

 private:
  void write() const;
  std::filesystem::path jsonl_, csv_;
  std::vector<EpochRecord> records_;
};

/// Peak signal-to-noise ratio in dB for a mean squared error of images in [0, 1].
double psnr(double mse);

/// A classifier as classifier_accuracy sees it: float images N x C x H x W in [0, 1] -> logits
/// N x classes (e.g. an exported classifier.pt's ExportedClassifier::logits).
using LogitsFn = std::function<torch::Tensor(const torch::Tensor&)>;

/// Options of classifier_accuracy.
struct AccuracyOptions {
  /// Images per forward pass: bounds the memory a pass takes, never changes the result.
  int64_t batch_size = 500;
};

/// Top-1 accuracy of `logits` on uint8 `images` N x C x H x W with int64 `labels` N, batch by
/// batch (each converted as data::to_float on the CPU), without gradients; NaN for no images.
/// Throws std::invalid_argument for a batch size below 1 or images and labels of different
/// counts.
double classifier_accuracy(const LogitsFn& logits, const torch::Tensor& images,
                           const torch::Tensor& labels, const AccuracyOptions& options = {});

/// Weighted k-nearest-neighbour classification of frozen features, the protocol of Wu et al.
/// 2018 ("Unsupervised feature learning via non-parametric instance discrimination") that
/// solo-learn and lightly report: features L2-normalised, the k most similar train rows by
/// cosine similarity each vote for their class with weight exp(similarity / temperature).
class KnnClassifier {
 public:
  /// `train` N x D features (any device; normalised in float32, then kept there in `dtype`, the
  /// dtype the similarities are computed in: bfloat16 halves the memory and time of the
  /// N x M products where the hardware has it), `labels` int64 N in 0..classes-1. k is capped at
  /// N.
  KnnClassifier(const torch::Tensor& train, const torch::Tensor& labels, int64_t classes, int64_t k,
                double temperature, torch::ScalarType dtype = torch::kFloat);
  /// A bank of labels.size(0) rows of `dim` features on `device`, to be filled by set_rows
  /// before predict (which throws while a row is unset): features computed a chunk at a time go
  /// straight into it, with no copy of them all in another dtype.
  KnnClassifier(int64_t dim, const torch::Tensor& labels, int64_t classes, int64_t k,
                double temperature, torch::ScalarType dtype, const torch::Device& device);
  /// Normalises `rows` (n x dim, any dtype) in float32 and stores them as rows at..at+n-1.
  void set_rows(int64_t at, const torch::Tensor& rows);
  /// Predicted classes (int64, on the features' device) of `queries` M x D. Throws c10::Error
  /// while a row of the bank was never set.
  torch::Tensor predict(const torch::Tensor& queries) const;
  int64_t k() const { return k_; }
  /// The dtype the train features are kept and compared in.
  torch::ScalarType dtype() const { return train_.scalar_type(); }

 private:
  torch::Tensor train_, labels_;
  int64_t classes_, k_;
  double temperature_;
  std::vector<bool> row_set_;  ///< which bank rows set_rows has filled
  int64_t unset_ = 0;          ///< how many have not been
};

}  // namespace aefx::metrics
