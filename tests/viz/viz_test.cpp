#include "aefx/viz/viz.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef AEFX_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

#include "test_util.h"

namespace aefx::viz {
namespace {

namespace fs = std::filesystem;

using ScratchDir = testing::TempDir;  // a fresh folder, removed with its contents

// The message of the E that f throws, or a marker when it throws nothing.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception of the expected type>";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Image gradient(int size, int seed) {
  Image image{size, size, 3, {}};
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      image.pixels.push_back(uint8_t((x * 8 + seed * 30) % 256));
      image.pixels.push_back(uint8_t((y * 8 + seed * 50) % 256));
      image.pixels.push_back(uint8_t((x + y) * 4 % 256));
    }
  }
  return image;
}

const std::vector<std::string> kCifar = {"airplane", "automobile", "bird",  "cat",  "deer",
                                         "dog",      "frog",       "horse", "ship", "truck"};

std::vector<Chart> example_charts() {
  Chart pretrain{"pretrain: reconstruction loss", "epoch", "MSE loss", {}, true};
  Series train{"train loss", {}, {}}, val{"val loss", {}, {}};
  for (int e = 1; e <= 30; ++e) {
    train.x.push_back(e);
    train.y.push_back(0.004 + 0.06 * std::exp(-0.2 * e));
    val.x.push_back(e);
    val.y.push_back(e == 7 ? NAN : 0.005 + 0.05 * std::exp(-0.18 * e));
  }
  pretrain.series = {train, val};
  Chart accuracy{"classify: validation accuracy", "epoch", "accuracy (%)", {}, false};
  accuracy.series = {{"val accuracy", {1, 2, 3}, {41.5, 55.25, 61.0}}};
  Chart single{"one epoch", "epoch", "loss", {{"train", {1}, {2.3}}}, true};
  return {pretrain, accuracy, single};
}

std::vector<std::vector<int64_t>> example_counts(int n) {
  std::vector<std::vector<int64_t>> counts(n, std::vector<int64_t>(n, 0));
  for (int r = 0; r < n; ++r) {
    counts[r][r] = 700 + (20 * r) % 260;
    for (int c = 0; c < n; ++c) {
      if (c != r) counts[r][c] = (1000 - counts[r][r]) / (n - 1);
    }
  }
  return counts;
}

void example_scatter(std::vector<std::array<double, 2>>* points, std::vector<int64_t>* labels) {
  std::mt19937 rng(1);
  std::normal_distribution<double> noise(0, 1);
  for (int i = 0; i < 2000; ++i) {
    const int k = i % 10;
    points->push_back({8 * std::cos(k * 0.63) + noise(rng), 5 * std::sin(k * 0.63) + noise(rng)});
    labels->push_back(k);
  }
}

// Bad arguments give std::invalid_argument naming the file and the problem, in both builds,
// and write nothing.
TEST(Viz, BadArgumentsNameFileAndProblem) {
  ScratchDir dir;
  const fs::path file = dir / "picture.png";
  const auto expect_invalid = [&](auto&& call, const std::string& problem) {
    const std::string message = message_of<std::invalid_argument>(call);
    EXPECT_TRUE(contains(message, file.string())) << message;
    EXPECT_TRUE(contains(message, problem)) << message;
    EXPECT_FALSE(fs::exists(file));
  };
  const std::vector<Image> two = {gradient(8, 0), gradient(8, 1)};
  expect_invalid([&] { write_reconstructions(file, two, {two[0]}, {}, "t"); },
                 "2 inputs but 1 outputs");
  expect_invalid([&] { write_reconstructions(file, {}, {}, {}, "t"); }, "no images");
  expect_invalid([&] { write_reconstructions(file, two, two, {"only one"}, "t"); },
                 "1 captions for 2 inputs");
  expect_invalid(
      [&] {
        write_reconstructions(file, two, {two[0], gradient(9, 1)}, {}, "t");
      },
      "same size");
  Image short_image = gradient(8, 0);
  short_image.pixels.pop_back();
  expect_invalid([&] { write_reconstructions(file, {short_image}, {two[0]}, {}, "t"); },
                 "input 0 is 8x8x3 but has 191 bytes");
  Image two_channels{8, 8, 2, std::vector<uint8_t>(128)};
  expect_invalid([&] { write_reconstructions(file, {two[0]}, {two_channels}, {}, "t"); },
                 "output 0 has 2 channels");
  expect_invalid([&] { write_reconstructions(file, two, two, {}, "t", 0); }, "columns");
  expect_invalid([&] { write_reconstructions(file, two, two, {}, "t", 8, 0); }, "scale");

  expect_invalid([&] { write_charts(file, {}, "t"); }, "no charts");
  Chart uneven{"loss", "epoch", "loss", {{"train", {1, 2, 3}, {1, 2}}}, false};
  expect_invalid([&] { write_charts(file, {uneven}, "t"); }, "3 x values but 2 y values");

  expect_invalid([&] { write_confusion(file, {}, {}, "t"); }, "no classes");
  expect_invalid(
      [&] {
        write_confusion(file, example_counts(3), {"a", "b"}, "t");
      },
      "2 class names but 3 rows");
  auto ragged = example_counts(3);
  ragged[1].pop_back();
  expect_invalid(
      [&] {
        write_confusion(file, ragged, {"a", "b", "c"}, "t");
      },
      "row 1 has 2 counts, expected 3");
  auto negative = example_counts(2);
  negative[0][1] = -1;
  expect_invalid([&] { write_confusion(file, negative, {"a", "b"}, "t"); }, "negative");

  const std::vector<std::array<double, 2>> points = {{0, 0}, {1, 1}};
  expect_invalid([&] { write_scatter(file, points, {0}, {"a"}, "t", "x", "y"); },
                 "2 points but 1 labels");
  expect_invalid(
      [&] {
        write_scatter(file, points, {0, 2}, {"a", "b"}, "t", "x", "y");
      },
      "label 2 of point 1 is out of range (2 classes)");
  expect_invalid(
      [&] {
        write_scatter(file, points, {0, -1}, {"a", "b"}, "t", "x", "y");
      },
      "label -1");
  expect_invalid([&] { write_scatter(file, points, {0, 0}, {}, "t", "x", "y"); }, "no class names");
}

#ifndef AEFX_HAVE_OPENCV

TEST(Viz, WithoutOpenCvEveryWriterSaysSo) {
  EXPECT_FALSE(available());
  ScratchDir dir;
  std::vector<std::array<double, 2>> points;
  std::vector<int64_t> labels;
  example_scatter(&points, &labels);
  const std::vector<Image> images = {gradient(8, 0)};
  const std::vector<std::pair<std::string, std::function<void(const fs::path&)>>> writers = {
      {"recon.png", [&](const fs::path& f) { write_reconstructions(f, images, images, {}, "t"); }},
      {"charts.png", [&](const fs::path& f) { write_charts(f, example_charts(), "t"); }},
      {"confusion.png",
       [&](const fs::path& f) { write_confusion(f, example_counts(10), kCifar, "t"); }},
      {"scatter.png",
       [&](const fs::path& f) { write_scatter(f, points, labels, kCifar, "t", "x", "y"); }}};
  for (const auto& [name, write] : writers) {
    const fs::path file = dir / name;
    const std::string message = message_of<std::runtime_error>([&] { write(file); });
    EXPECT_TRUE(contains(message, "without OpenCV")) << message;
    EXPECT_TRUE(contains(message, file.string())) << message;
    EXPECT_FALSE(fs::exists(file));
  }
}

#else

Image solid(int height, int width, uint8_t r, uint8_t g, uint8_t b) {
  Image image{height, width, 3, {}};
  for (int i = 0; i < height * width; ++i) image.pixels.insert(image.pixels.end(), {r, g, b});
  return image;
}

// The decoded picture (BGR), failing the test when it cannot be read.
cv::Mat3b read_png(const fs::path& file) {
  EXPECT_TRUE(fs::exists(file)) << file;
  cv::Mat image = cv::imread(file.string(), cv::IMREAD_COLOR);
  EXPECT_FALSE(image.empty()) << "cannot decode " << file;
  return image;
}

// Pixels within `tolerance` (per channel) of `bgr`.
int count_near(const cv::Mat3b& image, const cv::Vec3b& bgr, int tolerance = 8) {
  int n = 0;
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      const cv::Vec3b& p = image(y, x);
      n += std::abs(p[0] - bgr[0]) <= tolerance && std::abs(p[1] - bgr[1]) <= tolerance &&
           std::abs(p[2] - bgr[2]) <= tolerance;
    }
  }
  return n;
}

// A real picture: a white background, yet varied (text, lines, colours). Pictures without data
// are mostly white, so they pass a lower `min_stddev`.
void expect_not_blank(const cv::Mat3b& image, size_t min_colours, double min_stddev = 40) {
  cv::Scalar mean, stddev;
  cv::meanStdDev(image, mean, stddev);
  EXPECT_GT(stddev[0] + stddev[1] + stddev[2], min_stddev) << "picture looks blank";
  std::set<uint32_t> colours;
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      const cv::Vec3b& p = image(y, x);
      colours.insert(uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2]);
    }
  }
  EXPECT_GE(colours.size(), min_colours);
  EXPECT_EQ(image(0, 0), cv::Vec3b(255, 255, 255)) << "background is not white";
}

// tab10 colours (RGB) as the picture stores them (BGR).
const cv::Vec3b kBlue(180, 119, 31), kOrange(14, 127, 255), kGreen(44, 160, 44);

TEST(Viz, AvailableWithOpenCv) { EXPECT_TRUE(available()); }

TEST(Viz, ReconstructionsLayoutAndPixels) {
  ScratchDir dir;
  const fs::path file = dir / "reconstructions.png";
  // 16 images in bands of 8: inputs solid red for the first, reconstructions solid green, so
  // the test can find them where the documented layout puts them.
  std::vector<Image> inputs, outputs;
  std::vector<std::string> captions;
  for (int i = 0; i < 16; ++i) {
    inputs.push_back(i == 0 ? solid(32, 32, 255, 0, 0) : gradient(32, i));
    outputs.push_back(i == 0 ? solid(32, 32, 0, 255, 0) : gradient(32, i + 1));
    captions.push_back(kCifar[i % 10]);
  }
  write_reconstructions(file, inputs, outputs, captions, "reconstructions", 8, 3);
  const cv::Mat3b image = read_png(file);
  const int tile = 32 * 3;
  EXPECT_EQ(image.cols, kReconLabelWidth + 8 * (tile + 1) + 1 + kReconMargin);
  EXPECT_EQ(image.rows, kReconTitleHeight + 2 * (2 * tile + 3 + kReconCaptionHeight) +
                            kReconBandGap + kReconMargin);
  EXPECT_EQ(image.cols, 907);
  EXPECT_EQ(image.rows, 486);
  expect_not_blank(image, 1000);
  // Input 0 (RGB red = BGR 0,0,255) fills its tile, nearest-neighbour scaled.
  const int x = kReconLabelWidth + 1, in_y = kReconTitleHeight + 1;
  const int out_y = in_y + tile + kReconCaptionHeight + 1;
  EXPECT_EQ(image(in_y, x), cv::Vec3b(0, 0, 255));
  EXPECT_EQ(image(in_y + tile - 1, x + tile - 1), cv::Vec3b(0, 0, 255));
  EXPECT_EQ(image(out_y, x), cv::Vec3b(0, 255, 0));
  EXPECT_EQ(image(out_y + tile - 1, x + tile - 1), cv::Vec3b(0, 255, 0));
  // 1-pixel separators around the tile.
  EXPECT_NE(image(in_y, x + tile), cv::Vec3b(0, 0, 255));
  EXPECT_NE(image(in_y - 1, x), cv::Vec3b(0, 0, 255));
  EXPECT_EQ(image(in_y, x + tile), image(in_y - 1, x));
  // The caption row under the inputs has dark text on white.
  const cv::Mat3b caption = image(cv::Rect(x, in_y + tile, tile, kReconCaptionHeight));
  EXPECT_GT(count_near(caption, cv::Vec3b(255, 255, 255), 0), tile * 4);
  EXPECT_GT(count_near(caption, cv::Vec3b(40, 40, 40), 60), 10);
  // The row labels on the left.
  const cv::Mat3b labels = image(cv::Rect(0, in_y, kReconLabelWidth, 2 * tile));
  EXPECT_GT(count_near(labels, cv::Vec3b(40, 40, 40), 60), 50);
}

TEST(Viz, ReconstructionsGreyNoCaptionsFewImages) {
  ScratchDir dir;
  const fs::path file = dir / "grey.png";
  Image grey{28, 28, 1, std::vector<uint8_t>(28 * 28, 200)};
  write_reconstructions(file, {grey, grey, grey}, {grey, grey, grey}, {}, "grey", 2, 2);
  const cv::Mat3b image = read_png(file);
  const int tile = 28 * 2;
  EXPECT_EQ(image.cols,
            std::max(kReconMinWidth, kReconLabelWidth + 2 * (tile + 1) + 1 + kReconMargin));
  EXPECT_EQ(image.rows, kReconTitleHeight + 2 * (2 * tile + 3) + kReconBandGap + kReconMargin);
  EXPECT_EQ(image(kReconTitleHeight + 1, kReconLabelWidth + 1), cv::Vec3b(200, 200, 200));

  // One column, one image, scale 1: the picture keeps its minimum width.
  write_reconstructions(file, {grey}, {grey}, {"x"}, "one", 8, 1);
  const cv::Mat3b one = read_png(file);
  EXPECT_EQ(one.cols, kReconMinWidth);
  EXPECT_EQ(one.rows, kReconTitleHeight + 2 * 28 + 3 + kReconCaptionHeight + kReconMargin);
}

TEST(Viz, ChartsSizeColoursAndGaps) {
  ScratchDir dir;
  const fs::path file = dir / "charts.png";
  write_charts(file, example_charts(), "training curves");
  const cv::Mat3b image = read_png(file);
  EXPECT_EQ(image.cols, 2 * kChartWidth);
  EXPECT_EQ(image.rows, kChartTitleHeight + 2 * kChartHeight);
  expect_not_blank(image, 100);
  // The first chart has two series (blue, orange), the others one (blue); the empty fourth
  // cell stays white.
  const cv::Rect first(0, kChartTitleHeight, kChartWidth, kChartHeight);
  EXPECT_GT(count_near(image(first), kBlue), 200);
  EXPECT_GT(count_near(image(first), kOrange), 200);
  EXPECT_EQ(count_near(image(first), kGreen), 0);
  const cv::Rect second(kChartWidth, kChartTitleHeight, kChartWidth, kChartHeight);
  EXPECT_GT(count_near(image(second), kBlue), 100);
  // The single point of the third chart is drawn as a marker.
  const cv::Rect third(0, kChartTitleHeight + kChartHeight, kChartWidth, kChartHeight);
  EXPECT_GT(count_near(image(third), kBlue), 20);
  const cv::Rect fourth(kChartWidth, kChartTitleHeight + kChartHeight, kChartWidth, kChartHeight);
  EXPECT_EQ(count_near(image(fourth), cv::Vec3b(255, 255, 255), 0), fourth.area());

  // One chart: one cell wide.
  write_charts(file, {example_charts()[1]}, "one");
  const cv::Mat3b one = read_png(file);
  EXPECT_EQ(one.cols, kChartWidth);
  EXPECT_EQ(one.rows, kChartTitleHeight + kChartHeight);
}

TEST(Viz, ChartsWithoutDrawablePointsStillDraw) {
  ScratchDir dir;
  const fs::path file = dir / "empty.png";
  Chart nothing{"no data yet", "epoch", "loss", {{"val", {}, {}}}, false};
  Chart all_nan{"nan", "epoch", "loss", {{"val", {1, 2}, {NAN, INFINITY}}}, false};
  Chart log_zero{"log of zero", "epoch", "loss", {{"train", {1, 2}, {0, -1}}}, true};
  Chart no_series{"no series", "x", "y", {}, false};
  write_charts(file, {nothing, all_nan, log_zero, no_series}, "empty");
  const cv::Mat3b image = read_png(file);
  EXPECT_EQ(image.cols, 2 * kChartWidth);
  EXPECT_EQ(image.rows, kChartTitleHeight + 2 * kChartHeight);
  EXPECT_EQ(count_near(image, kBlue), 0) << "nothing should have been plotted";
  expect_not_blank(image, 20, 20);  // frames, ticks, labels, "no data"
}

TEST(Viz, ConfusionSizeAndCellColours) {
  ScratchDir dir;
  const fs::path file = dir / "confusion.png";
  auto counts = example_counts(10);
  counts[9] = std::vector<int64_t>(10, 0);  // a class without samples
  write_confusion(file, counts, kCifar, "test set");
  const cv::Mat3b image = read_png(file);
  EXPECT_EQ(image.cols, kConfusionLeft + 10 * kConfusionCell + kConfusionRight);
  EXPECT_EQ(image.rows, kConfusionTop + 10 * kConfusionCell + kConfusionBottom);
  EXPECT_EQ(image.cols, 840);
  EXPECT_EQ(image.rows, 820);
  expect_not_blank(image, 200);
  // Cell corners (clear of the count text): the diagonal is dark blue, the rest near white,
  // the empty row white.
  const auto corner = [&](int r, int c) {
    return image(kConfusionTop + r * kConfusionCell + 4, kConfusionLeft + c * kConfusionCell + 4);
  };
  const cv::Vec3b diagonal = corner(0, 0);
  EXPECT_GT(int(diagonal[0]), int(diagonal[2]) + 80) << "diagonal is not blue";
  EXPECT_LT(int(diagonal[2]), 100);
  const cv::Vec3b off = corner(0, 1);
  EXPECT_GT(int(off[2]), 220);
  EXPECT_GT(int(off[0]), int(off[2]) - 1);  // a pale tint of blue
  EXPECT_GT(int(corner(9, 0)[2]), 240);
  // Darker with a larger share of the row.
  EXPECT_LT(int(corner(8, 8)[2]), int(corner(0, 0)[2]) + 1);
}

TEST(Viz, ConfusionManyClassesAndLongNames) {
  ScratchDir dir;
  const fs::path file = dir / "confusion30.png";
  std::vector<std::string> names;
  for (int i = 0; i < 30; ++i) names.push_back("a rather long class name " + std::to_string(i));
  write_confusion(file, example_counts(30), names, "");
  const cv::Mat3b image = read_png(file);
  const int cell = std::max(24, 720 / 30);
  EXPECT_EQ(image.cols, kConfusionLeft + 30 * cell + kConfusionRight);
  EXPECT_EQ(image.rows, kConfusionTop + 30 * cell + kConfusionBottom);
  expect_not_blank(image, 200);
}

TEST(Viz, ScatterSizeClassColoursAndDeterminism) {
  ScratchDir dir;
  const fs::path file = dir / "scatter.png";
  std::vector<std::array<double, 2>> points;
  std::vector<int64_t> labels;
  example_scatter(&points, &labels);
  points.push_back({NAN, 0});  // skipped
  labels.push_back(0);
  write_scatter(file, points, labels, kCifar, "latent codes", "PC 1", "PC 2");
  const cv::Mat3b image = read_png(file);
  EXPECT_EQ(image.cols, kScatterWidth);
  EXPECT_EQ(image.rows, kScatterHeight);
  expect_not_blank(image, 1000);
  // Every class colour of tab10 shows (the legend discs carry the exact colour).
  const unsigned char tab10[10][3] = {
      {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  for (const auto& rgb : tab10) {
    const cv::Vec3b bgr(rgb[2], rgb[1], rgb[0]);
    EXPECT_GT(count_near(image, bgr, 2), 20)
        << "class colour RGB " << int(rgb[0]) << "," << int(rgb[1]) << "," << int(rgb[2]);
  }
  // Same input, same bytes.
  const fs::path again = dir / "again.png";
  write_scatter(again, points, labels, kCifar, "latent codes", "PC 1", "PC 2");
  std::ifstream a(file, std::ios::binary), b(again, std::ios::binary);
  const std::string bytes_a((std::istreambuf_iterator<char>(a)), {});
  const std::string bytes_b((std::istreambuf_iterator<char>(b)), {});
  EXPECT_FALSE(bytes_a.empty());
  EXPECT_EQ(bytes_a, bytes_b);
}

TEST(Viz, ScatterWithoutPointsAndManyClasses) {
  ScratchDir dir;
  write_scatter(dir / "empty.png", {}, {}, {"a", "b"}, "empty", "x", "y");
  const cv::Mat3b empty = read_png(dir / "empty.png");
  EXPECT_EQ(empty.cols, kScatterWidth);
  EXPECT_EQ(empty.rows, kScatterHeight);
  expect_not_blank(empty, 20, 20);

  std::vector<std::string> names;
  std::vector<std::array<double, 2>> points;
  std::vector<int64_t> labels;
  for (int k = 0; k < 40; ++k) names.push_back("class " + std::to_string(k));
  for (int i = 0; i < 400; ++i) {
    points.push_back({double(i % 40), double(i / 40)});
    labels.push_back(i % 40);
  }
  write_scatter(dir / "many.png", points, labels, names, "40 classes", "x", "y");
  const cv::Mat3b many = read_png(dir / "many.png");
  EXPECT_EQ(many.cols, kScatterWidth);
  EXPECT_EQ(many.rows, kScatterHeight);
}

TEST(Viz, WritesAtomicallyAndReportsUnwritableFiles) {
  ScratchDir dir;
  const fs::path file = dir / "charts.png";
  write_charts(file, example_charts(), "first");
  write_charts(file, {example_charts()[1]}, "second");  // replaces the first picture
  EXPECT_EQ(read_png(file).cols, kChartWidth);
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename(), "charts.png") << "temporary file left behind";
  }
  const fs::path missing = dir / "no_such_dir" / "charts.png";
  const std::string message =
      message_of<std::runtime_error>([&] { write_charts(missing, example_charts(), "t"); });
  EXPECT_TRUE(contains(message, missing.string())) << message;
}

#endif  // AEFX_HAVE_OPENCV

}  // namespace
}  // namespace aefx::viz
