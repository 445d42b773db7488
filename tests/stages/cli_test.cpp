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
  void SetUp() override {
    testing::write_cifar_binary(dir_ / "data", 20, 20);
    config_ = (dir_ / "tiny.yaml").string();
    testing::write_bytes(config_, testing::tiny_config_yaml(dir_ / "data", dir_ / "runs"));
  }
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

}  // namespace
}  // namespace aefx
