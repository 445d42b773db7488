#include "aefx/models/autoencoder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aefx/data/dataset.h"
#include "aefx/models/conv_autoencoder.h"
#include "aefx/models/dense_autoencoder.h"

namespace aefx::models {
namespace {

config::ModelConfig small() {
  config::ModelConfig m;
  m.widths = {4, 8, 16};
  m.blocks = {1, 2, 1};
  return m;
}

TEST(Encoder, StageShapes) {
  ConvEncoder enc(small(), 3);
  auto outs = enc->forward(torch::rand({2, 3, 32, 32}));
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(outs[0].sizes(), (std::vector<int64_t>{2, 4, 32, 32}));
  EXPECT_EQ(outs[1].sizes(), (std::vector<int64_t>{2, 8, 16, 16}));
  EXPECT_EQ(outs[2].sizes(), (std::vector<int64_t>{2, 16, 8, 8}));
}

TEST(Autoencoder, ReconstructsInputShapeAndTrains) {
  torch::manual_seed(0);
  Autoencoder ae(small(), 3, 16);
  auto x = torch::rand({8, 3, 16, 16});
  EXPECT_EQ(ae->forward(x).sizes(), x.sizes());
  torch::optim::Adam opt(ae->parameters(), 1e-2);
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    auto loss = torch::mse_loss(ae->forward(x), x);
    opt.zero_grad();
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first * 0.5);
}

TEST(Autoencoder, ForwardFlopsMatchAnIndependentCount) {
  // The expected figures come from tools/bench_pytorch.py's count: forward hooks on every
  // convolution of the same model built in PyTorch, 2 x multiply-adds at the real output size.
  config::ModelConfig cpu;  // a conv model at half the widths of configs/cifar10-cpu-conv.yaml
  cpu.widths = {32, 64, 128};
  cpu.blocks = {1, 1, 1};
  EXPECT_EQ(forward_flops(cpu, 3, 32), 97910784);
  config::ModelConfig odd;
  odd.widths = {16, 32, 48};
  odd.blocks = {2, 1, 2};
  odd.decoder_blocks = 2;
  odd.decoder_width = 0.5;
  EXPECT_EQ(forward_flops(odd, 1, 28), 15466752);
}

TEST(Autoencoder, NormalizationRoundTrip) {
  Autoencoder ae(small(), 3, 16);
  ae->set_normalization(torch::tensor({0.5f, 0.4f, 0.3f}), torch::tensor({0.2f, 0.25f, 0.5f}));
  auto x = torch::rand({2, 3, 4, 4});
  EXPECT_TRUE(torch::allclose(ae->denormalize(ae->normalize(x)), x, 1e-6, 1e-6));
  EXPECT_NEAR(ae->normalize(torch::full({1, 3, 1, 1}, 0.5))[0][0][0][0].item<float>(), 0.0, 1e-6);
}

/// Images whose neighbouring pixels and channels are strongly correlated, as in photographs.
torch::Tensor smooth_images(int64_t n, int64_t side) {
  auto x = torch::rand({n, 1, side / 4, side / 4});
  x = torch::upsample_bilinear2d(x, {side, side}, false) * 0.8 +
      torch::rand({n, 1, side, side}) * 0.2;
  auto noise = [&] { return torch::rand({n, 1, side, side}); };
  return torch::cat({x, x * 0.9 + noise() * 0.1, x * 0.5 + noise() * 0.5}, 1);
}

TEST(Whitening, FittedStemDecorrelatesPatchesAndToImagesUndoesIt) {
  torch::manual_seed(0);
  auto cfg = small();
  cfg.whiten_patch = 3;
  cfg.whiten_eps = 1e-4;
  Autoencoder ae(cfg, 3, 16);
  ASSERT_TRUE(ae->has_stem());
  EXPECT_EQ(ae->whiten.sizes(), (std::vector<int64_t>{27, 3, 3, 3}));
  EXPECT_EQ(ae->unwhiten.sizes(), (std::vector<int64_t>{3, 27, 1, 1}));
  auto images = smooth_images(64, 16);
  auto [mean, std] = data::channel_stats((images * 255).round().to(torch::kU8));
  ae->set_normalization(mean, std);
  // Unfitted, the stem passes each pixel through its patch's centre channel.
  auto x = ae->normalize(images);
  EXPECT_TRUE(torch::allclose(ae->to_images(ae->target(x)), images, 1e-5, 1e-5));
  ae->fit_whitening(images);
  // The whitened patches (away from the zero padding) have the identity as second moment.
  auto w = ae->target(x).narrow(2, 1, 14).narrow(3, 1, 14).permute({0, 2, 3, 1}).reshape({-1, 27});
  auto moment = torch::mm(w.t(), w) / static_cast<double>(w.size(0));
  EXPECT_LT((moment - torch::eye(27)).abs().max().item<double>(), 0.02);
  // The raw patches were far from it: the stem did something.
  auto raw = torch::im2col(x, {3, 3}, {1, 1}, {0, 0}, {1, 1}).transpose(1, 2).reshape({-1, 27});
  EXPECT_GT((torch::mm(raw.t(), raw) / static_cast<double>(raw.size(0)) - torch::eye(27))
                .abs()
                .max()
                .item<double>(),
            0.5);
  // The inverse recovers every pixel, borders included (the padding is part of the patch).
  EXPECT_LT((ae->to_images(ae->target(x)) - images).abs().max().item<double>(), 1e-3);
  // The encoder sees 27 channels and the decoder reconstructs them; gradients never reach it.
  EXPECT_EQ(ae->forward(x).sizes(), (std::vector<int64_t>{64, 27, 16, 16}));
  for (const auto& p : ae->named_parameters()) EXPECT_EQ(p.key().find("whiten"), std::string::npos);
  // Fitting again to the same images gives the same stem; uint8 images about the same.
  auto before = ae->whiten.clone();
  ae->fit_whitening(images);
  EXPECT_TRUE(torch::equal(before, ae->whiten));
  ae->fit_whitening((images * 255).round().to(torch::kU8));
  EXPECT_LT((before - ae->whiten).abs().max().item<double>(),
            0.05 * before.abs().max().item<double>());
  // Images that are all the mean cannot be whitened: an error naming the key.
  ae->set_normalization(torch::full({3}, 0.5), torch::ones({3}));
  try {
    ae->fit_whitening(torch::full({4, 3, 16, 16}, 0.5));
    FAIL() << "a stem was fitted to images without variation";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("model.whiten_patch"), std::string::npos) << e.what();
  }
}

TEST(Whitening, CentredStemIgnoresPatchBrightnessAndWhitensWhatIsLeft) {
  torch::manual_seed(1);
  auto cfg = small();
  cfg.whiten_patch = 3;
  cfg.whiten_eps = 1e-4;
  cfg.whiten_center = true;
  Autoencoder ae(cfg, 3, 16);
  auto images = smooth_images(64, 16);
  ae->set_normalization(torch::full({3}, 0.5), torch::full({3}, 0.25));
  ae->fit_whitening(images);
  auto x = ae->normalize(images);
  // A constant added to every pixel (every whole patch's brightness) changes nothing; the
  // border's patches reach into the zero padding.
  const auto inside = [](const torch::Tensor& t) { return t.narrow(2, 1, 14).narrow(3, 1, 14); };
  EXPECT_LT((inside(ae->target(x + 0.7)) - inside(ae->target(x))).abs().max().item<double>(), 1e-4);
  // The centred patches' second moment is whitened: the identity less the mean direction.
  auto w = ae->target(x).narrow(2, 1, 14).narrow(3, 1, 14).permute({0, 2, 3, 1}).reshape({-1, 27});
  auto moment = torch::mm(w.t(), w) / static_cast<double>(w.size(0));
  auto ones = torch::full({27, 1}, 1.0 / std::sqrt(27.0));
  EXPECT_LT((moment - (torch::eye(27) - torch::mm(ones, ones.t()))).abs().max().item<double>(),
            0.02);
  EXPECT_NE(describe_architecture(cfg, 3, 16).find("centred"), std::string::npos);
  cfg.whiten_center = false;
  EXPECT_EQ(describe_architecture(cfg, 3, 16).find("centred"), std::string::npos);
}

TEST(Whitening, NoStemUnlessAskedAndTheDescriptionSaysWhich) {
  Autoencoder plain(small(), 3, 16);
  EXPECT_FALSE(plain->has_stem());
  auto x = torch::randn({2, 3, 16, 16});
  EXPECT_TRUE(torch::equal(plain->target(x), x));
  auto cfg = small();
  cfg.whiten_patch = 3;
  EXPECT_EQ(describe_architecture(cfg, 3, 32),
            describe_architecture(small(), 3, 32) + " whiten=3/0.1");
  // The stem adds its own convolution, and 24 more channels into the first convolution and
  // out of the last (both 4 channels wide on the other side).
  const int64_t side = 32;
  const int64_t extra = 2 * 27 * 27 * side * side + 2 * 24 * 4 * 9 * side * side * 2;
  EXPECT_EQ(forward_flops(cfg, 3, side), forward_flops(small(), 3, side) + extra);
}

TEST(Corrupt, MaskRatioAndNoise) {
  torch::manual_seed(0);
  auto x = torch::ones({16, 3, 32, 32});
  EXPECT_TRUE(torch::equal(corrupt(x, 0.0, 4, 0.0), x));
  auto masked = corrupt(x, 0.5, 4, 0.0);
  const double zero_frac = (masked == 0).to(torch::kFloat).mean().item<double>();
  EXPECT_NEAR(zero_frac, 0.5, 0.05);
  // Masking is per patch: each 4x4 patch is all kept or all zero.
  auto patches = masked[0][0].unfold(0, 4, 4).unfold(1, 4, 4).reshape({-1, 16});
  EXPECT_TRUE(torch::equal(std::get<0>(patches.min(1)), std::get<0>(patches.max(1))));
  auto noisy = corrupt(x, 0.0, 4, 0.1);
  EXPECT_NEAR((noisy - x).std().item<double>(), 0.1, 0.01);
}

TEST(PoolCodes, ConcatenatesGridsAndMatchesCodeDim) {
  auto m = small();
  ConvEncoder enc(m, 3);
  auto outs = enc->forward(torch::rand({3, 3, 32, 32}));
  const std::vector<int64_t> grids{2, 0, 1};
  auto codes = pool_codes(outs, grids);
  EXPECT_EQ(codes.sizes(), (std::vector<int64_t>{3, code_dim(m, grids)}));
  EXPECT_EQ(code_dim(m, grids), 4 * 4 + 16);
  // The last 16 values are the global average of stage 2.
  EXPECT_TRUE(torch::allclose(codes.narrow(1, 16, 16), outs[2].mean({2, 3})));
}

TEST(PoolCodes, MaxAndAvgMaxPooling) {
  auto m = small();
  ConvEncoder enc(m, 3);
  auto outs = enc->forward(torch::rand({3, 3, 32, 32}));
  const CodeSpec max{{2, 0, 1}, config::Pooling::kMax}, both{{2, 0, 1}, config::Pooling::kAvgMax};
  auto mx = pool_codes(outs, max);
  EXPECT_EQ(code_dim(m, max), 4 * 4 + 16);
  EXPECT_EQ(mx.size(1), code_dim(m, max));
  // The last 16 values are the global maximum of stage 2.
  EXPECT_TRUE(torch::equal(mx.narrow(1, 16, 16), outs[2].amax({2, 3})));
  // avgmax: per stage the average cells, then the max cells.
  auto ab = pool_codes(outs, both);
  const auto avg = pool_codes(outs, std::vector<int64_t>{2, 0, 1});
  EXPECT_EQ(code_dim(m, both), 2 * (4 * 4 + 16));
  ASSERT_EQ(ab.size(1), code_dim(m, both));
  EXPECT_TRUE(torch::equal(ab.narrow(1, 0, 16), avg.narrow(1, 0, 16)));
  EXPECT_TRUE(torch::equal(ab.narrow(1, 16, 16), mx.narrow(1, 0, 16)));
  EXPECT_TRUE(torch::equal(ab.narrow(1, 32, 16), avg.narrow(1, 16, 16)));
  EXPECT_TRUE(torch::equal(ab.narrow(1, 48, 16), mx.narrow(1, 16, 16)));
}

TEST(Head, LinearAndMlpShapesAndStandardization) {
  Head linear(6, std::vector<int64_t>{}, 0.0, 4);
  EXPECT_EQ(linear->forward(torch::rand({5, 6})).sizes(), (std::vector<int64_t>{5, 4}));
  Head mlp(6, std::vector<int64_t>{16, 8}, 0.2, 3);
  EXPECT_EQ(mlp->forward(torch::rand({5, 6})).sizes(), (std::vector<int64_t>{5, 3}));
  // Standardisation is part of the model: shifting mean and scaling std by the same amounts
  // as the input leaves the output unchanged.
  linear->eval();
  auto x = torch::rand({2, 6});
  auto y0 = linear->forward(x);
  linear->set_standardization(torch::full({6}, 3.0), torch::full({6}, 2.0));
  EXPECT_TRUE(torch::allclose(linear->forward(x * 2 + 3), y0, 1e-5, 1e-5));
}

config::ModelConfig dense(std::vector<int64_t> hidden, int64_t code) {
  config::ModelConfig m;
  m.type = config::ModelType::kDense;
  m.hidden = std::move(hidden);
  m.code_size = code;
  m.output_activation = config::OutputActivation::kSigmoid;
  return m;
}

TEST(DenseAutoencoder, ShapesCodeAndSigmoidOutput) {
  torch::manual_seed(0);
  const auto m = dense({32}, 8);
  Autoencoder ae(m, 1, 12);
  ae->set_normalization(torch::tensor({0.4f}), torch::tensor({0.2f}));
  auto x = torch::rand({5, 1, 12, 12});
  const auto stages = ae->encoder->forward(ae->normalize(x));
  ASSERT_EQ(stages.size(), 1u);  // one "stage": the code, N x code_size x 1 x 1
  EXPECT_EQ(stages[0].sizes(), (std::vector<int64_t>{5, 8, 1, 1}));
  EXPECT_GE(stages[0].min().item<double>(), 0.0);  // ReLU code
  const auto spec = code_spec(m, config::ClassifyConfig{});
  EXPECT_EQ(spec.grids, (std::vector<int64_t>{1}));
  EXPECT_EQ(code_dim(m, spec), 8);
  EXPECT_TRUE(torch::equal(pool_codes(stages, spec), stages[0].flatten(1)));
  const auto recon = ae->denormalize(ae->forward(ae->normalize(x)));
  EXPECT_EQ(recon.sizes(), x.sizes());
  EXPECT_GT(recon.min().item<double>(), 0.0);  // sigmoid: strictly inside (0, 1)
  EXPECT_LT(recon.max().item<double>(), 1.0);
  // 144 -> 32 -> 8 -> 32 -> 144: four linear layers.
  int64_t params = 0;
  for (const auto& p : ae->parameters()) params += p.numel();
  EXPECT_EQ(params, (144 * 32 + 32) + (32 * 8 + 8) + (8 * 32 + 32) + (32 * 144 + 144));
  EXPECT_EQ(forward_flops(m, 1, 12), 2 * 2 * (144 * 32 + 32 * 8));
  EXPECT_EQ(bottleneck_size(m, 12), 8);
  EXPECT_EQ(bottleneck_size(small(), 32), 16 * 8 * 8);
}

TEST(DenseAutoencoder, LearnsToReconstruct) {
  torch::manual_seed(1);
  Autoencoder ae(dense({}, 16), 3, 8);  // colour works too: 192 -> 16 -> 192
  auto x = torch::rand({64, 3, 8, 8}).round();
  auto [mean, std] = data::channel_stats(x.mul(255).to(torch::kUInt8));
  ae->set_normalization(mean, std);
  torch::optim::Adam opt(ae->parameters(), torch::optim::AdamOptions(1e-2));
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    auto target = ae->normalize(x);
    auto loss = torch::mse_loss(ae->forward(target), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.5 * first);
}

TEST(Architecture, DescriptionsDiffer) {
  auto a = small();
  auto b = small();
  b.widths[0] = 5;
  EXPECT_NE(describe_architecture(a, 3, 32), describe_architecture(b, 3, 32));
  // Grey conv weights differ from RGB ones; a dense model's from any other input size.
  EXPECT_NE(describe_architecture(a, 1, 32), describe_architecture(a, 3, 32));
  EXPECT_EQ(describe_architecture(a, 3, 32), describe_architecture(a, 3, 64));
  EXPECT_NE(describe_architecture(dense({}, 8), 1, 28), describe_architecture(dense({}, 8), 1, 32));
  EXPECT_NE(describe_architecture(dense({}, 8), 1, 28), describe_architecture(dense({}, 9), 1, 28));
  EXPECT_NE(describe_head(10, {}, 10), describe_head(10, {5}, 10));
}

TEST(Factory, BuildsEachTypeAndRefusesAnother) {
  auto conv = make_autoencoder(small(), 3, 16);
  EXPECT_NE(std::dynamic_pointer_cast<ConvAutoencoderImpl>(conv), nullptr);
  auto d = make_autoencoder(dense({32}, 8), 1, 12);
  EXPECT_NE(std::dynamic_pointer_cast<DenseAutoencoderImpl>(d), nullptr);
  // The holder builds through the factory.
  Autoencoder held(dense({}, 4), 1, 8);
  EXPECT_NE(dynamic_cast<DenseAutoencoderImpl*>(held.get()), nullptr);
  auto bad = small();
  bad.type = static_cast<config::ModelType>(99);  // no config parses to it: a value from a bug
  try {
    make_autoencoder(bad, 3, 16);
    FAIL() << "an unknown model.type was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "config key 'model.type': expected conv or dense or patch, found '?'");
  }
  EXPECT_THROW(describe_architecture(bad, 3, 16), std::invalid_argument);
  EXPECT_THROW(forward_flops(bad, 3, 16), std::invalid_argument);
}

/// The layouts the single autoencoder class had before each architecture became its own class,
/// recorded from that code: checkpoints saved by it must load (same names, order and shapes),
/// and the same seed must give the same initial weights (sum of value x position, in order).
struct Layout {
  config::ModelConfig model;
  int64_t channels, size;
  std::vector<std::string> parameters, buffers;
  double weighted_sum;
  std::string description;
  int64_t flops, bottleneck, code_dim;
};

std::vector<std::string> bn_buffers(const std::vector<std::string>& layers) {
  std::vector<std::string> out{"mean", "std"};
  for (const auto& l : layers) {
    for (const char* b : {".running_mean", ".running_var", ".num_batches_tracked"}) {
      out.push_back(l + b);
    }
  }
  return out;
}

std::vector<Layout> old_layouts() {
  std::vector<Layout> out;
  auto conv = small();
  out.push_back({conv,
                 3,
                 16,
                 {"encoder.stage0.0.weight [4, 3, 3, 3]",
                  "encoder.stage0.1.weight [4]",
                  "encoder.stage0.1.bias [4]",
                  "encoder.stage1.0.weight [8, 4, 3, 3]",
                  "encoder.stage1.1.weight [8]",
                  "encoder.stage1.1.bias [8]",
                  "encoder.stage1.3.weight [8, 8, 3, 3]",
                  "encoder.stage1.4.weight [8]",
                  "encoder.stage1.4.bias [8]",
                  "encoder.stage2.0.weight [16, 8, 3, 3]",
                  "encoder.stage2.1.weight [16]",
                  "encoder.stage2.1.bias [16]",
                  "decoder.stage0.1.weight [8, 16, 3, 3]",
                  "decoder.stage0.2.weight [8]",
                  "decoder.stage0.2.bias [8]",
                  "decoder.stage1.1.weight [4, 8, 3, 3]",
                  "decoder.stage1.2.weight [4]",
                  "decoder.stage1.2.bias [4]",
                  "decoder.out.weight [3, 4, 3, 3]",
                  "decoder.out.bias [3]"},
                 bn_buffers({"encoder.stage0.1", "encoder.stage1.1", "encoder.stage1.4",
                             "encoder.stage2.1", "decoder.stage0.2", "decoder.stage1.2"}),
                 1297.4879976391085,
                 "conv-autoencoder widths=[4,8,16] blocks=[1,2,1] decoder_blocks=1 decoder_width=1",
                 552960,
                 256,
                 136});
  conv.decoder_blocks = 2;
  conv.decoder_width = 0.5;
  conv.output_activation = config::OutputActivation::kSigmoid;
  out.push_back(
      {conv,
       1,
       12,
       {"encoder.stage0.0.weight [4, 1, 3, 3]",
        "encoder.stage0.1.weight [4]",
        "encoder.stage0.1.bias [4]",
        "encoder.stage1.0.weight [8, 4, 3, 3]",
        "encoder.stage1.1.weight [8]",
        "encoder.stage1.1.bias [8]",
        "encoder.stage1.3.weight [8, 8, 3, 3]",
        "encoder.stage1.4.weight [8]",
        "encoder.stage1.4.bias [8]",
        "encoder.stage2.0.weight [16, 8, 3, 3]",
        "encoder.stage2.1.weight [16]",
        "encoder.stage2.1.bias [16]",
        "decoder.stage0.1.weight [4, 16, 3, 3]",
        "decoder.stage0.2.weight [4]",
        "decoder.stage0.2.bias [4]",
        "decoder.stage0.4.weight [4, 4, 3, 3]",
        "decoder.stage0.5.weight [4]",
        "decoder.stage0.5.bias [4]",
        "decoder.stage1.1.weight [2, 4, 3, 3]",
        "decoder.stage1.2.weight [2]",
        "decoder.stage1.2.bias [2]",
        "decoder.stage1.4.weight [2, 2, 3, 3]",
        "decoder.stage1.5.weight [2]",
        "decoder.stage1.5.bias [2]",
        "decoder.out.weight [1, 2, 3, 3]",
        "decoder.out.bias [1]"},
       bn_buffers({"encoder.stage0.1", "encoder.stage1.1", "encoder.stage1.4", "encoder.stage2.1",
                   "decoder.stage0.2", "decoder.stage0.5", "decoder.stage1.2", "decoder.stage1.5"}),
       -326.71897194723078,
       "grey-conv-autoencoder widths=[4,8,16] blocks=[1,2,1] decoder_blocks=2 decoder_width=0.5 "
       "output=sigmoid",
       181440,
       144,
       136});
  auto d = dense({32, 16}, 8);
  d.activation = config::Activation::kTanh;
  out.push_back({d,
                 1,
                 12,
                 {"encoder.dense.0.weight [32, 144]", "encoder.dense.0.bias [32]",
                  "encoder.dense.2.weight [16, 32]", "encoder.dense.2.bias [16]",
                  "encoder.dense.4.weight [8, 16]", "encoder.dense.4.bias [8]",
                  "decoder.dense.0.weight [16, 8]", "decoder.dense.0.bias [16]",
                  "decoder.dense.2.weight [32, 16]", "decoder.dense.2.bias [32]",
                  "decoder.dense.4.weight [144, 32]", "decoder.dense.4.bias [144]"},
                 {"mean", "std"},
                 -8887.4545499609158,
                 "dense-autoencoder input=1x12x12 hidden=[32,16] code=8 activation=tanh "
                 "output=sigmoid",
                 20992,
                 8,
                 8});
  d = dense({}, 8);
  d.output_activation = config::OutputActivation::kIdentity;
  out.push_back({d,
                 3,
                 8,
                 {"encoder.dense.0.weight [8, 192]", "encoder.dense.0.bias [8]",
                  "decoder.dense.0.weight [192, 8]", "decoder.dense.0.bias [192]"},
                 {"mean", "std"},
                 2793.1020244960528,
                 "dense-autoencoder input=3x8x8 hidden=[] code=8 activation=relu",
                 6144,
                 8,
                 8});
  return out;
}

TEST(Architecture, LayoutOfTheSingleClassKept) {
  config::ClassifyConfig classify;
  classify.pool_grids = {1, 0, 2};
  classify.pooling = config::Pooling::kAvgMax;
  for (const auto& l : old_layouts()) {
    SCOPED_TRACE(l.description);
    torch::manual_seed(7);
    Autoencoder ae(l.model, l.channels, l.size);
    std::vector<std::string> params, buffers;
    double sum = 0;
    for (const auto& p : ae->named_parameters()) {
      params.push_back(p.key() + " " + c10::str(p.value().sizes()));
      auto v = p.value().detach().flatten().to(torch::kDouble);
      sum += (v * torch::arange(1, v.numel() + 1, torch::kDouble)).sum().item<double>();
    }
    for (const auto& b : ae->named_buffers()) buffers.push_back(b.key());
    EXPECT_EQ(params, l.parameters);
    EXPECT_EQ(buffers, l.buffers);
    EXPECT_NEAR(sum, l.weighted_sum, 1e-9 * std::abs(l.weighted_sum));
    // Descriptions are stored in checkpoints: byte for byte as before.
    EXPECT_EQ(ae->describe(), l.description);
    EXPECT_EQ(describe_architecture(l.model, l.channels, l.size), l.description);
    EXPECT_EQ(ae->forward_flops(), l.flops);
    EXPECT_EQ(forward_flops(l.model, l.channels, l.size), l.flops);
    EXPECT_EQ(ae->bottleneck_size(), l.bottleneck);
    EXPECT_EQ(bottleneck_size(l.model, l.size), l.bottleneck);
    const auto spec = ae->code_spec(classify);
    EXPECT_EQ(ae->code_dim(spec), l.code_dim);
    EXPECT_EQ(code_dim(l.model, code_spec(l.model, classify)), l.code_dim);
  }
}

}  // namespace
}  // namespace aefx::models
