#include "aefx/models/autoencoder.h"

#include <torch/torch.h>

#include <sstream>
#include <stdexcept>

#include "aefx/models/conv_autoencoder.h"
#include "aefx/models/dense_autoencoder.h"
#include "aefx/models/patch_autoencoder.h"
#include "aefx/models/random.h"

namespace aefx::models {
namespace nn = torch::nn;
namespace {

/// One architecture: its model.type name, its constructor, and what its methods return for a
/// configuration alone (the free functions below).
struct ArchitectureType {
  const char* name;
  std::shared_ptr<AutoencoderImpl> (*make)(const config::ModelConfig&, int64_t, int64_t);
  int64_t (*flops)(const config::ModelConfig&, int64_t, int64_t);
  int64_t (*bottleneck)(const config::ModelConfig&, int64_t);
  CodeSpec (*spec)(const config::ModelConfig&, const config::ClassifyConfig&);
  int64_t (*dim)(const config::ModelConfig&, const CodeSpec&);
  std::string (*description)(const config::ModelConfig&, int64_t, int64_t);
};

template <typename T>
ArchitectureType entry_for() {
  return {T::kType,
          [](const config::ModelConfig& cfg, int64_t channels,
             int64_t image_size) -> std::shared_ptr<AutoencoderImpl> {
            return std::make_shared<T>(cfg, channels, image_size);
          },
          &T::flops,
          &T::bottleneck,
          &T::spec,
          &T::dim,
          &T::description};
}

/// The row of a k x k patch vector (im2col's order: channel, row, column) holding channel c's
/// centre pixel: the stem's output channel that passes it through until fitted, and the row of
/// the stem's inverse that recovers it.
int64_t centre_row(int64_t c, int64_t k) { return c * k * k + (k / 2) * k + k / 2; }

const ArchitectureType& architecture_type(const config::ModelConfig& cfg) {
  static const ArchitectureType kTypes[] = {entry_for<ConvAutoencoderImpl>(),
                                            entry_for<DenseAutoencoderImpl>(),
                                            entry_for<PatchAutoencoderImpl>()};
  for (const auto& t : kTypes) {
    if (config::name_of(cfg.type) == std::string(t.name)) return t;
  }
  std::string names;
  for (const auto& t : kTypes) names += std::string(names.empty() ? "" : " or ") + t.name;
  throw std::invalid_argument("config key 'model.type': expected " + names + ", found '" +
                              config::name_of(cfg.type) + "'");
}

}  // namespace

AutoencoderImpl::AutoencoderImpl(const config::ModelConfig& cfg, int64_t channels,
                                 int64_t image_size)
    : cfg_(cfg), channels_(channels), image_size_(image_size) {
  // Buffers and submodules are kept apart, so the subclass registering "encoder" and
  // "decoder" after these still gives the checkpoint layout of the single class this was.
  mean = register_buffer("mean", torch::zeros({channels}));
  std = register_buffer("std", torch::ones({channels}));
  if (cfg.whiten_patch > 0) {
    // Identity until fitted: the centre pixel of each patch passes through.
    const int64_t k = cfg.whiten_patch, d = stem_channels(cfg, channels);
    auto w = torch::zeros({d, channels, k, k});
    auto u = torch::zeros({channels, d, 1, 1});
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t centre = centre_row(c, k);
      w[centre][c][k / 2][k / 2] = 1.0;
      u[c][centre][0][0] = 1.0;
    }
    whiten = register_buffer("whiten", w);
    unwhiten = register_buffer("unwhiten", u);
  }
}

int64_t AutoencoderImpl::stem_channels(const config::ModelConfig& cfg, int64_t channels) {
  return cfg.whiten_patch > 0 ? channels * cfg.whiten_patch * cfg.whiten_patch : channels;
}

torch::Tensor AutoencoderImpl::forward(torch::Tensor normalized) {
  auto out = decoder->forward(encode(normalized).back());
  return cfg_.output_activation == config::OutputActivation::kSigmoid
             ? normalize(torch::sigmoid(out))
             : out;
}

std::vector<torch::Tensor> AutoencoderImpl::encode(const torch::Tensor& normalized) {
  return encoder->forward(target(normalized));
}

torch::Tensor AutoencoderImpl::codes(const torch::Tensor& normalized, const CodeSpec& spec) {
  return pool_codes(encode(normalized), spec);
}

torch::Tensor AutoencoderImpl::target(const torch::Tensor& normalized) const {
  if (!has_stem()) return normalized;
  const int64_t pad = cfg_.whiten_patch / 2;
  return torch::conv2d(normalized, whiten, {}, 1, pad);
}

torch::Tensor AutoencoderImpl::to_images(const torch::Tensor& reconstruction) const {
  return denormalize(has_stem() ? torch::conv2d(reconstruction, unwhiten) : reconstruction);
}

void AutoencoderImpl::fit_whitening(const torch::Tensor& images) {
  if (!has_stem()) return;
  torch::NoGradGuard no_grad;
  const int64_t k = cfg_.whiten_patch, d = whiten.size(0);
  TORCH_CHECK(images.dim() == 4 && images.size(1) == channels_ && images.size(2) >= k &&
                  images.size(3) >= k && images.size(0) > 0,
              "fit_whitening: expected N x ", channels_, " x H x W images with H, W >= ", k);
  // The second moment of every k x k patch (no padding), chunk by chunk so that memory stays
  // at one chunk's patches: each chunk's sum in float, the total in double. No mean over the
  // images is removed: the stem is a convolution without bias, applied to images normalised
  // to mean 0 (model.whiten_center removes each patch's own mean).
  auto moment = torch::zeros({d, d}, torch::kDouble);
  int64_t count = 0;
  for (int64_t i = 0; i < images.size(0); i += 256) {
    auto x = images.narrow(0, i, std::min<int64_t>(256, images.size(0) - i)).to(torch::kCPU);
    x = normalize(x.scalar_type() == torch::kByte ? x.to(torch::kFloat).div_(255)
                                                  : x.to(torch::kFloat));
    auto p = torch::im2col(x, {k, k}, {1, 1}, {0, 0}, {1, 1}).transpose(1, 2).reshape({-1, d});
    if (cfg_.whiten_center) p = p - p.mean(1, true);
    moment += torch::mm(p.t(), p).to(torch::kDouble);
    count += p.size(0);
  }
  moment /= static_cast<double>(count);
  auto [eigenvalues, u] = torch::linalg_eigh(moment, "L");
  eigenvalues = eigenvalues.clamp_min(0);
  const double mean_eigenvalue = eigenvalues.mean().item<double>();
  if (!(mean_eigenvalue > 1e-12)) {
    throw std::runtime_error(
        "whitening stem (model.whiten_patch): the training images do not vary, so there is "
        "nothing to whiten (set model.whiten_patch: 0)");
  }
  const auto damped = eigenvalues + cfg_.whiten_eps * mean_eigenvalue;
  auto w = torch::mm(u * damped.rsqrt(), u.t());
  // With whiten_center the stem is W (I - 1 1^T / d): the centring folded in. Its inverse then
  // recovers the centred patch, so to_images shows each centre pixel less its patch's mean.
  if (cfg_.whiten_center) w = w - w.sum(1, true) / static_cast<double>(d);
  auto inverse = torch::mm(u * damped.sqrt(), u.t());
  std::vector<int64_t> centres;
  for (int64_t c = 0; c < channels_; ++c) centres.push_back(centre_row(c, k));
  auto rows = inverse.index_select(0, torch::tensor(centres));
  whiten.copy_(w.to(torch::kFloat).reshape(whiten.sizes()));
  unwhiten.copy_(rows.to(torch::kFloat).reshape(unwhiten.sizes()));
  whitening_fitted(moment);
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

std::shared_ptr<AutoencoderImpl> make_autoencoder(const config::ModelConfig& cfg, int64_t channels,
                                                  int64_t image_size) {
  return architecture_type(cfg).make(cfg, channels, image_size);
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
  return architecture_type(model).spec(model, cfg);
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
  return architecture_type(cfg).flops(cfg, channels, image_size);
}

int64_t code_dim(const config::ModelConfig& model, const CodeSpec& spec) {
  return architecture_type(model).dim(model, spec);
}

int64_t bottleneck_size(const config::ModelConfig& model, int64_t image_size) {
  return architecture_type(model).bottleneck(model, image_size);
}

std::string describe_architecture(const config::ModelConfig& cfg, int64_t channels,
                                  int64_t image_size) {
  return architecture_type(cfg).description(cfg, channels, image_size);
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

std::string describe_head(int64_t in_dim, const std::vector<int64_t>& hidden, int64_t classes) {
  std::ostringstream ss;
  ss << "head in=" << in_dim << " hidden=[";
  for (size_t i = 0; i < hidden.size(); ++i) ss << (i ? "," : "") << hidden[i];
  ss << "] classes=" << classes;
  return ss.str();
}

}  // namespace aefx::models
