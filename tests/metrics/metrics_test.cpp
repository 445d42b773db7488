#include "aefx/metrics/metrics.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "aefx/metrics/pca.h"
#include "test_util.h"

namespace aefx::metrics {
namespace {

TEST(Meter, WeightedMean) {
  Meter m;
  EXPECT_EQ(m.value(), 0.0);
  m.add(1.0, 1);
  m.add(4.0, 3);
  EXPECT_DOUBLE_EQ(m.value(), 3.25);
  EXPECT_DOUBLE_EQ(m.total_weight(), 4.0);
  m.reset();
  EXPECT_EQ(m.value(), 0.0);
}

TEST(ConfusionMatrix, CountsAccuracyPerClass) {
  ConfusionMatrix cm(3);
  cm.add(torch::tensor({0, 1, 1, 2, 0}, torch::kLong),
         torch::tensor({0, 1, 2, 2, 1}, torch::kLong));
  const auto c = cm.counts();
  EXPECT_EQ(c[0], (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(c[1], (std::vector<int64_t>{1, 1, 0}));
  EXPECT_EQ(c[2], (std::vector<int64_t>{0, 1, 1}));
  EXPECT_DOUBLE_EQ(cm.accuracy(), 3.0 / 5.0);
  EXPECT_EQ(cm.per_class_accuracy(), (std::vector<double>{1.0, 0.5, 0.5}));
  EXPECT_EQ(cm.total(), 5);
  EXPECT_THROW(cm.add(torch::tensor({3}, torch::kLong), torch::tensor({0}, torch::kLong)),
               c10::Error);
}

TEST(Knn, CosineNeighboursVoteWeightedByTemperature) {
  // Class 0 points along x, class 1 along y; lengths must not matter (cosine).
  const auto train = torch::tensor({{1.0f, 0.0f}, {5.0f, 0.2f}, {0.0f, 3.0f}, {0.1f, 1.0f}});
  const auto labels = torch::tensor({0, 0, 1, 1}, torch::kLong);
  KnnClassifier knn(train, labels, 2, 2, 0.07);
  EXPECT_TRUE(torch::equal(knn.predict(torch::tensor({{2.0f, 0.1f}, {0.2f, 7.0f}})),
                           torch::tensor({0, 1}, torch::kLong)));
  EXPECT_EQ(KnnClassifier(train, labels, 2, 200, 0.07).k(), 4);  // capped at the train rows
  // Two class-0 neighbours at similarity 0.6 against one class-1 neighbour at 1.0: a low
  // temperature lets the close one win (e^(1/0.07) > 2 e^(0.6/0.07)), a high one the majority.
  const auto t2 = torch::tensor({{0.6f, 0.8f}, {0.6f, -0.8f}, {1.0f, 0.0f}});
  const auto l2 = torch::tensor({0, 0, 1}, torch::kLong);
  const auto q = torch::tensor({{1.0f, 0.0f}});
  EXPECT_EQ(KnnClassifier(t2, l2, 2, 3, 0.07).predict(q).item<int64_t>(), 1);
  EXPECT_EQ(KnnClassifier(t2, l2, 2, 3, 10.0).predict(q).item<int64_t>(), 0);
}

TEST(Knn, Bfloat16SimilaritiesAgreeWithFloat) {
  torch::manual_seed(3);
  const auto train = torch::randn({300, 64});
  const auto labels = torch::randint(0, 5, {300}, torch::kLong);
  const auto queries = train.narrow(0, 0, 50) + 0.1 * torch::randn({50, 64});
  const KnnClassifier knn32(train, labels, 5, 20, 0.07);
  const KnnClassifier knn16(train, labels, 5, 20, 0.07, torch::kBFloat16);
  EXPECT_EQ(knn32.dtype(), torch::kFloat);
  EXPECT_EQ(knn16.dtype(), torch::kBFloat16);
  const auto fp32 = knn32.predict(queries);
  const auto bf16 = knn16.predict(queries);
  EXPECT_EQ(bf16.scalar_type(), torch::kLong);
  EXPECT_GE((fp32 == bf16).sum().item<int64_t>(), 48);       // near ties may round the other way
  EXPECT_TRUE(torch::equal(fp32, labels.narrow(0, 0, 50)));  // each query's own row wins
}

TEST(Knn, BankFilledChunkByChunkMatchesTheWholeSplit) {
  torch::manual_seed(4);
  const auto train = torch::randn({300, 32}) * 3;
  const auto labels = torch::randint(0, 4, {300}, torch::kLong);
  const auto queries = torch::randn({40, 32});
  const KnnClassifier whole(train, labels, 4, 15, 0.1);
  KnnClassifier chunked(32, labels, 4, 15, 0.1, torch::kFloat, torch::kCPU);
  // In an order other than the rows', in chunks of another dtype: the result is the same. Until
  // every row is set, predict refuses (an overlapping chunk does not count twice).
  chunked.set_rows(200, train.narrow(0, 200, 100).to(torch::kDouble));
  chunked.set_rows(0, train.narrow(0, 0, 128));
  chunked.set_rows(0, train.narrow(0, 0, 172));        // 400 rows set in all, 300 distinct
  EXPECT_THROW(chunked.predict(queries), c10::Error);  // rows 172..199 unset
  chunked.set_rows(128, train.narrow(0, 128, 72));
  EXPECT_TRUE(torch::equal(whole.predict(queries), chunked.predict(queries)));
  // Each row at its own offset: with k 1, a query next to row i gets row i's label.
  KnnClassifier nearest(32, labels, 4, 1, 0.1, torch::kFloat, torch::kCPU);
  nearest.set_rows(150, train.narrow(0, 150, 150));
  nearest.set_rows(0, train.narrow(0, 0, 150));
  EXPECT_TRUE(torch::equal(nearest.predict(train + 0.01 * torch::randn({300, 32})), labels));
  EXPECT_THROW(chunked.set_rows(-1, train.narrow(0, 0, 5)), c10::Error);
  EXPECT_THROW(chunked.set_rows(290, train.narrow(0, 0, 20)), c10::Error);  // past the end
  EXPECT_THROW(chunked.set_rows(0, torch::randn({5, 31})), c10::Error);     // wrong width
  EXPECT_THROW(KnnClassifier(0, labels, 4, 15, 0.1, torch::kFloat, torch::kCPU), c10::Error);
}

TEST(Psnr, KnownValues) {
  EXPECT_DOUBLE_EQ(psnr(0.01), 20.0);
  EXPECT_DOUBLE_EQ(psnr(1.0), 0.0);
  EXPECT_TRUE(std::isinf(psnr(0.0)));
}

// A classifier that predicts the channel holding the largest pixel, on 7 images of which 5 are
// labelled with that channel.
TEST(ClassifierAccuracy, CountsTop1InAnyBatchSize) {
  const auto images =
      torch::tensor({200, 0, 0, 0, 90, 10, 1, 2, 3, 0, 0, 255, 7, 6, 5, 1, 250, 0, 0, 0, 9},
                    torch::kUInt8)
          .view({7, 3, 1, 1});
  const auto labels = torch::tensor({0, 1, 2, 2, 0, 0, 1}, torch::kLong);
  std::vector<int64_t> batches;
  const LogitsFn largest = [&](const torch::Tensor& x) {
    EXPECT_EQ(x.scalar_type(), torch::kFloat);
    EXPECT_LE(x.max().item<float>(), 1.0f);
    EXPECT_FALSE(torch::GradMode::is_enabled());
    batches.push_back(x.size(0));
    return x.flatten(1);
  };
  EXPECT_DOUBLE_EQ(classifier_accuracy(largest, images, labels), 5.0 / 7.0);
  EXPECT_EQ(batches, (std::vector<int64_t>{7})) << "default: 500 per batch";
  for (int64_t b : {1, 2, 3, 7, 100}) {
    batches.clear();
    EXPECT_DOUBLE_EQ(classifier_accuracy(largest, images, labels, {b}), 5.0 / 7.0) << b;
    EXPECT_EQ(static_cast<int64_t>(batches.size()), (7 + b - 1) / b) << b;
    EXPECT_EQ(batches.back(), 7 - (static_cast<int64_t>(batches.size()) - 1) * b) << b;
  }
  EXPECT_THROW(classifier_accuracy(largest, images, labels, {0}), std::invalid_argument);
  EXPECT_THROW(classifier_accuracy(largest, images, labels.narrow(0, 0, 6)), std::invalid_argument);
  EXPECT_TRUE(
      std::isnan(classifier_accuracy(largest, images.narrow(0, 0, 0), labels.narrow(0, 0, 0))));
}

EpochRecord record(const std::string& stage, int64_t epoch, double loss) {
  EpochRecord r;
  r.stage = stage;
  r.epoch = epoch;
  r.epochs = 3;
  r.loss = loss;
  r.lr = 1e-3;
  r.seconds = 1.5;
  if (stage == "pretrain") {
    r.val_mse = 0.01;
    r.val_psnr = 20;
  } else {
    r.val_accuracy = 0.5;
  }
  return r;
}

TEST(EpochLog, WritesJsonlAndCsvAndReadsThemBack) {
  testing::TempDir dir;
  {
    EpochLog log(dir / "metrics.jsonl", dir / "metrics.csv");
    log.begin_stage("pretrain", 0, {"classify"});
    log.add(record("pretrain", 1, 0.5));
    log.add(record("pretrain", 2, 0.25));
    log.begin_stage("classify", 0, {});
    log.add(record("classify", 1, 2.0));
  }
  const std::string jsonl = testing::read_file(dir / "metrics.jsonl");
  EXPECT_EQ(std::count(jsonl.begin(), jsonl.end(), '\n'), 3);
  EXPECT_EQ(jsonl.rfind(R"({"stage":"pretrain","epoch":1,"epochs":3,"loss":0.5,)", 0), 0u) << jsonl;
  // Fields that were not measured are left out of the JSON and empty in the CSV.
  EXPECT_EQ(jsonl.substr(0, jsonl.find('\n')).find("val_accuracy"), std::string::npos);
  const std::string csv = testing::read_file(dir / "metrics.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "stage,epoch,epochs,loss,lr,images_per_second,val_loss,val_accuracy,val_mse,val_psnr,"
            "seconds,wall_seconds,time");
  EXPECT_NE(csv.find("\npretrain,2,3,0.25,0.001,,,,0.01,20,1.5,,20"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\nclassify,1,3,2,0.001,,,0.5,,,1.5,,20"), std::string::npos) << csv;

  EpochLog again(dir / "metrics.jsonl", dir / "metrics.csv");
  ASSERT_EQ(again.records().size(), 3u);
  EXPECT_EQ(again.of("pretrain").size(), 2u);
  const auto c = again.of("classify").at(0);
  EXPECT_EQ(c.epoch, 1);
  EXPECT_DOUBLE_EQ(c.loss, 2.0);
  EXPECT_DOUBLE_EQ(c.val_accuracy, 0.5);
  EXPECT_TRUE(std::isnan(c.val_mse));
  EXPECT_EQ(c.time.size(), 20u) << c.time;
}

TEST(EpochLog, RerunsAndResumesReplaceTheEpochsTheyRedo) {
  testing::TempDir dir;
  EpochLog log(dir / "metrics.jsonl", dir / "metrics.csv");
  for (int e = 1; e <= 3; ++e) log.add(record("pretrain", e, 1.0 / e));
  log.add(record("classify", 1, 2.0));
  // A resume from the end of epoch 2 redoes epoch 3: its record is replaced, not duplicated.
  log.begin_stage("pretrain", 2, {"classify"});
  EXPECT_EQ(log.of("pretrain").size(), 2u);
  EXPECT_TRUE(log.of("classify").empty()) << "a rerun pretrain makes later stages stale";
  log.add(record("pretrain", 3, 0.3));
  // An epoch redone after a kill that came between its record and its checkpoint.
  log.add(record("pretrain", 3, 0.31));
  ASSERT_EQ(log.of("pretrain").size(), 3u);
  EXPECT_DOUBLE_EQ(log.of("pretrain").back().loss, 0.31);
  // Starting over drops the stage's records.
  log.begin_stage("pretrain", 0, {"classify"});
  EXPECT_TRUE(EpochLog(dir / "metrics.jsonl", dir / "metrics.csv").records().empty());
}

TEST(EpochLog, DamagedFileIsNamedWithItsLine) {
  testing::TempDir dir;
  testing::write_bytes(dir / "metrics.jsonl",
                       "{\"stage\": \"pretrain\", \"epoch\": 1, \"epochs\": 2}\n{\"stage\": [\n");
  try {
    EpochLog log(dir / "metrics.jsonl", dir / "metrics.csv");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl:2"), std::string::npos) << e.what();
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

}  // namespace
}  // namespace aefx::metrics
