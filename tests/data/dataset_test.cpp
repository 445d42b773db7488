#include "aefx/data/dataset.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>

#include "aefx/data/image_cache.h"
#include "aefx/data/image_rows.h"
#include "aefx/data/preprocess.h"
#include "test_util.h"

#ifdef AEFX_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

namespace aefx::data {
namespace {
namespace fs = std::filesystem;
using aefx::testing::TempDir;

std::string load_error(const std::string& root, Split split = Split::kTrain) {
  try {
    load_cifar10_binary(root, split);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(Cifar10Binary, LoadsOfficialLayout) {
  TempDir dir;
  testing::write_cifar_binary(dir.path(), 20, 30);
  auto train = load_cifar10_binary(dir.path().string(), Split::kTrain);
  EXPECT_EQ(train.images.sizes(), (std::vector<int64_t>{100, 3, 32, 32}));
  EXPECT_EQ(train.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(train.labels.size(0), 100);
  EXPECT_EQ(train.class_names, cifar10_class_names());
  // The batches folder itself works as data.root too.
  auto test = load_cifar10_binary((dir.path() / "cifar-10-batches-bin").string(), Split::kTest);
  EXPECT_EQ(test.size(), 30);
  auto [img, lab] = testing::synthetic_images(30, 10, 32, 17);
  EXPECT_TRUE(torch::equal(test.images, img));
  EXPECT_TRUE(torch::equal(test.labels, lab));
}

TEST(Cifar10Binary, BadFilesAreNamed) {
  TempDir dir;
  EXPECT_NE(load_error((dir / "nope").string()).find("does not exist"), std::string::npos);
  EXPECT_NE(load_error(dir.path().string()).find("no CIFAR-10 binary files"), std::string::npos);
  testing::write_cifar_binary(dir.path(), 4, 4);
  const fs::path d = dir / "cifar-10-batches-bin";
  fs::remove(d / "data_batch_3.bin");
  EXPECT_NE(load_error(dir.path().string()).find("data_batch_3.bin"), std::string::npos);
  testing::write_bytes(d / "data_batch_3.bin", std::string(3073 * 2 + 5, '\0'));
  const auto msg = load_error(dir.path().string());
  EXPECT_NE(msg.find("data_batch_3.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3073"), std::string::npos) << msg;
  std::string rec(3073 * 2, '\0');
  rec[3073] = 12;
  testing::write_bytes(d / "data_batch_3.bin", rec);
  const auto label_msg = load_error(dir.path().string());
  EXPECT_NE(label_msg.find("data_batch_3.bin: record 1 has label 12"), std::string::npos)
      << label_msg;
  // More records than an official batch file holds (zero bytes: valid labels and pixels).
  fs::resize_file(d / "data_batch_3.bin", 3073 * 10001);
  const auto big = load_error(dir.path().string());
  EXPECT_NE(big.find("data_batch_3.bin holds 10001 records, more than the 10000"),
            std::string::npos)
      << big;
  // Files other than the batches are ignored, each named in a warning.
  testing::write_bytes(d / "data_batch_3.bin", std::string(3073 * 4, '\0'));
  testing::write_bytes(d / "data_batch_6.bin", std::string(3073, '\0'));
  ::testing::internal::CaptureStderr();
  const auto ds = load_cifar10_binary(dir.path().string(), Split::kTrain);
  const std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(ds.size(), 20);
  EXPECT_NE(warning.find("ignoring 1 unexpected file(s)"), std::string::npos) << warning;
  EXPECT_NE(warning.find("data_batch_6.bin"), std::string::npos) << warning;
}

TEST(Cifar10Binary, ParsesBatchesInMemoryAndRejectsBadOnes) {
  std::string two(3073 * 2, '\0');
  two[0] = 3;
  two[3073] = 9;
  two[3073 + 1] = 7;  // first red pixel of record 1
  const auto* bytes = reinterpret_cast<const uint8_t*>(two.data());
  auto ds = parse_cifar10_batch(bytes, two.size(), "mem");
  EXPECT_EQ(ds.labels[0].item<int64_t>(), 3);
  EXPECT_EQ(ds.labels[1].item<int64_t>(), 9);
  EXPECT_EQ(ds.images.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_EQ(ds.images[1][0][0][0].item<uint8_t>(), 7);
  EXPECT_THROW(parse_cifar10_batch(bytes, 0, "mem"), std::runtime_error);
  EXPECT_THROW(parse_cifar10_batch(bytes, 3072, "mem"), std::runtime_error);
}

TEST(Split, DeterministicDisjointAndSized) {
  Dataset full{torch::zeros({50, 3, 4, 4}, torch::kUInt8), torch::arange(50, torch::kLong), {"a"}};
  auto [train, val] = split_validation(full, 10, 3);
  auto [train2, val2] = split_validation(full, 10, 3);
  EXPECT_EQ(train.size(), 40);
  EXPECT_EQ(val.size(), 10);
  EXPECT_TRUE(torch::equal(val.labels, val2.labels));
  auto all = std::get<0>(torch::sort(torch::cat({train.labels, val.labels})));
  EXPECT_TRUE(torch::equal(all, torch::arange(50, torch::kLong)));
  EXPECT_THROW(split_validation(full, 50, 3), std::invalid_argument);
}

TEST(Split, ClassBalancedSubsetIsSeededAndRefusesTooFewImages) {
  auto [img, lab] = testing::synthetic_images(60, 3, 8, 2);
  const Dataset ds{img, lab, {"a", "b", "c"}};
  const auto sub = class_balanced_subset(ds, 4, 7);
  ASSERT_EQ(sub.size(), 12);
  EXPECT_TRUE(torch::equal(torch::bincount(sub.labels), torch::tensor({4, 4, 4}, torch::kLong)));
  EXPECT_TRUE(torch::equal(class_balanced_subset(ds, 4, 7).images, sub.images));
  EXPECT_FALSE(torch::equal(class_balanced_subset(ds, 4, 8).images, sub.images));
  EXPECT_EQ(class_balanced_subset(ds, 0, 7).size(), 60);
  try {
    class_balanced_subset(ds, 21, 7);
    ADD_FAILURE() << "21 per class out of 20 was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("classify.labels_per_class"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("class 'a' has 20"), std::string::npos) << e.what();
  }
}

TEST(ChannelMoments, ChunksAddUpToTheWholeAndChunksStayBounded) {
  const auto images = torch::randint(0, 256, {10, 3, 5, 5}, torch::kUInt8);
  const auto x = images.to(torch::kDouble).div(255.0);
  const auto want_mean = x.mean({0, 2, 3}).to(torch::kFloat);
  const auto want_std = x.std({0, 2, 3}, false).to(torch::kFloat);
  ChannelMoments m;
  m.add(images.narrow(0, 0, 3));
  m.add(images.narrow(0, 3, 7));
  const auto [mean, std] = m.mean_std();
  EXPECT_TRUE(torch::allclose(mean, want_mean, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(std, want_std, 1e-5, 1e-6));
  const auto [mean2, std2] = channel_stats(images);
  EXPECT_TRUE(torch::allclose(mean2, want_mean, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(std2, want_std, 1e-5, 1e-6));
  EXPECT_EQ(ChannelMoments::rows_per_chunk(3 * 32 * 32), 1365);  // 32 MB of doubles
  EXPECT_EQ(ChannelMoments::rows_per_chunk(3 * 224 * 224), 27);
  EXPECT_EQ(ChannelMoments::rows_per_chunk(int64_t{1} << 30), 1);
  EXPECT_THROW(ChannelMoments().mean_std(), c10::Error);
}

TEST(ImageRows, GatherKeepsOrderAcrossPartsAndStatsMatchTheWhole) {
  const auto a = torch::randint(0, 256, {5, 3, 4, 4}, torch::kUInt8);
  const auto b = torch::randint(0, 256, {7, 3, 4, 4}, torch::kUInt8);
  ImageRows rows(a);
  rows.append(b);
  const auto whole = torch::cat({a, b});
  ASSERT_EQ(rows.size(), 12);
  const auto idx = torch::tensor({11, 0, 6, 4, 5, 2}, torch::kLong);
  EXPECT_TRUE(torch::equal(rows.gather(idx), whole.index_select(0, idx)));
  EXPECT_TRUE(torch::equal(rows.rows(1, 12, 3), whole.slice(0, 1, 12, 3)));
  const auto [mean, std] = rows.channel_stats();
  const auto x = whole.to(torch::kDouble).div(255.0);
  EXPECT_TRUE(torch::allclose(mean, x.mean({0, 2, 3}).to(torch::kFloat), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(std, x.std({0, 2, 3}, false).to(torch::kFloat), 1e-5, 1e-6));
  EXPECT_THROW(rows.append(torch::zeros({2, 1, 4, 4}, torch::kUInt8)), c10::Error);
}

TEST(ImageCache, DecodesOnceSkipsBadFilesAndRebuildsWhenTheFilesChange) {
  if (!can_decode_images()) GTEST_SKIP() << "built without OpenCV";
  testing::TempDir dir;
  auto [img, lab] = testing::synthetic_images(9, 3, 12, 4);
  std::vector<std::string> files;
  for (int64_t i = 0; i < 9; ++i) {
    files.push_back((dir / ("img" + std::to_string(i) + ".png")).string());
    testing::write_png(files.back(), img[i], 12);
  }
  testing::write_bytes(dir / "bad.png", "garbage");
  files.insert(files.begin() + 4, (dir / "bad.png").string());
  auto cache = ImageCache::open(files, 12, 3, (dir / "cache").string());
  ASSERT_EQ(cache->size(), 9);
  EXPECT_EQ(cache->skipped(), 1);
  EXPECT_TRUE(torch::equal(cache->images(), img)) << "rows in file order, the bad one left out";
  const auto built = std::filesystem::last_write_time(cache->path());
  cache->release();
  EXPECT_TRUE(torch::equal(cache->images(), img)) << "released pages read back";
  EXPECT_EQ(std::filesystem::last_write_time(
                ImageCache::open(files, 12, 3, (dir / "cache").string())->path()),
            built);
  const auto grey = ImageCache::open(files, 12, 1, (dir / "cache").string());
  EXPECT_TRUE(torch::equal(grey->images(), to_channels(img, 1)));
  EXPECT_FALSE(std::filesystem::exists(cache->path())) << "the stale cache is removed";
  const auto written = std::filesystem::last_write_time(files[0]);
  testing::write_png(files[0], img[8], 12);  // a changed file: another key
  // Rewritten within one tick of the file system's clock, with the same size, the file would
  // look unchanged (size and time are the key): it is changed, so its time must say so.
  std::filesystem::last_write_time(files[0], written + std::chrono::seconds(2));
  const auto rebuilt = ImageCache::open(files, 12, 3, (dir / "cache").string());
  EXPECT_NE(rebuilt->path(), cache->path());
  EXPECT_TRUE(torch::equal(rebuilt->images()[0], img[8]));
}

TEST(Split, LimitKeepsSeededSubset) {
  TempDir dir;
  testing::write_cifar_binary(dir.path(), 20, 10);
  config::DataConfig cfg;
  cfg.root = dir.path().string();
  cfg.limit_train = 37;
  cfg.limit_test = 5;
  EXPECT_EQ(load_split(cfg, Split::kTrain, 0).size(), 37);
  EXPECT_EQ(load_split(cfg, Split::kTest, 0).size(), 5);
  EXPECT_TRUE(torch::equal(load_split(cfg, Split::kTrain, 0).labels,
                           load_split(cfg, Split::kTrain, 0).labels));
}

TEST(Stats, ChannelMeanAndStd) {
  auto img = torch::zeros({2, 3, 2, 2}, torch::kUInt8);
  img.select(1, 0).fill_(255);
  img[1].select(0, 1).fill_(255);
  auto [mean, std] = channel_stats(img);
  EXPECT_NEAR(mean[0].item<float>(), 1.0, 1e-6);
  EXPECT_NEAR(mean[1].item<float>(), 0.5, 1e-6);
  EXPECT_NEAR(std[1].item<float>(), 0.5, 1e-6);
  EXPECT_NEAR(mean[2].item<float>(), 0.0, 1e-6);
}

TEST(Augment, IdentityWithoutPadOrFlip) {
  auto x = torch::rand({4, 3, 8, 8});
  EXPECT_TRUE(torch::equal(augment_batch(x, 0, false), x));
}

TEST(Augment, FlipGivesImageOrMirror) {
  torch::manual_seed(0);
  auto x = torch::rand({64, 3, 5, 5});
  auto y = augment_batch(x, 0, true);
  int flipped = 0;
  for (int64_t i = 0; i < 64; ++i) {
    const bool same = torch::equal(y[i], x[i]);
    const bool mirror = torch::equal(y[i], x[i].flip({2}));
    EXPECT_TRUE(same || mirror);
    flipped += mirror;
  }
  EXPECT_GT(flipped, 10);
  EXPECT_LT(flipped, 54);
}

TEST(Augment, CropIsAWindowOfThePaddedImage) {
  torch::manual_seed(1);
  auto x = torch::rand({16, 2, 6, 6}) + 1;  // > 0, so padding zeros are recognisable
  auto y = augment_batch(x, 2, false);
  auto padded = torch::constant_pad_nd(x, {2, 2, 2, 2});
  for (int64_t i = 0; i < 16; ++i) {
    bool found = false;
    for (int64_t oy = 0; oy <= 4 && !found; ++oy) {
      for (int64_t ox = 0; ox <= 4 && !found; ++ox) {
        found = torch::equal(y[i], padded[i].narrow(1, oy, 6).narrow(2, ox, 6));
      }
    }
    EXPECT_TRUE(found) << "image " << i;
  }
}

TEST(TrainingViews, ImagesThenMirrorsThenSeededShiftedCopiesWithTheirLabels) {
  auto [img, lab] = testing::synthetic_images(12, 3, 8, 3);
  img.clamp_min_(1);  // no zero pixels, so padding zeros are recognisable
  const Dataset d{img, lab, {"a", "b", "c"}};
  const auto same = training_views(d, false, 0, 2, 7);
  EXPECT_TRUE(same.images.is_same(img));
  const auto v = training_views(d, true, 2, 2, 7);
  ASSERT_EQ(v.images.sizes(), (std::vector<int64_t>{48, 3, 8, 8}));
  EXPECT_EQ(v.images.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(v.labels, lab.repeat({4})));
  EXPECT_EQ(v.class_names, d.class_names);
  EXPECT_TRUE(torch::equal(v.images.narrow(0, 0, 12), img));
  EXPECT_TRUE(torch::equal(v.images.narrow(0, 12, 12), img.flip({3})));
  // Each copy's image i: a window of image i or its mirror, zero padded by 2; not all unshifted.
  const auto padded = torch::constant_pad_nd(img, {2, 2, 2, 2});
  int moved = 0;
  for (int64_t i = 24; i < 48; ++i) {
    const auto source = padded[i % 12];
    bool found = false;
    for (int64_t oy = 0; oy <= 4 && !found; ++oy)
      for (int64_t ox = 0; ox <= 4 && !found; ++ox)
        for (const auto& s : {source, source.flip({2})})
          if (torch::equal(v.images[i], s.narrow(1, oy, 8).narrow(2, ox, 8))) {
            found = true;
            moved += oy != 2 || ox != 2;
          }
    EXPECT_TRUE(found) << "row " << i;
  }
  EXPECT_GT(moved, 12);
  EXPECT_FALSE(torch::equal(v.images.narrow(0, 24, 12), v.images.narrow(0, 36, 12)));
  // The seed alone decides the copies: not the global RNG.
  torch::manual_seed(123);
  EXPECT_TRUE(torch::equal(training_views(d, true, 2, 2, 7).images, v.images));
  EXPECT_FALSE(torch::equal(training_views(d, true, 2, 2, 8).images, v.images));
  EXPECT_TRUE(torch::equal(training_views(d, false, 1, 2, 7).images.narrow(0, 12, 12),
                           v.images.narrow(0, 24, 12)));
}

#ifdef AEFX_HAVE_OPENCV
void write_png(const fs::path& file, const cv::Mat& img) {
  fs::create_directories(file.parent_path());
  ASSERT_TRUE(cv::imwrite(file.string(), img));
}

TEST(ImageFolder, ConvertsGreyAlphaAndSizes) {
  TempDir dir;
  write_png(dir / "train/cat/a.png", cv::Mat(32, 32, CV_8UC3, cv::Scalar(10, 20, 30)));  // BGR
  write_png(dir / "train/cat/b.png", cv::Mat(40, 20, CV_8UC1, cv::Scalar(100)));
  write_png(dir / "train/ant/c.png", cv::Mat(32, 32, CV_8UC4, cv::Scalar(1, 2, 3, 255)));
  testing::write_bytes(dir / "train/ant/notes.txt", "not an image");
  auto ds = load_image_folder(dir.path().string(), Split::kTrain, 16);
  EXPECT_EQ(ds.class_names, (std::vector<std::string>{"ant", "cat"}));
  EXPECT_EQ(ds.images.sizes(), (std::vector<int64_t>{3, 3, 16, 16}));
  EXPECT_EQ(ds.labels[0].item<int64_t>(), 0);
  // RGB order: the BGR (10,20,30) image reads back as R=30, G=20, B=10.
  EXPECT_EQ(ds.images[1][0][0][0].item<uint8_t>(), 30);
  EXPECT_EQ(ds.images[1][2][0][0].item<uint8_t>(), 10);
  EXPECT_EQ(ds.images[2][1][5][5].item<uint8_t>(), 100);  // grey -> all channels
  EXPECT_EQ(ds.images[0][0][0][0].item<uint8_t>(), 3);    // RGBA -> RGB
}

std::string folder_error(const fs::path& root, Split split) {
  try {
    load_image_folder(root.string(), split, 16);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(ImageFolder, BadInputsAreNamed) {
  TempDir dir;
  EXPECT_NE(folder_error(dir.path(), Split::kTrain).find("does not exist"), std::string::npos);
  write_png(dir / "train/cat/a.png", cv::Mat(8, 8, CV_8UC3, cv::Scalar(1, 2, 3)));
  fs::create_directories(dir / "train/dog");
  EXPECT_NE(folder_error(dir.path(), Split::kTrain).find("train/dog has no images"),
            std::string::npos);
  write_png(dir / "train/dog/a.png", cv::Mat(8, 8, CV_8UC3, cv::Scalar(1, 2, 3)));
  testing::write_bytes(dir / "train/dog/broken.png", "definitely not a png");
  EXPECT_NE(folder_error(dir.path(), Split::kTrain).find("broken.png"), std::string::npos);
  write_png(dir / "test/cat/a.png", cv::Mat(8, 8, CV_8UC3, cv::Scalar(1, 2, 3)));
  EXPECT_NE(folder_error(dir.path(), Split::kTest).find("missing class folder 'dog'"),
            std::string::npos);
  // A PNG that also carries DICOM's or DTED's mark further in would reach GDCM or GDAL inside
  // imread (GDCM aborts the process on some such files; fuzz_image_folder found one): refused.
  std::string png = testing::read_file(dir / "train/cat/a.png");
  png.resize(160, '\0');
  for (const auto& [at, mark] : {std::pair<size_t, std::string>{128, "DICM"}, {140, "DTED"}}) {
    std::string bytes = png;
    bytes.replace(at, 4, mark);
    testing::write_bytes(dir / "marked.png", bytes);
    try {
      decode_image((dir / "marked.png").string(), 8);
      ADD_FAILURE() << mark << " accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("marked.png"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(decode_image((dir / "train/cat/a.png").string(), 8).size(0), 3);
}

// What predict feeds a model: any image file at the model's size and channels, in [0, 1].
TEST(ModelInput, ResizesAndConvertsToTheModelsChannels) {
  TempDir dir;
  write_png(dir / "colour.png", cv::Mat(40, 20, CV_8UC3, cv::Scalar(10, 20, 30)));  // BGR
  write_png(dir / "grey.png", cv::Mat(8, 8, CV_8UC1, cv::Scalar(100)));
  const auto colour = load_model_input((dir / "colour.png").string(), {3, 16});
  EXPECT_EQ(colour.sizes(), (std::vector<int64_t>{1, 3, 16, 16}));
  EXPECT_EQ(colour.scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(colour[0][0][3][4].item<float>(), 30.0f / 255.0f);  // R
  EXPECT_FLOAT_EQ(colour[0][2][3][4].item<float>(), 10.0f / 255.0f);  // B
  // Colour image, grey model: BT.601 luma of (30, 20, 10) = 21.85, rounded.
  const auto luma = load_model_input((dir / "colour.png").string(), {1, 16});
  EXPECT_EQ(luma.sizes(), (std::vector<int64_t>{1, 1, 16, 16}));
  EXPECT_FLOAT_EQ(luma.max().item<float>(), 22.0f / 255.0f);
  EXPECT_FLOAT_EQ(luma.min().item<float>(), 22.0f / 255.0f);
  // Grey image, colour model: the grey value in every channel; grey model: unchanged.
  const auto rgb = load_model_input((dir / "grey.png").string(), {3, 28});
  EXPECT_EQ(rgb.sizes(), (std::vector<int64_t>{1, 3, 28, 28}));
  EXPECT_FLOAT_EQ(rgb.min().item<float>(), 100.0f / 255.0f);
  EXPECT_FLOAT_EQ(rgb.max().item<float>(), 100.0f / 255.0f);
  const auto grey = load_model_input((dir / "grey.png").string(), {1, 8});
  EXPECT_TRUE(torch::equal(
      grey, to_float(to_channels(decode_image((dir / "grey.png").string(), 8).unsqueeze(0), 1),
                     torch::kCPU)));
  try {
    load_model_input((dir / "missing.png").string(), {3, 16});
    ADD_FAILURE() << "missing file accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.png"), std::string::npos) << e.what();
  }
}
#else
TEST(ImageFolder, BuiltWithoutOpenCvSaysSo) {
  try {
    load_image_folder("/tmp", Split::kTrain, 32);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("built without OpenCV"), std::string::npos) << e.what();
  }
  EXPECT_THROW(decode_image("/tmp/x.png", 32), std::runtime_error);
  EXPECT_THROW(load_model_input("/tmp/x.png", {3, 32}), std::runtime_error);
}
#endif

std::string idx_error(const fs::path& root, Split split = Split::kTrain,
                      const std::vector<std::string>& names = {}) {
  try {
    load_idx(root.string(), split, names);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(Idx, ReadsPlainAndGzipFilesAsGreyImages) {
  TempDir dir;
  testing::write_idx(dir.path(), 30, 20, 12);
  const auto train = load_idx(dir.path().string(), Split::kTrain, {});  // .gz files
  const auto test = load_idx(dir.path().string(), Split::kTest, {});    // plain files
  EXPECT_EQ(train.images.sizes(), (std::vector<int64_t>{30, 1, 12, 12}));
  EXPECT_EQ(test.images.sizes(), (std::vector<int64_t>{20, 1, 12, 12}));
  EXPECT_EQ(train.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(train.labels.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(test.labels, torch::arange(20, torch::kLong).remainder(10)));
  EXPECT_EQ(train.class_names.front(), "0");
  EXPECT_EQ(train.class_names.back(), "9");
  EXPECT_EQ(train.class_names.size(), 10u);
  // The pixels are the file's bytes, in order.
  auto [rgb, labels] = testing::synthetic_images(20, 10, 12, 101);
  EXPECT_TRUE(torch::equal(test.images.squeeze(1),
                           rgb.to(torch::kFloat).mean(1).round().to(torch::kUInt8)));

  // Named classes; the same files under MNIST's other spelling (train-images.idx3-ubyte).
  std::vector<std::string> names{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"};
  EXPECT_EQ(load_idx(dir.path().string(), Split::kTest, names).class_names, names);
  fs::rename(dir / "t10k-images-idx3-ubyte", dir / "t10k-images.idx3-ubyte");
  EXPECT_EQ(load_idx(dir.path().string(), Split::kTest, {}).size(), 20);

  // Through the config: format idx, resized to data.image_size, limited.
  config::DataConfig cfg;
  cfg.format = config::DataFormat::kIdx;
  cfg.root = dir.path().string();
  cfg.image_size = 16;
  cfg.limit_train = 10;
  const auto loaded = load_split(cfg, Split::kTrain, 0);
  EXPECT_EQ(loaded.images.sizes(), (std::vector<int64_t>{10, 1, 16, 16}));
  EXPECT_EQ(config::input_channels(cfg), 1);
}

TEST(Idx, BadFilesAreNamed) {
  TempDir dir;
  EXPECT_NE(idx_error(dir / "nope").find("dataset-fashion-mnist"), std::string::npos);
  EXPECT_NE(
      idx_error(dir.path()).find("missing IDX file " + (dir / "train-images-idx3-ubyte").string()),
      std::string::npos);
  testing::write_idx(dir.path(), 30, 20, 8);
  const auto test_images = dir / "t10k-images-idx3-ubyte";
  const auto good = testing::read_file(test_images);
  auto expect = [&](const std::string& bytes, const std::string& needle) {
    testing::write_bytes(test_images, bytes);
    const auto e = idx_error(dir.path(), Split::kTest);
    EXPECT_NE(e.find(test_images.string()), std::string::npos) << e;
    EXPECT_NE(e.find(needle), std::string::npos) << e;
  };
  expect("PK\x03\x04 zip", "not an IDX file");
  expect(std::string("\0\0\x0d\x03", 4) + good.substr(4), "type 0x0D");
  expect(std::string("\0\0\x08\x02", 4) + good.substr(4), "2 dimensions");
  expect(good.substr(0, 10), "shorter than its 16-byte header");
  expect(good.substr(0, good.size() - 1), "truncated");
  expect(good + "xx", "trailing bytes");
  expect(testing::gzip_bytes(good).substr(0, 40), "cannot read IDX file");
  // A header claiming 2^32-1 x 2^32-1 x 2^32-1 images: refused by its size, nothing allocated.
  expect(std::string("\0\0\x08\x03", 4) + std::string(12, '\xff') + "abc", "truncated");
  testing::write_bytes(test_images, testing::idx_bytes(torch::zeros({0, 8, 8}, torch::kUInt8)));
  EXPECT_NE(idx_error(dir.path(), Split::kTest).find("holds no images"), std::string::npos);
  testing::write_bytes(test_images, good);

  // Labels: count and range.
  const auto test_labels = dir / "t10k-labels-idx1-ubyte";
  testing::write_bytes(test_labels, testing::idx_bytes(torch::zeros({19}, torch::kUInt8)));
  auto e = idx_error(dir.path(), Split::kTest);
  EXPECT_NE(e.find("holds 19 labels but " + test_images.string() + " holds 20 images"),
            std::string::npos)
      << e;
  auto labels = torch::zeros({20}, torch::kUInt8);
  labels[7] = 12;
  testing::write_bytes(test_labels, testing::idx_bytes(labels));
  e = idx_error(dir.path(), Split::kTest);
  EXPECT_NE(e.find("record 7 has label 12, outside 0..9 (name the classes with data.class_names)"),
            std::string::npos)
      << e;
  e = idx_error(dir.path(), Split::kTest, {"x", "y", "z"});
  EXPECT_NE(e.find("outside 0..2 (data.class_names names 3 classes)"), std::string::npos) << e;
}

TEST(Idx, ParsesInMemory) {
  const auto bytes = testing::idx_bytes(torch::arange(24, torch::kUInt8).view({2, 3, 4}));
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const auto t = parse_idx(p, bytes.size(), 3, "mem");
  EXPECT_TRUE(torch::equal(t, torch::arange(24, torch::kUInt8).view({2, 3, 4})));
  EXPECT_THROW(parse_idx(p, bytes.size(), 1, "mem"), std::runtime_error);
  EXPECT_THROW(parse_idx(p, 3, 3, "mem"), std::runtime_error);
  EXPECT_THROW(parse_idx(p, 0, 3, "mem"), std::runtime_error);
}

TEST(Channels, GreyAndColourConversions) {
  auto rgb = torch::tensor({255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30}, torch::kUInt8)
                 .view({4, 3, 1, 1});
  const auto grey = to_channels(rgb, 1);
  EXPECT_EQ(grey.sizes(), (std::vector<int64_t>{4, 1, 1, 1}));
  // ITU-R BT.601 luma, rounded: 0.299 R + 0.587 G + 0.114 B.
  EXPECT_TRUE(torch::equal(grey.flatten(), torch::tensor({76, 150, 29, 124}, torch::kUInt8)));
  const auto back = to_channels(grey, 3);
  EXPECT_EQ(back.sizes(), (std::vector<int64_t>{4, 3, 1, 1}));
  EXPECT_TRUE(torch::equal(back.select(1, 0), grey.select(1, 0)));
  EXPECT_TRUE(torch::equal(back.select(1, 2), grey.select(1, 0)));
  EXPECT_TRUE(torch::equal(to_channels(rgb, 3), rgb));
  EXPECT_THROW(to_channels(rgb, 2), c10::Error);
}
}  // namespace
}  // namespace aefx::data
