// The aefx executable as a user meets it: exit codes and one-line errors.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#ifdef AEFX_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

#include <filesystem>
#include <regex>
#include <thread>

#include "aefx/util/log.h"
#include "aefx/viz/viz.h"
#include "test_util.h"

namespace aefx {
namespace {
namespace fs = std::filesystem;
using aefx::testing::TempDir;

using testing::aefx;

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
  // One process per call (about 3 s each under the sanitizers): each command runs once.
  const auto help = aefx("--help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("aefx run CONFIG"), std::string::npos);
  const auto v = aefx("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_NE(v.out.find("aefx 0."), std::string::npos);
  // Every subcommand has help with examples.
  for (const char* cmd :
       {"run", "config", "bench", "predict", "extract", "evaluate", "report", "runs", "info"}) {
    const auto h = aefx(std::string(cmd) + " --help");
    EXPECT_EQ(h.code, 0) << cmd;
    EXPECT_NE(h.out.find("usage: aefx " + std::string(cmd)), std::string::npos) << h.out;
    EXPECT_NE(h.out.find("examples:\n  aefx " + std::string(cmd)), std::string::npos) << h.out;
    if (std::string(cmd) == "run") EXPECT_NE(h.out.find("--stages"), std::string::npos) << h.out;
  }
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

// A directory or an empty file as CONFIG is a config error naming it, not a run of defaults.
TEST_F(Cli, ConfigThatIsNotAYamlMappingExitsTwoNamingTheFile) {
  const std::string empty = (dir_ / "empty.yaml").string();
  testing::write_bytes(empty, "");
  for (const std::string& cmd : {"run ", "config ", "bench ", "launch --nproc 1 "}) {
    auto r = aefx(cmd + dir_.path().string());
    EXPECT_EQ(r.code, 2) << cmd << r.out;
    EXPECT_EQ(lines(r.out), 1u) << r.out;
    EXPECT_NE(r.out.find("aefx: config file " + dir_.path().string() + " is a directory"),
              std::string::npos)
        << r.out;
    r = aefx(cmd + empty);
    EXPECT_EQ(r.code, 2) << cmd << r.out;
    EXPECT_EQ(lines(r.out), 1u) << r.out;
    EXPECT_NE(r.out.find("aefx: config file " + empty + " holds no config keys"), std::string::npos)
        << r.out;
  }
  EXPECT_FALSE(fs::exists(dir_ / "runs")) << "nothing ran";
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

/// Renders `html` in headless Chromium and returns the body's data-images-loaded attribute
/// ("loaded/total", set by the page's script once it has loaded), or "" when Chromium is absent.
std::string images_loaded_in_chromium(const fs::path& html, const fs::path& scratch) {
  if (testing::run_command("command -v chromium", nullptr) != 0) return "";
  std::string out;
  testing::run_command("chromium --headless --no-sandbox --disable-gpu --user-data-dir=" +
                           (scratch / "chromium-profile").string() +
                           " --virtual-time-budget=10000 --dump-dom file://" + html.string() +
                           " 2>/dev/null",
                       &out);
  std::smatch m;
  return std::regex_search(out, m, std::regex("data-images-loaded=\"([0-9]+/[0-9]+)\""))
             ? m[1].str()
             : "(no data-images-loaded attribute in the rendered page)";
}

TEST_F(Cli, SmokeConfigRunsAllStages) {
  const std::string smoke = std::string(AEFX_SOURCE_DIR) + "/configs/smoke.yaml";
  auto r = aefx("run " + smoke + " --set data.root=" + (dir_ / "data").string() +
                " --set output_dir=" + (dir_ / "runs").string() + " --set data.val_size=10");
  EXPECT_EQ(r.code, 0) << r.out;
  const fs::path run = dir_ / "runs/smoke";
  EXPECT_TRUE(fs::exists(run / "metrics.json")) << r.out;
  // Not a terminal: plain lines, no carriage returns; the report's path at the end.
  EXPECT_EQ(r.out.find('\r'), std::string::npos);
  EXPECT_NE(r.out.find("report: " + (run / "report.html").string()), std::string::npos) << r.out;
  EXPECT_NE(testing::read_file(run / "log.txt").find("report: "), std::string::npos);

  // report.html: self-contained, every picture embedded and loaded in a real browser.
  const std::string html = testing::read_file(run / "report.html");
  size_t embedded = 0;
  for (size_t at = 0; (at = html.find("src=\"data:image/png;base64,", at)) != std::string::npos;
       ++at)
    ++embedded;
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_NE(html.find("Per-class test accuracy"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"l\">airplane</td>"), std::string::npos);
#ifdef AEFX_HAVE_OPENCV
  EXPECT_EQ(embedded, 4u);
  // The documented sizes (aefx/viz/viz.h): 10 validation images of 32 x 32 at scale 3 in bands of
  // 8, four charts in two rows, 10 classes, and the fixed scatter.
  using namespace aefx::viz;
  const int tile = 3 * 32;
  const std::map<std::string, cv::Size> sizes{
      {"reconstructions.png",
       {kReconLabelWidth + 8 * (tile + 1) + 1 + kReconMargin,
        kReconTitleHeight + 2 * (2 * tile + 3 + kReconCaptionHeight) + kReconBandGap +
            kReconMargin}},
      {"curves.png", {2 * kChartWidth, kChartTitleHeight + 2 * kChartHeight}},
      {"confusion.png",
       {kConfusionLeft + 10 * kConfusionCell + kConfusionRight,
        kConfusionTop + 10 * kConfusionCell + kConfusionBottom}},
      {"latents.png", {kScatterWidth, kScatterHeight}}};
  for (const auto& [png, size] : sizes) {
    const cv::Mat img = cv::imread((run / png).string(), cv::IMREAD_COLOR);
    ASSERT_FALSE(img.empty()) << png;
    EXPECT_EQ(img.size(), size) << png;
    cv::Scalar mean, sd;
    cv::meanStdDev(img, mean, sd);
    EXPECT_GT(sd[0] + sd[1] + sd[2], 10.0) << png << " is blank";
  }
#else
  EXPECT_EQ(embedded, 0u);
#endif
  const std::string loaded = images_loaded_in_chromium(run / "report.html", dir_.path());
  if (loaded.empty()) {
    std::cout << "chromium not installed: report.html not rendered (tools/install.sh --tests "
                 "installs it)\n";
  } else {
    EXPECT_EQ(loaded, std::to_string(embedded) + "/" + std::to_string(embedded));
  }
  // `aefx report` rewrites it from the folder's files.
  fs::remove(run / "report.html");
  const auto rep = aefx("report " + run.string());
  EXPECT_EQ(rep.code, 0) << rep.out;
  EXPECT_TRUE(fs::exists(run / "report.html"));
  EXPECT_EQ(aefx("report " + (dir_ / "data").string()).code, 1) << "not a run folder";

  // `aefx runs` lists the run with its stages and test accuracy.
  const double acc =
      testing::json_number(testing::read_file(run / "metrics.json"), "test_accuracy");
  const auto runs = aefx("runs " + (dir_ / "runs").string());
  EXPECT_EQ(runs.code, 0) << runs.out;
  EXPECT_EQ(runs.out.rfind("NAME", 0), 0u) << runs.out;
  EXPECT_TRUE(
      std::regex_search(runs.out, std::regex("\nsmoke +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{5} +"
                                             "pretrain,classify,evaluate,export +" +
                                             aefx::util::strfmt("%.2f", 100 * acc) + "%")))
      << runs.out;
  const auto json = aefx("runs " + (dir_ / "runs").string() + " --json");
  EXPECT_EQ(json.code, 0);
  EXPECT_NE(json.out.find("\"name\": \"smoke\""), std::string::npos) << json.out;
  EXPECT_EQ(aefx("runs " + (dir_ / "nowhere").string()).code, 1);
  const auto get = aefx("config " + smoke + " --get data.root");
  EXPECT_EQ(get.code, 0);
  EXPECT_EQ(get.out, "data/cifar10\n");
}

TEST_F(Cli, ProgressBarOnATerminalPlainLinesOtherwiseAndQuiet) {
  const std::string base = "run " + config_ + " --stages pretrain --set pretrain.epochs=2";
  // `script` gives aefx a terminal: the progress line is redrawn with carriage returns.
  if (testing::run_command("command -v script", nullptr) == 0) {
    std::string out;
    const int code = testing::run_command(
        "script -qefc '" + std::string(AEFX_BINARY) + " " + base + " --set name=tty' /dev/null",
        &out);
    EXPECT_EQ(code, 0) << out;
    EXPECT_TRUE(std::regex_search(out, std::regex("\rpretrain [12]/2 \\[[#-]+\\] +[0-9]+% [0-9]+ "
                                                  "img/s  loss [0-9.e+-]+  lr [0-9.e+-]+  ETA "
                                                  "[0-9:s]+")))
        << out;
    EXPECT_NE(out.find("pretrain epoch 2/2"), std::string::npos) << "summary lines stay";
  }
  // --progress lines on a pipe, and a run short enough that no line is due: no '\r' anywhere.
  auto r = aefx(base + " --set name=pipe --progress lines");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find('\r'), std::string::npos);
  EXPECT_NE(r.out.find("pretrain epoch 2/2"), std::string::npos);
  EXPECT_EQ(aefx(base + " --progress sometimes").code, 2);
  // --quiet: nothing but warnings and errors.
  r = aefx(base + " --set name=quiet --quiet");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "");
  // --verbose still runs; every line printed also went to log.txt.
  r = aefx(base + " --set name=verbose --verbose");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(testing::read_file(dir_ / "runs/verbose/log.txt").find("pretrain epoch 2/2"),
            std::string::npos);
}

TEST_F(Cli, InfoNamesVersionsDevicesAndThreads) {
  const auto r = aefx("info");
  EXPECT_EQ(r.code, 0) << r.out;
  for (const char* key :
       {"aefx:", "LibTorch:", "CUDA:", "cuDNN:", "OpenCV:", "BLAS:", "threads:", "machine:"})
    EXPECT_NE(("\n" + r.out).find(std::string("\n") + key), std::string::npos) << key << r.out;
  // threads: 0 (the default) means every core.
  EXPECT_NE(r.out.find(std::to_string(std::thread::hardware_concurrency()) + " intra-op"),
            std::string::npos)
      << r.out;
  const auto j = aefx("info --json");
  EXPECT_EQ(j.code, 0);
  EXPECT_NE(j.out.find("\"LibTorch\": \""), std::string::npos) << j.out;
  EXPECT_EQ(aefx("info --bogus").code, 2);
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
  // The batch size bounds memory only: the same accuracy in batches of 7.
  r = aefx("evaluate --model " + model + " --data " + data + " --json --batch 7");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NEAR(testing::json_number(r.out, "test_accuracy"), stage_acc, 1e-9) << r.out;
  r = aefx("evaluate --model " + model + " --data " + data + " --batch 0");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "aefx: --batch expects an integer >= 1, found '0'\n");

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

// The shipped dense config on small grey IDX data; then predict takes colour and grey images
// for the grey model, and evaluate --format idx agrees with the evaluate stage. In fp32: the
// exported model computes in fp32, and a bf16 evaluate stage may flip a borderline image.
TEST_F(Cli, DenseConfigOnIdxDataPredictsColourAndGreyImages) {
  const fs::path idx = dir_ / "idx";
  testing::write_idx(idx, 300, 100, 28);
  const std::string config = std::string(AEFX_SOURCE_DIR) + "/configs/mnist-dense.yaml";
  auto r = aefx("run " + config + " --quiet --set data.root=" + idx.string() +
                " --set output_dir=" + (dir_ / "runs").string() +
                " --set 'data.class_names=[]' --set data.val_size=40 --set pretrain.epochs=2"
                " --set classify.epochs=3 --set device=cpu --set precision=fp32");
  ASSERT_EQ(r.code, 0) << r.out;
  const fs::path run = dir_ / "runs/mnist-dense";
  const std::string model = (run / "classifier.pt").string();
  auto [img, lab] = testing::synthetic_images(4, 10, 28, 5);
  const auto colour = (dir_ / "colour.png").string(), grey = (dir_ / "grey.png").string();
  testing::write_png(colour, img[0], 56);
  const auto g = img[1].to(torch::kFloat).mean(0, true).round().to(torch::kUInt8);
  cv::Mat m(28, 28, CV_8UC1, g.contiguous().data_ptr<uint8_t>());
  ASSERT_TRUE(cv::imwrite(grey, m));
  r = aefx("predict --model " + model + " " + colour + " " + grey + " --top-k 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(lines(r.out), 2u) << r.out;
  r = aefx("evaluate --model " + model + " --data " + idx.string() + " --format idx --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NEAR(testing::json_number(r.out, "test_accuracy"),
              testing::json_number(testing::read_file(run / "metrics.json"), "test_accuracy"), 1e-9)
      << r.out;
  EXPECT_TRUE(fs::exists(run / "baseline.json"));
}
#endif

}  // namespace
}  // namespace aefx
