// Parallel random fills and FastDropout: the right distribution, the caller's layout, and the
// same values for the same seed whatever the thread count.
#include "aefx/models/random.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace aefx::models {
namespace {

torch::Tensor big_channels_last() {
  return torch::empty({64, 3, 32, 32}).contiguous(torch::MemoryFormat::ChannelsLast);
}

TEST(ParallelRandom, NormalAndUniformHaveTheRightMomentsAndLayout) {
  torch::manual_seed(3);
  const auto like = big_channels_last();  // 196,608 values: several chunks
  const auto z = randn_like_parallel(like);
  EXPECT_EQ(z.sizes(), like.sizes());
  EXPECT_TRUE(z.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(z.std().item<double>(), 1.0, 0.01);
  const auto u = rand_like_parallel(like);
  EXPECT_GE(u.min().item<double>(), 0.0);
  EXPECT_LT(u.max().item<double>(), 1.0);
  EXPECT_NEAR(u.mean().item<double>(), 0.5, 0.01);
  // Chunks have their own generators: no chunk repeats another.
  const auto flat = z.contiguous().view(-1);
  EXPECT_FALSE(torch::equal(flat.narrow(0, 0, 1 << 16), flat.narrow(0, 1 << 16, 1 << 16)));
}

TEST(ParallelRandom, SameSeedSameValuesWhateverTheThreadCount) {
  const int before = torch::get_num_threads();
  torch::set_num_threads(1);
  torch::manual_seed(11);
  const auto one = randn_like_parallel(big_channels_last());
  torch::set_num_threads(2);
  torch::manual_seed(11);
  const auto two = randn_like_parallel(big_channels_last());
  torch::manual_seed(12);
  const auto other = randn_like_parallel(big_channels_last());
  torch::set_num_threads(before);
  EXPECT_TRUE(torch::equal(one, two));
  EXPECT_FALSE(torch::equal(one, other));
}

TEST(ParallelRandom, SmallTensorsAndNonDenseFallBackToOneGenerator) {
  torch::manual_seed(1);
  const auto small = randn_like_parallel(torch::empty({5, 7}));
  EXPECT_EQ(small.sizes(), (std::vector<int64_t>{5, 7}));
  const auto strided = torch::empty({512, 512}).t();
  EXPECT_EQ(randn_like_parallel(strided).sizes(), strided.sizes());
}

TEST(FastDropout, MatchesInvertedDropout) {
  torch::manual_seed(5);
  const double p = 0.3;
  FastDropout drop(p);
  const auto x = torch::ones({1024, 256});
  drop->train();
  const auto y = drop->forward(x);
  const double kept = (y != 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(kept, 1 - p, 0.01);
  // Kept values are scaled so that the expectation is unchanged.
  EXPECT_NEAR(y.max().item<double>(), 1 / (1 - p), 1e-5);
  EXPECT_NEAR(y.mean().item<double>(), 1.0, 0.02);
  // Gradients flow through kept elements only, scaled the same way.
  auto leaf = torch::ones({256, 64}, torch::requires_grad());
  auto out = drop->forward(leaf);
  out.sum().backward();
  EXPECT_TRUE(torch::allclose(leaf.grad(), (out != 0).to(torch::kFloat) / (1 - p)));
  // Eval mode and p = 0 are the identity.
  drop->eval();
  EXPECT_TRUE(torch::equal(drop->forward(x), x));
  FastDropout none(0.0);
  none->train();
  EXPECT_TRUE(torch::equal(none->forward(x), x));
  EXPECT_THROW(FastDropout(1.0), std::invalid_argument);
  EXPECT_THROW(FastDropout(-0.1), std::invalid_argument);
}

}  // namespace
}  // namespace aefx::models
