#include "aefx/metrics/metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "aefx/data/dataset.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"

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

namespace aefx::metrics {
namespace {

struct Column {
  const char* name;
  double EpochRecord::*field;
};

const std::vector<Column>& number_columns() {
  static const std::vector<Column> cols = {{"loss", &EpochRecord::loss},
                                           {"lr", &EpochRecord::lr},
                                           {"images_per_second", &EpochRecord::images_per_second},
                                           {"val_loss", &EpochRecord::val_loss},
                                           {"val_accuracy", &EpochRecord::val_accuracy},
                                           {"val_mse", &EpochRecord::val_mse},
                                           {"val_psnr", &EpochRecord::val_psnr},
                                           {"seconds", &EpochRecord::seconds},
                                           {"wall_seconds", &EpochRecord::wall_seconds}};
  return cols;
}

EpochRecord parse_record(const std::string& line, const std::string& where) {
  EpochRecord r;
  try {
    const util::Json n = util::Json::parse(line);
    if (!n.is_object()) throw std::runtime_error(where + ": expected a JSON object");
    r.stage = n.at("stage").get<std::string>();
    r.epoch = n.at("epoch").get<int64_t>();
    r.epochs = n.at("epochs").get<int64_t>();
    for (const auto& c : number_columns()) {
      if (n.contains(c.name) && !n[c.name].is_null()) r.*c.field = n[c.name].get<double>();
    }
    if (n.contains("time")) r.time = n["time"].get<std::string>();
  } catch (const util::Json::exception& e) {
    throw std::runtime_error(where + ": " + e.what());
  }
  return r;
}

}  // namespace

EpochLog::EpochLog(std::filesystem::path jsonl, std::filesystem::path csv)
    : jsonl_(std::move(jsonl)), csv_(std::move(csv)) {
  const auto& file = jsonl_;
  if (!std::filesystem::exists(file)) return;
  std::istringstream in(util::read_text(file));
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    records_.push_back(parse_record(line, file.string() + ":" + std::to_string(n)));
  }
}

void EpochLog::begin_stage(const std::string& stage, int64_t keep,
                           const std::vector<std::string>& later) {
  records_.erase(std::remove_if(records_.begin(), records_.end(),
                                [&](const EpochRecord& r) {
                                  return (r.stage == stage && r.epoch > keep) ||
                                         std::find(later.begin(), later.end(), r.stage) !=
                                             later.end();
                                }),
                 records_.end());
  write();
}

void EpochLog::add(EpochRecord record) {
  if (record.time.empty()) record.time = util::utc_now();
  // An epoch redone after a resume replaces its earlier record (and any after it).
  records_.erase(std::remove_if(records_.begin(), records_.end(),
                                [&](const EpochRecord& r) {
                                  return r.stage == record.stage && r.epoch >= record.epoch;
                                }),
                 records_.end());
  records_.push_back(std::move(record));
  write();
}

std::vector<EpochRecord> EpochLog::of(const std::string& stage) const {
  std::vector<EpochRecord> out;
  for (const auto& r : records_)
    if (r.stage == stage) out.push_back(r);
  return out;
}

void EpochLog::write() const {
  std::string jsonl, csv = "stage,epoch,epochs";
  for (const auto& c : number_columns()) csv += std::string(",") + c.name;
  csv += ",time\n";
  for (const auto& r : records_) {
    util::Json j = {{"stage", r.stage}, {"epoch", r.epoch}, {"epochs", r.epochs}};
    csv += r.stage + "," + std::to_string(r.epoch) + "," + std::to_string(r.epochs);
    for (const auto& c : number_columns()) {
      const double v = r.*c.field;
      csv += ",";
      if (std::isnan(v)) continue;
      j[c.name] = v;
      csv += util::strfmt("%.10g", v);
    }
    j["time"] = r.time;
    jsonl += util::dump_json(j, -1) + "\n";
    csv += "," + r.time + "\n";
  }
  util::atomic_write_text(jsonl_, jsonl);
  util::atomic_write_text(csv_, csv);
}

double classifier_accuracy(const LogitsFn& logits, const torch::Tensor& images,
                           const torch::Tensor& labels, const AccuracyOptions& options) {
  if (options.batch_size < 1) {
    throw std::invalid_argument("accuracy: batch size must be at least 1, found " +
                                std::to_string(options.batch_size));
  }
  const int64_t n = images.size(0);
  if (labels.size(0) != n) {
    throw std::invalid_argument("accuracy: " + std::to_string(n) + " images but " +
                                std::to_string(labels.size(0)) + " labels");
  }
  torch::NoGradGuard no_grad;
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i += options.batch_size) {
    const int64_t b = std::min(options.batch_size, n - i);
    const auto x = data::to_float(images.narrow(0, i, b), torch::kCPU);
    const auto predicted = logits(x).argmax(1).to(torch::kCPU);
    correct += (predicted == labels.narrow(0, i, b).to(torch::kCPU)).sum().item<int64_t>();
  }
  return n == 0 ? std::numeric_limits<double>::quiet_NaN()
                : static_cast<double>(correct) / static_cast<double>(n);
}

namespace {

/// Rows scaled to unit L2 norm (as torch.nn.functional.normalize, eps 1e-12).
torch::Tensor unit_rows(const torch::Tensor& x) {
  return x / x.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12);
}

}  // namespace

KnnClassifier::KnnClassifier(const torch::Tensor& train, const torch::Tensor& labels,
                             int64_t classes, int64_t k, double temperature,
                             torch::ScalarType dtype)
    : KnnClassifier(train.dim() == 2 ? train.size(1) : 0, labels, classes, k, temperature, dtype,
                    train.device()) {
  TORCH_CHECK(train.dim() == 2 && train.size(0) == labels.size(0),
              "KnnClassifier: N x D features and N labels expected");
  // A chunk of rows at a time: no float32 copy of all N rows.
  constexpr int64_t kChunk = 4096;
  for (int64_t i = 0; i < train.size(0); i += kChunk)
    set_rows(i, train.narrow(0, i, std::min(kChunk, train.size(0) - i)));
}

KnnClassifier::KnnClassifier(int64_t dim, const torch::Tensor& labels, int64_t classes, int64_t k,
                             double temperature, torch::ScalarType dtype,
                             const torch::Device& device)
    : labels_(labels.to(device, torch::kLong)),
      classes_(classes),
      k_(labels.dim() == 1 ? std::min(k, labels.size(0)) : 0),
      temperature_(temperature) {
  TORCH_CHECK(labels.dim() == 1 && dim > 0, "KnnClassifier: N labels and D > 0 features expected");
  TORCH_CHECK(k_ > 0 && temperature > 0, "KnnClassifier: k and temperature must be positive");
  train_ = torch::empty({labels.size(0), dim}, torch::TensorOptions().dtype(dtype).device(device));
  row_set_.assign(static_cast<size_t>(labels.size(0)), false);
  unset_ = labels.size(0);
}

void KnnClassifier::set_rows(int64_t at, const torch::Tensor& rows) {
  TORCH_CHECK(rows.dim() == 2 && rows.size(1) == train_.size(1) && at >= 0 &&
                  at + rows.size(0) <= train_.size(0),
              "KnnClassifier::set_rows: rows ", at, "..", at + rows.size(0), " of ", train_.size(0),
              " x ", train_.size(1), " expected");
  torch::NoGradGuard no_grad;
  train_.narrow(0, at, rows.size(0)).copy_(unit_rows(rows.to(train_.device(), torch::kFloat)));
  for (int64_t r = at; r < at + rows.size(0); ++r) {
    if (!row_set_[static_cast<size_t>(r)]) {
      row_set_[static_cast<size_t>(r)] = true;
      --unset_;
    }
  }
}

torch::Tensor KnnClassifier::predict(const torch::Tensor& queries) const {
  TORCH_CHECK(unset_ == 0, "KnnClassifier::predict: ", unset_, " of ", train_.size(0),
              " bank rows were never set");
  torch::NoGradGuard no_grad;
  const auto q = unit_rows(queries.to(train_.device(), torch::kFloat)).to(train_.scalar_type());
  auto [sim, idx] = q.mm(train_.t()).topk(k_, 1);
  // fp32 votes, whatever dtype the similarities are in.
  const auto weights = sim.to(torch::kFloat).div(temperature_).exp();
  auto votes = torch::zeros({q.size(0), classes_}, weights.options());
  votes.scatter_add_(1, labels_.index({idx.flatten()}).view_as(idx), weights);
  return votes.argmax(1);
}

}  // namespace aefx::metrics
