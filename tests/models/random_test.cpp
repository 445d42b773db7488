// Fast random tensors and FastDropout: the right distribution, the caller's layout, and the
// same values for the same seed whatever the thread count.
#include "aefx/models/random.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace aefx::models {
namespace {

torch::Tensor big_channels_last() {
  return torch::empty({64, 3, 32, 32}).contiguous(torch::MemoryFormat::ChannelsLast);
}

TEST(FastRandom, NormalNoiseHasTheRightMomentsAndLayout) {
  torch::manual_seed(3);
  const auto like = big_channels_last();
  const auto z = randn_like_dense(like);
  EXPECT_EQ(z.sizes(), like.sizes());
  EXPECT_TRUE(z.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_NEAR(z.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(z.std().item<double>(), 1.0, 0.01);
  torch::manual_seed(3);
  EXPECT_TRUE(torch::equal(randn_like_dense(like), z));
  const auto strided = torch::empty({512, 512}).t();  // not dense-in-order: the plain path
  EXPECT_EQ(randn_like_dense(strided).sizes(), strided.sizes());
}

TEST(FastRandom, DropoutMaskKeepsOneMinusPScaledAndFollowsTheSeedNotTheThreads) {
  const double p = 0.3;
  const int before = torch::get_num_threads();
  torch::set_num_threads(1);
  torch::manual_seed(11);
  const auto one = dropout_mask(big_channels_last(), p);  // 196,608 values: several chunks
  torch::set_num_threads(2);
  torch::manual_seed(11);
  const auto two = dropout_mask(big_channels_last(), p);
  torch::manual_seed(12);
  const auto other = dropout_mask(big_channels_last(), p);
  torch::set_num_threads(before);
  EXPECT_TRUE(torch::equal(one, two));
  EXPECT_FALSE(torch::equal(one, other));
  EXPECT_TRUE(one.is_contiguous(torch::MemoryFormat::ChannelsLast));
  const auto kept = (one != 0).to(torch::kDouble);
  EXPECT_NEAR(kept.mean().item<double>(), 1 - p, 0.005);
  EXPECT_TRUE(
      torch::allclose(one.masked_select(one != 0), torch::full({1}, 1 / (1 - p), torch::kFloat)));
  // Chunks have their own generators: no chunk repeats another.
  const auto flat = one.contiguous().view(-1);
  EXPECT_FALSE(torch::equal(flat.narrow(0, 0, 1 << 16), flat.narrow(0, 1 << 16, 1 << 16)));
  EXPECT_THROW(dropout_mask(big_channels_last(), 1.0), std::invalid_argument);
}

TEST(FastDropout, MatchesInvertedDropout) {
  torch::manual_seed(5);
  const double p = 0.3;
  FastDropout drop(p);
  const auto x = torch::ones({1024, 256});
  drop->train();
  const auto y = drop->forward(x);
  EXPECT_NEAR((y != 0).to(torch::kDouble).mean().item<double>(), 1 - p, 0.01);
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
