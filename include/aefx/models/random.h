#pragma once
// Random tensors drawn on every CPU core. LibTorch 1.13 fills normal_ and uniform_ from one
// Mersenne Twister on one thread; on CPU this splits the tensor into fixed-size chunks, each
// with its own generator seeded from the default one. The result depends on the seed and the
// shape only (not on the thread count), so seeded runs stay reproducible.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace aefx::models {

/// Standard normal values shaped (and laid out) like `like`.
torch::Tensor randn_like_parallel(const torch::Tensor& like);

/// Uniform [0, 1) values shaped (and laid out) like `like`.
torch::Tensor rand_like_parallel(const torch::Tensor& like);

/// Inverted dropout, as torch::nn::Dropout computes it (zero with probability p, scale the rest
/// by 1 / (1 - p); the identity in eval mode), but with its mask drawn on every core: nn::Dropout
/// draws a Bernoulli per element on one thread, which cost 4x more than a 2048-wide linear
/// layer's step on the 2-core CPU. The mask keeps an element where a standard normal draw is
/// >= Phi^-1(p), which happens with probability exactly 1 - p.
class FastDropoutImpl : public torch::nn::Cloneable<FastDropoutImpl> {
 public:
  explicit FastDropoutImpl(double p = 0.5);
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& x);
  double p() const { return p_; }

 private:
  double p_;
  double threshold_ = 0;  ///< keep where a standard normal draw is >= this
};
TORCH_MODULE(FastDropout);

}  // namespace aefx::models
