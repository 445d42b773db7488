// tools/results.py (the seeds and ablation runs behind docs/results.md) on tiny
// synthetic data: every run it reports is recorded, and the summary agrees with the runs.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <string>
#include <vector>

#include "aefx/util/json.h"
#include "test_util.h"

namespace aefx {
namespace {
namespace fs = std::filesystem;
using aefx::testing::TempDir;

class ResultsTool : public ::testing::Test {
 protected:
  void SetUp() override { config_ = testing::write_tiny_setup(dir_); }

  int run(const std::string& args, std::string* out) {
    return testing::run_command("/usr/bin/python3 " + std::string(AEFX_SOURCE_DIR) +
                                    "/tools/results.py " + args + " --aefx " + AEFX_BINARY +
                                    " --runs " + (dir_ / "runs").string() + " --results " +
                                    (dir_ / "results").string(),
                                out);
  }

  TempDir dir_;
  std::string config_;
};

TEST_F(ResultsTool, SeedsRecordEveryRunAndSummarise) {
  std::string out;
  ASSERT_EQ(run("seeds " + config_ + " --seeds 0,1 --set classify.pooling=avgmax", &out), 0) << out;
  const fs::path res = dir_ / "results/tiny";
  double sum = 0;
  for (const char* seed : {"seed0", "seed1"}) {
    for (const char* f : {"metrics.json", "config.yaml", "run.json", "pretrain.json"}) {
      EXPECT_TRUE(fs::exists(res / seed / f)) << seed << "/" << f;
    }
    sum += util::read_json_file(res / seed / "metrics.json")["test_accuracy"].get<double>();
    // The recorded config is the run's: its seed and the --set override.
    const YAML::Node c = YAML::LoadFile((res / seed / "config.yaml").string());
    EXPECT_EQ("seed" + c["seed"].as<std::string>(), seed);
    EXPECT_EQ(c["classify"]["pooling"].as<std::string>(), "avgmax");
  }
  const util::Json s = util::read_json_file(res / "summary.json");
  EXPECT_NEAR(s["test_accuracy"]["mean"].get<double>(), sum / 2, 1e-9);
  EXPECT_EQ(s["test_accuracy"]["n"].get<int>(), 2);
  EXPECT_LE(s["test_accuracy"]["min"].get<double>(), s["test_accuracy"]["max"].get<double>());
  EXPECT_FALSE(s["git_commit"].get<std::string>().empty());
  EXPECT_TRUE(s["machine"].contains("cpu"));

  ASSERT_EQ(run("table", &out), 0) << out;
  EXPECT_NE(out.find("tiny.yaml"), std::string::npos) << out;
}

TEST_F(ResultsTool, LabelsTableComparesTheThreeFeaturesPerLabelCountAndMergesSeeds) {
  std::string out;
  ASSERT_EQ(run("labels " + config_ + " --seeds 0 --labels 3,0", &out), 0) << out;
  const fs::path file = dir_ / "results/labels-tiny.json";
  auto a = util::read_json_file(file);
  ASSERT_EQ(a["runs"].size(), 6u) << "2 label counts x trained, untrained, pixels";
  for (const auto& r : a["runs"]) {
    EXPECT_GE(r["linear_test_accuracy"].get<double>(), 0.0);
    EXPECT_LE(r["knn_test_accuracy"].get<double>(), 1.0);
  }
  // The head of the 3-labels row learnt from 3 images per class, linear.
  const YAML::Node c =
      YAML::LoadFile((dir_ / "runs/tiny-labels-seed0-trained-3/config.yaml").string());
  EXPECT_EQ(c["classify"]["labels_per_class"].as<int>(), 3);
  EXPECT_EQ(c["classify"]["hidden"].size(), 0u);
  // Another seed with --resume adds its rows; the first seed's are kept, not rerun.
  ASSERT_EQ(run("labels " + config_ + " --seeds 1 --labels 3 --resume", &out), 0) << out;
  a = util::read_json_file(file);
  EXPECT_EQ(a["runs"].size(), 9u);
  EXPECT_EQ(a["table"][0]["seeds"], util::Json::parse("[0, 1]"));
  EXPECT_EQ(a["table"][0]["linear"]["n"], 2);
  ASSERT_EQ(run("table", &out), 0) << out;
  EXPECT_NE(out.find("Label efficiency"), std::string::npos) << out;
}

TEST_F(ResultsTool, AblationChangesOneThingPerRowOnValidationOnly) {
  std::string out;
  ASSERT_EQ(run("ablation " + config_, &out), 0) << out;
  const util::Json a = util::read_json_file(dir_ / "results/ablation-tiny.json");
  ASSERT_EQ(a["rows"].size(), 11u);
  int references = 0;
  for (const auto& r : a["rows"]) {
    const double acc = r["val_accuracy"].get<double>();
    EXPECT_TRUE(acc >= 0 && acc <= 1) << r["label"];
    // tiny.yaml pools grids [2, 1] over widths [8, 16]: 8 * 4 + 16 = 48 values.
    if (r["label"].get<std::string>() == "MLP (as shipped)") {
      EXPECT_EQ(r["code_dim"].get<int>(), 48);
      ++references;
    }
  }
  EXPECT_EQ(references, 1);
  // Single-scale keeps the last stage's 16 values; the linear head sees the reference's codes.
  for (const auto& r : a["rows"]) {
    const auto label = r["label"].get<std::string>();
    if (label.rfind("single-scale", 0) == 0) EXPECT_EQ(r["code_dim"].get<int>(), 16);
    if (label == "avgmax pooling of each grid cell") EXPECT_EQ(r["code_dim"].get<int>(), 96);
    if (label == "linear") {
      EXPECT_EQ(r["code_dim"].get<int>(), 48);
      EXPECT_EQ(r["overrides"][0].get<std::string>(), "classify.hidden=[]");
    }
  }
  // Nothing of the test set was used: no ablation run has a metrics.json.
  for (const auto& e : fs::directory_iterator(dir_ / "runs")) {
    EXPECT_FALSE(fs::exists(e.path() / "metrics.json")) << e.path();
  }
  ASSERT_EQ(run("table", &out), 0) << out;
  EXPECT_NE(out.find("random frozen encoder"), std::string::npos) << out;
}

TEST_F(ResultsTool, AblationReusesTheSeedRunAsReferenceAndMeasuresTheStemRows) {
  std::string out;
  const std::string stem = " --set model.whiten_patch=3";
  ASSERT_EQ(run("seeds " + config_ + " --seeds 0" + stem, &out), 0) << out;
  const fs::path ref = dir_ / "runs/tiny-seed0";
  const auto trained = fs::last_write_time(ref / "checkpoints/autoencoder.pt");
  const auto classified = fs::last_write_time(ref / "classify.json");
  ASSERT_EQ(run("ablation " + config_ + " --rows untrained,no-stem --resume" + stem, &out), 0)
      << out;
  EXPECT_NE(out.find("nothing to do"), std::string::npos) << out;
  EXPECT_EQ(fs::last_write_time(ref / "checkpoints/autoencoder.pt"), trained);
  EXPECT_EQ(fs::last_write_time(ref / "classify.json"), classified);
  const util::Json a = util::read_json_file(dir_ / "results/ablation-tiny.json");
  std::vector<std::string> labels;
  for (const auto& r : a["rows"]) labels.push_back(r["label"].get<std::string>());
  EXPECT_EQ(labels, (std::vector<std::string>{"none: random frozen encoder (pretrain.epochs 0)",
                                              "masked 0.25 + denoising 0.05 (as shipped)",
                                              "no whitening stem (model.whiten_patch 0)",
                                              "3x3 whitening stem (as shipped)"}));
  EXPECT_EQ(a["rows"][1]["val_accuracy"].get<double>(),
            util::read_json_file(ref / "classify.json")["val_accuracy"].get<double>());
  EXPECT_NE(run("ablation " + config_ + " --rows bogus", &out), 0);
  EXPECT_NE(out.find("unknown row bogus"), std::string::npos) << out;
  EXPECT_NE(run("ablation " + config_ + " --rows no-stem", &out), 0);
  EXPECT_NE(out.find("model.whiten_patch > 0"), std::string::npos) << out;
}

}  // namespace
}  // namespace aefx
