// Faults a real aefx process meets: signals and --resume, a NaN loss, a full disk, an unwritable
// output folder, a damaged resume checkpoint. Each test checks the exit code, the message and
// that earlier outputs were not damaged.
#include <gtest/gtest.h>
#include <signal.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <regex>

#include "aefx/config/config.h"
#include "aefx/dist/dist.h"
#include "aefx/engine/artifacts.h"
#include "aefx/engine/precision.h"
#include "aefx/engine/runner.h"
#include "aefx/metrics/metrics.h"
#include "aefx/stages/stages.h"
#include "aefx/util/json.h"
#include "aefx/util/precision.h"
#include "aefx/util/runtime.h"
#include "test_util.h"

#ifdef AEFX_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

namespace aefx {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

/// Enough steps per epoch (pretrain 32, classify 32) that a signal sent when an epoch's line
/// appears lands inside the next epoch, and few enough that a whole run takes seconds.
const std::vector<std::string> kSets{"pretrain.epochs=3", "pretrain.batch_size=8",
                                     "classify.epochs=40", "classify.batch_size=16",
                                     "classify.dropout=0.2"};

std::string command(const std::string& config, const std::vector<std::string>& extra = {}) {
  std::string cmd = std::string(AEFX_BINARY) + " run " + config;
  for (const auto& s : kSets) cmd += " --set " + s;
  for (const auto& e : extra) cmd += " " + e;
  return cmd;
}

int run(const std::string& cmd, std::string* out) { return testing::run_command(cmd, out); }

/// Every parameter and buffer of the run folder's autoencoder and head, by name.
std::map<std::string, torch::Tensor> weights(const fs::path& run_dir) {
  const engine::RunFolder folder(run_dir);
  const auto cfg = config::load_config(folder.config().string());
  dist::Group alone;
  std::map<std::string, torch::Tensor> all;
  auto ae = engine::load_autoencoder(cfg, folder, torch::kCPU, alone);
  for (const auto& kv : ae->named_parameters()) all["ae." + kv.key()] = kv.value().contiguous();
  for (const auto& kv : ae->named_buffers()) all["ae." + kv.key()] = kv.value().contiguous();
  auto head = engine::load_head(cfg, folder, 10, torch::kCPU);
  for (const auto& kv : head->named_parameters()) all["head." + kv.key()] = kv.value();
  for (const auto& kv : head->named_buffers()) all["head." + kv.key()] = kv.value();
  return all;
}

/// The figures of a run that do not depend on timing: per-epoch losses and accuracies (also as
/// metrics.jsonl lists them: each epoch once), and the test metrics.
std::string figures(const fs::path& run_dir) {
  std::string out;
  const std::regex re("\"(loss|val_mse|val_accuracy|test_accuracy|best_epoch)\": ?([^,}\n]+)");
  const engine::RunFolder folder(run_dir);
  for (const fs::path& f : {folder.pretrain_summary(), folder.classify_summary(), folder.metrics(),
                            folder.metrics_jsonl()}) {
    const std::string text = testing::read_file(f);
    for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it)
      out += (*it)[1].str() + "=" + (*it)[2].str() + " ";
  }
  return out;
}

void expect_same_run(const fs::path& a, const fs::path& b) {
  const auto wa = weights(a), wb = weights(b);
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) EXPECT_TRUE(torch::equal(t, wb.at(name))) << name;
  const auto fa = figures(a);
  EXPECT_FALSE(fa.empty());
  EXPECT_EQ(fa, figures(b));
}

class Robustness : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("aefx-robust");
    testing::write_cifar_binary(dir_->path() / "data", 100, 20);
    config_ = (dir_->path() / "tiny.yaml").string();
    testing::write_bytes(config_,
                         testing::tiny_config_yaml(dir_->path() / "data", dir_->path() / "runs"));
  }
  static void TearDownTestSuite() { delete dir_; }
  /// One uninterrupted reference run shared by the tests that compare against it, made by the
  /// first that asks: ctest runs each test in its own process, and half of them never need it
  /// (a whole run each, 20 s under the sanitizers).
  static fs::path reference() {
    const fs::path dir = dir_->path() / "runs/reference";
    if (!fs::exists(engine::RunFolder(dir).metrics())) {
      std::string out;
      EXPECT_EQ(run(command(config_, {"--set name=reference", "--quiet"}), &out), 0) << out;
    }
    return dir;
  }

  static TempDir* dir_;
  static std::string config_;
};
TempDir* Robustness::dir_ = nullptr;
std::string Robustness::config_;

TEST_F(Robustness, SigintInPretrainSavesProgressAndResumeIsBitIdentical) {
  const std::string name = "--set name=sigint";
  const fs::path run_dir = dir_->path() / "runs/sigint";
  const fs::path state = engine::RunFolder(run_dir).pretrain_state();
  {
    testing::Child child(command(config_, {name}));
    ASSERT_TRUE(child.wait_for_line("pretrain epoch 1/3")) << child.output();
    child.send(SIGINT);
    EXPECT_EQ(child.wait(), 130) << child.output();
    const auto& out = child.output();
    EXPECT_TRUE(std::regex_search(out, std::regex("interrupted by SIGINT during pretrain at epoch "
                                                  "[23]/3 after step [0-9]+/32")))
        << out;
    EXPECT_NE(out.find(state.string()), std::string::npos) << out;
    EXPECT_NE(out.find("--resume"), std::string::npos) << out;
  }
  ASSERT_TRUE(fs::exists(state));
  const std::string saved = testing::read_file(state);
  // `aefx runs` shows where it stopped.
  std::string listed;
  EXPECT_EQ(run(std::string(AEFX_BINARY) + " runs " + (dir_->path() / "runs").string(), &listed),
            0);
  EXPECT_TRUE(std::regex_search(listed, std::regex("\nsigint +[0-9-]+ [0-9:]+ +- \\(pretrain "
                                                   "stopped by SIGINT\\)")))
      << listed;

  // A plain rerun would throw the progress away: refused, and the progress is untouched.
  std::string out;
  EXPECT_EQ(run(command(config_, {name}), &out), 2) << out;
  EXPECT_NE(out.find("unfinished 'pretrain' work (stopped by SIGINT)"), std::string::npos) << out;
  EXPECT_NE(out.find("--restart"), std::string::npos) << out;
  // --resume under another config: refused, naming the key.
  EXPECT_EQ(run(command(config_, {name, "--set pretrain.lr=0.01", "--resume"}), &out), 2) << out;
  EXPECT_NE(out.find("pretrain.lr"), std::string::npos) << out;
  // A damaged checkpoint: a clear error naming it, and the file is left for inspection.
  fs::copy_file(state, dir_->path() / "good.pt");
  fs::resize_file(state, fs::file_size(state) / 2);
  EXPECT_EQ(run(command(config_, {name, "--resume"}), &out), 1) << out;
  EXPECT_NE(out.find("corrupt or truncated"), std::string::npos) << out;
  EXPECT_NE(out.find(state.string()), std::string::npos) << out;
  fs::copy_file(dir_->path() / "good.pt", state, fs::copy_options::overwrite_existing);
  EXPECT_EQ(testing::read_file(state), saved);

  ASSERT_EQ(run(command(config_, {name, "--resume"}), &out), 0) << out;
  EXPECT_NE(out.find("pretrain: resuming from " + state.string()), std::string::npos) << out;
  expect_same_run(reference(), run_dir);
  // Nothing left to resume: a second --resume does nothing and says so.
  EXPECT_EQ(run(command(config_, {name, "--resume"}), &out), 0) << out;
  EXPECT_NE(out.find("nothing to do"), std::string::npos) << out;
}

// The reference ran in what `precision: auto` gives here; the other precision is run here: its
// numbers differ, run.json and the log say which ran, and an interrupted run resumes bit for bit
// in its own precision only.
TEST_F(Robustness, EachPrecisionResumesBitIdenticalAndTheRunSaysWhichRan) {
  const std::string here =
      util::precision_name(engine::compute_dtype(config::Precision::kAuto, torch::kCPU));
  const std::string other = here == "bf16" ? "fp32" : "bf16";
  const std::string precision = "--set precision=" + other;
  ASSERT_TRUE(fs::exists(reference()));
  std::string out;
  ASSERT_EQ(run(command(config_, {"--set name=other-ref", precision}), &out), 0) << out;
  EXPECT_NE(out.find("compute " + other + " (precision: " + other + ")"), std::string::npos) << out;
  const auto record = [&](const std::string& name) {
    return engine::RunRecord::read(engine::RunFolder(dir_->path() / "runs" / name))->precision;
  };
  EXPECT_EQ(record("reference"), here);
  EXPECT_EQ(record("other-ref"), other);
  EXPECT_NE(figures(reference()), figures(dir_->path() / "runs/other-ref"));

  const std::string name = "--set name=other";
  {
    testing::Child child(command(config_, {name, precision}));
    ASSERT_TRUE(child.wait_for_line("pretrain epoch 1/3")) << child.output();
    child.send(SIGINT);
    EXPECT_EQ(child.wait(), 130) << child.output();
  }
  // The run started in the other precision: resuming it in this one is refused, naming the key.
  EXPECT_EQ(run(command(config_, {name, "--set precision=" + here, "--resume"}), &out), 2) << out;
  EXPECT_NE(out.find("precision"), std::string::npos) << out;
  ASSERT_EQ(run(command(config_, {name, precision, "--resume"}), &out), 0) << out;
  expect_same_run(dir_->path() / "runs/other-ref", dir_->path() / "runs/other");
}

// Two runs on one folder would overwrite each other's files: the second is refused (exit 2)
// naming the folder and the process holding it, and the first finishes undisturbed.
TEST_F(Robustness, ASecondRunOnAFolderInUseIsRefused) {
  const std::string name = "--set name=locked";
  const fs::path run_dir = dir_->path() / "runs/locked";
  testing::Child first(command(config_, {name}));
  ASSERT_TRUE(first.wait_for_line("pretrain epoch 1/")) << first.output();
  std::string out;
  EXPECT_EQ(run(command(config_, {name}), &out), 2) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("run folder " + run_dir.string() +
                                                " is in use by another aefx run \\(process "
                                                "[0-9]+\\)")))
      << out;
  EXPECT_EQ(first.wait(), 0) << first.output();
  // Free again once the first run ended.
  EXPECT_EQ(run(command(config_, {name, "--stages evaluate", "--quiet"}), &out), 0) << out;
}

TEST_F(Robustness, SigtermInClassifySavesProgressAndResumeIsBitIdentical) {
  const std::string name = "--set name=sigterm";
  const fs::path run_dir = dir_->path() / "runs/sigterm";
  {
    testing::Child child(command(config_, {name}));
    ASSERT_TRUE(child.wait_for_line("classify epoch 2/40")) << child.output();
    child.send(SIGTERM);
    EXPECT_EQ(child.wait(), 143) << child.output();
    EXPECT_NE(child.output().find("interrupted by SIGTERM during classify"), std::string::npos)
        << child.output();
  }
  EXPECT_EQ(engine::Progress::read(engine::RunFolder(run_dir)).completed,
            std::vector<std::string>{"pretrain"});
  const std::string autoencoder = testing::read_file(engine::RunFolder(run_dir).autoencoder());
  std::string out;
  ASSERT_EQ(run(command(config_, {name, "--resume"}), &out), 0) << out;
  EXPECT_NE(out.find("pretrain: completed in an earlier run, skipped"), std::string::npos) << out;
  EXPECT_NE(out.find("classify: resuming from"), std::string::npos) << out;
  EXPECT_EQ(testing::read_file(engine::RunFolder(run_dir).autoencoder()), autoencoder);
  expect_same_run(reference(), run_dir);
}

TEST_F(Robustness, KilledProcessResumesFromTheLastEpochBitIdentical) {
  // SIGKILL cannot be caught: what is on disk is the last end-of-epoch state, whole.
  const std::string name = "--set name=sigkill";
  const fs::path run_dir = dir_->path() / "runs/sigkill";
  {
    testing::Child child(command(config_, {name}));
    // Killed as soon as epoch 1's state is on disk (the epoch's line comes just before it), so
    // that two epochs' time, not one, separates the kill from the end of the stage.
    ASSERT_TRUE(child.wait_for_line("pretrain epoch 1/3")) << child.output();
    const fs::path state = engine::RunFolder(run_dir).pretrain_state();
    ASSERT_TRUE(testing::wait_until([&] { return fs::exists(state); })) << child.output();
    child.send(SIGKILL);
    EXPECT_EQ(child.wait(), 128 + SIGKILL);
  }
  std::string out;
  EXPECT_EQ(run(command(config_, {name}), &out), 2) << out;
  EXPECT_NE(out.find("unfinished 'pretrain' work (stopped by an unknown cause)"), std::string::npos)
      << out;
  ASSERT_EQ(run(command(config_, {name, "--resume"}), &out), 0) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("pretrain: resuming from .* at epoch [23]/3, "
                                                "step 0/32")))
      << out;
  expect_same_run(reference(), run_dir);
}

TEST_F(Robustness, NanLossStopsNamingEpochAndStepAndKeepsEarlierOutputs) {
  const std::string name = "--set name=nan";
  const fs::path run_dir = dir_->path() / "runs/nan";
  std::string out;
  ASSERT_EQ(run(command(config_, {name, "--quiet"}), &out), 0) << out;
  const std::string autoencoder = testing::read_file(engine::RunFolder(run_dir).autoencoder());
  const std::string metrics = testing::read_file(engine::RunFolder(run_dir).metrics());
  // A learning rate this large overflows the weights within two steps.
  EXPECT_EQ(run(command(config_, {name, "--set pretrain.lr=1e20"}), &out), 1) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("pretrain: the training loss is (NaN|infinite) "
                                                "at epoch 1/3, step [0-9]+/32")))
      << out;
  EXPECT_EQ(out.find("Exception raised from"), std::string::npos) << out;
  EXPECT_EQ(testing::read_file(engine::RunFolder(run_dir).autoencoder()), autoencoder);
  EXPECT_EQ(testing::read_file(engine::RunFolder(run_dir).metrics()), metrics);
  EXPECT_NE(testing::read_file(engine::RunFolder(run_dir).progress()).find("training loss is"),
            std::string::npos);
}

TEST_F(Robustness, FullDiskIsReportedAndEarlierFilesSurvive) {
  const std::string name = "--set name=full";
  const fs::path run_dir = dir_->path() / "runs/full";
  std::string out;
  ASSERT_EQ(run(command(config_, {name, "--quiet"}), &out), 0) << out;
  const std::string autoencoder = testing::read_file(engine::RunFolder(run_dir).autoencoder());
  // A 40 KiB file-size limit: the config and logs fit, the first checkpoint (or, when aefx
  // draws pictures, the first epoch's curves.png) does not, as on a disk that fills up during
  // training.
  EXPECT_EQ(run("bash -c 'ulimit -f 40; exec " + command(config_, {name, "--quiet"}) + "'", &out),
            1)
      << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("cannot write " + run_dir.string() + "/(" +
                                                "checkpoints/pretrain_last.pt|curves.png"
                                                "): File too large")))
      << out;
  EXPECT_EQ(testing::read_file(engine::RunFolder(run_dir).autoencoder()), autoencoder);
  for (const auto& e : fs::recursive_directory_iterator(run_dir))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
}

TEST_F(Robustness, UnwritableOutputFolderIsReportedBeforeAnyWork) {
  testing::write_bytes(dir_->path() / "a_file", "x");
  std::string out;
  EXPECT_EQ(run(command(config_, {"--set output_dir=" + (dir_->path() / "a_file").string()}), &out),
            1);
  EXPECT_NE(out.find("cannot create output folder " + (dir_->path() / "a_file").string()),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("== stage"), std::string::npos) << out;
}

TEST_F(Robustness, DataSetSmallerThanABatchRunsWithAWarningAndValSizeIsChecked) {
  std::string out;
  EXPECT_EQ(run(command(config_, {"--set name=small", "--set pretrain.batch_size=1000",
                                  "--set classify.batch_size=5000", "--stages pretrain,classify"}),
                &out),
            0)
      << out;
  EXPECT_NE(out.find("warning: pretrain: 260 training images are fewer than one batch of 1000"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("warning: classify: 520 codes are fewer than one batch of 5000"),
            std::string::npos)
      << out;
  EXPECT_EQ(run(command(config_, {"--set name=small2", "--set data.val_size=300"}), &out), 2)
      << out;
  EXPECT_NE(out.find("'data.val_size': expected fewer than the 300 training images"),
            std::string::npos)
      << out;
}

TEST_F(Robustness, SignalBeforeOrDuringAShortStageKeepsEarlierStages) {
  // evaluate and export keep no resumable state: a signal stops them between batches or
  // before they start, and the stages already done stay as they were.
  const fs::path copy = dir_->path() / "runs/evalcopy";
  fs::copy(reference(), copy, fs::copy_options::recursive);
  auto cfg = config::load_config((copy / "config.yaml").string());
  cfg.name = "evalcopy";
  const std::string metrics = testing::read_file(engine::RunFolder(copy).metrics());
  util::set_interrupt_signal(SIGINT);
  try {
    engine::run_stages(cfg, {"evaluate"}, stages::builtin_stages());
    FAIL() << "expected Interrupted";
  } catch (const util::Interrupted& e) {
    EXPECT_NE(std::string(e.what()).find("interrupted by SIGINT before stage evaluate; the stages "
                                         "finished before it are kept"),
              std::string::npos)
        << e.what();
  }
  dist::Group alone;
  engine::RunContext ctx{cfg, engine::RunFolder(copy), torch::kCPU, alone};
  try {
    stages::evaluate(ctx);
    FAIL() << "expected Interrupted";
  } catch (const util::Interrupted& e) {
    EXPECT_NE(std::string(e.what()).find("while computing latent codes"), std::string::npos)
        << e.what();
  }
  util::set_interrupt_signal(0);
  EXPECT_EQ(testing::read_file(engine::RunFolder(copy).metrics()), metrics);
}

#ifdef AEFX_HAVE_OPENCV
TEST_F(Robustness, ImageFolderFaultsThroughTheCli) {
  // Two classes of synthetic images, with a text file (skipped), a grey, an RGBA and a
  // larger image (converted and resized) among them.
  const fs::path root = dir_->path() / "folder";
  auto [images, labels] = testing::synthetic_images(60, 2, 32, 5);
  for (const char* sub : {"train/ant", "train/bee", "test/ant", "test/bee"})
    fs::create_directories(root / sub);
  for (int64_t i = 0; i < 60; ++i) {
    const std::string cls = labels[i].item<int64_t>() == 0 ? "ant" : "bee";
    for (const char* split : {"train", "test"}) {
      testing::write_png((root / split / cls / (std::to_string(i) + ".png")).string(), images[i],
                         i % 7 == 0 ? 48 : 32);
    }
  }
  testing::write_bytes(root / "train/ant/notes.txt", "not an image");
  cv::imwrite((root / "train/ant/grey.png").string(), cv::Mat(32, 32, CV_8UC1, cv::Scalar(90)));
  cv::imwrite((root / "train/bee/alpha.png").string(),
              cv::Mat(20, 20, CV_8UC4, cv::Scalar(1, 2, 3, 128)));
  const std::vector<std::string> folder{"--set data.format=image-folder",
                                        "--set data.root=" + root.string(), "--set name=folder",
                                        "--set data.val_size=10"};
  std::string out;
  ASSERT_EQ(run(command(config_, folder), &out), 0) << out;
  EXPECT_NE(out.find("warning: skipped 1 non-image file(s) under " + (root / "train").string()),
            std::string::npos)
      << out;
  const fs::path run_dir = dir_->path() / "runs/folder";
  const std::string autoencoder = testing::read_file(engine::RunFolder(run_dir).autoencoder());
  // A corrupt image: exit 1, the file named, earlier outputs untouched.
  testing::write_bytes(root / "train/bee/broken.png", "\x89PNG but not really");
  EXPECT_EQ(run(command(config_, folder), &out), 1) << out;
  EXPECT_NE(out.find("cannot decode image " + (root / "train/bee/broken.png").string()),
            std::string::npos)
      << out;
  EXPECT_EQ(testing::read_file(engine::RunFolder(run_dir).autoencoder()), autoencoder);
  fs::remove(root / "train/bee/broken.png");
  // A class folder missing from test: named when the test set is read.
  fs::rename(root / "test/bee", root / "bee_aside");
  EXPECT_EQ(run(command(config_, folder) + " --stages evaluate", &out), 1) << out;
  EXPECT_NE(out.find("is missing class folder 'bee' that train has"), std::string::npos) << out;
}
#endif

TEST_F(Robustness, ResumeWithNothingToResumeIsAUsageError) {
  std::string out;
  EXPECT_EQ(run(command(config_, {"--set name=never", "--resume"}), &out), 2) << out;
  EXPECT_NE(out.find("holds no earlier run to resume"), std::string::npos) << out;
  EXPECT_EQ(run(command(config_, {"--set name=never", "--resume", "--restart"}), &out), 2) << out;
}

}  // namespace
}  // namespace aefx
