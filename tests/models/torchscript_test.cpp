#include "aefx/models/torchscript.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aefx/models/features.h"
#include "test_util.h"

namespace aefx::models {
namespace {
using aefx::testing::TempDir;

struct Trained {
  Autoencoder ae{nullptr};
  Head head{nullptr};
  CodeSpec grids{{2, 1, 1}, config::Pooling::kAvgMax};
};

/// A small model with non-trivial weights, BatchNorm statistics and normalisation.
Trained make_model(config::Pooling pooling = config::Pooling::kAvgMax) {
  torch::manual_seed(3);
  config::ModelConfig m;
  m.widths = {4, 8, 8};
  m.blocks = {1, 2, 1};
  m.decoder_blocks = 2;
  Trained t;
  t.grids.pooling = pooling;
  t.ae = Autoencoder(m, 3, 16);
  t.ae->set_normalization(torch::tensor({0.49f, 0.48f, 0.45f}),
                          torch::tensor({0.25f, 0.24f, 0.26f}));
  t.ae->train();
  for (int i = 0; i < 3; ++i) t.ae->forward(torch::randn({8, 3, 16, 16}));
  models::freeze(t.ae);
  t.head = Head(code_dim(m, t.grids), std::vector<int64_t>{12, 6}, 0.3, 5);
  t.head->set_standardization(torch::rand({code_dim(m, t.grids)}),
                              torch::rand({code_dim(m, t.grids)}) + 0.5);
  t.head->eval();
  return t;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST(TorchScript, ExportsEqualNativeModels) {
  for (const auto& [pooling, name] : config::EnumNames<config::Pooling>::table) {
    SCOPED_TRACE(name);
    auto t = make_model(pooling);
    torch::NoGradGuard no_grad;
    auto x = torch::rand({6, 3, 16, 16});
    auto codes = pool_codes(t.ae->encoder->forward(t.ae->normalize(x)), t.grids);
    auto enc = script_encoder(t.ae, t.grids);
    EXPECT_LE(max_diff(enc.forward({x}).toTensor(), codes), 1e-5);
    auto ae = script_autoencoder(t.ae);
    auto recon = t.ae->denormalize(t.ae->forward(t.ae->normalize(x))).clamp(0, 1);
    EXPECT_LE(max_diff(ae.forward({x}).toTensor(), recon), 1e-5);
    auto clf = script_classifier(t.ae, t.head, t.grids);
    EXPECT_LE(max_diff(clf.forward({x}).toTensor(), t.head->forward(codes)), 1e-5);
  }
}

TEST(TorchScript, WhiteningStemIsPartOfEveryExport) {
  torch::manual_seed(4);
  config::ModelConfig m;
  m.widths = {4, 8};
  m.blocks = {1, 1};
  m.whiten_patch = 3;
  Autoencoder ae(m, 3, 16);
  ae->set_normalization(torch::tensor({0.49f, 0.48f, 0.45f}), torch::tensor({0.25f, 0.24f, 0.26f}));
  ae->fit_whitening(torch::rand({20, 3, 16, 16}));
  ae->train();
  for (int i = 0; i < 3; ++i) ae->forward(torch::randn({8, 3, 16, 16}));
  models::freeze(ae);
  const CodeSpec spec({2, 1}, config::Pooling::kAvgMax);
  Head head(code_dim(m, spec), std::vector<int64_t>{6}, 0.0, 3);
  head->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::rand({4, 3, 16, 16});
  auto codes = pool_codes(ae->encode(ae->normalize(x)), spec);
  EXPECT_LE(max_diff(script_encoder(ae, spec).forward({x}).toTensor(), codes), 1e-5);
  auto recon = ae->to_images(ae->forward(ae->normalize(x))).clamp(0, 1);
  EXPECT_LE(max_diff(script_autoencoder(ae).forward({x}).toTensor(), recon), 1e-5);
  EXPECT_LE(
      max_diff(script_classifier(ae, head, spec).forward({x}).toTensor(), head->forward(codes)),
      1e-5);
}

TEST(TorchScript, SavedFileReloadsWithMetadata) {
  TempDir dir;
  auto t = make_model();
  auto clf = script_classifier(t.ae, t.head, t.grids);
  const auto path = (dir / "classifier.pt").string();
  save_scripted(clf, path,
                R"({"kind": "classifier", "class_names": ["a", "b", "c", "d", "e"],)"
                R"( "input": {"channels": 3, "height": 16, "width": 16}})");
  ExportedClassifier loaded(path);
  EXPECT_EQ(loaded.class_names().size(), 5u);
  EXPECT_EQ(loaded.image_size(), 16);
  auto x = torch::rand({2, 3, 16, 16});
  torch::NoGradGuard no_grad;
  // The reloaded file equals the native C++ model.
  auto native = t.head->forward(pool_codes(t.ae->encoder->forward(t.ae->normalize(x)), t.grids));
  EXPECT_LE(max_diff(loaded.logits(x), native), 1e-5);
  auto reloaded = torch::jit::load(path);
  EXPECT_LE(max_diff(reloaded.forward({x}).toTensor(), native), 1e-5);
  try {
    loaded.logits(torch::rand({2, 1, 16, 16}));
    FAIL() << "a grey batch for an RGB model must fail";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("expected float images N x C x H x W"), std::string::npos);
  }
}

/// Grey models: a dense autoencoder (ReLU hidden layer, tanh code, sigmoid output) and a conv one
/// with a sigmoid output; each exported file equals its native model.
TEST(TorchScript, GreyDenseAndSigmoidModelsExportEqualNative) {
  for (const auto type : {config::ModelType::kDense, config::ModelType::kConv}) {
    SCOPED_TRACE(config::name_of(type));
    torch::manual_seed(4);
    config::ModelConfig m;
    m.type = type;
    m.widths = {4, 8};
    m.blocks = {1, 1};
    m.hidden = {20};
    m.code_size = 6;
    m.activation =
        type == config::ModelType::kDense ? config::Activation::kTanh : config::Activation::kRelu;
    m.output_activation = config::OutputActivation::kSigmoid;
    config::ClassifyConfig c;
    c.pool_grids = {2, 1};
    const auto spec = code_spec(m, c);
    Autoencoder ae(m, 1, 12);
    ae->set_normalization(torch::tensor({0.3f}), torch::tensor({0.2f}));
    ae->train();
    for (int i = 0; i < 3; ++i) ae->forward(torch::randn({8, 1, 12, 12}));
    models::freeze(ae);
    Head head(code_dim(m, spec), std::vector<int64_t>{7}, 0.0, 4);
    head->eval();
    torch::NoGradGuard no_grad;
    auto x = torch::rand({5, 1, 12, 12});
    auto codes = pool_codes(ae->encoder->forward(ae->normalize(x)), spec);
    EXPECT_EQ(codes.size(1), type == config::ModelType::kDense ? 6 : 4 * 4 + 8);
    EXPECT_LE(max_diff(script_encoder(ae, spec).forward({x}).toTensor(), codes), 1e-5);
    auto recon = ae->denormalize(ae->forward(ae->normalize(x)));
    EXPECT_LE(max_diff(script_autoencoder(ae).forward({x}).toTensor(), recon), 1e-5);
    auto clf = script_classifier(ae, head, spec);
    EXPECT_LE(max_diff(clf.forward({x}).toTensor(), head->forward(codes)), 1e-5);
    // A colour batch, or (dense) another image size, is refused with the expected input.
    EXPECT_THROW(clf.forward({torch::rand({2, 3, 12, 12})}), std::exception);
    if (type == config::ModelType::kDense) {
      try {
        clf.forward({torch::rand({2, 1, 16, 16})});
        FAIL() << "a dense model takes only its own image size";
      } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("N x C x 12 x 12"), std::string::npos) << e.what();
      }
    }
  }
}

std::string load_error(const std::string& path) {
  try {
    ExportedClassifier c(path);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(TorchScript, BadModelFilesAreNamed) {
  TempDir dir;
  EXPECT_NE(load_error((dir / "none.pt").string()).find("does not exist"), std::string::npos);
  testing::write_bytes(dir / "junk.pt", "not a zip");
  EXPECT_NE(load_error((dir / "junk.pt").string()).find("not a TorchScript model file"),
            std::string::npos);
  auto t = make_model();
  auto enc = script_encoder(t.ae, t.grids);
  enc.save((dir / "plain.pt").string());
  EXPECT_NE(load_error((dir / "plain.pt").string()).find("not an aefx export"), std::string::npos);
  save_scripted(
      enc, (dir / "encoder.pt").string(),
      R"({"kind": "encoder", "class_names": [], "input": {"channels": 3, "height": 16}})");
  EXPECT_NE(load_error((dir / "encoder.pt").string()).find("needs classifier.pt"),
            std::string::npos);
}

}  // namespace
}  // namespace aefx::models
