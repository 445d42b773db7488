#include "aefx/models/random.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace aefx::models {
namespace {

/// Elements per chunk: each chunk has its own generator. Fixed, so that the values do not
/// depend on how many threads run.
constexpr int64_t kChunk = 1 << 16;

uint64_t next_seed() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
}

/// A dense tensor (contiguous or channels-last) is one flat run of memory; i.i.d. values do
/// not care about the layout.
torch::Tensor flat_view(const torch::Tensor& dense) {
  return dense.as_strided({dense.numel()}, {1}, dense.storage_offset());
}

}  // namespace

torch::Tensor randn_like_dense(const torch::Tensor& like) {
  auto out = torch::empty_like(like);
  if (out.is_non_overlapping_and_dense()) {
    flat_view(out).normal_();
  } else {
    out.normal_();
  }
  return out;
}

torch::Tensor dropout_mask(const torch::Tensor& like, double p) {
  if (p < 0 || p >= 1) throw std::invalid_argument("dropout must be in [0, 1)");
  const double scale = 1.0 / (1.0 - p);
  auto out = torch::empty_like(like, like.options().dtype(torch::kFloat));
  if (!out.device().is_cpu() || !out.is_non_overlapping_and_dense()) {
    return (torch::rand_like(out) >= p).to(torch::kFloat).mul_(scale);
  }
  const auto threshold = static_cast<uint32_t>(std::lround(p * 65536.0));
  const auto keep = static_cast<float>(scale);
  float* data = out.data_ptr<float>();
  const int64_t n = out.numel();
  const uint64_t seed = next_seed();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    // Random bits first, then a separate comparison loop the compiler vectorises: interleaving
    // the generator calls with the stores ran 4x slower.
    // Locals, not the captured references, so that the stores below cannot alias them.
    const uint32_t t = threshold;
    const float k = keep;
    std::vector<uint16_t> bits(kChunk);
    for (int64_t c = begin; c < end; ++c) {
      at::CPUGeneratorImpl gen(seed + static_cast<uint64_t>(c));
      const int64_t lo = c * kChunk, len = std::min(kChunk, n - lo);
      for (int64_t j = 0; j < len; j += 2) {
        const uint32_t r = gen.random();
        bits[j] = static_cast<uint16_t>(r & 0xFFFFu);
        bits[j + 1] = static_cast<uint16_t>(r >> 16);
      }
      float* dst = data + lo;
      const uint16_t* src = bits.data();
      for (int64_t i = 0; i < len; ++i) dst[i] = src[i] >= t ? k : 0.0f;
    }
  });
  return out;
}

FastDropoutImpl::FastDropoutImpl(double p) : p_(p) {
  if (p < 0 || p >= 1) throw std::invalid_argument("dropout must be in [0, 1)");
}

torch::Tensor FastDropoutImpl::forward(const torch::Tensor& x) {
  if (!is_training() || p_ == 0) return x;
  return x * dropout_mask(x, p_).to(x.scalar_type());
}

}  // namespace aefx::models
