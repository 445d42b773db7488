// Data-parallel runs of the real aefx binary: `aefx launch --nproc 2` on the loopback address
// with Gloo against a single process, a killed rank, a rank that never comes, and --resume.
#include <gtest/gtest.h>
#include <signal.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <thread>

#include "aefx/dist/dist.h"
#include "aefx/engine/checkpoint.h"
#include "aefx/engine/runner.h"
#include "aefx/models/autoencoder.h"
#include "aefx/models/features.h"
#include "aefx/stages/stages.h"
#include "test_util.h"

namespace aefx {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

/// Deterministic training (no augmentation, noise, masking or dropout), one thread per rank, in
/// fp32: bf16 rounds each rank's half batch differently from the whole batch (7e-4 apart after
/// the head's epochs), which would hide the data-parallel arithmetic these tests check to 1e-5.
const std::string kSets =
    " --set threads=1 --set precision=fp32 --set pretrain.epochs=2 --set pretrain.augment=false "
    "--set pretrain.noise=0 --set pretrain.mask_ratio=0 --set classify.dropout=0";

class Launch : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!dist::has_gloo()) GTEST_SKIP() << "built without Gloo";
    // 200 training images - 40 validation: 5 pretrain steps of 32 and 5 head steps of 64 (with
    // flipped codes) per epoch.
    testing::write_cifar_binary(dir_ / "data", 40, 20);
    config_ = (dir_ / "tiny.yaml").string();
    testing::write_bytes(config_, testing::tiny_config_yaml(dir_ / "data", dir_ / "runs"));
  }
  std::string aefx(const std::string& args) const { return std::string(AEFX_BINARY) + " " + args; }
  fs::path run(const std::string& name) const { return dir_ / "runs" / name; }
  /// The head's weights in a run folder, as one vector.
  torch::Tensor head_weights(const std::string& name) const {
    auto cfg = config::load_config((run(name) / "config.yaml").string());
    models::Head head(models::code_dim(cfg.model, models::code_spec(cfg.model, cfg.classify)),
                      cfg.classify.hidden, cfg.classify.dropout, 10);
    dist::Group alone;
    engine::load_checkpoint(engine::RunFolder(run(name)).head(),
                            {"head", models::head_architecture(cfg, 10)}, *head, "classify", alone);
    std::vector<torch::Tensor> flat;
    for (const auto& p : head->parameters()) flat.push_back(p.detach().reshape(-1));
    return torch::cat(flat);
  }
  TempDir dir_{"aefx-launch"};
  std::string config_;
};

// The tolerance: the head (no BatchNorm, no dropout) on the same frozen encoder follows the same
// global batches, so two ranks differ from one process only by the order of float sums: 1e-5.
// Pretraining uses per-rank BatchNorm (each rank normalises its half batch by its own
// statistics), so its losses differ by design: within 10% after two epochs.
TEST_F(Launch, TwoProcessesMatchOneProcessWithTheSameGlobalBatch) {
  std::string out;
  ASSERT_EQ(testing::run_command(aefx("run " + config_ + kSets + " --set name=one --quiet"), &out),
            0)
      << out;
  ASSERT_EQ(testing::run_command(
                aefx("launch --nproc 2 " + config_ + kSets + " --set name=two --quiet"), &out),
            0)
      << out;
  // aefx printed nothing on any rank (--quiet is also the launcher's); rank 0 wrote the folder.
  EXPECT_EQ(out.find("aefx"), std::string::npos) << out;
  EXPECT_EQ(out.find("rank 1"), std::string::npos) << out;
  const std::string run_json = testing::read_file(run("two") / "run.json");
  EXPECT_EQ(testing::json_number(run_json, "world_size"), 2);
  EXPECT_NE(run_json.find("\"backend\": \"gloo\""), std::string::npos) << run_json;
  const std::string log = testing::read_file(run("two") / "log.txt");
  EXPECT_NE(log.find("rank 0 of 2 (gloo)"), std::string::npos);
  EXPECT_NE(log.find("batch 32 (16 per rank x 2 ranks)"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(run("two") / "classifier.pt"));

  const double mse1 =
      testing::json_number(testing::read_file(run("one") / "pretrain.json"), "val_mse");
  const double mse2 =
      testing::json_number(testing::read_file(run("two") / "pretrain.json"), "val_mse");
  EXPECT_NEAR(mse2 / mse1, 1.0, 0.10) << mse1 << " vs " << mse2;

  // The head alone, on the one-process run's encoder: the data-parallel head equals the
  // single-process head.
  fs::create_directories(run("two-head") / "checkpoints");
  fs::copy_file(engine::RunFolder(run("one")).autoencoder(),
                engine::RunFolder(run("two-head")).autoencoder());
  ASSERT_EQ(testing::run_command(aefx("launch --nproc 2 " + config_ + kSets +
                                      " --set name=two-head --stages classify --quiet"),
                                 &out),
            0)
      << out;
  const auto w1 = head_weights("one"), w2 = head_weights("two-head");
  EXPECT_LT((w1 - w2).abs().max().item<double>(), 1e-5);
  EXPECT_GT(w1.abs().max().item<double>(), 0.01);
  const std::string c1 = testing::read_file(run("one") / "classify.json");
  const std::string c2 = testing::read_file(run("two-head") / "classify.json");
  EXPECT_EQ(testing::json_number(c1, "val_accuracy"), testing::json_number(c2, "val_accuracy"));
  EXPECT_NEAR(testing::json_number(c1, "loss"), testing::json_number(c2, "loss"), 1e-5);
}

TEST_F(Launch, AKilledRankMakesTheOthersExitNonZeroWithinTheTimeout) {
  testing::Child child(aefx("launch --nproc 2 " + config_ + kSets +
                            " --set pretrain.epochs=400 --set distributed.timeout=60 "
                            "--set name=killed --progress lines --set report.pictures=false"));
  ASSERT_TRUE(child.wait_for_line("launch: started")) << child.output();
  std::smatch m;
  const std::string started = child.output();
  ASSERT_TRUE(std::regex_search(started, m, std::regex("rank 1 pid ([0-9]+)"))) << started;
  // Killed in the middle of pretraining.
  ASSERT_TRUE(child.wait_for_line("pretrain epoch 2/400")) << child.output();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(std::stoi(m[1].str()), SIGKILL), 0);
  child.wait();
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string out = child.output();
  // Gloo sees the closed connection at once: far sooner than distributed.timeout.
  EXPECT_LT(seconds, 30) << out;
  EXPECT_NE(out.find("rank 1 (pid " + m[1].str() + ") was killed by signal 9"), std::string::npos)
      << out;
  // Rank 0 notices in whichever collective of its step it was in: the gradients' all-reduce or
  // the agreement on stopping that ends each step.
  EXPECT_TRUE(std::regex_search(
      out, std::regex(
               R"(aefx: rank 0 of 2: (all-reduce|agreeing on stopping) failed \(gloo backend\))")))
      << out;
  EXPECT_NE(out.find("rank 0 (pid"), std::string::npos) << out;
  EXPECT_NE(out.find("exited with status 1"), std::string::npos) << out;
  // Rank 0 recorded the error; its last epoch checkpoint is there to resume from.
  const std::string progress = testing::read_file(run("killed") / "progress.json");
  EXPECT_TRUE(std::regex_search(progress, std::regex("(all-reduce|agreeing on stopping) failed")))
      << progress;
  EXPECT_TRUE(fs::exists(engine::RunFolder(run("killed")).pretrain_state()));
}

TEST_F(Launch, ARankWithoutItsPeersGivesUpAfterTheTimeout) {
  const int port = dist::free_port();
  const auto t0 = std::chrono::steady_clock::now();
  std::string out;
  // Rank 0 of 2 serves the store and waits for rank 1, which never comes.
  const int rc = testing::run_command(
      "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " " +
          aefx("run " + config_ + kSets + " --set distributed.timeout=3 --set name=alone"),
      &out);
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(rc, 1) << out;
  // Well under the 300 s default, with room for a loaded machine under the sanitizers.
  EXPECT_LT(seconds, 120) << out;
  EXPECT_NE(out.find("aefx: rank 0 of 2:"), std::string::npos) << out;
  EXPECT_NE(out.find("distributed.timeout = 3 s"), std::string::npos) << out;
}

TEST_F(Launch, RanksStartedWithDifferentConfigsAreRefused) {
  const std::string vars =
      "env WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(dist::free_port()) +
      " ";
  // Rank 1 with another learning rate and its own (allowed to differ) threads.
  testing::Child rank1(
      vars + "RANK=1 " +
      aefx("run " + config_ + kSets + " --set name=mixed --set pretrain.lr=0.01 --set threads=2"));
  std::string out;
  EXPECT_EQ(
      testing::run_command(
          vars + "RANK=0 " + aefx("run " + config_ + kSets + " --set name=mixed --quiet"), &out),
      1)
      << out;
  EXPECT_EQ(rank1.wait(), 2) << rank1.output();
  EXPECT_NE(rank1.output().find("aefx: rank 1: the config differs from rank 0's: pretrain.lr "
                                "(rank 0: 0.003, here: 0.01); start every rank with the same "
                                "config"),
            std::string::npos)
      << rank1.output();
  EXPECT_EQ(rank1.output().find("threads"), std::string::npos) << rank1.output();
  // Rank 0 learns it when rank 1 leaves, before any training.
  EXPECT_NE(out.find("starting stage pretrain"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(run("mixed") / "pretrain.json"));
}

TEST_F(Launch, InterruptedGroupResumesWithTheSameWorldSizeOnly) {
  const std::string sets = kSets +
                           " --set pretrain.epochs=100 --set name=resumed "
                           "--set report.pictures=false";
  {
    // The child process is the launcher itself (Child execs the command), so the signal
    // reaches this test's launch only, not others that may run at the same time.
    testing::Child child(aefx("launch --nproc 2 " + config_ + sets + " --progress lines"));
    ASSERT_TRUE(child.wait_for_line("launch: started")) << child.output();
    // The whole launch gets SIGINT, as a Ctrl-C on a terminal; the launcher passes it on.
    const fs::path state = engine::RunFolder(run("resumed")).pretrain_state();
    ASSERT_TRUE(testing::wait_until([&] { return fs::exists(state); })) << child.output();
    child.send(SIGINT);
    // Every rank stops after the same step (they agree on the signal), so no rank sees a
    // broken connection: the launch ends with SIGINT's status.
    EXPECT_EQ(child.wait(), 130) << child.output();
    EXPECT_NE(child.output().find("interrupted by SIGINT"), std::string::npos) << child.output();
    EXPECT_EQ(child.output().find("failed"), std::string::npos) << child.output();
  }
  const std::string progress = testing::read_file(run("resumed") / "progress.json");
  EXPECT_EQ(testing::json_number(progress, "world_size"), 2) << progress;
  std::string out;
  EXPECT_EQ(testing::run_command(aefx("run " + config_ + sets + " --resume"), &out), 2) << out;
  EXPECT_NE(out.find("was run by 2 process(es), this run has 1"), std::string::npos) << out;
  ASSERT_EQ(
      testing::run_command(aefx("launch --nproc 2 " + config_ + sets + " --resume --quiet"), &out),
      0)
      << out;
  EXPECT_TRUE(fs::exists(run("resumed") / "classifier.pt"));
  const std::string log = testing::read_file(run("resumed") / "log.txt");
  EXPECT_NE(log.find("pretrain: resuming from"), std::string::npos) << log;
}

}  // namespace
}  // namespace aefx
