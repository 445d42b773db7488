#include "aefx/stages/stages.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "aefx/config/config.h"
#include "aefx/engine/runner.h"
#include "aefx/models/torchscript.h"
#include "aefx/util/json.h"
#include "aefx/viz/report.h"
#include "test_util.h"

namespace aefx::stages {
namespace {
namespace fs = std::filesystem;
using aefx::testing::TempDir;

config::Config tiny(const TempDir& dir, const std::string& name = "tiny",
                    const std::vector<std::string>& sets = {}) {
  return config::parse_config(testing::tiny_config_yaml(dir / "data", dir / "runs", name), sets,
                              "tiny");
}

/// Grey MNIST-format data through every stage, with a dense and a conv autoencoder, and the
/// raw-pixel baseline: the compression view and the baseline land in metrics.json, the export
/// says it takes one channel.
TEST(EndToEnd, GreyIdxDataWithDenseAndConvModelsAndTheBaseline) {
  TempDir dir;
  testing::write_idx(dir / "idx", 300, 100, 16);
  for (const std::string type : {"dense", "conv"}) {
    SCOPED_TRACE(type);
    const auto cfg =
        tiny(dir, type,
             {"data.format=idx", "data.root=" + (dir / "idx").string(), "data.image_size=16",
              "model.type=" + type, "model.hidden=[32]", "model.code_size=24",
              "model.output_activation=sigmoid", "pretrain.epochs=3", "classify.epochs=10",
              "classify.pool_grids=[4, 2]",  // the class is where the blob is
              "stages=[pretrain, classify, baseline, evaluate, export]"});
    engine::run_stages(cfg, cfg.stages, builtin_stages());
    const fs::path run = dir / "runs" / type;
    const util::Json m = util::read_json_file(run / kMetricsFile);
    EXPECT_GT(m["test_accuracy"].get<double>(), 0.3) << "synthetic classes are easy to tell apart";
    EXPECT_EQ(m["class_names"][0].get<std::string>(), "0");
    const auto& rec = m["reconstruction"];
    const int64_t code_values = type == "dense" ? 24 : 16 * 8 * 8;
    EXPECT_EQ(rec["input_values"].get<int64_t>(), 16 * 16);
    EXPECT_EQ(rec["code_values"].get<int64_t>(), code_values);
    EXPECT_NEAR(rec["compression_ratio"].get<double>(), 256.0 / code_values, 1e-8);
    EXPECT_GT(rec["test_psnr"].get<double>(), 5.0);
    EXPECT_NEAR(rec["test_psnr"].get<double>(), -10 * std::log10(rec["test_mse"].get<double>()),
                1e-6);
    EXPECT_EQ(m["code_dim"].get<int64_t>(), type == "dense" ? 24 : 8 * 16 + 16 * 4);
    EXPECT_EQ(m["baseline"]["input_dim"].get<int64_t>(), 256);
    EXPECT_GT(m["baseline"]["test_accuracy"].get<double>(), 0.3);
    const util::Json p = util::read_json_file(run / kPretrainSummary);
    EXPECT_EQ(p["test_images"].get<int64_t>(), 100);
    const util::Json model = util::read_json_file(run / kModelJson);
    EXPECT_EQ(model["input"]["channels"].get<int64_t>(), 1);
    EXPECT_EQ(model["input"]["color"].get<std::string>(), "grey");
    EXPECT_EQ(model["model_type"].get<std::string>(), type);
    models::ExportedClassifier clf((run / "classifier.pt").string());
    EXPECT_EQ(clf.channels(), 1);
    // The native models read back from the run folder are the grey ones it trained.
    engine::RunContext ctx{cfg, run, torch::kCPU};
    auto ae = load_autoencoder(ctx);
    EXPECT_EQ(ae->channels(), 1);
    EXPECT_EQ(ae->mean.numel(), 1);
    // report.html shows the compression view and the baseline next to the accuracy.
    const auto html = testing::read_file(viz::write_report(run));
    EXPECT_NE(html.find("256 values from " + std::to_string(code_values)), std::string::npos);
    EXPECT_NE(html.find("raw-pixel baseline: the same head on 256 pixels"), std::string::npos);
  }
  const auto sets = [&](const std::string& name, const std::string& extra) {
    return tiny(dir, name,
                {"data.format=idx", "data.root=" + (dir / "idx").string(), "data.image_size=16",
                 "model.type=dense", "model.hidden=[32]", "model.code_size=24",
                 "model.output_activation=sigmoid", "pretrain.epochs=3", "classify.epochs=10",
                 "classify.pool_grids=[4, 2]", extra});
  };
  // Other head settings: the dense run's baseline.json is stale, and evaluate does not report it.
  const auto changed = sets("dense", "classify.lr=0.01");
  engine::run_stages(changed, {"evaluate"}, builtin_stages());
  EXPECT_TRUE(util::read_json_file(dir / "runs/dense" / kMetricsFile)["baseline"].is_null());
  // The baseline alone needs no other stage.
  const auto alone = sets("alone", "stages=[baseline]");
  engine::run_stages(alone, alone.stages, builtin_stages());
  EXPECT_TRUE(fs::exists(dir / "runs/alone" / kBaselineSummary));
  EXPECT_FALSE(fs::exists(dir / "runs/alone" / kAutoencoderFile));
}

TEST(EndToEnd, AllStagesOnSyntheticData) {
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 80, 100);
  const auto cfg = tiny(dir);
  const auto times = engine::run_stages(cfg, cfg.stages, builtin_stages());
  ASSERT_EQ(times.size(), 4u);
  const fs::path run = dir / "runs/tiny";
  for (const char* f : {"config.yaml", "log.txt", kAutoencoderFile, kHeadFile, kPretrainSummary,
                        kClassifySummary, kMetricsFile, kPretrainCheckpoint}) {
    EXPECT_TRUE(fs::exists(run / f)) << f;
  }
  const util::Json m = util::read_json_file(run / kMetricsFile);
  const double acc = m["test_accuracy"].get<double>();
  EXPECT_GT(acc, 0.3) << "synthetic classes are easy to tell apart";
  EXPECT_LE(acc, 1.0);
  EXPECT_EQ(m["test_images"].get<int64_t>(), 100);
  EXPECT_EQ(m["class_names"].size(), 10u);
  EXPECT_EQ(m["per_class_accuracy"].size(), 10u);
  EXPECT_EQ(m["confusion_matrix"].size(), 10u);
  int64_t total = 0;
  for (const auto& row : m["confusion_matrix"]) {
    for (const auto& v : row) total += v.get<int64_t>();
  }
  EXPECT_EQ(total, 100);
  EXPECT_GT(m["timings"]["pretrain_seconds"].get<double>(), 0.0);
  // The resolved config in the run folder reproduces the run's config.
  EXPECT_EQ(config::to_yaml(config::load_config((run / "config.yaml").string())),
            config::to_yaml(cfg));

  // run.json traces the run to its code and machine.
  const util::Json r = util::read_json_file(run / engine::kRunFile);
  EXPECT_EQ(r["stages"].size(), 4u);
  EXPECT_GT(r["wall_seconds"].get<double>(), r["stages"]["pretrain"].get<double>());
  EXPECT_FALSE(r["git_commit"].get<std::string>().empty());
  EXPECT_GE(r["machine"]["logical_cores"].get<int64_t>(), 1);
  EXPECT_EQ(r["seed"].get<int64_t>(), cfg.seed);

  // Per epoch: one metrics.jsonl record per epoch of each stage, the same rows in metrics.csv.
  const metrics::EpochLog log(run);
  ASSERT_EQ(log.of("pretrain").size(), static_cast<size_t>(cfg.pretrain.epochs));
  ASSERT_EQ(log.of("classify").size(), static_cast<size_t>(cfg.classify.epochs));
  for (const auto& e : log.records()) {
    EXPECT_TRUE(std::isfinite(e.loss) && std::isfinite(e.lr) && std::isfinite(e.seconds))
        << e.stage;
    EXPECT_GT(e.images_per_second, 0) << e.stage;
    EXPECT_TRUE(e.stage == "pretrain" ? std::isfinite(e.val_psnr) : std::isfinite(e.val_accuracy));
  }
  EXPECT_EQ(
      log.of("classify").back().val_accuracy,
      util::read_json_file(run / kClassifySummary)["history"][2]["val_accuracy"].get<double>());
  const std::string csv = testing::read_file(run / metrics::EpochLog::kCsvFile);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'),
            1 + cfg.pretrain.epochs + cfg.classify.epochs);
  // log.txt: the lines printed, the environment and the resolved config.
  const std::string text = testing::read_file(run / "log.txt");
  for (const char* s : {"== stage pretrain", "LibTorch: ", "BLAS: ", "== config (resolved)",
                        "pretrain epoch 1/1", "evaluate: test accuracy"})
    EXPECT_NE(text.find(s), std::string::npos) << s;
  EXPECT_NE(text.find(config::to_yaml(cfg)), std::string::npos);
  // The pictures, when aefx has OpenCV to draw them.
  for (const char* f : {kReconstructionsPng, kCurvesPng, kConfusionPng, kLatentsPng}) {
#ifdef AEFX_HAVE_OPENCV
    EXPECT_GT(fs::file_size(run / f), 1000u) << f;
#else
    EXPECT_FALSE(fs::exists(run / f)) << f;
#endif
  }

  // classify + evaluate alone reuse the pretrained encoder, and give the same result.
  const auto again = engine::run_stages(cfg, {"classify", "evaluate"}, builtin_stages());
  EXPECT_EQ(util::read_json_file(run / kMetricsFile)["test_accuracy"].get<double>(), acc);

  // A head trained on other codes is refused, even at the same code length (max vs avg).
  try {
    engine::run_stages(tiny(dir, "tiny", {"classify.pooling=max"}), {"evaluate"}, builtin_stages());
    FAIL() << "expected a head mismatch";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("pooling=max"), std::string::npos) << msg;
    EXPECT_NE(msg.find("head.pt"), std::string::npos) << msg;
  }
}

TEST(Pca, FindsTheDirectionsOfLargestVariance) {
  // Codes spread 10x more along (1, 1, 0, ...) than along (0, 0, 1, 0, ...), and barely along
  // the rest: PC1 is the first direction, PC2 the second, their shares 100 : 1.
  torch::manual_seed(3);
  const int64_t n = 4000, d = 40;
  auto a = torch::randn({n, 1}, torch::kDouble) * 10, b = torch::randn({n, 1}, torch::kDouble);
  auto u = torch::zeros({1, d}, torch::kDouble), v = torch::zeros({1, d}, torch::kDouble);
  u[0][0] = u[0][1] = 1 / std::sqrt(2.0);
  v[0][2] = 1;
  auto codes = a.mm(u) + b.mm(v) + 0.01 * torch::randn({n, d}, torch::kDouble) + 5;
  auto [proj, share] = pca_2d(codes.to(torch::kFloat));
  ASSERT_EQ(proj.sizes(), (std::vector<int64_t>{n, 2}));
  // Each component equals its source up to sign.
  auto corr = [](const torch::Tensor& x, const torch::Tensor& y) {
    auto xc = x - x.mean(), yc = y - y.mean();
    return std::abs((xc * yc).sum().item<double>() /
                    std::sqrt((xc * xc).sum().item<double>() * (yc * yc).sum().item<double>()));
  };
  EXPECT_GT(corr(proj.select(1, 0), a.squeeze(1)), 0.999);
  EXPECT_GT(corr(proj.select(1, 1), b.squeeze(1)), 0.99);
  EXPECT_NEAR(share[0] / share[1], 100, 15);
  EXPECT_GT(share[0] + share[1], 0.99);
}

TEST(Pretrain, ZeroEpochsKeepsRandomWeightsAndCalibratesBatchNorm) {
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 60, 10);
  const auto cfg = tiny(dir, "random", {"pretrain.epochs=0"});
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  const models::Autoencoder fresh(cfg.model, 3,
                                  cfg.data.image_size);  // the same seed: the same initial weights
  engine::run_stages(cfg, {"pretrain"}, builtin_stages());
  const fs::path run = dir / "runs/random";
  auto saved = load_autoencoder({cfg, run, torch::kCPU});
  const auto a = fresh->named_parameters(), b = saved->named_parameters();
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
  // The running statistics are no longer the initial 0 / 1.
  int norms = 0;
  for (const auto& m : saved->modules(false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2dImpl>()) {
      EXPECT_GT(bn->running_mean.abs().sum().item<double>(), 0.0);
      EXPECT_FALSE(torch::allclose(bn->running_var, torch::ones_like(bn->running_var)));
      EXPECT_EQ(bn->options.momentum().value(), 0.1);
      ++norms;
    }
  }
  EXPECT_GT(norms, 0);
  const util::Json p = util::read_json_file(run / kPretrainSummary);
  EXPECT_EQ(p["epochs"].get<int64_t>(), 0);
  EXPECT_GT(p["val_psnr"].get<double>(), 0.0);
}

TEST(EndToEnd, ClassifyBeforePretrainNamesMissingFile) {
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 20, 10);
  const auto cfg = tiny(dir, "fresh");
  try {
    engine::run_stages(cfg, {"classify"}, builtin_stages());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("autoencoder.pt"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'pretrain' stage"), std::string::npos) << msg;
  }
}

TEST(Codes, FlippedRowsFollowThePlainOnesAndEmptyInputGivesNoRows) {
  torch::manual_seed(0);
  TempDir dir;
  const auto cfg = tiny(dir);
  models::Autoencoder ae(cfg.model, 3, cfg.data.image_size);
  freeze(ae);
  auto [img, lab] = testing::synthetic_images(10, 10, 32, 3);
  const auto& grids = cfg.classify.pool_grids;
  const auto both = compute_codes(ae, img, grids, 4, torch::kCPU, /*with_flips=*/true);
  const auto plain = compute_codes(ae, img, grids, 3, torch::kCPU);
  const auto mirrored = compute_codes(ae, img.flip({3}), grids, 10, torch::kCPU);
  const int64_t d = models::code_dim(cfg.model, grids);
  ASSERT_EQ(both.sizes(), (std::vector<int64_t>{20, d}));
  EXPECT_TRUE(torch::allclose(both.narrow(0, 0, 10), plain, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(both.narrow(0, 10, 10), mirrored, 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(plain, mirrored, 1e-3, 1e-3));
  const auto none = compute_codes(ae, img.narrow(0, 0, 0), grids, 4, torch::kCPU);
  EXPECT_EQ(none.sizes(), (std::vector<int64_t>{0, d}));
}

TEST(FrozenEncoder, BitIdenticalAfterHeadTraining) {
  torch::manual_seed(0);
  TempDir dir;
  const auto cfg = tiny(dir);
  models::Autoencoder ae(cfg.model, 3, cfg.data.image_size);
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
  auto r = train_head(ae, train, val, cfg.classify, torch::kCPU);
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
}

TEST(Cuda, EndToEndOnGpu) {
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: CUDA path runs on the GPU machine";
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 80, 100);
  const auto cfg = tiny(dir, "cuda", {"device=cuda"});
  engine::run_stages(cfg, cfg.stages, builtin_stages());
  const util::Json m = util::read_json_file(dir / "runs/cuda" / kMetricsFile);
  EXPECT_GT(m["test_accuracy"].get<double>(), 0.3);
  EXPECT_EQ(m["device"].get<std::string>(), "cuda:0");
}

}  // namespace
}  // namespace aefx::stages
