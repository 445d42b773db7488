#pragma once
// The autoencoders (convolutional, or dense as in the classic MNIST experiments), the latent-code
// pooling and the classifier head.
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "aefx/config/config.h"

namespace aefx::models {

/// Encoder. conv (model.type): stages of conv3x3-BN-ReLU blocks; every stage after the first
/// starts with a stride-2 block, halving the resolution; returns each stage's feature map.
/// dense: the flattened image through linear layers (model.hidden, then model.code_size), each
/// followed by model.activation; returns one "stage", the code as B x code_size x 1 x 1, so the
/// code reads off it like a conv stage pooled to a 1 x 1 grid.
class EncoderImpl : public torch::nn::Module {
 public:
  EncoderImpl(const config::ModelConfig& cfg, int64_t in_channels, int64_t image_size);
  std::vector<torch::Tensor> forward(torch::Tensor x);

 private:
  std::vector<torch::nn::Sequential> stages_;
  torch::nn::Sequential dense_{nullptr};
};
TORCH_MODULE(Encoder);

/// Decoder. conv: mirrors the encoder, with nearest-neighbour 2x upsampling followed by
/// conv3x3-BN-ReLU blocks, and a final conv3x3 to the image channels. (ConvTranspose2d runs
/// about 10x slower than this on LibTorch 1.13's CPU backend, for the same job.)
/// dense: linear layers mirroring the encoder's hidden sizes (each followed by
/// model.activation), then a linear layer to channels x size x size values, reshaped to an image.
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const config::ModelConfig& cfg, int64_t out_channels, int64_t image_size);
  torch::Tensor forward(torch::Tensor code);

 private:
  std::vector<torch::nn::Sequential> stages_;
  torch::nn::Conv2d out_{nullptr};
  torch::nn::Sequential dense_{nullptr};
  int64_t channels_ = 3, size_ = 32;
};
TORCH_MODULE(Decoder);

/// Encoder + decoder for `channels` (1: grey, 3: RGB) x image_size x image_size images. Holds
/// the training data's per-channel mean/std as buffers, so the model carries its own
/// normalisation: `normalize` maps [0, 1] pixels to the network's input space.
class AutoencoderImpl : public torch::nn::Module {
 public:
  AutoencoderImpl(const config::ModelConfig& cfg, int64_t channels, int64_t image_size);
  /// Reconstruction of an already normalised (and possibly corrupted) batch, in normalised
  /// units. With model.output_activation sigmoid, the decoder's output goes through a sigmoid
  /// (pixels in [0, 1]) and is then normalised.
  torch::Tensor forward(torch::Tensor normalized);
  torch::Tensor normalize(const torch::Tensor& images01) const;
  torch::Tensor denormalize(const torch::Tensor& normalized) const;
  void set_normalization(const torch::Tensor& mean, const torch::Tensor& std);

  const config::ModelConfig& config() const { return cfg_; }
  int64_t channels() const { return channels_; }
  int64_t image_size() const { return image_size_; }

  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  torch::Tensor mean, std;  ///< buffers, shape C

 private:
  config::ModelConfig cfg_;
  int64_t channels_, image_size_;
};
TORCH_MODULE(Autoencoder);

/// The masked / denoising corruption applied to the encoder's input during pretraining:
/// zero (the normalised mean) a `mask_ratio` fraction of patch x patch squares, then add
/// Gaussian noise of std `noise`. Returns the input unchanged when both are 0.
torch::Tensor corrupt(const torch::Tensor& normalized, double mask_ratio, int64_t patch,
                      double noise);

/// How the latent code is read off the encoder's stages: stage s is pooled to a
/// grids[s] x grids[s] grid of cells (0 = stage unused), each cell by `pooling`: avg, max, or
/// avgmax (both; the average first). Converts from a grid list, with average pooling.
struct CodeSpec {
  CodeSpec(std::vector<int64_t> grids_,
           config::Pooling pooling_ = config::Pooling::kAvg)  // NOLINT: implicit
      : grids(std::move(grids_)), pooling(pooling_) {}
  bool uses_avg() const { return pooling != config::Pooling::kMax; }
  bool uses_max() const { return pooling != config::Pooling::kAvg; }
  std::vector<int64_t> grids;
  config::Pooling pooling;
};

/// The code spec a classify config asks for; for a dense model, its code as it is (one 1 x 1
/// grid, classify.pool_grids and pooling do not apply).
CodeSpec code_spec(const config::ModelConfig& model, const config::ClassifyConfig& cfg);

/// The latent code: each used stage's map pooled as `spec` says, flattened and concatenated
/// into B x D (per stage: the average cells, then the max cells).
torch::Tensor pool_codes(const std::vector<torch::Tensor>& stages, const CodeSpec& spec);

/// Forward FLOPs per image (2 x multiply-adds of every convolution or linear layer) of the
/// autoencoder on channels x image_size x image_size inputs. A training step costs about 3x this
/// (forward, and the gradients of activations and weights).
int64_t forward_flops(const config::ModelConfig& cfg, int64_t channels, int64_t image_size);

/// Length of the latent code for this architecture and pooling.
int64_t code_dim(const config::ModelConfig& model, const CodeSpec& spec);

/// Values at the autoencoder's bottleneck (what the decoder reconstructs from): the deepest
/// stage's map for conv, code_size for dense. The compression ratio is
/// channels x image_size^2 / this.
int64_t bottleneck_size(const config::ModelConfig& model, int64_t image_size);

/// Classifier head on latent codes: standardises the code with stored train statistics, then
/// a linear layer or an MLP (hidden sizes, ReLU, dropout: FastDropout, same maths as
/// nn::Dropout).
class HeadImpl : public torch::nn::Module {
 public:
  HeadImpl(int64_t in_dim, const std::vector<int64_t>& hidden, double dropout, int64_t classes);
  torch::Tensor forward(torch::Tensor code);
  /// The code in the units the network sees: (code - code_mean) / code_std. Training
  /// standardises its cached codes once with this and then calls `net` directly.
  torch::Tensor standardize(const torch::Tensor& code) const;
  void set_standardization(const torch::Tensor& mean, const torch::Tensor& std);

  torch::nn::Sequential net{nullptr};
  torch::Tensor code_mean, code_std;  ///< buffers, shape D
};
TORCH_MODULE(Head);

/// One line describing an architecture for its input, stored in checkpoints to detect
/// mismatches.
std::string describe_architecture(const config::ModelConfig& cfg, int64_t channels,
                                  int64_t image_size);
std::string describe_head(int64_t in_dim, const std::vector<int64_t>& hidden, int64_t classes);

}  // namespace aefx::models
