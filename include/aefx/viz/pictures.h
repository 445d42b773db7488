#pragma once
// The run's pictures drawn from aefx's own types (autoencoders, epoch records, codes), on top of
// the plain drawing functions of viz/viz.h.
#include <torch/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "aefx/config/config.h"
#include "aefx/data/dataset.h"
#include "aefx/engine/trainer.h"
#include "aefx/metrics/metrics.h"
#include "aefx/models/autoencoder.h"

namespace aefx::viz {

/// Whether this run draws pictures: report.pictures, and aefx built with OpenCV (otherwise one
/// info line, hidden by --quiet, says why there are none).
bool pictures_enabled(const config::Config& cfg);

/// reconstructions.png: the first (up to 16) images of `images` above the autoencoder's
/// reconstructions of them, captioned with their class names.
void draw_reconstructions(models::Autoencoder& ae, const data::Dataset& images,
                          const torch::Device& device, const std::filesystem::path& file,
                          const std::string& title);

/// curves.png from the per-epoch records: pretrain loss, pretrain validation MSE, classify
/// train and validation loss, classify validation accuracy.
void draw_curves(const std::vector<metrics::EpochRecord>& records,
                 const std::filesystem::path& file);

/// latents.png: the PCA projection of `codes` (N x D) coloured by `labels`, with legend.
void draw_latents(const torch::Tensor& codes, const torch::Tensor& labels,
                  const std::vector<std::string>& class_names, const std::filesystem::path& file);

/// Redraws curves.png from the run's epoch log after every epoch.
class CurvesHook : public engine::Hook {
 public:
  CurvesHook(const metrics::EpochLog& log, std::filesystem::path file)
      : log_(log), file_(std::move(file)) {}
  void after_epoch(engine::TrainState&) override { draw_curves(log_.records(), file_); }

 private:
  const metrics::EpochLog& log_;
  std::filesystem::path file_;
};

/// Redraws reconstructions.png every `every` epochs during pretraining (not after the last one:
/// the stage draws that when it saves the model).
class ReconstructionsHook : public engine::Hook {
 public:
  ReconstructionsHook(models::Autoencoder ae, const data::Dataset& shown, torch::Device device,
                      std::filesystem::path file, int64_t every)
      : ae_(std::move(ae)), shown_(shown), device_(device), file_(std::move(file)), every_(every) {}
  void after_epoch(engine::TrainState& s) override;

 private:
  models::Autoencoder ae_;
  const data::Dataset& shown_;
  torch::Device device_;
  std::filesystem::path file_;
  int64_t every_;
};

}  // namespace aefx::viz
