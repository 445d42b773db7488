#include "aefx/models/features.h"

#include <torch/torch.h>

#include "aefx/data/dataset.h"
#include "aefx/util/precision.h"
#include "aefx/util/runtime.h"

namespace aefx::models {

void freeze(Autoencoder& ae) {
  for (auto& p : ae->parameters()) p.requires_grad_(false);
  ae->eval();
}

FeatureExtractor::FeatureExtractor(Autoencoder ae, CodeSpec spec, torch::Device device,
                                   torch::ScalarType dtype)
    : ae_(std::move(ae)), spec_(std::move(spec)), device_(device), dtype_(dtype) {
  freeze(ae_);
}

torch::Tensor FeatureExtractor::encode_normalized(const torch::Tensor& normalized) {
  torch::NoGradGuard no_grad;
  util::Autocast autocast(device_, dtype_);
  return ae_->codes(normalized, spec_).to(torch::kFloat);
}

torch::Tensor FeatureExtractor::encode(const torch::Tensor& images, int64_t batch_size,
                                       torch::ScalarType out_dtype) {
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0);
  // Every batch is written into one preallocated N x D tensor: concatenating parts at the end
  // would hold the codes twice at the peak.
  torch::Tensor out;
  for (int64_t i = 0; i < n; i += batch_size) {
    util::throw_if_interrupted("while computing latent codes");
    const int64_t b = std::min(batch_size, n - i);
    const auto codes =
        encode_normalized(ae_->normalize(data::to_float(images.narrow(0, i, b), device_)));
    if (!out.defined()) out = torch::empty({n, codes.size(1)}, codes.options().dtype(out_dtype));
    out.narrow(0, i, b).copy_(codes);
  }
  if (!out.defined()) {  // no images: an empty N x D, D from one blank image
    auto blank = torch::zeros({1, images.size(1), images.size(2), images.size(3)}, device_);
    out = encode_normalized(blank).narrow(0, 0, 0).to(out_dtype);
  }
  return out;
}

int64_t FeatureExtractor::code_dim() const { return models::code_dim(ae_->config(), spec_); }

torch::Tensor pixel_features(const torch::Tensor& images, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  return data::to_float(images, device).flatten(1);  // logical C, H, W order, any memory layout
}

std::string head_architecture(const config::Config& cfg, int64_t classes) {
  std::string grids;
  const auto spec = code_spec(cfg.model, cfg.classify);
  for (auto g : spec.grids) grids += (grids.empty() ? "" : ",") + std::to_string(g);
  return describe_head(code_dim(cfg.model, spec), cfg.classify.hidden, classes) + " grids=[" +
         grids + "] pooling=" + config::name_of(spec.pooling) + " on " +
         describe_architecture(cfg.model, config::input_channels(cfg.data), cfg.data.image_size);
}

}  // namespace aefx::models
