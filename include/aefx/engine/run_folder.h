#pragma once
// The run folder: every file a run writes lives under output_dir/name, and this header is the one
// place that names them. Stages talk to each other only through these files, so any stage can
// run alone on a folder that earlier stages filled. The JSON summaries are typed: each struct
// reads and writes its own file (nlohmann-json, written atomically).
//
//   config.yaml, log.txt                  the resolved config; everything the run printed
//   progress.json                         stages completed, the one that stopped and why
//   .lock                                 held by the run using the folder (RunLock)
//   run.json                              written when every requested stage finished
//   checkpoints/autoencoder.pt            pretrain's trained autoencoder
//   checkpoints/pretrain_last.pt          pretrain's resumable state
//   checkpoints/head.pt                   classify's head (the best validation epoch)
//   checkpoints/classify_last.pt          classify's resumable state
//   pretrain.json, classify.json          the training stages' summaries
//   baseline.json                         the raw-pixel baseline (only when that stage ran)
//   metrics.json                          evaluate's test figures
//   encoder.pt, autoencoder.pt, classifier.pt, model.json    export's TorchScript models
//   metrics.jsonl, metrics.csv            every epoch (metrics::EpochLog)
//   curves.png, reconstructions.png, confusion.png, latents.png, report.html   pictures, report
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "aefx/config/config.h"
#include "aefx/util/json.h"

namespace aefx::engine {

/// The paths of one run folder.
class RunFolder {
 public:
  explicit RunFolder(std::filesystem::path dir) : dir_(std::move(dir)) {}
  const std::filesystem::path& dir() const { return dir_; }

  std::filesystem::path config() const { return dir_ / "config.yaml"; }
  std::filesystem::path log() const { return dir_ / "log.txt"; }
  std::filesystem::path progress() const { return dir_ / "progress.json"; }
  std::filesystem::path run_record() const { return dir_ / "run.json"; }
  std::filesystem::path lock_file() const { return dir_ / ".lock"; }

  std::filesystem::path checkpoints() const { return dir_ / "checkpoints"; }
  std::filesystem::path autoencoder() const { return checkpoints() / "autoencoder.pt"; }
  std::filesystem::path head() const { return checkpoints() / "head.pt"; }
  std::filesystem::path pretrain_state() const { return checkpoints() / "pretrain_last.pt"; }
  std::filesystem::path classify_state() const { return checkpoints() / "classify_last.pt"; }

  std::filesystem::path pretrain_summary() const { return dir_ / "pretrain.json"; }
  std::filesystem::path classify_summary() const { return dir_ / "classify.json"; }
  std::filesystem::path baseline_summary() const { return dir_ / "baseline.json"; }
  std::filesystem::path metrics() const { return dir_ / "metrics.json"; }
  std::filesystem::path metrics_jsonl() const { return dir_ / "metrics.jsonl"; }
  std::filesystem::path metrics_csv() const { return dir_ / "metrics.csv"; }

  std::filesystem::path encoder_export() const { return dir_ / "encoder.pt"; }
  std::filesystem::path autoencoder_export() const { return dir_ / "autoencoder.pt"; }
  std::filesystem::path classifier_export() const { return dir_ / "classifier.pt"; }
  std::filesystem::path model_json() const { return dir_ / "model.json"; }

  std::filesystem::path curves_png() const { return dir_ / "curves.png"; }
  std::filesystem::path reconstructions_png() const { return dir_ / "reconstructions.png"; }
  std::filesystem::path confusion_png() const { return dir_ / "confusion.png"; }
  std::filesystem::path latents_png() const { return dir_ / "latents.png"; }
  std::filesystem::path report() const { return dir_ / "report.html"; }

  /// Removes the temporary files of a process that was killed while writing (atomic_write's
  /// ".tmp.<pid>" files).
  void sweep_temporary_files() const;

 private:
  std::filesystem::path dir_;
};

/// A file of the run folder, for tables of files (e.g. a stage's resumable state).
using RunFile = std::filesystem::path (RunFolder::*)() const;

/// An exclusive lock on a run folder, held for the life of a run: a second run on the same
/// folder is refused (std::invalid_argument, exit 2) naming the folder and the process holding
/// it. The kernel releases it when the process ends, however it ends.
class RunLock {
 public:
  /// Creates the folder's lock file and takes the lock, or throws.
  explicit RunLock(const RunFolder& folder);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

/// progress.json: which stages completed and which one stopped (and why), kept up to date
/// atomically as stages start and finish.
struct Progress {
  std::vector<std::string> completed;
  std::string unfinished;  ///< the stage that started and did not finish
  std::string stopped_by;  ///< "SIGINT", "SIGTERM" or the error
  int64_t world_size = 1;  ///< processes of the run that wrote it
  bool exists = false;     ///< read from a file (not written back)

  /// The folder's progress, or an empty one (exists false) when there is none. Throws
  /// std::runtime_error naming the file when it does not parse.
  static Progress read(const RunFolder& folder);
  void write(const RunFolder& folder) const;
};

/// One pretraining epoch as pretrain.json lists it.
struct PretrainEpoch {
  int64_t epoch = 0;
  double loss = 0, val_mse = 0, val_psnr = 0, images_per_second = 0, seconds = 0;
};

/// pretrain.json.
struct PretrainSummary {
  int64_t epochs = 0, train_images = 0, val_images = 0, parameters = 0;
  /// Images each epoch trained on with pretrain.epoch_images (in whole batches: rounded down,
  /// at least one batch, at most every batch of the epoch); 0 when every epoch saw all
  /// train_images (the key unset, or files written before it existed).
  int64_t epoch_images = 0;
  double val_mse = 0, val_psnr = 0;
  int64_t test_images = 0;
  double test_mse = 0, test_psnr = 0;
  int64_t input_values = 0, code_values = 0;
  double compression_ratio = 0, train_seconds = 0;
  std::optional<double> images_per_second;  ///< none for epochs 0
  double seconds = 0;
  std::vector<PretrainEpoch> history;

  static std::optional<PretrainSummary> read(const RunFolder& folder);
  void write(const RunFolder& folder) const;
};

/// One head-training epoch as classify.json lists it.
struct HeadEpoch {
  int64_t epoch = 0;
  double loss = 0, val_accuracy = 0, val_loss = 0, seconds = 0;
};

/// classify.json.
struct ClassifySummary {
  int64_t code_dim = 0, best_epoch = 0;
  double val_accuracy = 0, code_seconds = 0, head_seconds = 0, seconds = 0;
  std::vector<std::string> class_names;
  std::vector<HeadEpoch> history;

  static std::optional<ClassifySummary> read(const RunFolder& folder);
  void write(const RunFolder& folder) const;
};

/// baseline.json: the classify head trained on raw pixels.
struct BaselineSummary {
  /// What the figure depends on (the seed, data.* and classify.*), as one line: evaluate
  /// reports the baseline only when it matches the config.
  std::string inputs;
  int64_t input_dim = 0;
  double test_accuracy = 0;
  int64_t test_images = 0;
  double val_accuracy = 0;
  int64_t best_epoch = 0;
  double seconds = 0;
  /// k-NN test accuracy of the raw pixels (evaluate.knn_k > 0), as evaluate measures the codes'.
  std::optional<double> knn_accuracy;

  /// `inputs` for a config: the seed and every data.* and classify.* key.
  static std::string inputs_for(const config::Config& cfg);
  static std::optional<BaselineSummary> read(const RunFolder& folder);
  void write(const RunFolder& folder) const;
};

/// metrics.json: evaluate's test figures, with what earlier stages measured beside them.
struct Metrics {
  double test_accuracy = 0;
  int64_t test_images = 0;
  std::optional<double> val_accuracy;  ///< classify's best validation accuracy
  std::vector<std::string> class_names;
  std::vector<double> per_class_accuracy;
  std::vector<std::vector<int64_t>> confusion_matrix;
  std::optional<double> val_psnr;  ///< pretrain's
  int64_t code_dim = 0;
  /// k-NN accuracy of the test codes against the labelled train codes (evaluate.knn_k > 0).
  std::optional<double> knn_accuracy;
  int64_t knn_k = 0;
  double knn_temperature = 0;
  /// The compression view, as pretrain measured it on the test set (absent without pretrain.json).
  std::optional<PretrainSummary> reconstruction;
  /// The same head on raw pixels, when the baseline stage ran for this config.
  std::optional<BaselineSummary> baseline;
  std::optional<double> pretrain_seconds, classify_seconds;
  double evaluate_seconds = 0;
  std::string device;
  std::string aefx_version;  ///< read back only (write() records the running binary's)

  static std::optional<Metrics> read(const RunFolder& folder);
  void write(const RunFolder& folder) const;
};

/// run.json: written when every requested stage has finished.
struct RunRecord {
  std::string name;
  int64_t seed = 0;
  bool resumed = false;
  std::vector<std::pair<std::string, double>> stage_seconds;
  double wall_seconds = 0;
  int64_t peak_rss_bytes = 0;
  std::string device;
  std::string precision;  ///< what the heavy operations computed in: "fp32" or "bf16"
  int threads = 0;
  int world_size = 1;
  std::string backend;  ///< empty for one process
  /// Read back only (write() records the running binary's and machine's own): the aefx and
  /// LibTorch versions, the git commit, and util::machine_info()'s description.
  std::string aefx_version, git_commit, libtorch_version;
  util::Json machine;

  static std::optional<RunRecord> read(const RunFolder& folder);
  void write(const RunFolder& folder) const;
};

}  // namespace aefx::engine
