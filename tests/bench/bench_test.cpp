// `aefx bench` and its plain-PyTorch counterpart, on tiny synthetic data. These check that
// every figure is produced and consistent, never how fast anything is.
#include "aefx/bench/bench.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "aefx/config/config.h"
#include "aefx/models/autoencoder.h"
#include "test_util.h"

namespace aefx::bench {
namespace {
namespace fs = std::filesystem;
using aefx::testing::json_number;
using aefx::testing::TempDir;

class Bench : public ::testing::Test {
 protected:
  void SetUp() override { config_ = testing::write_tiny_setup(dir_); }
  /// Whether /usr/bin/python3 can run tools/bench_pytorch.py.
  static bool have_pytorch() {
    std::string out;
    return testing::run_command("/usr/bin/python3 -c 'import torch, yaml'", &out) == 0;
  }
  /// Runs tools/bench_pytorch.py on the tiny config with `args`; its exit code, output in `out`.
  int bench_pytorch(const std::string& args, std::string* out) const {
    return testing::run_command("cd " + std::string(AEFX_SOURCE_DIR) +
                                    " && /usr/bin/python3 tools/bench_pytorch.py " + config_ +
                                    " --aefx " + AEFX_BINARY + " " + args,
                                out);
  }
  TempDir dir_;
  std::string config_;
};

constexpr const char* kNoPytorch =
    "/usr/bin/python3 lacks torch or yaml (python3-torch, python3-yaml)";

TEST_F(Bench, ReportsEveryPieceAndThePipeline) {
  const auto cfg = config::load_config(config_);
  BenchOptions options;
  options.steps = 2;
  options.warmup = 1;
  options.pipeline = true;
  const std::string json = util::dump_json(run_bench(cfg, options));
  for (const char* key :
       {"pretrain_images_per_second", "pretrain_step_ms", "achieved_gflops",
        "code_images_per_second", "head_epoch_seconds", "peak_rss_bytes", "matmul_peak_gflops",
        "conv_peak_gflops", "pipeline_seconds", "pipeline_peak_rss_bytes"}) {
    const double v = json_number(json, key);
    EXPECT_TRUE(std::isfinite(v) && v > 0) << key << " in " << json;
  }
  const double flops = json_number(json, "forward_flops_per_image");
  EXPECT_EQ(flops, static_cast<double>(models::forward_flops(cfg.model, 3, 32)));
  EXPECT_EQ(json_number(json, "train_flops_per_image"), 3 * flops);
  EXPECT_EQ(json_number(json, "head_rows"), 2 * (100.0 - 40.0));  // flipped codes double them
  const double acc = json_number(json, "test_accuracy");
  EXPECT_TRUE(acc >= 0 && acc <= 1) << json;
  // The pipeline ran in a scratch folder: the config's own run folder was never created.
  EXPECT_FALSE(fs::exists(dir_ / "runs"));
}

TEST_F(Bench, CliPrintsJsonAndRejectsBadOptions) {
  std::string out;
  const std::string bin = AEFX_BINARY;
  ASSERT_EQ(testing::run_command(bin + " bench " + config_ + " --steps 2 --warmup 0 --quiet", &out),
            0)
      << out;
  EXPECT_EQ(out.front(), '{') << out;
  EXPECT_GT(json_number(out, "pretrain_images_per_second"), 0);
  EXPECT_TRUE(std::isnan(json_number(out, "pipeline_seconds")));  // only with --pipeline
  EXPECT_EQ(testing::run_command(bin + " bench " + config_ + " --steps 0", &out), 2);
  EXPECT_NE(out.find("--steps expects an integer >= 1"), std::string::npos) << out;
  EXPECT_EQ(testing::run_command(bin + " bench " + config_ + " --warmup x", &out), 2);
  EXPECT_EQ(testing::run_command(bin + " bench", &out), 2);
  EXPECT_EQ(testing::run_command(bin + " bench " + config_ + " --set model.widths=[]", &out), 2);
  EXPECT_NE(out.find("model.widths"), std::string::npos) << out;
  EXPECT_EQ(testing::run_command(bin + " bench --help", &out), 0);
  EXPECT_NE(out.find("tools/bench_pytorch.py"), std::string::npos);
}

TEST_F(Bench, PytorchComparisonBuildsTheSameModel) {
  if (!have_pytorch()) GTEST_SKIP() << kNoPytorch;
  std::string out;
  ASSERT_EQ(bench_pytorch("--rounds 1 --steps 2 --warmup 1 --variants eager,eager-tuned-malloc"
                          " --precisions fp32,bf16",
                          &out),
            0)
      << out;
  // Both sides count the same FLOPs: the PyTorch model has the same convolutions.
  const auto aefx_part = out.substr(out.find("\"aefx\""));
  const auto eager_part = out.substr(out.find("\"eager\""));
  EXPECT_EQ(json_number(aefx_part, "forward_flops_per_image"),
            json_number(eager_part, "forward_flops_per_image"))
      << out;
  EXPECT_GT(json_number(eager_part, "pretrain_ratio_aefx_over_pytorch"), 0) << out;
  EXPECT_NE(out.find("\"eager-tuned-malloc\""), std::string::npos) << out;
  // Each precision on both sides, and aefx's bf16 against its fp32.
  const auto bf16_part = out.substr(out.find("\"bf16\": {"));
  EXPECT_NE(bf16_part.find("\"precision\": \"bf16\""), std::string::npos) << out;
  EXPECT_GT(json_number(bf16_part, "pretrain_ratio_aefx_over_pytorch"), 0) << out;
  EXPECT_GT(
      json_number(out.substr(out.find("\"aefx_bf16_over_fp32\"")), "pretrain_images_per_second"), 0)
      << out;
}

TEST_F(Bench, PytorchComparisonMirrorsTheWhiteningStem) {
  if (!have_pytorch()) GTEST_SKIP() << kNoPytorch;
  std::string out;
  ASSERT_EQ(bench_pytorch("--set model.whiten_patch=3 --rounds 1 --steps 2 --warmup 1"
                          " --variants eager --precisions fp32",
                          &out),
            0)
      << out;
  // The stem's convolution and the wider first and last convolutions, counted on both sides.
  const double aefx_flops =
      json_number(out.substr(out.find("\"aefx\"")), "forward_flops_per_image");
  EXPECT_EQ(aefx_flops, json_number(out.substr(out.find("\"eager\"")), "forward_flops_per_image"))
      << out;
  auto cfg = config::load_config(config_);
  cfg.model.whiten_patch = 3;
  EXPECT_EQ(aefx_flops,
            static_cast<double>(models::forward_flops(cfg.model, 3, cfg.data.image_size)))
      << out;
}

TEST_F(Bench, PytorchComparisonBuildsThePatchDictionary) {
  if (!have_pytorch()) GTEST_SKIP() << kNoPytorch;
  const std::string patch =
      "--set model.type=patch --set model.whiten_patch=5 --set model.atoms=12 --set "
      "model.normalize_patches=true --set 'classify.pool_grids=[2]' --set pretrain.mask_ratio=0 "
      "--set pretrain.noise=0 --set classify.augmented_copies=1 ";
  std::string out;
  ASSERT_EQ(bench_pytorch(patch + "--rounds 1 --steps 2 --warmup 1 --variants eager --precisions "
                                  "fp32,bf16",
                          &out),
            0)
      << out;
  // The same FLOPs counted on both sides, and every ratio measured.
  const double aefx_flops =
      json_number(out.substr(out.find("\"aefx\"")), "forward_flops_per_image");
  const auto eager_part = out.substr(out.find("\"eager\""));
  EXPECT_EQ(aefx_flops, json_number(eager_part, "forward_flops_per_image")) << out;
  EXPECT_GT(json_number(eager_part, "code_ratio_pairwise_median"), 0) << out;
  EXPECT_GT(json_number(eager_part, "pretrain_ratio_aefx_over_pytorch"), 0) << out;
  // The whole pipeline is built for conv autoencoders only: refused, saying so.
  EXPECT_NE(bench_pytorch(patch + "--rounds 1 --pipeline", &out), 0);
  EXPECT_NE(out.find("not model.type patch with --pipeline"), std::string::npos) << out;
}

}  // namespace
}  // namespace aefx::bench
