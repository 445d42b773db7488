#include "aefx/metrics/metrics.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

namespace aefx::metrics {
namespace {

TEST(Meter, WeightedMean) {
  Meter m;
  EXPECT_EQ(m.value(), 0.0);
  m.add(1.0, 1);
  m.add(4.0, 3);
  EXPECT_DOUBLE_EQ(m.value(), 3.25);
  EXPECT_DOUBLE_EQ(m.total_weight(), 4.0);
  m.reset();
  EXPECT_EQ(m.value(), 0.0);
}

TEST(ConfusionMatrix, CountsAccuracyPerClass) {
  ConfusionMatrix cm(3);
  cm.add(torch::tensor({0, 1, 1, 2, 0}, torch::kLong),
         torch::tensor({0, 1, 2, 2, 1}, torch::kLong));
  const auto c = cm.counts();
  EXPECT_EQ(c[0], (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(c[1], (std::vector<int64_t>{1, 1, 0}));
  EXPECT_EQ(c[2], (std::vector<int64_t>{0, 1, 1}));
  EXPECT_DOUBLE_EQ(cm.accuracy(), 3.0 / 5.0);
  EXPECT_EQ(cm.per_class_accuracy(), (std::vector<double>{1.0, 0.5, 0.5}));
  EXPECT_EQ(cm.total(), 5);
  EXPECT_THROW(cm.add(torch::tensor({3}, torch::kLong), torch::tensor({0}, torch::kLong)),
               c10::Error);
}

TEST(Psnr, KnownValues) {
  EXPECT_DOUBLE_EQ(psnr(0.01), 20.0);
  EXPECT_DOUBLE_EQ(psnr(1.0), 0.0);
  EXPECT_TRUE(std::isinf(psnr(0.0)));
}

}  // namespace
}  // namespace aefx::metrics
