#pragma once
// Principal components of codes, for the latents picture.
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <utility>

namespace aefx::metrics {

/// The first two principal components of `codes` (N x D): N x 2 projections (float64, CPU) and
/// the share of the total variance each explains. Randomized subspace iteration in float32, so
/// D in the thousands costs a few matrix products.
std::pair<torch::Tensor, std::array<double, 2>> pca_2d(const torch::Tensor& codes,
                                                       uint64_t seed = 0);

}  // namespace aefx::metrics
