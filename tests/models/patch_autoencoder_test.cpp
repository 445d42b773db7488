#include "aefx/models/patch_autoencoder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aefx/models/features.h"
#include "aefx/models/torchscript.h"
#include "aefx/util/precision.h"

namespace aefx::models {
namespace {

config::ModelConfig patch(int64_t atoms = 6, int64_t side = 3, double threshold = 0.25,
                          bool normalize = false) {
  config::ModelConfig m;
  m.type = config::ModelType::kPatch;
  m.whiten_patch = side;
  m.atoms = atoms;
  m.threshold = threshold;
  m.normalize_patches = normalize;
  return m;
}

std::shared_ptr<PatchAutoencoderImpl> make(const config::ModelConfig& m, int64_t channels,
                                           int64_t size) {
  auto ae = std::dynamic_pointer_cast<PatchAutoencoderImpl>(make_autoencoder(m, channels, size));
  EXPECT_NE(ae, nullptr);
  return ae;
}

TEST(PatchAutoencoder, CodeMapCoversWholePatchesAndPoolsToCodeDim) {
  torch::manual_seed(0);
  auto ae = make(patch(6, 3), 3, 10);
  auto stages = ae->encode(torch::randn({2, 3, 10, 10}));
  ASSERT_EQ(stages.size(), 1u);
  EXPECT_EQ(stages[0].sizes(), (std::vector<int64_t>{2, 12, 8, 8}));  // 2 x 6 atoms, 10 - 3 + 1
  EXPECT_GE(stages[0].min().item<double>(), 0.0);
  config::ClassifyConfig classify;
  classify.pool_grids = {2};
  classify.pooling = config::Pooling::kAvgMax;
  const auto spec = ae->code_spec(classify);
  EXPECT_EQ(pool_codes(stages, spec).size(1), ae->code_dim(spec));
  EXPECT_EQ(ae->code_dim(spec), 2 * 6 * 4 * 2);
  EXPECT_EQ(code_dim(patch(6, 3), spec), ae->code_dim(spec));
  // One parameter, the atoms: the decoder's are the encoder's, not a copy trained twice.
  ASSERT_EQ(ae->parameters().size(), 1u);
  EXPECT_EQ(ae->named_parameters().begin()->key(), "encoder.atoms");
}

TEST(PatchAutoencoder, EncodingIsTheSplitSignSoftThresholdOfUnitAtomResponses) {
  torch::manual_seed(1);
  auto ae = make(patch(5, 3, 0.3), 1, 6);
  torch::NoGradGuard no_grad;
  ae->encoder->as<PatchEncoderImpl>()->atoms.mul_(7.0);  // the scale of a row does not count
  auto x = torch::randn({1, 1, 6, 6});
  auto code = ae->encode(x)[0];
  auto d = ae->encoder->as<PatchEncoderImpl>()->dictionary();
  EXPECT_LE((d.norm(2, 1) - 1).abs().max().item<double>(), 1e-6);
  auto whitened = ae->target(x);  // 9 channels (the stem, identity until fitted)
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t j = 0; j < 4; ++j) {
      auto patch_vec = whitened[0].select(1, i + 1).select(1, j + 1);  // whole patch centred at
      auto s = torch::mv(d, patch_vec);
      auto expected = torch::cat({(s - 0.3).clamp_min(0), (-s - 0.3).clamp_min(0)});
      EXPECT_LE((code[0].select(1, i).select(1, j) - expected).abs().max().item<double>(), 1e-5);
    }
  }
}

TEST(PatchAutoencoder, FastCodesEqualPoolingTheEncodersMap) {
  // codes() folds the stem into the atoms and pools in one pass: the same values as pooling
  // encode()'s map, for grids that divide the map evenly or not, every pooling, any image size,
  // with normalised responses or not, on one thread or several (each encoding its own images).
  torch::manual_seed(5);
  const int before = torch::get_num_threads();
  for (const bool normalize : {true, false}) {
    torch::set_num_threads(normalize ? 3 : 1);
    auto ae = make(patch(7, 3, 0.2, normalize), 3, 12);
    ae->set_normalization(torch::tensor({0.5f, 0.4f, 0.45f}), torch::tensor({0.25f, 0.2f, 0.3f}));
    ae->fit_whitening(torch::rand({16, 3, 12, 12}));
    torch::NoGradGuard no_grad;
    for (const auto pooling :
         {config::Pooling::kAvg, config::Pooling::kMax, config::Pooling::kAvgMax}) {
      for (const int64_t g : {1, 2, 3, 4}) {
        const CodeSpec spec({g}, pooling);
        // More images than one chunk of the fast path (2 per thread), and another image size.
        const int64_t n = 2 * torch::get_num_threads() + 3;
        for (const auto& x : {torch::randn({n, 3, 12, 12}), torch::randn({2, 3, 11, 9})}) {
          auto expected = pool_codes(ae->encode(x), spec);
          auto got = ae->codes(x, spec);
          ASSERT_EQ(got.sizes(), expected.sizes());
          EXPECT_GT(expected.abs().max().item<double>(), 0.0);
          EXPECT_LE((got - expected).abs().max().item<double>(), 1e-4)
              << "grid " << g << ", pooling " << config::name_of(pooling) << ", normalize "
              << normalize;
        }
      }
    }
  }
  auto ae = make(patch(7, 3, 0.2, true), 3, 12);
  ae->fit_whitening(torch::rand({16, 3, 12, 12}));
  torch::NoGradGuard no_grad;
  // Under bf16 autocast (as `precision: bf16` extracts) the products round alike.
  const CodeSpec spec({2}, config::Pooling::kAvg);
  auto x = torch::randn({5, 3, 12, 12});
  auto exact = pool_codes(ae->encode(x), spec);
  torch::set_num_threads(2);
  auto bf16 = [&] {
    util::Autocast autocast(torch::kCPU, torch::kBFloat16);
    return ae->codes(x, spec);
  }();
  torch::set_num_threads(before);
  // The fast path was taken: it writes float codes, where pooling the bf16 map gives bf16.
  EXPECT_EQ(bf16.scalar_type(), torch::kFloat);
  EXPECT_LE((bf16 - exact).abs().max().item<double>(), 0.05 * exact.abs().max().item<double>());
  // With gradients on (training), the generic path: codes stay differentiable.
  torch::GradMode::set_enabled(true);
  EXPECT_TRUE(ae->codes(x, spec).requires_grad());
}

TEST(PatchAutoencoder, ForwardEqualsDecodingTheCodeMapInValuesAndGradients) {
  // forward() skips the code map: same reconstruction as decoder(encoder(x)), same gradient of
  // the atoms, and without gradients in chunks.
  torch::manual_seed(6);
  for (const bool normalize : {false, true}) {
    auto ae = make(patch(9, 3, 0.1, normalize), 3, 10);
    ae->fit_whitening(torch::rand({16, 3, 10, 10}));
    auto x = torch::randn({3, 3, 10, 10});
    auto& atoms = ae->encoder->as<PatchEncoderImpl>()->atoms;
    auto grad_of = [&](const torch::Tensor& recon) {
      if (atoms.grad().defined()) atoms.mutable_grad().zero_();
      torch::mse_loss(recon, ae->target(x)).backward();
      return atoms.grad().clone();
    };
    auto fast = ae->forward(x);
    auto slow = ae->decoder->forward(ae->encode(x).back());
    ASSERT_EQ(fast.sizes(), slow.sizes());
    EXPECT_LE((fast - slow).abs().max().item<double>(), 1e-5);
    auto g_fast = grad_of(fast);
    auto g_slow = grad_of(ae->decoder->forward(ae->encode(x).back()));
    EXPECT_GT(g_slow.abs().max().item<double>(), 0.0);
    EXPECT_LE((g_fast - g_slow).abs().max().item<double>(), 1e-5);
    torch::NoGradGuard no_grad;
    auto many = torch::randn({37, 3, 10, 10});  // more than one chunk of 16
    EXPECT_LE((ae->forward(many) - ae->decoder->forward(ae->encode(many).back()))
                  .abs()
                  .max()
                  .item<double>(),
              1e-5);
  }
}

TEST(PatchAutoencoder, NormalizedResponsesScaleEachPositionByItsGainFromThePatchEnergy) {
  // model.normalize_patches: E is the whitened training patches' mean squared norm, and each
  // position's responses are the raw ones times sqrt(2 E / (|x|^2 + E)).
  torch::manual_seed(8);
  auto raw = make(patch(6, 3, 0.15), 3, 9);
  auto normalized = make(patch(6, 3, 0.15, true), 3, 9);
  EXPECT_EQ(raw->named_buffers().find("encoder.energy"), nullptr) << "old checkpoints load";
  ASSERT_NE(normalized->named_buffers().find("encoder.energy"), nullptr);
  const auto images = torch::rand({12, 3, 9, 9});
  for (auto* ae : {raw.get(), normalized.get()}) {
    ae->set_normalization(torch::tensor({0.5f, 0.45f, 0.4f}), torch::tensor({0.2f, 0.25f, 0.3f}));
    ae->fit_whitening(images);
  }
  torch::NoGradGuard no_grad;
  normalized->encoder->as<PatchEncoderImpl>()->atoms.copy_(
      raw->encoder->as<PatchEncoderImpl>()->atoms);
  // E against the mean over every whole patch of the fitting images.
  const auto whitened = raw->target(raw->normalize(images)).narrow(2, 1, 7).narrow(3, 1, 7);
  const double mean_energy = whitened.square().sum(1).mean().item<double>();
  const double e = normalized->encoder->as<PatchEncoderImpl>()->energy.item<double>();
  EXPECT_NEAR(e, mean_energy, 1e-4 * mean_energy);
  EXPECT_GT(e, 1.0);
  const auto x = torch::randn({2, 3, 9, 9}) * torch::tensor({1.0, 3.0}).view({2, 1, 1, 1});
  const auto d = raw->encoder->as<PatchEncoderImpl>()->dictionary();
  const auto w = raw->target(x);
  const auto code = normalized->encode(x)[0];
  for (int64_t b = 0; b < 2; ++b) {
    for (const auto& [i, j] : {std::pair<int64_t, int64_t>{0, 0}, {3, 5}, {6, 6}}) {
      const auto p = w[b].select(1, i + 1).select(1, j + 1);
      const auto s = torch::mv(d, p) * std::sqrt(2 * e / (p.square().sum().item<double>() + e));
      const auto expected = torch::cat({(s - 0.15).clamp_min(0), (-s - 0.15).clamp_min(0)});
      EXPECT_LE((code[b].select(1, i).select(1, j) - expected).abs().max().item<double>(), 1e-5);
    }
  }
  // Contrast counts far less: the image at 3x contrast gives codes much closer to its own
  // than the raw responses do.
  const auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a - b).norm() / b.norm()).item<double>();
  };
  const auto one = torch::randn({1, 3, 9, 9});
  EXPECT_LT(rel(normalized->encode(one * 3)[0], normalized->encode(one)[0]),
            0.5 * rel(raw->encode(one * 3)[0], raw->encode(one)[0]));
}

TEST(PatchAutoencoder, DecoderKeepsTheStrongestAtomAtEachPositionAndZeroAtTheBorder) {
  torch::manual_seed(2);
  auto ae = make(patch(4, 3, 0.0), 1, 5);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 1, 5, 5});
  auto code = ae->encode(x)[0];  // 2 x 8 x 3 x 3
  auto recon = ae->forward(x);   // in the units of target: 2 x 9 x 5 x 5
  ASSERT_EQ(recon.sizes(), ae->target(x).sizes());
  auto d = ae->encoder->as<PatchEncoderImpl>()->dictionary();
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t i = 0; i < 5; ++i) {
      for (int64_t j = 0; j < 5; ++j) {
        auto got = recon[n].select(1, i).select(1, j);
        if (i == 0 || j == 0 || i == 4 || j == 4) {
          EXPECT_EQ(got.abs().max().item<double>(), 0.0);
          continue;
        }
        auto r = code[n].narrow(0, 0, 4).select(1, i - 1).select(1, j - 1) -
                 code[n].narrow(0, 4, 4).select(1, i - 1).select(1, j - 1);
        const auto k = r.abs().argmax().item<int64_t>();
        EXPECT_LE((got - d[k] * r[k]).abs().max().item<double>(), 1e-6);
      }
    }
  }
}

TEST(PatchAutoencoder, InitFromDataPutsEachAtomOnAWhitenedPatchOfTheImages) {
  // Colour images, patches at many places: each atom is the unit-length whitened vector of one
  // k x k patch (im2col's order), and uint8 images give the atoms their [0, 1] floats give.
  auto ae = make(patch(40, 3, 0.1), 3, 8);
  ae->set_normalization(torch::tensor({0.5f, 0.4f, 0.45f}), torch::tensor({0.25f, 0.2f, 0.3f}));
  auto bytes = torch::randint(0, 256, {6, 3, 8, 8}).to(torch::kByte);
  auto floats = bytes.to(torch::kFloat) / 255;
  ae->fit_whitening(floats);
  torch::manual_seed(7);
  ae->init_from_data(bytes);
  torch::NoGradGuard no_grad;
  auto d = ae->encoder->as<PatchEncoderImpl>()->dictionary();
  auto cols = torch::im2col(ae->normalize(floats), {3, 3}, {1, 1}, {0, 0}, {1, 1});  // 6 x 27 x 36
  auto whitened =
      torch::mm(ae->whiten.reshape({27, 27}), cols.permute({1, 0, 2}).reshape({27, -1}));
  whitened = whitened / whitened.norm(2, 0, true);
  auto best = std::get<0>(torch::mm(d, whitened).max(1));  // each atom's closest patch
  EXPECT_GT(best.min().item<double>(), 1 - 1e-4);
  auto from_bytes = d.clone();
  torch::manual_seed(7);
  ae->init_from_data(floats);
  EXPECT_LE(
      (ae->encoder->as<PatchEncoderImpl>()->dictionary() - from_bytes).abs().max().item<double>(),
      1e-5);
}

TEST(PatchAutoencoder, AtomsStartOnWhitenedPatchesAndTrainingMovesThemOntoWhatTheyWin) {
  // Images made of two patterns (and their negatives, at random scales) plus noise: the atoms
  // start on noisy samples of them, and reconstruction training averages the noise away, as
  // k-means does. The reconstruction loss falls with it.
  torch::manual_seed(3);
  auto ae = make(patch(8, 3, 0.0), 1, 3);
  {
    torch::NoGradGuard no_grad;  // a stem that passes every pixel of the patch through
    ae->whiten.zero_();
    for (int64_t r = 0; r < 9; ++r) ae->whiten[r][0][r / 3][r % 3] = 1.0;
  }
  auto a = torch::randn({9}), b = torch::randn({9});
  a /= a.norm();
  b -= (b.dot(a)) * a;
  b /= b.norm();
  auto data_for = [&](int64_t n) {
    auto which = torch::randint(0, 2, {n, 1}).to(torch::kFloat);
    auto sign = torch::randint(0, 2, {n, 1}).to(torch::kFloat) * 2 - 1;
    auto scale = torch::rand({n, 1}) + 0.5;
    auto noise = torch::randn({n, 9}) * 0.15;
    return ((which * a + (1 - which) * b) * sign * scale + noise).view({n, 1, 3, 3});
  };
  auto alignment = [&] {  // how well the best atom for the worse-served pattern fits it
    torch::NoGradGuard no_grad;
    auto d = ae->encoder->as<PatchEncoderImpl>()->dictionary();
    return std::min(torch::mv(d, a).abs().max().item<double>(),
                    torch::mv(d, b).abs().max().item<double>());
  };
  const double random = alignment();
  auto first_images = data_for(256);
  ae->init_from_data(first_images);
  {
    // Every atom is one of those patches (whitened, here passed through), at unit length.
    torch::NoGradGuard no_grad;
    auto d = ae->encoder->as<PatchEncoderImpl>()->dictionary();
    auto cos = torch::mm(
        d, torch::nn::functional::normalize(first_images.view({256, 9}),
                                            torch::nn::functional::NormalizeFuncOptions().dim(1))
               .t());
    EXPECT_GT(std::get<0>(cos.max(1)).min().item<double>(), 1 - 1e-5);
  }
  const double sampled = alignment();
  torch::optim::Adam opt(ae->parameters(), 0.01);
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    auto x = data_for(64);
    auto recon = ae->forward(x), target = ae->target(x);
    auto loss = torch::mse_loss(recon, target);  // as the Pretrainer's
    opt.zero_grad();
    loss.backward();
    opt.step();
    // The error at the one whole patch (the rest of the map is the border, never reconstructed).
    auto centre = [](const torch::Tensor& t) { return t.narrow(2, 1, 1).narrow(3, 1, 1); };
    (step == 0 ? first : last) = torch::mse_loss(centre(recon), centre(target)).item<double>();
  }
  EXPECT_LT(random, 0.9);
  EXPECT_LT(sampled, 0.995);
  EXPECT_GT(alignment(), sampled) << "sampled " << sampled;
  EXPECT_GT(alignment(), 0.98);
  EXPECT_LT(last, first);
}

TEST(PatchAutoencoder, FlopsBottleneckAndDescription) {
  // The stem (147 x 147 at 32 x 32 pixels), 1,600 atoms at 26 x 26 positions, the decoder.
  EXPECT_EQ(forward_flops(patch(1600, 7), 3, 32),
            2LL * 147 * 147 * 32 * 32 + 2LL * 1600 * 147 * 26 * 26 + 2LL * 147 * 26 * 26);
  EXPECT_EQ(bottleneck_size(patch(1600, 7), 32), 2 * 26 * 26);
  EXPECT_EQ(describe_architecture(patch(1600, 7), 3, 32),
            "patch-autoencoder whiten=7/0.1 atoms=1600 threshold=0.25");
  EXPECT_NE(describe_architecture(patch(1600, 7), 1, 32),
            describe_architecture(patch(1600, 7), 3, 32));
  EXPECT_NE(describe_architecture(patch(1600, 7), 3, 32),
            describe_architecture(patch(1600, 7, 0.5), 3, 32));
  // Normalised responses: each position's squared norm, and the description says so.
  EXPECT_EQ(forward_flops(patch(1600, 7, 0.25, true), 3, 32),
            forward_flops(patch(1600, 7), 3, 32) + 2LL * 147 * 26 * 26);
  EXPECT_EQ(describe_architecture(patch(1600, 7, 0.25, true), 3, 32),
            "patch-autoencoder whiten=7/0.1 atoms=1600 threshold=0.25 normalized");
}

TEST(PatchAutoencoder, ExportsEqualTheNativeModel) {
  torch::manual_seed(4);
  for (const bool normalize : {false, true}) {
    auto m = patch(8, 3, 0.2, normalize);
    Autoencoder ae(m, 3, 12);
    ae->set_normalization(torch::tensor({0.49f, 0.48f, 0.45f}),
                          torch::tensor({0.25f, 0.24f, 0.26f}));
    ae->fit_whitening(torch::rand({20, 3, 12, 12}));
    freeze(ae);
    const CodeSpec spec({2}, config::Pooling::kAvgMax);
    Head head(code_dim(m, spec), std::vector<int64_t>{6}, 0.0, 3);
    head->eval();
    torch::NoGradGuard no_grad;
    auto x = torch::rand({4, 3, 12, 12});
    auto codes = pool_codes(ae->encode(ae->normalize(x)), spec);
    auto diff = [](const torch::Tensor& a, const torch::Tensor& b) {
      return (a - b).abs().max().item<double>();
    };
    EXPECT_LE(diff(script_encoder(ae, spec).forward({x}).toTensor(), codes), 1e-5);
    auto recon = ae->to_images(ae->forward(ae->normalize(x))).clamp(0, 1);
    EXPECT_LE(diff(script_autoencoder(ae).forward({x}).toTensor(), recon), 1e-5);
    EXPECT_LE(diff(script_classifier(ae, head, spec).forward({x}).toTensor(), head->forward(codes)),
              1e-5);
    // Any image size with whole patches, as the native model.
    auto big = torch::rand({1, 3, 20, 16});
    EXPECT_LE(diff(script_encoder(ae, spec).forward({big}).toTensor(),
                   pool_codes(ae->encode(ae->normalize(big)), spec)),
              1e-5);
  }
}

}  // namespace
}  // namespace aefx::models
