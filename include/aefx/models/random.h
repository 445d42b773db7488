#pragma once
// Random tensors that LibTorch 1.13's CPU backend makes slowly, made quickly:
//  - normal noise shaped like a channels-last tensor (randn_like takes a strided path there,
//    7x slower than filling the same memory as one contiguous run);
//  - dropout masks, drawn on every core from per-chunk generators (nn::Dropout draws one
//    Bernoulli at a time on one thread and cost more than the 2048-wide linear layer it
//    regularises).
// Values depend on the seed and the shape only, not on the thread count, so seeded runs
// stay reproducible.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace aefx::models {

/// Standard normal values shaped (and laid out) like `like`.
torch::Tensor randn_like_dense(const torch::Tensor& like);

/// Inverted-dropout mask shaped (and laid out) like `like`: each element is 1 / (1 - p) with
/// probability 1 - p and 0 otherwise. On CPU the probability is p rounded to a multiple of
/// 1/65536 (each element compares 16 random bits with a threshold).
torch::Tensor dropout_mask(const torch::Tensor& like, double p);

/// Inverted dropout, as torch::nn::Dropout computes it (zero with probability p, scale the rest
/// by 1 / (1 - p); the identity in eval mode), with the mask from dropout_mask().
class FastDropoutImpl : public torch::nn::Cloneable<FastDropoutImpl> {
 public:
  explicit FastDropoutImpl(double p = 0.5);
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& x);
  double p() const { return p_; }

 private:
  double p_;
};
TORCH_MODULE(FastDropout);

}  // namespace aefx::models
