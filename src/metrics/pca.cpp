#include "aefx/metrics/pca.h"

#include <torch/torch.h>

namespace aefx::metrics {

std::pair<torch::Tensor, std::array<double, 2>> pca_2d(const torch::Tensor& codes, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto x = codes.to(torch::kCPU, torch::kFloat);
  x = x - x.mean(0, true);
  const int64_t d = x.size(1), k = std::min<int64_t>(d, 10);
  auto gen = at::detail::createCPUGenerator(seed);
  auto q = at::randn({d, k}, gen, torch::kFloat);
  // Subspace iteration: q spans the top-k right singular vectors after a few power steps.
  for (int i = 0; i < 6; ++i) q = std::get<0>(torch::linalg_qr(x.t().mm(x.mm(q))));
  auto small = x.mm(q);                                           // N x k
  auto [evals, evecs] = torch::linalg_eigh(small.t().mm(small));  // ascending
  auto top = evecs.narrow(1, k - std::min<int64_t>(k, 2), std::min<int64_t>(k, 2)).flip({1});
  auto proj = small.mm(top);
  if (proj.size(1) < 2)
    proj = torch::cat({proj, torch::zeros({proj.size(0), 1}, proj.options())}, 1);
  const double total = x.pow(2).sum(torch::kDouble).item<double>();
  std::array<double, 2> share{0, 0};
  for (int64_t i = 0; i < std::min<int64_t>(k, 2); ++i)
    share[static_cast<size_t>(i)] = total > 0 ? evals[k - 1 - i].item<double>() / total : 0;
  return {proj.to(torch::kDouble), share};
}

}  // namespace aefx::metrics
