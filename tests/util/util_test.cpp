#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/runtime.h"
#include "test_util.h"

namespace aefx::util {
namespace {
using aefx::testing::TempDir;

TEST(Json, DumpsNestedValues) {
  auto j = Json::object({{"a", 1}, {"b", 0.5}, {"s", "q\"x\n"}, {"n", Json()}, {"t", true}});
  j.set("list", Json::array(std::vector<int64_t>{1, 2}));
  j.set("a", 2);
  EXPECT_EQ(j.dump(-1),
            R"({"a": 2, "b": 0.5, "s": "q\"x\n", "n": null, "t": true, "list": [1, 2]})");
  EXPECT_EQ(Json(std::nan("")).dump(), "null");
  EXPECT_EQ(Json::object().dump(), "{}");
}

TEST(AtomicWrite, ReplacesOnlyOnSuccess) {
  TempDir dir;
  const auto file = dir / "f.txt";
  atomic_write_text(file, "good");
  EXPECT_THROW(atomic_write(file,
                            [](const std::filesystem::path& tmp) {
                              std::ofstream(tmp) << "half";
                              throw std::runtime_error("disk full");
                            }),
               std::runtime_error);
  EXPECT_EQ(read_text(file), "good");
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename(), "f.txt") << "temporary file left behind";
  }
  atomic_write_text(file, "better");
  EXPECT_EQ(read_text(file), "better");
}

TEST(Fs, RequireFileAndWritableDir) {
  TempDir dir;
  try {
    require_file(dir / "autoencoder.pt", "pretrain");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("autoencoder.pt"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("'pretrain' stage"), std::string::npos);
  }
  EXPECT_NO_THROW(ensure_writable_dir(dir / "a/b"));
  atomic_write_text(dir / "plainfile", "x");
  EXPECT_THROW(ensure_writable_dir(dir / "plainfile/sub"), std::runtime_error);
  EXPECT_THROW(read_text(dir / "missing"), std::runtime_error);
}

TEST(Runtime, ThreadsAndDevice) {
  EXPECT_EQ(configure_threads(1), 1);
  EXPECT_GE(configure_threads(0), 1);
  EXPECT_THROW(configure_threads(-1), std::invalid_argument);
  EXPECT_EQ(resolve_device("cpu"), torch::Device(torch::kCPU));
  EXPECT_THROW(resolve_device("tpu"), std::invalid_argument);
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(resolve_device("auto"), torch::Device(torch::kCPU));
    try {
      resolve_device("cuda");
      FAIL();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("CUDA is not available"), std::string::npos);
    }
  } else {
    EXPECT_TRUE(resolve_device("auto").is_cuda());
  }
}

}  // namespace
}  // namespace aefx::util

namespace aefx::util {
namespace {

TEST(Runtime, PeakRssGrowsWhenMemoryIsTouchedAndFreeMemoryCanBeReleased) {
  const int64_t before = peak_rss_bytes();
  EXPECT_GT(before, 0);
  {
    auto big = torch::ones({64 << 20}, torch::kUInt8);  // 64 MiB, every page touched
    EXPECT_EQ(big.sum().item<int64_t>(), int64_t{64} << 20);
  }
  release_free_memory();
  // In bytes (Linux reports kilobytes): at least the 64 MiB just touched.
  EXPECT_GE(peak_rss_bytes(), std::max<int64_t>(before, int64_t{64} << 20));
}

}  // namespace
}  // namespace aefx::util
