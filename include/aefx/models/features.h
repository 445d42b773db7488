#pragma once
// Features: what a frozen autoencoder's encoder gives for images (the latent codes classify,
// evaluate, export and feature extraction use), and the raw-pixel features of the baseline.
#include <torch/types.h>

#include <string>

#include "aefx/config/config.h"
#include "aefx/models/autoencoder.h"

namespace aefx::models {

/// Freezes the autoencoder for feature extraction: no gradients, eval mode (BatchNorm
/// statistics untouched).
void freeze(Autoencoder& ae);

/// A frozen autoencoder and how its code is read off (CodeSpec): uint8 images in, codes out.
/// Construction freezes the autoencoder; encoding runs without gradients and never changes it.
/// The encoder computes in `dtype` (torch::kBFloat16: under autocast, util/precision.h); the
/// codes it returns are fp32 unless `encode` is asked to keep them in the compute dtype.
class FeatureExtractor {
 public:
  FeatureExtractor(Autoencoder ae, CodeSpec spec, torch::Device device,
                   torch::ScalarType dtype = torch::kFloat);
  /// Latent codes of uint8 images N x C x H x W (any device), N x D on the extractor's device,
  /// computed in batches of `batch_size`. No images give an empty 0 x D tensor. Stops with
  /// util::Interrupted between batches when a signal arrived. The codes are kept in
  /// `out_dtype`: the code caches a head trains on pass storage_dtype() (bf16 when the encoder
  /// computes in bf16: half the memory).
  torch::Tensor encode(const torch::Tensor& images, int64_t batch_size,
                       torch::ScalarType out_dtype = torch::kFloat);
  /// Codes of a float batch already normalised and on the device (one batch, no flips).
  torch::Tensor encode_normalized(const torch::Tensor& normalized);
  int64_t code_dim() const;
  Autoencoder& autoencoder() { return ae_; }
  const CodeSpec& spec() const { return spec_; }
  const torch::Device& device() const { return device_; }
  torch::ScalarType dtype() const { return dtype_; }
  /// The dtype a code cache can be kept in without rounding the codes again: bf16 when
  /// computing in bf16, else fp32.
  torch::ScalarType storage_dtype() const {
    return dtype_ == torch::kBFloat16 ? torch::kBFloat16 : torch::kFloat;
  }

 private:
  Autoencoder ae_;
  CodeSpec spec_;
  torch::Device device_;
  torch::ScalarType dtype_;
};

/// Raw pixels as features (the baseline): uint8 images N x C x H x W -> float N x CHW in [0, 1]
/// on `device`.
torch::Tensor pixel_features(const torch::Tensor& images, const torch::Device& device);

/// Architecture line of the head a config trains for `classes` classes: the head, its code
/// spec and the autoencoder it reads (stored in head.pt, so a head trained on other codes of the
/// same length is refused).
std::string head_architecture(const config::Config& cfg, int64_t classes);

}  // namespace aefx::models
