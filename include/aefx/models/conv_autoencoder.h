#pragma once
// The convolutional autoencoder (model.type conv).
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "aefx/models/autoencoder.h"

namespace aefx::models {

/// Stages of conv3x3-BN-ReLU blocks (model.widths, model.blocks), registered as "stage<s>";
/// every stage after the first starts with a stride-2 block, halving the resolution. Returns
/// each stage's feature map.
class ConvEncoderImpl : public EncoderImpl {
 public:
  ConvEncoderImpl(const config::ModelConfig& cfg, int64_t in_channels);
  std::vector<torch::Tensor> forward(torch::Tensor x) override;

 private:
  std::vector<torch::nn::Sequential> stages_;
};
TORCH_MODULE(ConvEncoder);

/// Mirrors the encoder, with nearest-neighbour 2x upsampling followed by conv3x3-BN-ReLU
/// blocks ("stage<s>"), and a final conv3x3 to the image channels ("out"). (ConvTranspose2d runs
/// about 10x slower than this on LibTorch 1.13's CPU backend, for the same job.)
class ConvDecoderImpl : public DecoderImpl {
 public:
  ConvDecoderImpl(const config::ModelConfig& cfg, int64_t out_channels);
  torch::Tensor forward(torch::Tensor code) override;

 private:
  std::vector<torch::nn::Sequential> stages_;
  torch::nn::Conv2d out_{nullptr};
};
TORCH_MODULE(ConvDecoder);

/// ConvEncoder + ConvDecoder. The code is pooled from any of the encoder's stages
/// (classify.pool_grids, classify.pooling); the weights do not depend on the image size.
class ConvAutoencoderImpl : public AutoencoderImpl {
 public:
  static constexpr const char* kType = "conv";
  ConvAutoencoderImpl(const config::ModelConfig& cfg, int64_t channels, int64_t image_size);

  int64_t forward_flops() const override;
  int64_t bottleneck_size() const override;
  CodeSpec code_spec(const config::ClassifyConfig& cfg) const override;
  int64_t code_dim(const CodeSpec& spec) const override;
  std::string describe() const override;
  void script_encoder(ScriptWriter& w, std::ostringstream& out) const override;
  void script_decoder(ScriptWriter& w, std::ostringstream& out) const override;
  std::string script_check() const override;

  // The methods above for a configuration alone (make_autoencoder's table).
  static int64_t flops(const config::ModelConfig& cfg, int64_t channels, int64_t image_size);
  static int64_t bottleneck(const config::ModelConfig& cfg, int64_t image_size);
  static CodeSpec spec(const config::ModelConfig& cfg, const config::ClassifyConfig& classify);
  static int64_t dim(const config::ModelConfig& cfg, const CodeSpec& spec);
  static std::string description(const config::ModelConfig& cfg, int64_t channels,
                                 int64_t image_size);
};

}  // namespace aefx::models
