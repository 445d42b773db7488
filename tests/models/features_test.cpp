#include "aefx/models/features.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aefx/config/config.h"
#include "aefx/data/dataset.h"
#include "aefx/dist/dist.h"
#include "aefx/engine/head_trainer.h"
#include "test_util.h"

namespace aefx::models {
namespace {
using aefx::testing::TempDir;

config::Config tiny(const TempDir& dir) {
  return config::parse_config(testing::tiny_config_yaml(dir / "data", dir / "runs", "tiny"), {},
                              "tiny");
}

TEST(Codes, RowsFollowTheImagesInAnyBatchSizeAndEmptyInputGivesNoRows) {
  torch::manual_seed(0);
  TempDir dir;
  const auto cfg = tiny(dir);
  const auto& grids = cfg.classify.pool_grids;
  FeatureExtractor features(Autoencoder(cfg.model, 3, cfg.data.image_size), grids, torch::kCPU);
  auto [img, lab] = testing::synthetic_images(10, 10, 32, 3);
  const auto in_fours = features.encode(img, 4);
  const auto in_threes = features.encode(img, 3);
  const auto mirrored = features.encode(img.flip({3}), 10);
  const int64_t d = code_dim(cfg.model, grids);
  EXPECT_EQ(features.code_dim(), d);
  ASSERT_EQ(in_fours.sizes(), (std::vector<int64_t>{10, d}));
  EXPECT_TRUE(torch::allclose(in_fours, in_threes, 1e-5, 1e-5));
  for (int64_t i = 0; i < 10; ++i)  // row i: image i's codes alone
    EXPECT_TRUE(
        torch::allclose(in_fours[i], features.encode(img.narrow(0, i, 1), 1)[0], 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(in_fours, mirrored, 1e-3, 1e-3));
  const auto none = features.encode(img.narrow(0, 0, 0), 4);
  EXPECT_EQ(none.sizes(), (std::vector<int64_t>{0, d}));
}

// bf16: the encoder computes under autocast, the codes come out fp32, close to the fp32 codes
// (bf16 keeps 8 bits of mantissa) but not equal to them.
TEST(Codes, Bf16CodesAreFp32AndCloseToTheFp32Codes) {
  torch::manual_seed(0);
  TempDir dir;
  const auto cfg = tiny(dir);
  Autoencoder ae(cfg.model, 3, cfg.data.image_size);
  const auto spec = code_spec(cfg.model, cfg.classify);
  FeatureExtractor fp32(ae, spec, torch::kCPU);
  FeatureExtractor bf16(ae, spec, torch::kCPU, torch::kBFloat16);
  EXPECT_EQ(bf16.dtype(), torch::kBFloat16);
  auto [img, lab] = testing::synthetic_images(12, 10, 32, 3);
  const auto a = fp32.encode(img, 5), b = bf16.encode(img, 5);
  EXPECT_EQ(b.scalar_type(), torch::kFloat);
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_FALSE(torch::equal(a, b));
  const double scale = a.abs().max().item<double>();
  EXPECT_LT((a - b).abs().max().item<double>(), 0.05 * scale);
  // Kept in the storage dtype: the bf16 extractor's codes rounded to bf16 (empty input alike); an
  // fp32 extractor keeps fp32.
  EXPECT_EQ(bf16.storage_dtype(), torch::kBFloat16);
  EXPECT_EQ(fp32.storage_dtype(), torch::kFloat);
  const auto c = bf16.encode(img, 5, bf16.storage_dtype());
  EXPECT_EQ(c.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(c, b.to(torch::kBFloat16)));
  EXPECT_EQ(bf16.encode(img.narrow(0, 0, 0), 5, bf16.storage_dtype()).scalar_type(),
            torch::kBFloat16);
  EXPECT_TRUE(torch::equal(fp32.encode(img, 5, fp32.storage_dtype()), a));
}

TEST(FrozenEncoder, BitIdenticalAfterHeadTraining) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    SCOPED_TRACE(torch::toString(dtype));
    torch::manual_seed(0);
    TempDir dir;
    const auto cfg = tiny(dir);
    Autoencoder ae(cfg.model, 3, cfg.data.image_size);
    ae->set_normalization(torch::full({3}, 0.4), torch::full({3}, 0.2));
    // Give BatchNorm non-trivial running statistics, as after pretraining.
    ae->train();
    for (int i = 0; i < 3; ++i) ae->forward(torch::rand({16, 3, 32, 32}));
    std::vector<std::pair<std::string, torch::Tensor>> before;
    for (const auto& kv : ae->named_parameters())
      before.emplace_back(kv.key(), kv.value().detach().clone());
    for (const auto& kv : ae->named_buffers()) before.emplace_back(kv.key(), kv.value().clone());
    ASSERT_GT(before.size(), 10u);

    auto [img, lab] = testing::synthetic_images(120, 10, 32, 5);
    data::Dataset train{img.narrow(0, 0, 100), lab.narrow(0, 0, 100), data::cifar10_class_names()};
    data::Dataset val{img.narrow(0, 100, 20), lab.narrow(0, 100, 20), data::cifar10_class_names()};
    // What the classify stage does: codes from the frozen encoder, a head trained on them.
    FeatureExtractor features(ae, code_spec(cfg.model, cfg.classify), torch::kCPU, dtype);
    engine::HeadTrainOptions options;
    options.classify = cfg.classify;
    options.classes = 10;
    options.dtype = dtype;
    dist::Group alone;
    const auto& c = cfg.classify;
    const auto views = data::training_views(train, c.flip_codes, 1, c.crop_padding, 5);
    auto r = engine::fit_head(features.encode(views.images, 32), views.labels,
                              features.encode(val.images, 32), val.labels, options, alone);
    EXPECT_EQ(r.history.size(), static_cast<size_t>(cfg.classify.epochs));

    auto params = ae->named_parameters();
    auto buffers = ae->named_buffers();
    for (const auto& [name, value] : before) {
      const auto* now = params.find(name) ? params.find(name) : buffers.find(name);
      ASSERT_NE(now, nullptr) << name;
      EXPECT_TRUE(torch::equal(*now, value)) << name << " changed";
    }
    for (const auto& p : ae->parameters()) EXPECT_FALSE(p.requires_grad());
    EXPECT_FALSE(ae->is_training());
    // The head's weights stay fp32 whatever its layers computed in.
    for (const auto& p : r.head->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
  }
}

}  // namespace
}  // namespace aefx::models
