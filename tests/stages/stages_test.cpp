#include "aefx/stages/stages.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "aefx/config/config.h"
#include "aefx/data/dataset.h"
#include "aefx/dist/dist.h"
#include "aefx/engine/artifacts.h"
#include "aefx/engine/pretrainer.h"
#include "aefx/engine/runner.h"
#include "aefx/metrics/metrics.h"
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
    const util::Json m = util::read_json_file(engine::RunFolder(run).metrics());
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
    const util::Json p = util::read_json_file(engine::RunFolder(run).pretrain_summary());
    EXPECT_EQ(p["test_images"].get<int64_t>(), 100);
    const util::Json model = util::read_json_file(engine::RunFolder(run).model_json());
    EXPECT_EQ(model["input"]["channels"].get<int64_t>(), 1);
    EXPECT_EQ(model["input"]["color"].get<std::string>(), "grey");
    EXPECT_EQ(model["model_type"].get<std::string>(), type);
    models::ExportedClassifier clf((run / "classifier.pt").string());
    EXPECT_EQ(clf.channels(), 1);
    // The native models read back from the run folder are the grey ones it trained.
    dist::Group alone;
    auto ae = engine::load_autoencoder(cfg, engine::RunFolder(run), torch::kCPU, alone);
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
  EXPECT_TRUE(
      util::read_json_file(engine::RunFolder(dir / "runs/dense").metrics())["baseline"].is_null());
  // The baseline alone needs no other stage.
  const auto alone = sets("alone", "stages=[baseline]");
  engine::run_stages(alone, alone.stages, builtin_stages());
  EXPECT_TRUE(fs::exists(engine::RunFolder(dir / "runs/alone").baseline_summary()));
  EXPECT_FALSE(fs::exists(engine::RunFolder(dir / "runs/alone").autoencoder()));
}

TEST(EndToEnd, AllStagesOnSyntheticData) {
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 80, 100);
  const auto cfg = tiny(dir);
  const auto times = engine::run_stages(cfg, cfg.stages, builtin_stages());
  ASSERT_EQ(times.size(), 4u);
  const fs::path run = dir / "runs/tiny";
  const engine::RunFolder folder(run);
  for (const fs::path& f : {folder.config(), folder.log(), folder.autoencoder(), folder.head(),
                            folder.pretrain_summary(), folder.classify_summary(), folder.metrics(),
                            folder.pretrain_state()}) {
    EXPECT_TRUE(fs::exists(f)) << f;
  }
  const util::Json m = util::read_json_file(engine::RunFolder(run).metrics());
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
  const util::Json r = util::read_json_file(engine::RunFolder(run).run_record());
  EXPECT_EQ(r["stages"].size(), 4u);
  EXPECT_GT(r["wall_seconds"].get<double>(), r["stages"]["pretrain"].get<double>());
  EXPECT_FALSE(r["git_commit"].get<std::string>().empty());
  EXPECT_GE(r["machine"]["logical_cores"].get<int64_t>(), 1);
  EXPECT_EQ(r["seed"].get<int64_t>(), cfg.seed);

  // Per epoch: one metrics.jsonl record per epoch of each stage, the same rows in metrics.csv.
  const metrics::EpochLog log(folder.metrics_jsonl(), folder.metrics_csv());
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
      util::read_json_file(engine::RunFolder(run).classify_summary())["history"][2]["val_accuracy"]
          .get<double>());
  const std::string csv = testing::read_file(folder.metrics_csv());
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'),
            1 + cfg.pretrain.epochs + cfg.classify.epochs);
  // log.txt: the lines printed, the environment and the resolved config.
  const std::string text = testing::read_file(run / "log.txt");
  for (const char* s : {"== stage pretrain", "LibTorch: ", "BLAS: ", "== config (resolved)",
                        "pretrain epoch 1/1", "evaluate: test accuracy"})
    EXPECT_NE(text.find(s), std::string::npos) << s;
  EXPECT_NE(text.find(config::to_yaml(cfg)), std::string::npos);
  // The pictures, when aefx has OpenCV to draw them.
  for (const fs::path& f : {folder.reconstructions_png(), folder.curves_png(),
                            folder.confusion_png(), folder.latents_png()}) {
#ifdef AEFX_HAVE_OPENCV
    EXPECT_GT(fs::file_size(f), 1000u) << f;
#else
    EXPECT_FALSE(fs::exists(f)) << f;
#endif
  }

  // classify + evaluate alone reuse the pretrained encoder, and give the same result.
  const auto again = engine::run_stages(cfg, {"classify", "evaluate"}, builtin_stages());
  EXPECT_EQ(util::read_json_file(engine::RunFolder(run).metrics())["test_accuracy"].get<double>(),
            acc);

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

TEST(Pretrain, ZeroEpochsKeepsRandomWeightsAndCalibratesBatchNorm) {
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 60, 10);
  const auto cfg = tiny(dir, "random", {"pretrain.epochs=0"});
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  const models::Autoencoder fresh(cfg.model, 3,
                                  cfg.data.image_size);  // the same seed: the same initial weights
  engine::run_stages(cfg, {"pretrain"}, builtin_stages());
  const fs::path run = dir / "runs/random";
  dist::Group alone;
  auto saved = engine::load_autoencoder(cfg, engine::RunFolder(run), torch::kCPU, alone);
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
  const util::Json p = util::read_json_file(engine::RunFolder(run).pretrain_summary());
  EXPECT_EQ(p["epochs"].get<int64_t>(), 0);
  EXPECT_GT(p["val_psnr"].get<double>(), 0.0);
  const auto log = testing::read_file(engine::RunFolder(run).log());
  EXPECT_NE(log.find("keeps its random weights; BatchNorm statistics from "), std::string::npos)
      << log;
}

/// A whitening stem is fitted to the training images, saved with the autoencoder (the untrained
/// control gets the same one), and carried by the exported TorchScript, which takes raw images.
TEST(EndToEnd, WhiteningStemIsFittedSavedAndExported) {
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 80, 20);
  const auto cfg = tiny(dir, "whitened", {"model.whiten_patch=3", "classify.epochs=1"});
  engine::run_stages(cfg, cfg.stages, builtin_stages());
  const engine::RunFolder folder(dir / "runs/whitened");
  dist::Group alone;
  auto saved = engine::load_autoencoder(cfg, folder, torch::kCPU, alone);
  ASSERT_TRUE(saved->has_stem());
  // The stem fitted again from the same training images, outside the stage.
  models::Autoencoder fresh(cfg.model, 3, cfg.data.image_size);
  const auto train = data::load_train_val(cfg).first;
  auto [mean, std] = data::channel_stats(train.images);
  fresh->set_normalization(mean, std);
  engine::fit_stem(*fresh, data::ImageRows(train.images));
  EXPECT_TRUE(torch::equal(saved->whiten, fresh->whiten));
  EXPECT_TRUE(torch::equal(saved->unwhiten, fresh->unwhiten));
  EXPECT_FALSE(torch::allclose(fresh->whiten, models::Autoencoder(cfg.model, 3, 16)->whiten))
      << "the stem was never fitted";
  // encoder.pt and autoencoder.pt take raw images and run the stem.
  torch::NoGradGuard no_grad;
  saved->eval();
  auto x = torch::rand({5, 3, cfg.data.image_size, cfg.data.image_size});
  auto codes =
      models::pool_codes(saved->encode(saved->normalize(x)), saved->code_spec(cfg.classify));
  auto encoder = torch::jit::load(folder.encoder_export().string());
  EXPECT_LE((encoder.forward({x}).toTensor() - codes).abs().max().item<double>(), 1e-4);
  auto recon = saved->to_images(saved->forward(saved->normalize(x))).clamp(0, 1);
  auto autoencoder = torch::jit::load(folder.autoencoder_export().string());
  EXPECT_LE((autoencoder.forward({x}).toTensor() - recon).abs().max().item<double>(), 1e-4);
  // The random-encoder control (pretrain.epochs 0) has the same stem.
  const auto control = tiny(dir, "control", {"model.whiten_patch=3", "pretrain.epochs=0"});
  engine::run_stages(control, {"pretrain"}, builtin_stages());
  auto random = engine::load_autoencoder(control, engine::RunFolder(dir / "runs/control"),
                                         torch::kCPU, alone);
  EXPECT_TRUE(torch::equal(random->whiten, saved->whiten));
}

/// The patch dictionary through every stage: pretrain.epoch_images limits what each epoch trains
/// on, the atoms move (the random control keeps its initial ones), and the exports, which take
/// raw images, equal the native model.
TEST(EndToEnd, PatchDictionaryTrainsOnEpochImagesAndExports) {
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 80, 20);
  const std::vector<std::string> patch = {"model.type=patch",      "model.whiten_patch=5",
                                          "model.atoms=12",        "classify.pool_grids=[2]",
                                          "pretrain.batch_size=8", "pretrain.mask_ratio=0",
                                          "pretrain.noise=0",      "classify.epochs=1"};
  auto sets = patch;
  sets.insert(sets.end(),
              {"pretrain.epochs=2", "pretrain.epoch_images=20", "classify.augmented_copies=1"});
  const auto cfg = tiny(dir, "patch", sets);
  engine::run_stages(cfg, cfg.stages, builtin_stages());
  const engine::RunFolder folder(dir / "runs/patch");
  // The head learnt from the 260 training images, their mirror images and one augmented copy.
  EXPECT_NE(testing::read_file(folder.log()).find("classify: 780 codes of 96 values"),
            std::string::npos)
      << testing::read_file(folder.log());
  const auto summary = engine::PretrainSummary::read(folder);
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->epoch_images, 16);        // 20 images, in whole batches of 8
  EXPECT_EQ(summary->train_images, 300 - 40);  // limit_train 300 less val_size 40
  EXPECT_EQ(summary->history.size(), 2u);
  dist::Group alone;
  auto saved = engine::load_autoencoder(cfg, folder, torch::kCPU, alone);
  auto sets0 = patch;
  sets0.push_back("pretrain.epochs=0");
  const auto control = tiny(dir, "control", sets0);
  torch::manual_seed(static_cast<uint64_t>(control.seed));
  const models::Autoencoder fresh(control.model, 3, control.data.image_size);
  engine::run_stages(control, {"pretrain"}, builtin_stages());
  auto random = engine::load_autoencoder(control, engine::RunFolder(dir / "runs/control"),
                                         torch::kCPU, alone);
  const auto atoms = [](const models::Autoencoder& ae) {
    return ae->named_parameters()["encoder.atoms"];
  };
  EXPECT_TRUE(torch::equal(atoms(random), atoms(fresh)));
  // The dictionary has no BatchNorm: the log does not claim statistics were calibrated.
  const auto log = testing::read_file(engine::RunFolder(dir / "runs/control").log());
  EXPECT_NE(log.find("the encoder keeps its random weights; val_psnr"), std::string::npos) << log;
  EXPECT_EQ(log.find("BatchNorm statistics"), std::string::npos) << log;
  // (Training itself moving atoms: PatchAutoencoder.AtomsStartOnWhitenedPatches...)
  EXPECT_FALSE(torch::allclose(atoms(saved), atoms(fresh))) << "pretraining left the atoms";
  EXPECT_TRUE(torch::equal(random->whiten, saved->whiten));
  torch::NoGradGuard no_grad;
  saved->eval();
  auto x = torch::rand({5, 3, cfg.data.image_size, cfg.data.image_size});
  auto codes =
      models::pool_codes(saved->encode(saved->normalize(x)), saved->code_spec(cfg.classify));
  EXPECT_EQ(codes.size(1), 2 * 12 * 4);
  auto encoder = torch::jit::load(folder.encoder_export().string());
  EXPECT_LE((encoder.forward({x}).toTensor() - codes).abs().max().item<double>(), 1e-4);
  auto recon = saved->to_images(saved->forward(saved->normalize(x))).clamp(0, 1);
  auto autoencoder = torch::jit::load(folder.autoencoder_export().string());
  EXPECT_LE((autoencoder.forward({x}).toTensor() - recon).abs().max().item<double>(), 1e-4);
  EXPECT_GT(util::read_json_file(folder.metrics())["test_accuracy"].get<double>(), 0.0);
}

/// data.unlabeled joins the labelled train images in pretraining (or replaces them), through a
/// cache built once; classify still learns from the labelled images alone, and few of them with
/// classify.labels_per_class.
TEST(EndToEnd, UnlabeledImagesArePretrainedOnAndLabelsPerClassLimitsTheHead) {
  if (!data::can_decode_images()) GTEST_SKIP() << "built without OpenCV: no image files";
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 60, 50);
  auto [img, lab] = testing::synthetic_images(70, 5, 24, 9);
  for (int64_t i = 0; i < 70; ++i) {
    const fs::path f = dir / "photos" / (i % 3 ? "a" : "b/c") / ("p" + std::to_string(i) + ".jpg");
    fs::create_directories(f.parent_path());
    testing::write_png(f.string(), img[i], 24);  // any size: resized to data.image_size
  }
  testing::write_bytes(dir / "photos" / "a" / "bad.jpg", "not a jpeg");
  const std::vector<std::string> unlabeled{"data.unlabeled=" + (dir / "photos").string(),
                                           "data.cache_dir=" + (dir / "cache").string()};
  auto sets = unlabeled;
  sets.insert(sets.end(), {"classify.labels_per_class=5", "stages=[pretrain, classify]"});
  engine::run_stages(tiny(dir, "both", sets), {"pretrain", "classify"}, builtin_stages());
  const auto pre = engine::PretrainSummary::read(engine::RunFolder(dir / "runs" / "both"));
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->train_images, 300 - 40 + 70);  // limit_train 300 less val_size 40, 70 photos
  std::vector<fs::path> caches;
  for (const auto& e : fs::directory_iterator(dir / "cache")) caches.push_back(e.path());
  ASSERT_EQ(caches.size(), 1u);
  const auto built = fs::last_write_time(caches[0]);
  const auto log = testing::read_file(dir / "runs" / "both" / "log.txt");
  EXPECT_NE(log.find("bad.jpg"), std::string::npos) << "the skipped file is named";
  EXPECT_NE(log.find("50 labelled train images (5 per class)"), std::string::npos);

  sets = unlabeled;
  sets.push_back("data.unlabeled_only=true");
  engine::run_stages(tiny(dir, "only", sets), {"pretrain"}, builtin_stages());
  const auto only = engine::PretrainSummary::read(engine::RunFolder(dir / "runs" / "only"));
  EXPECT_EQ(only->train_images, 70);
  EXPECT_EQ(fs::last_write_time(caches[0]), built) << "the cache is reused, not rebuilt";

  EXPECT_THROW(tiny(dir, "x", {"data.unlabeled_only=true"}), std::invalid_argument);
  fs::create_directories(dir / "empty");
  EXPECT_THROW(engine::run_stages(tiny(dir, "x", {"data.unlabeled=" + (dir / "empty").string()}),
                                  {"pretrain"}, builtin_stages()),
               std::runtime_error);
  EXPECT_THROW(engine::run_stages(tiny(dir, "y", {"classify.labels_per_class=100"}),
                                  {"pretrain", "classify"}, builtin_stages()),
               std::invalid_argument);
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

TEST(Cuda, EndToEndOnGpu) {
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "no CUDA device: CUDA path runs on the GPU machine";
  TempDir dir;
  testing::write_cifar_binary(dir / "data", 80, 100);
  const auto cfg = tiny(dir, "cuda", {"device=cuda"});
  engine::run_stages(cfg, cfg.stages, builtin_stages());
  const util::Json m = util::read_json_file(engine::RunFolder(dir / "runs/cuda").metrics());
  EXPECT_GT(m["test_accuracy"].get<double>(), 0.3);
  EXPECT_EQ(m["device"].get<std::string>(), "cuda:0");
}

}  // namespace
}  // namespace aefx::stages
