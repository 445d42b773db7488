#pragma once
// The dense autoencoder (model.type dense), as in the classic MNIST experiments.
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "aefx/models/autoencoder.h"

namespace aefx::models {

/// The flattened image through linear layers (model.hidden, then model.code_size), each
/// followed by model.activation, as one Sequential "dense". Returns one "stage": the code as
/// B x code_size x 1 x 1, so the code reads off it like a conv stage pooled to a 1 x 1 grid.
class DenseEncoderImpl : public EncoderImpl {
 public:
  DenseEncoderImpl(const config::ModelConfig& cfg, int64_t in_channels, int64_t image_size);
  std::vector<torch::Tensor> forward(torch::Tensor x) override;

 private:
  torch::nn::Sequential dense_{nullptr};
};

/// Linear layers mirroring the encoder's hidden sizes (each followed by model.activation), then
/// a linear layer to channels x size x size values, reshaped to an image; one Sequential "dense".
class DenseDecoderImpl : public DecoderImpl {
 public:
  DenseDecoderImpl(const config::ModelConfig& cfg, int64_t out_channels, int64_t image_size);
  torch::Tensor forward(torch::Tensor code) override;

 private:
  torch::nn::Sequential dense_{nullptr};
  int64_t channels_, size_;
};

/// DenseEncoder + DenseDecoder. The code is the encoder's output as it is (classify.pool_grids
/// and pooling do not apply); the weights depend on the image size.
class DenseAutoencoderImpl : public AutoencoderImpl {
 public:
  static constexpr const char* kType = "dense";
  DenseAutoencoderImpl(const config::ModelConfig& cfg, int64_t channels, int64_t image_size);

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
