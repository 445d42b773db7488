#pragma once
// The pipeline stages. Each reads what earlier stages wrote in the run folder and writes its
// own files there, so any stage can run alone:
//   pretrain -> checkpoints/autoencoder.pt, checkpoints/pretrain_last.pt, pretrain.json
//   classify -> checkpoints/head.pt, checkpoints/classify_last.pt, classify.json
//               (needs the autoencoder)
// The *_last.pt files hold a stage's resumable state (`aefx run --resume`).
//   baseline -> baseline.json: the classify head trained on raw pixels instead of codes, and
//               its test accuracy (needs nothing; not in the default stage list)
//   evaluate -> metrics.json                            (needs the autoencoder and head)
//   export   -> encoder.pt, autoencoder.pt, classifier.pt (TorchScript), model.json
// Pretrain and classify append every epoch to metrics.jsonl / metrics.csv and redraw
// curves.png; pretrain draws reconstructions.png, evaluate confusion.png and latents.png.
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <array>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "aefx/data/dataset.h"
#include "aefx/engine/runner.h"
#include "aefx/engine/trainer.h"
#include "aefx/metrics/metrics.h"
#include "aefx/models/autoencoder.h"
#include "aefx/util/json.h"

namespace aefx::stages {

inline constexpr const char* kAutoencoderFile = "checkpoints/autoencoder.pt";
inline constexpr const char* kHeadFile = "checkpoints/head.pt";
inline constexpr const char* kPretrainSummary = "pretrain.json";
inline constexpr const char* kClassifySummary = "classify.json";
inline constexpr const char* kBaselineSummary = "baseline.json";
inline constexpr const char* kMetricsFile = "metrics.json";
inline constexpr const char* kPretrainCheckpoint = "checkpoints/pretrain_last.pt";
inline constexpr const char* kClassifyCheckpoint = "checkpoints/classify_last.pt";
inline constexpr const char* kModelJson = "model.json";
inline constexpr const char* kReconstructionsPng = "reconstructions.png";
inline constexpr const char* kCurvesPng = "curves.png";
inline constexpr const char* kConfusionPng = "confusion.png";
inline constexpr const char* kLatentsPng = "latents.png";

void pretrain(engine::RunContext& ctx);
void classify(engine::RunContext& ctx);
void baseline(engine::RunContext& ctx);
void evaluate(engine::RunContext& ctx);
void export_models(engine::RunContext& ctx);

/// The registry holding pretrain, classify, baseline, evaluate and export.
engine::StageRegistry builtin_stages();

/// The train/validation split every stage uses (same seed, so the same images).
std::pair<data::Dataset, data::Dataset> load_train_val(const config::Config& cfg);

/// Builds the configured autoencoder and loads the run folder's autoencoder.pt into it.
models::Autoencoder load_autoencoder(const engine::RunContext& ctx);

/// Builds the configured head for `classes` classes and loads the run folder's head into it.
models::Head load_head(const engine::RunContext& ctx, int64_t classes);

/// The pretraining step on its own (what the pretrain stage repeats, and `aefx bench` times):
/// the autoencoder (with the training set's channel statistics), its optimizer, and the
/// training images held on the device as uint8.
class Pretrainer {
 public:
  /// In a `group`, the weights start as rank 0's and every step averages the gradients over
  /// the ranks before the optimizer step.
  Pretrainer(const config::Config& cfg, const data::Dataset& train, const torch::Device& device,
             dist::Group* group = nullptr);
  /// One optimisation step on the training images at `indices` (a long tensor on the device):
  /// gather, augment, corrupt, reconstruct, MSE, backward, optimizer step. Returns the loss,
  /// detached and not synchronised.
  torch::Tensor step(const torch::Tensor& indices);
  /// For `pretrain.epochs: 0` (the untrained control): no optimisation; BatchNorm running
  /// statistics become the exact average over `images` training images (unaugmented), so the
  /// random frozen encoder normalises its activations like a trained one would.
  void calibrate_batch_norm(int64_t images, int64_t batch_size);
  models::Autoencoder& model() { return ae_; }
  torch::optim::Optimizer& optimizer() { return *opt_; }

 private:
  config::PretrainConfig cfg_;
  models::Autoencoder ae_;
  torch::Tensor images_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  dist::Group* group_ = nullptr;
};

/// Freezes the autoencoder for feature extraction: no gradients, eval mode (BatchNorm
/// statistics untouched).
void freeze(models::Autoencoder& ae);

/// Latent codes of uint8 images (N x D float on `device`), computed without gradients in
/// batches. With `with_flips`, 2N x D: rows N..2N-1 are the codes of the horizontally mirrored
/// images, in the same order.
torch::Tensor compute_codes(models::Autoencoder& ae, const torch::Tensor& images,
                            const models::CodeSpec& spec, int64_t batch_size,
                            const torch::Device& device, bool with_flips = false);

/// What the baseline's figure depends on, as one line stored in baseline.json: the seed and every
/// data.* and classify.* key. evaluate reports a baseline.json only when it matches the config.
std::string baseline_inputs(const config::Config& cfg);

/// Raw pixels as "codes" for the baseline: uint8 images N x C x H x W -> float N x CHW in
/// [0, 1] on `device`; with `with_flips`, 2N rows as compute_codes gives them.
torch::Tensor pixel_codes(const torch::Tensor& images, const torch::Device& device,
                          bool with_flips);

/// What training the head produced.
struct HeadResult {
  models::Head head{nullptr};
  double best_val_accuracy = 0;
  int64_t best_epoch = 0;  ///< 1-based
  double code_seconds = 0;
  double head_seconds = 0;
  int64_t code_dim = 0;
  struct Epoch {
    double loss = 0, val_accuracy = 0, seconds = 0;
    double val_loss = metrics::EpochRecord::kNone;
    double lr = metrics::EpochRecord::kNone;
  };
  std::vector<Epoch> history;  ///< per epoch: mean train loss, val accuracy, wall seconds, ...
};

/// Called after every epoch of head training with its figures (metrics.jsonl, curves.png).
using EpochCallback = std::function<void(const metrics::EpochRecord&)>;

/// Freezes `ae`, caches codes for train (with flipped copies when configured) and val, and
/// trains the head on them (fit_head, with `state_file` and `resume`), keeping the epoch with
/// the best validation accuracy. `ae` is only read: its parameters and buffers are bit-identical
/// afterwards.
/// In a `group`, each rank computes the codes of its shard of the images and all ranks gather
/// them; the head then trains data-parallel (fit_head). Only rank 0 writes `state_file`.
HeadResult train_head(models::Autoencoder& ae, const data::Dataset& train, const data::Dataset& val,
                      const config::ClassifyConfig& cfg, const torch::Device& device,
                      const std::filesystem::path& state_file = {}, bool resume = false,
                      const EpochCallback& on_epoch = nullptr, dist::Group* group = nullptr,
                      int64_t seed = 0);

/// Trains a head on cached codes (N x D, rows matching `labels`): standardises them with their
/// own mean/std (stored in the head), then runs cfg.epochs epochs and keeps the epoch with the
/// best validation accuracy (on the training codes when there are no validation codes).
/// Takes the code tensors by value because it standardises them in place. With a `state_file`,
/// its resumable state (head, optimizer, loop position, RNG, best epoch so far) is written there
/// after every epoch and when a signal stops it; with `resume`, it continues from that file when
/// it exists.
/// Each epoch visits the codes in epoch_order(seed). In a `group` (every rank holding all codes),
/// rank r trains on its slice of each global batch (classify.batch_size), the gradients are
/// averaged over the ranks, and the ranks keep identical heads; only rank 0 writes. `stage`
/// names the training in progress lines, logs and epoch records ("baseline" for the pixels).
HeadResult fit_head(torch::Tensor codes, const torch::Tensor& labels, torch::Tensor val_codes,
                    const torch::Tensor& val_labels, const config::ClassifyConfig& cfg,
                    int64_t classes, const torch::Device& device,
                    const std::filesystem::path& state_file = {}, bool resume = false,
                    const EpochCallback& on_epoch = nullptr, dist::Group* group = nullptr,
                    int64_t seed = 0, const std::string& stage = "classify");

/// The figures every training epoch has: stage, epoch n/N, mean loss, `lr`, images/s, the
/// epoch's seconds, and the wall seconds since `stage_start` (util::now_seconds()).
metrics::EpochRecord epoch_record(const std::string& stage, const engine::TrainState& s, double lr,
                                  double stage_start);

/// Whether this run draws pictures: report.pictures, and aefx built with OpenCV (otherwise one
/// info line, hidden by --quiet, says why there are none).
bool pictures_enabled(const config::Config& cfg);

/// reconstructions.png: the first (up to 16) images of `images` (uint8 N x C x H x W) above the
/// autoencoder's reconstructions of them, captioned with their class names.
void draw_reconstructions(models::Autoencoder& ae, const data::Dataset& images,
                          const torch::Device& device, const std::filesystem::path& file,
                          const std::string& title);

/// curves.png from the per-epoch records: pretrain loss, pretrain validation MSE, classify
/// train and validation loss, classify validation accuracy.
void draw_curves(const std::vector<metrics::EpochRecord>& records,
                 const std::filesystem::path& file);

/// The first two principal components of `codes` (N x D): N x 2 projections (float64, CPU) and
/// the share of the total variance each explains. Randomized subspace iteration in float32, so
/// D in the thousands costs a few matrix products.
std::pair<torch::Tensor, std::array<double, 2>> pca_2d(const torch::Tensor& codes,
                                                       uint64_t seed = 0);

/// latents.png: the PCA projection of `codes` (N x D) coloured by `labels`, with legend.
void draw_latents(const torch::Tensor& codes, const torch::Tensor& labels,
                  const std::vector<std::string>& class_names, const std::filesystem::path& file);

/// A number from a JSON summary file in the run folder (null when the file or key is absent).
/// Throws std::runtime_error naming the file when it does not parse.
util::Json summary_value(const std::filesystem::path& file, const std::string& key);

/// Architecture line of the head for a config (stored in head.pt).
std::string head_architecture(const config::Config& cfg, int64_t classes);

/// The batch size for `n` items ("training images", "codes"): `batch`, or `n` when there are
/// fewer, then with a warning naming `stage`.
int64_t fitted_batch(const std::string& stage, const std::string& items, int64_t n, int64_t batch);

/// The order in which epoch `epoch` of `stage` visits `n` items: a permutation drawn from its
/// own generator seeded by (seed, stage, epoch), so every rank of a group draws the same one
/// and a resumed run redraws it.
torch::Tensor epoch_order(int64_t n, int64_t seed, const std::string& stage, int64_t epoch,
                          const torch::Device& device);

/// The per-rank share of the global batch `batch` (config key `key`): batch / world size.
/// Throws std::invalid_argument naming the key when it does not divide evenly.
int64_t local_batch_size(const std::string& key, int64_t batch, const dist::Group* group);

/// Copies rank 0's parameters and buffers of `module` to every rank.
void sync_from_main(torch::nn::Module& module, dist::Group& group);

/// Averages the BatchNorm running statistics of `module` over the ranks. BatchNorm normalises
/// each rank's batch with that batch's statistics (per-rank BatchNorm, as PyTorch's DDP does);
/// the running statistics that evaluation uses are averaged after every epoch so that all ranks
/// (and the saved model) hold the same ones.
void average_batch_norm_statistics(torch::nn::Module& module, dist::Group& group);

/// Rank 0's `value` on every rank (a decision that depends on rank 0's run folder); `value`
/// itself without a group.
bool decided_by_main(dist::Group* group, bool value);

/// After a resume restored rank 0's random generators on every rank: gives each other rank its
/// own stream again (seeded by seed, rank and the global step). Nothing without a group.
void reseed_after_resume(dist::Group* group, int64_t seed, int64_t global_step);

/// Puts every 4-D parameter and buffer of `module` in channels-last layout.
void to_channels_last(torch::nn::Module& module);

/// After loading optimizer state from a checkpoint (read onto the CPU, contiguous): moves it to
/// `device` and gives 4-D tensors the channels-last layout their parameters have, as the state
/// of an uninterrupted run has, so that a resumed run computes bit-identical updates.
void match_optimizer_state(torch::optim::Optimizer& opt, const torch::Device& device);

}  // namespace aefx::stages
