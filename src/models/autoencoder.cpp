#include "aefx/models/autoencoder.h"

#include <torch/torch.h>

#include <sstream>

#include "aefx/models/random.h"

namespace aefx::models {
namespace nn = torch::nn;
namespace {

void add_conv_bn_relu(nn::Sequential& seq, int64_t in, int64_t out, int64_t stride) {
  seq->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
  seq->push_back(nn::BatchNorm2d(out));
  seq->push_back(nn::ReLU(nn::ReLUOptions(true)));
}

bool is_dense(const config::ModelConfig& cfg) { return cfg.type == config::ModelType::kDense; }

void add_activation(nn::Sequential& seq, config::Activation activation) {
  switch (activation) {
    case config::Activation::kRelu:
      seq->push_back(nn::ReLU(nn::ReLUOptions(true)));
      return;
    case config::Activation::kTanh:
      seq->push_back(nn::Tanh());
      return;
    case config::Activation::kSigmoid:
      seq->push_back(nn::Sigmoid());
      return;
  }
  throw std::invalid_argument("config key 'model.activation': not one of " +
                              config::names_of<config::Activation>());
}

/// Linear layers through `sizes`, starting from `in`, each followed by the activation.
nn::Sequential dense_stack(int64_t in, const std::vector<int64_t>& sizes,
                           config::Activation activation) {
  nn::Sequential seq;
  for (int64_t out : sizes) {
    seq->push_back(nn::Linear(in, out));
    add_activation(seq, activation);
    in = out;
  }
  return seq;
}

int64_t decoder_width(const config::ModelConfig& cfg, size_t stage) {
  return std::max<int64_t>(1, static_cast<int64_t>(cfg.widths[stage] * cfg.decoder_width + 0.5));
}

}  // namespace

EncoderImpl::EncoderImpl(const config::ModelConfig& cfg, int64_t in_channels, int64_t image_size) {
  if (is_dense(cfg)) {
    auto sizes = cfg.hidden;
    sizes.push_back(cfg.code_size);
    dense_ = register_module(
        "dense", dense_stack(in_channels * image_size * image_size, sizes, cfg.activation));
    return;
  }
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

std::vector<torch::Tensor> EncoderImpl::forward(torch::Tensor x) {
  if (dense_) {
    auto code = dense_->forward(x.flatten(1));
    return {code.view({code.size(0), code.size(1), 1, 1})};
  }
  std::vector<torch::Tensor> outs;
  outs.reserve(stages_.size());
  for (auto& stage : stages_) {
    x = stage->forward(x);
    outs.push_back(x);
  }
  return outs;
}

DecoderImpl::DecoderImpl(const config::ModelConfig& cfg, int64_t out_channels, int64_t image_size)
    : channels_(out_channels), size_(image_size) {
  if (is_dense(cfg)) {
    const std::vector<int64_t> sizes(cfg.hidden.rbegin(), cfg.hidden.rend());
    auto stack = dense_stack(cfg.code_size, sizes, cfg.activation);
    stack->push_back(nn::Linear(sizes.empty() ? cfg.code_size : sizes.back(),
                                out_channels * image_size * image_size));
    dense_ = register_module("dense", stack);
    return;
  }
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

torch::Tensor DecoderImpl::forward(torch::Tensor code) {
  if (dense_) return dense_->forward(code.flatten(1)).view({-1, channels_, size_, size_});
  for (auto& stage : stages_) code = stage->forward(code);
  return out_->forward(code);
}

AutoencoderImpl::AutoencoderImpl(const config::ModelConfig& cfg, int64_t channels,
                                 int64_t image_size)
    : cfg_(cfg), channels_(channels), image_size_(image_size) {
  encoder = register_module("encoder", Encoder(cfg, channels, image_size));
  decoder = register_module("decoder", Decoder(cfg, channels, image_size));
  mean = register_buffer("mean", torch::zeros({channels}));
  std = register_buffer("std", torch::ones({channels}));
}

torch::Tensor AutoencoderImpl::forward(torch::Tensor normalized) {
  auto out = decoder->forward(encoder->forward(normalized).back());
  return cfg_.output_activation == config::OutputActivation::kSigmoid
             ? normalize(torch::sigmoid(out))
             : out;
}

torch::Tensor AutoencoderImpl::normalize(const torch::Tensor& images01) const {
  return (images01 - mean.view({1, -1, 1, 1})) / std.view({1, -1, 1, 1});
}

torch::Tensor AutoencoderImpl::denormalize(const torch::Tensor& normalized) const {
  return normalized * std.view({1, -1, 1, 1}) + mean.view({1, -1, 1, 1});
}

void AutoencoderImpl::set_normalization(const torch::Tensor& m, const torch::Tensor& s) {
  torch::NoGradGuard no_grad;
  mean.copy_(m);
  std.copy_(s);
}

torch::Tensor corrupt(const torch::Tensor& normalized, double mask_ratio, int64_t patch,
                      double noise) {
  torch::Tensor x = normalized;
  if (mask_ratio > 0) {
    const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
    const int64_t gh = (h + patch - 1) / patch, gw = (w + patch - 1) / patch;
    auto keep = (torch::rand({b, 1, gh, gw}, x.options()) >= mask_ratio).to(x.scalar_type());
    keep = keep.repeat_interleave(patch, 2).repeat_interleave(patch, 3);
    x = x * keep.narrow(2, 0, h).narrow(3, 0, w);
  }
  if (noise > 0) x = x + randn_like_dense(x) * noise;
  return x;
}

CodeSpec code_spec(const config::ModelConfig& model, const config::ClassifyConfig& cfg) {
  if (is_dense(model)) return {{1}, config::Pooling::kAvg};
  return {cfg.pool_grids, cfg.pooling};
}

torch::Tensor pool_codes(const std::vector<torch::Tensor>& stages, const CodeSpec& spec) {
  const auto& grids = spec.grids;
  TORCH_CHECK(stages.size() == grids.size(), "pool_codes: ", stages.size(), " stages but ",
              grids.size(), " grids");
  std::vector<torch::Tensor> parts;
  for (size_t s = 0; s < stages.size(); ++s) {
    if (grids[s] == 0) continue;
    const auto& f = stages[s];
    if (spec.uses_avg())
      parts.push_back(torch::adaptive_avg_pool2d(f, {grids[s], grids[s]}).contiguous().flatten(1));
    if (spec.uses_max()) {
      parts.push_back(
          std::get<0>(torch::adaptive_max_pool2d(f, {grids[s], grids[s]})).contiguous().flatten(1));
    }
  }
  return torch::cat(parts, 1);
}

int64_t forward_flops(const config::ModelConfig& cfg, int64_t channels, int64_t image_size) {
  if (is_dense(cfg)) {  // 2 x in x out per linear layer, encoder and decoder
    std::vector<int64_t> sizes{channels * image_size * image_size};
    sizes.insert(sizes.end(), cfg.hidden.begin(), cfg.hidden.end());
    sizes.push_back(cfg.code_size);
    int64_t flops = 0;
    for (size_t i = 1; i < sizes.size(); ++i) flops += 2 * 2 * sizes[i - 1] * sizes[i];
    return flops;
  }
  // 2 x multiply-adds of every 3x3 convolution, stage by stage, at its output resolution.
  auto conv = [](int64_t in, int64_t out, int64_t side) { return 2 * in * out * 9 * side * side; };
  int64_t flops = 0, c = channels, side = image_size;
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
  return flops + conv(c, channels, side);
}

int64_t code_dim(const config::ModelConfig& model, const CodeSpec& spec) {
  if (is_dense(model)) return model.code_size;
  int64_t d = 0;
  for (size_t s = 0; s < spec.grids.size() && s < model.widths.size(); ++s) {
    d += model.widths[s] * spec.grids[s] * spec.grids[s];
  }
  return d * ((spec.uses_avg() ? 1 : 0) + (spec.uses_max() ? 1 : 0));
}

HeadImpl::HeadImpl(int64_t in_dim, const std::vector<int64_t>& hidden, double dropout,
                   int64_t classes) {
  net = nn::Sequential();
  int64_t c = in_dim;
  for (int64_t h : hidden) {
    if (dropout > 0) net->push_back(FastDropout(dropout));
    net->push_back(nn::Linear(c, h));
    net->push_back(nn::ReLU(nn::ReLUOptions(true)));
    c = h;
  }
  if (dropout > 0) net->push_back(FastDropout(dropout));
  net->push_back(nn::Linear(c, classes));
  register_module("net", net);
  code_mean = register_buffer("code_mean", torch::zeros({in_dim}));
  code_std = register_buffer("code_std", torch::ones({in_dim}));
}

torch::Tensor HeadImpl::forward(torch::Tensor code) { return net->forward(standardize(code)); }

torch::Tensor HeadImpl::standardize(const torch::Tensor& code) const {
  return (code - code_mean) / code_std;
}

void HeadImpl::set_standardization(const torch::Tensor& m, const torch::Tensor& s) {
  torch::NoGradGuard no_grad;
  code_mean.copy_(m);
  code_std.copy_(s);
}

int64_t bottleneck_size(const config::ModelConfig& model, int64_t image_size) {
  if (is_dense(model)) return model.code_size;
  const int64_t side = image_size >> (model.widths.size() - 1);
  return model.widths.back() * side * side;
}

std::string describe_architecture(const config::ModelConfig& cfg, int64_t channels,
                                  int64_t image_size) {
  std::ostringstream ss;
  const std::string output = cfg.output_activation == config::OutputActivation::kIdentity
                                 ? ""
                                 : std::string(" output=") + config::name_of(cfg.output_activation);
  if (is_dense(cfg)) {
    ss << "dense-autoencoder input=" << channels << "x" << image_size << "x" << image_size
       << " hidden=[";
    for (size_t i = 0; i < cfg.hidden.size(); ++i) ss << (i ? "," : "") << cfg.hidden[i];
    ss << "] code=" << cfg.code_size << " activation=" << config::name_of(cfg.activation) << output;
    return ss.str();
  }
  // Conv weights do not depend on the image size; RGB models keep the description they had.
  ss << (channels == 3 ? "" : "grey-") << "conv-autoencoder widths=[";
  for (size_t i = 0; i < cfg.widths.size(); ++i) ss << (i ? "," : "") << cfg.widths[i];
  ss << "] blocks=[";
  for (size_t i = 0; i < cfg.blocks.size(); ++i) ss << (i ? "," : "") << cfg.blocks[i];
  ss << "] decoder_blocks=" << cfg.decoder_blocks << " decoder_width=" << cfg.decoder_width
     << output;
  return ss.str();
}

std::string describe_head(int64_t in_dim, const std::vector<int64_t>& hidden, int64_t classes) {
  std::ostringstream ss;
  ss << "head in=" << in_dim << " hidden=[";
  for (size_t i = 0; i < hidden.size(); ++i) ss << (i ? "," : "") << hidden[i];
  ss << "] classes=" << classes;
  return ss.str();
}

}  // namespace aefx::models
