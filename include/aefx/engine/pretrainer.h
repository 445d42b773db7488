#pragma once
// The autoencoder's pretraining step (what the pretrain stage repeats and `aefx bench` times),
// and its reconstruction error.
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <memory>

#include "aefx/config/config.h"
#include "aefx/data/dataset.h"
#include "aefx/data/image_rows.h"
#include "aefx/dist/dist.h"
#include "aefx/models/autoencoder.h"

namespace aefx::engine {

/// The pretraining step on its own: the autoencoder (with the training set's channel
/// statistics), its optimizer, and the training images held on the device as uint8.
class Pretrainer {
 public:
  /// The weights start as rank 0's, and every step averages the gradients over the ranks of
  /// `group` before the optimizer step (nothing to do with one process).
  Pretrainer(const config::Config& cfg, const data::Dataset& train, const torch::Device& device,
             dist::Group& group);
  /// The same on rows of several sources (data::pretrain_rows: labelled and unlabeled images).
  Pretrainer(const config::Config& cfg, const data::ImageRows& train, const torch::Device& device,
             dist::Group& group);
  /// One optimisation step on the training images at `indices` (a long tensor on the device):
  /// gather, augment, corrupt, reconstruct (under autocast when the config's precision is bf16),
  /// MSE in fp32, backward, optimizer step on the fp32 weights. Returns the loss, detached and
  /// not synchronised.
  torch::Tensor step(const torch::Tensor& indices);
  /// For `pretrain.epochs: 0` (the untrained control): no optimisation; BatchNorm running
  /// statistics become the exact average over `images` training images (unaugmented), so the
  /// random frozen encoder normalises its activations like a trained one would. Returns the
  /// images it averaged over: 0 for a model without BatchNorm (the patch dictionary).
  int64_t calibrate_batch_norm(int64_t images, int64_t batch_size);
  models::Autoencoder& model() { return ae_; }
  /// What the forward passes compute in: the config's precision on this device.
  torch::ScalarType dtype() const { return dtype_; }
  torch::optim::Optimizer& optimizer() { return *opt_; }
  /// Where the training images and the model live.
  torch::Device device() const { return device_; }

 private:
  config::PretrainConfig cfg_;
  models::Autoencoder ae_;
  torch::ScalarType dtype_;  ///< what the forward pass computes in (config precision)
  torch::Device device_;
  data::ImageRows images_;
  int64_t steps_ = 0;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  dist::Group& group_;
};

/// Images (of the training set) that fit_stem fits the whitening stem to.
constexpr int64_t kStemImages = 10000;

/// Fits the autoencoder's whitening stem (when it has one) to at most kStemImages uint8
/// `images`, every step-th of the first step x kStemImages; the model's normalisation must already
/// be set, and the model still be on the CPU.
void fit_stem(models::AutoencoderImpl& ae, const data::ImageRows& images);

/// Reconstruction MSE of uncorrupted uint8 `images`, in [0, 1] pixel units, in batches of
/// `batch`, the autoencoder computing in `dtype` (util/precision.h; the error is summed in
/// fp64). Each rank of `group` reconstructs its shard of the images and the squared errors are
/// summed over the ranks. Leaves the model in training mode.
double reconstruction_mse(models::Autoencoder& ae, const torch::Tensor& images, int64_t batch,
                          const torch::Device& device, torch::ScalarType dtype, dist::Group& group);

}  // namespace aefx::engine
