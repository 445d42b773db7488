// The aefx executable as a user meets it: exit codes and one-line errors.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <filesystem>

#include "test_util.h"

namespace aefx {
namespace {
namespace fs = std::filesystem;
using aefx::testing::TempDir;

struct Result {
  int code;
  std::string out;
};

Result aefx(const std::string& args) {
  Result r;
  r.code = testing::run_command(std::string(AEFX_BINARY) + " " + args, &r.out);
  return r;
}

size_t lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override { config_ = testing::write_tiny_setup(dir_); }
  TempDir dir_;
  std::string config_;
};

TEST_F(Cli, HelpAndVersion) {
  EXPECT_EQ(aefx("--help").code, 0);
  EXPECT_NE(aefx("--help").out.find("aefx run CONFIG"), std::string::npos);
  EXPECT_EQ(aefx("run --help").code, 0);
  EXPECT_NE(aefx("run --help").out.find("--stages"), std::string::npos);
  const auto v = aefx("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_NE(v.out.find("aefx 0."), std::string::npos);
  EXPECT_EQ(aefx("").code, 2);
  EXPECT_EQ(aefx("frobnicate").code, 2);
  EXPECT_EQ(aefx("run").code, 2);
}

TEST_F(Cli, ConfigErrorsExitTwoWithOneLine) {
  auto r = aefx("run " + config_ + " --set pretrain.epoch=3");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.out), 1u) << r.out;
  EXPECT_NE(r.out.find("did you mean 'pretrain.epochs'"), std::string::npos) << r.out;
  r = aefx("run " + config_ + " --set pretrain.epochs");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("key=value"), std::string::npos);
  r = aefx("run " + config_ + " --set pretrain.mask_ratio=1.5");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("'pretrain.mask_ratio'"), std::string::npos);
  r = aefx("run " + config_ + " --stages pretrain,train");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("unknown stage 'train'"), std::string::npos);
  r = aefx("run " + (dir_ / "missing.yaml").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("missing.yaml"), std::string::npos);
  if (!torch::cuda::is_available()) {
    r = aefx("run " + config_ + " --set device=cuda");
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(lines(r.out), 1u) << r.out;
    EXPECT_NE(r.out.find("CUDA is not available"), std::string::npos);
  }
}

TEST_F(Cli, RuntimeErrorsExitOneWithOneLine) {
  auto r = aefx("run " + config_ + " --set data.root=" + (dir_ / "nowhere").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("nowhere"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("download_cifar10.sh"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Exception raised from"), std::string::npos) << "no stack traces";
  r = aefx("run " + config_ + " --stages classify --quiet");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(lines(r.out), 1u) << r.out;
  EXPECT_NE(r.out.find("autoencoder.pt"), std::string::npos);
  testing::write_bytes(dir_ / "data/cifar-10-batches-bin/test_batch.bin",
                       std::string(3073 + 7, '\0'));
  r = aefx("run " + config_ + " --quiet");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("test_batch.bin"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3073"), std::string::npos) << r.out;
}

TEST_F(Cli, SmokeConfigRunsAllStages) {
  const std::string smoke = std::string(AEFX_SOURCE_DIR) + "/configs/smoke.yaml";
  auto r = aefx("run " + smoke + " --set data.root=" + (dir_ / "data").string() +
                " --set output_dir=" + (dir_ / "runs").string() + " --set data.val_size=10");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(fs::exists(dir_ / "runs/smoke/metrics.json")) << r.out;
  const auto get = aefx("config " + smoke + " --get data.root");
  EXPECT_EQ(get.code, 0);
  EXPECT_EQ(get.out, "data/cifar10\n");
}

#ifdef AEFX_HAVE_OPENCV
TEST_F(Cli, ExportPredictEvaluateAndPythonInterop) {
  const std::string data = (dir_ / "data").string();
  auto r = aefx("run " + config_ + " --quiet --set data.limit_test=0");
  ASSERT_EQ(r.code, 0) << r.out;
  const fs::path run = dir_ / "runs/tiny";
  for (const char* f : {"encoder.pt", "autoencoder.pt", "classifier.pt", "model.json"}) {
    EXPECT_TRUE(fs::exists(run / f)) << f;
  }
  const std::string model = (run / "classifier.pt").string();
  // evaluate --model on the same test set gives the evaluate stage's accuracy.
  r = aefx("evaluate --model " + model + " --data " + data + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto metrics = testing::read_file(run / "metrics.json");
  const auto stage_acc = testing::json_number(metrics, "test_accuracy");
  EXPECT_NEAR(testing::json_number(r.out, "test_accuracy"), stage_acc, 1e-9) << r.out;

  // predict on images written here: test images 0..3 as PNG (any size: one is resized).
  auto [img, lab] = testing::synthetic_images(20, 10, 32, 17);
  std::string files;
  for (int i = 0; i < 4; ++i) {
    const auto f = (dir_ / ("img" + std::to_string(i) + ".png")).string();
    testing::write_png(f, img[i], i == 3 ? 64 : 32);
    files += " " + f;
  }
  r = aefx("predict --model " + model + files + " --top-k 3");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(lines(r.out), 4u) << r.out;
  r = aefx("predict --model " + model + files + " --json --top-k 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"probability\""), std::string::npos);
  // Top-1 from the exported file equals the native pipeline's prediction for the same image.
  r = aefx("predict --model " + model + " " + (dir_ / "img0.png").string() + " --json --top-k 1");
  EXPECT_NE(r.out.find("\"class\": \"" + testing::native_top1(run, img[0]) + "\""),
            std::string::npos)
      << r.out;

  // Errors: one clear line each.
  r = aefx("predict --model " + (dir_ / "nope.pt").string() + files);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("nope.pt does not exist"), std::string::npos);
  r = aefx("predict --model " + (run / "encoder.pt").string() + files);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("needs classifier.pt"), std::string::npos);
  r = aefx("predict --model " + model + " " + (dir_ / "missing.png").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("missing.png"), std::string::npos);
  EXPECT_EQ(lines(r.out), 1u);

  // Interop: plain PyTorch (Debian's python3-torch) loads the files and agrees with C++.
  if (testing::run_command("/usr/bin/python3 -c 'import torch'", nullptr) != 0) {
    GTEST_SKIP() << "python3-torch is not installed: Python interop not checked";
  }
  const auto codes = testing::native_codes(run, data, 16).contiguous();
  testing::write_bytes(dir_ / "codes.f32", std::string(static_cast<const char*>(codes.data_ptr()),
                                                       codes.numel() * sizeof(float)));
  r.code = testing::run_command("/usr/bin/python3 " + std::string(AEFX_SOURCE_DIR) +
                                    "/tools/check_export.py " + run.string() + " " + data +
                                    " --codes " + (dir_ / "codes.f32").string(),
                                &r.out);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_LE(testing::json_number(r.out, "encoder_max_abs_diff"), 1e-5) << r.out;
  EXPECT_NEAR(testing::json_number(r.out, "python_accuracy"), stage_acc, 1e-9) << r.out;
}
#endif

}  // namespace
}  // namespace aefx
