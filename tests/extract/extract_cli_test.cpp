// `aefx extract` as a user meets it: exit codes, a killed process resumed, the files read by
// NumPy and scikit-learn.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "aefx/util/json.h"
#include "test_util.h"

namespace aefx {
namespace {
namespace fs = std::filesystem;
using aefx::testing::TempDir;

using testing::aefx;

bool have_sklearn() {
  std::string out;
  return testing::run_command("/usr/bin/python3 -c 'import sklearn, numpy'", &out) == 0;
}

/// A tiny run folder trained and exported on synthetic CIFAR-10 files (dir/data): a linear head.
class ExtractCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("aefx-extract");
    testing::write_cifar_binary(*dir_ / "data", 200, 400);
    testing::write_bytes(*dir_ / "tiny.yaml",
                         testing::tiny_config_yaml(*dir_ / "data", *dir_ / "runs"));
    const auto r = aefx("run " + (*dir_ / "tiny.yaml").string() +
                        " --quiet --set classify.hidden=[] --set classify.epochs=8 "
                        "--set data.limit_train=0 --set data.limit_test=0");
    ASSERT_EQ(r.code, 0) << r.out;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string run_dir() { return (*dir_ / "runs" / "tiny").string(); }
  static std::string data_dir() { return (*dir_ / "data").string(); }
  static TempDir* dir_;
  TempDir out_{"aefx-extract-out"};
};
TempDir* ExtractCli::dir_ = nullptr;

TEST_F(ExtractCli, ExitCodesNameWhatIsWrong) {
  const std::string model = " --model " + run_dir();
  auto r = aefx("extract" + model + " --out " + (out_ / "a").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("no inputs"), std::string::npos) << r.out;
  r = aefx("extract" + model + " --out " + (out_ / "a").string() + " /no/such.png");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("/no/such.png does not exist"), std::string::npos) << r.out;
  fs::create_directories(out_ / "empty");
  r = aefx("extract" + model + " --out " + (out_ / "a").string() + " " + (out_ / "empty").string());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("holds no image file"), std::string::npos) << r.out;
  r = aefx("extract --model " + run_dir() + "/classifier.pt --out " + (out_ / "a").string() +
           " --data " + data_dir());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("needs encoder.pt"), std::string::npos) << r.out;
  r = aefx("extract --model " + (dir_->path() / "tiny.yaml").string() + " --out " +
           (out_ / "a").string() + " --data " + data_dir());
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("not a TorchScript model file"), std::string::npos) << r.out;
  r = aefx("extract" + model + " --out " + (out_ / "b").string() + " --data " + data_dir() +
           " --quiet");
  ASSERT_EQ(r.code, 0) << r.out;
  r = aefx("extract" + model + " --out " + (out_ / "b").string() + " --data " + data_dir());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("exists and is not empty; pass --resume"), std::string::npos) << r.out;
  r = aefx("extract" + model + " --out " + (out_ / "b").string() + " --data " + data_dir() +
           " --resume");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("is complete"), std::string::npos) << r.out;
}

TEST_F(ExtractCli, KilledExtractionResumesToTheSameFiles) {
  // One image per batch: thousands of batches, so that the kill lands in the middle.
  const std::string args =
      " --model " + run_dir() + " --data " + data_dir() + " --split train --batch 1 --quiet --out ";
  ASSERT_EQ(aefx("extract" + args + (out_ / "whole").string()).code, 0);
  const fs::path out = out_ / "killed";
  testing::Child child(std::string(AEFX_BINARY) + " extract" + args + out.string());
  int64_t rows = 0;
  testing::wait_until([&] {
    try {
      rows = util::read_json_file(out / "progress.json").value("rows", int64_t{0});
    } catch (const std::exception&) {
      // not written yet
    }
    return rows >= 50;
  });
  child.send(SIGKILL);
  EXPECT_EQ(child.wait(), 128 + SIGKILL);
  ASSERT_GE(rows, 50) << "the extraction never got going";
  ASSERT_FALSE(fs::exists(out / "meta.json")) << "it finished before the kill: make it longer";
  const auto r = aefx("extract" + args + out.string() + " --resume");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* f : {"features.npy", "index.csv"}) {
    EXPECT_EQ(testing::read_file(out / f), testing::read_file(out_ / "whole" / f)) << f;
  }
  const auto meta = util::read_json_file(out / "meta.json");
  EXPECT_GE(meta["resumed_from"].get<int64_t>(), 50);
  EXPECT_EQ(meta["rows"], 1000);
}

TEST_F(ExtractCli, ScikitLearnOnTheFilesAgreesWithTheLinearHead) {
  if (!have_sklearn()) GTEST_SKIP() << "/usr/bin/python3 lacks sklearn (python3-sklearn)";
  for (const char* split : {"train", "test"}) {
    const auto r = aefx("extract --model " + run_dir() + " --data " + data_dir() + " --split " +
                        split + " --quiet --out " + (out_ / split).string());
    ASSERT_EQ(r.code, 0) << r.out;
  }
  std::string out;
  ASSERT_EQ(testing::run_command("/usr/bin/python3 " + std::string(AEFX_SOURCE_DIR) +
                                     "/tests/extract/interop_sklearn.py " +
                                     (out_ / "train").string() + " " + (out_ / "test").string(),
                                 &out),
            0)
      << out;
  const auto at = out.find("sklearn_accuracy ");
  ASSERT_NE(at, std::string::npos) << out;
  const double sklearn = std::stod(out.substr(at + 17));
  const double head = util::read_json_file(fs::path(run_dir()) / "metrics.json")["test_accuracy"];
  RecordProperty("sklearn_accuracy", std::to_string(sklearn));
  RecordProperty("head_accuracy", std::to_string(head));
  EXPECT_NEAR(sklearn, head, 0.05) << "sklearn " << sklearn << ", aefx's head " << head;
  EXPECT_GT(head, 0.5) << "the synthetic classes are learnable";
  // evaluate's k-NN on the same codes (k 200 of 960 labelled train images).
  const auto metrics = util::read_json_file(fs::path(run_dir()) / "metrics.json");
  EXPECT_EQ(metrics["knn_k"], 200);
  EXPECT_GT(metrics["knn_accuracy"].get<double>(), 0.5);
}

}  // namespace
}  // namespace aefx
