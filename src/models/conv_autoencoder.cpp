#include "aefx/models/conv_autoencoder.h"

#include <torch/torch.h>

#include <sstream>

#include "aefx/models/script_writer.h"

namespace aefx::models {
namespace nn = torch::nn;
namespace {

void add_conv_bn_relu(nn::Sequential& seq, int64_t in, int64_t out, int64_t stride) {
  seq->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
  seq->push_back(nn::BatchNorm2d(out));
  seq->push_back(nn::ReLU(nn::ReLUOptions(true)));
}

int64_t decoder_width(const config::ModelConfig& cfg, size_t stage) {
  return std::max<int64_t>(1, static_cast<int64_t>(cfg.widths[stage] * cfg.decoder_width + 0.5));
}

/// TorchScript for conv (no bias) -> batch norm -> relu, one block of a Sequential.
std::string script_conv_bn_relu(ScriptWriter& w, const std::string& prefix,
                                torch::nn::Conv2dImpl& conv, torch::nn::BatchNorm2dImpl& bn,
                                const std::string& x) {
  const auto s = conv.options.stride()->at(0);
  std::ostringstream e;
  e << "torch.relu(torch.batch_norm(torch.conv2d(" << x << ", "
    << w.tensor(prefix + ".conv.weight", conv.weight) << ", None, [" << s << ", " << s
    << "], [1, 1], [1, 1], 1), " << w.tensor(prefix + ".bn.weight", bn.weight) << ", "
    << w.tensor(prefix + ".bn.bias", bn.bias) << ", "
    << w.tensor(prefix + ".bn.mean", bn.running_mean) << ", "
    << w.tensor(prefix + ".bn.var", bn.running_var) << ", False, 0.0, " << bn.options.eps()
    << ", False))";
  return e.str();
}

/// TorchScript for every block of a Sequential of [Upsample,] (Conv2d, BatchNorm2d, ReLU)*.
void script_sequential(ScriptWriter& w, const std::string& prefix, torch::nn::Sequential& seq,
                       std::ostringstream& out) {
  size_t i = 0;
  const size_t n = seq->size();
  int block = 0;
  while (i < n) {
    if (auto* up = seq[i]->as<torch::nn::UpsampleImpl>()) {
      (void)up;
      out << "        x = torch.upsample_nearest2d(x, None, [2.0, 2.0])\n";
      ++i;
      continue;
    }
    auto* conv = seq[i]->as<torch::nn::Conv2dImpl>();
    auto* bn = i + 1 < n ? seq[i + 1]->as<torch::nn::BatchNorm2dImpl>() : nullptr;
    TORCH_CHECK(conv && bn, "script export: unexpected layer ", seq[i]->name(), " in ", prefix);
    out << "        x = "
        << script_conv_bn_relu(w, prefix + "." + std::to_string(block++), *conv, *bn, "x") << "\n";
    i += 3;  // conv, bn, relu
  }
}

}  // namespace

ConvEncoderImpl::ConvEncoderImpl(const config::ModelConfig& cfg, int64_t in_channels) {
  TORCH_CHECK(!cfg.widths.empty() && cfg.widths.size() == cfg.blocks.size(),
              "model.widths and model.blocks must be non-empty and of equal length");
  int64_t c = in_channels;
  for (size_t s = 0; s < cfg.widths.size(); ++s) {
    nn::Sequential stage;
    for (int64_t b = 0; b < cfg.blocks[s]; ++b) {
      add_conv_bn_relu(stage, c, cfg.widths[s], (b == 0 && s > 0) ? 2 : 1);
      c = cfg.widths[s];
    }
    stages_.push_back(register_module("stage" + std::to_string(s), stage));
  }
}

std::vector<torch::Tensor> ConvEncoderImpl::forward(torch::Tensor x) {
  std::vector<torch::Tensor> outs;
  outs.reserve(stages_.size());
  for (auto& stage : stages_) {
    x = stage->forward(x);
    outs.push_back(x);
  }
  return outs;
}

ConvDecoderImpl::ConvDecoderImpl(const config::ModelConfig& cfg, int64_t out_channels) {
  const size_t n = cfg.widths.size();
  int64_t c = cfg.widths[n - 1];
  // From the deepest stage up: each step doubles the resolution.
  for (size_t s = n - 1; s > 0; --s) {
    nn::Sequential stage;
    stage->push_back(nn::Upsample(
        nn::UpsampleOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(torch::kNearest)));
    const int64_t w = decoder_width(cfg, s - 1);
    add_conv_bn_relu(stage, c, w, 1);
    c = w;
    for (int64_t b = 1; b < cfg.decoder_blocks; ++b) add_conv_bn_relu(stage, c, c, 1);
    stages_.push_back(register_module("stage" + std::to_string(n - 1 - s), stage));
  }
  out_ = register_module("out", nn::Conv2d(nn::Conv2dOptions(c, out_channels, 3).padding(1)));
}

torch::Tensor ConvDecoderImpl::forward(torch::Tensor code) {
  for (auto& stage : stages_) code = stage->forward(code);
  return out_->forward(code);
}

ConvAutoencoderImpl::ConvAutoencoderImpl(const config::ModelConfig& cfg, int64_t channels,
                                         int64_t image_size)
    : AutoencoderImpl(cfg, channels, image_size) {
  // The encoder's weights are drawn first, as they always were: same seed, same model.
  const int64_t c = stem_channels(cfg, channels);
  encoder = register_module("encoder", std::make_shared<ConvEncoderImpl>(cfg, c));
  decoder = register_module("decoder", std::make_shared<ConvDecoderImpl>(cfg, c));
}

int64_t ConvAutoencoderImpl::flops(const config::ModelConfig& cfg, int64_t channels,
                                   int64_t image_size) {
  // 2 x multiply-adds of every convolution (the stem's k x k, then the 3x3 ones stage by stage),
  // at its output resolution.
  auto conv = [](int64_t in, int64_t out, int64_t side) { return 2 * in * out * 9 * side * side; };
  const int64_t stem = stem_channels(cfg, channels);
  // The stem: a k x k convolution from the image's channels to C k^2.
  int64_t flops = cfg.whiten_patch > 0 ? 2 * stem * stem * image_size * image_size : 0;
  int64_t c = stem, side = image_size;
  for (size_t s = 0; s < cfg.widths.size(); ++s) {
    for (int64_t b = 0; b < cfg.blocks[s]; ++b) {
      if (b == 0 && s > 0) side = (side + 1) / 2;  // stride 2, padding 1
      flops += conv(c, cfg.widths[s], side);
      c = cfg.widths[s];
    }
  }
  for (size_t s = cfg.widths.size() - 1; s > 0; --s) {
    side *= 2;
    const int64_t w = decoder_width(cfg, s - 1);
    flops += conv(c, w, side) + (cfg.decoder_blocks - 1) * conv(w, w, side);
    c = w;
  }
  return flops + conv(c, stem, side);
}

int64_t ConvAutoencoderImpl::bottleneck(const config::ModelConfig& cfg, int64_t image_size) {
  const int64_t side = image_size >> (cfg.widths.size() - 1);
  return cfg.widths.back() * side * side;
}

CodeSpec ConvAutoencoderImpl::spec(const config::ModelConfig&,
                                   const config::ClassifyConfig& classify) {
  return {classify.pool_grids, classify.pooling};
}

int64_t ConvAutoencoderImpl::dim(const config::ModelConfig& cfg, const CodeSpec& spec) {
  int64_t d = 0;
  for (size_t s = 0; s < spec.grids.size() && s < cfg.widths.size(); ++s) {
    d += cfg.widths[s] * spec.grids[s] * spec.grids[s];
  }
  return d * ((spec.uses_avg() ? 1 : 0) + (spec.uses_max() ? 1 : 0));
}

std::string ConvAutoencoderImpl::description(const config::ModelConfig& cfg, int64_t channels,
                                             int64_t) {
  std::ostringstream ss;
  // Conv weights do not depend on the image size; RGB models keep the description they had.
  ss << (channels == 3 ? "" : "grey-") << "conv-autoencoder widths=[";
  for (size_t i = 0; i < cfg.widths.size(); ++i) ss << (i ? "," : "") << cfg.widths[i];
  ss << "] blocks=[";
  for (size_t i = 0; i < cfg.blocks.size(); ++i) ss << (i ? "," : "") << cfg.blocks[i];
  ss << "] decoder_blocks=" << cfg.decoder_blocks << " decoder_width=" << cfg.decoder_width
     << (cfg.output_activation == config::OutputActivation::kIdentity
             ? std::string()
             : std::string(" output=") + config::name_of(cfg.output_activation));
  if (cfg.whiten_patch > 0)
    ss << " whiten=" << cfg.whiten_patch << "/" << cfg.whiten_eps
       << (cfg.whiten_center ? " centred" : "");
  return ss.str();
}

int64_t ConvAutoencoderImpl::forward_flops() const {
  return flops(config(), channels(), image_size());
}
int64_t ConvAutoencoderImpl::bottleneck_size() const { return bottleneck(config(), image_size()); }
CodeSpec ConvAutoencoderImpl::code_spec(const config::ClassifyConfig& cfg) const {
  return spec(config(), cfg);
}
int64_t ConvAutoencoderImpl::code_dim(const CodeSpec& s) const { return dim(config(), s); }
std::string ConvAutoencoderImpl::describe() const {
  return description(config(), channels(), image_size());
}

void ConvAutoencoderImpl::script_encoder(ScriptWriter& w, std::ostringstream& out) const {
  for (const auto& child : encoder->named_children()) {
    auto seq = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(child.value());
    TORCH_CHECK(seq, "script export: unexpected encoder child ", child.key());
    torch::nn::Sequential s(seq);
    script_sequential(w, "enc." + child.key(), s, out);
    out << "        feats.append(x)\n";
  }
}

void ConvAutoencoderImpl::script_decoder(ScriptWriter& w, std::ostringstream& out) const {
  std::shared_ptr<torch::nn::Conv2dImpl> out_conv;
  for (const auto& child : decoder->named_children()) {
    if (auto seq = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(child.value())) {
      torch::nn::Sequential s(seq);
      script_sequential(w, "dec." + child.key(), s, out);
    } else {
      out_conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(child.value());
    }
  }
  TORCH_CHECK(out_conv, "script export: decoder has no output convolution");
  out << "        x = torch.conv2d(x, " << w.tensor("dec.out.weight", out_conv->weight) << ", "
      << w.tensor("dec.out.bias", out_conv->bias) << ", [1, 1], [1, 1], [1, 1], 1)\n";
}

std::string ConvAutoencoderImpl::script_check() const {
  // A plain assert: the default resolver of define() knows no exception classes.
  return "    def check(self, images: Tensor):\n"
         "        assert images.dim() == 4 and images.size(1) == self.mean.size(1), "
         "'expected float images N x C x H x W in [0, 1], C as in model.json'\n";
}

}  // namespace aefx::models
