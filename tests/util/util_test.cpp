#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/parallel.h"
#include "aefx/util/precision.h"
#include "aefx/util/progress.h"
#include "aefx/util/runtime.h"
#include "test_util.h"

namespace aefx::util {
namespace {
using aefx::testing::TempDir;

TEST(Json, DumpKeepsOrderIntegersAndTenDigits) {
  auto j = Json::object({{"z", 1}, {"b", 0.5}, {"s", "q\"x\n"}, {"n", Json()}, {"t", true}});
  j["list"] = std::vector<int64_t>{1, 2};
  j["z"] = int64_t{2};
  j["third"] = 1.0 / 3.0;
  EXPECT_EQ(dump_json(j, -1),
            R"({"z":2,"b":0.5,"s":"q\"x\n","n":null,"t":true,"list":[1,2],"third":0.3333333333})");
  // Non-finite numbers are written as null, at any depth.
  EXPECT_EQ(dump_json(Json(std::nan(""))), "null");
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(dump_json(Json::array({inf, -inf, 2.5}), -1), "[null,null,2.5]");
  EXPECT_EQ(dump_json(Json::object()), "{}");
  EXPECT_EQ(dump_json(Json::object({{"a", 1}})), "{\n  \"a\": 1\n}");
  // Bytes that are not UTF-8 (a folder name) do not stop the write.
  EXPECT_EQ(dump_json(Json("a\xff")), "\"a\xef\xbf\xbd\"");
}

TEST(Json, ReadErrorsNameTheFile) {
  TempDir dir;
  write_json_file(dir / "ok.json", Json::object({{"n", 0.1}, {"k", 3}}));
  const Json ok = read_json_file(dir / "ok.json");
  EXPECT_EQ(ok["n"].get<double>(), 0.1);
  EXPECT_TRUE(ok["k"].is_number_integer());
  EXPECT_EQ(ok.begin().key(), "n");
  atomic_write_text(dir / "bad.json", "{\"a\": [1,\n");
  for (const auto& file : {dir / "bad.json", dir / "missing.json"}) {
    try {
      read_json_file(file);
      FAIL() << "expected an error for " << file;
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(file.string()), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
  EXPECT_THROW(parse_json("nul", "text"), std::runtime_error);
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

TEST(Runtime, ParallelForEachVisitsEveryIndexOnceAndRethrowsTheFirstError) {
  std::vector<std::atomic<int>> seen(1000);
  std::mutex mu;
  std::set<std::thread::id> ids;
  const bool threads = std::thread::hardware_concurrency() > 1;
  parallel_for_each(1000, [&](int64_t i) {
    ++seen[static_cast<size_t>(i)];
    {
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    }
    // Item 0 holds its thread until another thread has taken an item: with more than one core
    // the work must be shared however the threads are scheduled.
    if (i == 0 && threads)
      testing::wait_until([&] {
        std::lock_guard<std::mutex> lock(mu);
        return ids.size() >= 2;
      });
  });
  for (const auto& v : seen) EXPECT_EQ(v.load(), 1);
  if (threads) EXPECT_GE(ids.size(), 2u);
  parallel_for_each(0, [](int64_t) { FAIL() << "called for n = 0"; });
  std::atomic<int64_t> calls{0};
  try {
    parallel_for_each(100000, [&](int64_t i) {
      ++calls;
      if (i == 5) throw std::runtime_error("item 5 failed");
      // Slow enough that the range cannot finish while the failing thread unwinds, even when a
      // busy machine takes it off its core (without the stop: 100,000 x 100 us, seconds).
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    });
    ADD_FAILURE() << "the exception was swallowed";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "item 5 failed");
  }
  EXPECT_LT(calls.load(), 100000);  // the others stopped instead of finishing the range
}

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

/// Captures what aefx prints to stderr while alive.
class CaptureStderr {
 public:
  CaptureStderr() : old_(std::cerr.rdbuf(buf_.rdbuf())) {}
  ~CaptureStderr() { std::cerr.rdbuf(old_); }
  std::string text() const { return buf_.str(); }

 private:
  std::ostringstream buf_;
  std::streambuf* old_;
};

TEST(Precision, NativeBf16OnCudaAndOnCpusWhoseFlagsSaySo) {
  std::ifstream in("/proc/cpuinfo");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const bool flag =
      text.find(" avx512_bf16") != std::string::npos || text.find(" amx_bf16") != std::string::npos;
  EXPECT_EQ(cpu_has_bf16(), flag);
  EXPECT_EQ(native_bf16(torch::kCPU), flag);
  EXPECT_TRUE(native_bf16(torch::Device("cuda:0")));
  EXPECT_STREQ(precision_name(torch::kBFloat16), "bf16");
  EXPECT_STREQ(precision_name(torch::kFloat), "fp32");
}

TEST(Precision, AutocastComputesInBf16OnFp32WeightsForItsScopeOnly) {
  torch::manual_seed(0);
  auto x = torch::randn({8, 16});
  auto w = torch::randn({4, 16}, torch::requires_grad());
  auto image = torch::randn({2, 3, 8, 8});
  auto kernel = torch::randn({5, 3, 3, 3});
  {
    Autocast fp32(torch::kCPU, torch::kFloat);  // does nothing
    EXPECT_EQ(torch::linear(x, w).scalar_type(), torch::kFloat);
  }
  torch::Tensor y;
  {
    Autocast bf16(torch::kCPU, torch::kBFloat16);
    y = torch::linear(x, w);
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(torch::conv2d(image, kernel).scalar_type(), torch::kBFloat16);
    {
      Autocast nested(torch::kCPU, torch::kBFloat16);
      EXPECT_EQ(torch::mm(x, w.t()).scalar_type(), torch::kBFloat16);
    }
    // Leaving the inner scope leaves the outer one on.
    EXPECT_EQ(torch::mm(x, w.t()).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(torch::linear(x, w).scalar_type(), torch::kFloat);
  EXPECT_EQ(torch::conv2d(image, kernel).scalar_type(), torch::kFloat);
  // Backward outside the scope: the gradient of the fp32 weight is fp32, and close to the fp32
  // gradient.
  y.to(torch::kFloat).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::allclose(w.grad(), x.sum(0).expand({4, 16}), 0.02, 0.05));
  // On CUDA (the GPU machine; skipped elsewhere): the CUDA scope leaves the CPU's autocast off.
  if (torch::cuda::is_available()) {
    const torch::Device gpu("cuda:0");
    auto xc = x.to(gpu), wc = w.detach().to(gpu);
    {
      Autocast bf16(gpu, torch::kBFloat16);
      EXPECT_EQ(torch::linear(xc, wc).scalar_type(), torch::kBFloat16);
      EXPECT_EQ(torch::linear(x, w).scalar_type(), torch::kFloat);
    }
    EXPECT_EQ(torch::linear(xc, wc).scalar_type(), torch::kFloat);
  }
}

TEST(Progress, DurationsAndLineLayout) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(45.4), "45s");
  EXPECT_EQ(format_duration(754), "12:34");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(std::nan("")), "?");

  ProgressInfo p;
  p.stage = "pretrain";
  p.epoch = 3;
  p.epochs = 30;
  p.step = 25;
  p.steps = 100;
  p.images_per_second = 1840.4;
  p.loss = 0.21543;
  p.lr = 1.9e-3;
  p.eta_seconds = 492;
  const std::string line = format_progress(p, 80);
  EXPECT_EQ(line.size(), 80u) << line;
  EXPECT_EQ(line.rfind("pretrain 3/30 [", 0), 0u) << line;
  EXPECT_NE(line.find(" 25% 1840 img/s  loss 0.2154  lr 1.9e-03  ETA 8:12"), std::string::npos)
      << line;
  // A quarter of the bar is filled.
  const auto open = line.find('['), close = line.find(']');
  const std::string bar = line.substr(open + 1, close - open - 1);
  EXPECT_EQ(std::count(bar.begin(), bar.end(), '#'), static_cast<long>(bar.size() / 4)) << bar;
  // Too narrow for a bar: the figures alone, cut to the width.
  const std::string narrow = format_progress(p, 40);
  EXPECT_EQ(narrow.size(), 40u);
  EXPECT_EQ(narrow.find('['), std::string::npos) << narrow;
  p.step = 100;
  const std::string full = format_progress(p, 80);
  const std::string full_bar = full.substr(full.find('['), full.find(']') - full.find('['));
  EXPECT_EQ(full_bar.find('-'), std::string::npos) << full;
}

/// Progress in the first epoch of `epochs`, with `steps` steps per epoch.
ProgressInfo first_epoch(const std::string& stage, int64_t epochs, int64_t steps) {
  ProgressInfo p;
  p.stage = stage;
  p.epoch = 1;
  p.epochs = epochs;
  p.steps = steps;
  return p;
}

TEST(Progress, LinesModePrintsAtMostOncePerIntervalAndNotAtEpochEnd) {
  CaptureStderr cap;
  ProgressInfo p = first_epoch("classify", 2, 10);
  {
    ProgressDisplay d(ProgressMode::kLines, 0.1, 15.0);
    for (int i = 1; i <= 10; ++i) {
      p.step = i;
      d.update(p, 10.0 * i);  // a step every 10 s: a line at most every 15 s
    }
  }
  const std::string out = cap.text();
  // Steps at 10 s (starts the clock), 30 s, 50 s, 70 s and 90 s print; step 10 ends the epoch.
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 4) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << "plain lines have no carriage returns";
  EXPECT_NE(out.find("classify 1/2"), std::string::npos) << out;
  EXPECT_EQ(out.find("100%"), std::string::npos) << "the epoch summary reports its end";
}

TEST(Progress, BarRedrawsInPlaceAndLogLinesClearItFirst) {
  CaptureStderr cap;
  ProgressInfo p = first_epoch("pretrain", 1, 4);
  {
    ProgressDisplay d(ProgressMode::kBar, 0.1, 15.0);
    p.step = 1;
    d.update(p, 0.0);
    p.step = 2;
    d.update(p, 0.05);  // too soon: not drawn
    p.step = 3;
    d.update(p, 0.2);
    log_info("a log line");
  }
  const std::string out = cap.text();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find("\rpretrain 1/1 ["), std::string::npos) << out;
  EXPECT_EQ(out.find(" 50%"), std::string::npos) << "step 2 came too soon: " << out;
  EXPECT_NE(out.find(" 75%"), std::string::npos) << out;
  // The bar is erased before the log line, which stays on a line of its own.
  EXPECT_NE(out.find("\r\033[Ka log line\n"), std::string::npos) << out;
  // Nothing is drawn once the display is gone, and kOff never draws.
  ProgressDisplay off(ProgressMode::kOff);
  EXPECT_FALSE(off.due(1e9));
}

TEST(Log, LogFileGetsLinesAndFileOnlyText) {
  TempDir dir;
  CaptureStderr cap;
  set_log_file(dir / "log.txt");
  log_info("printed and logged");
  log_to_file("only in the file\nsecond line");
  set_status_line("a status line");
  set_status_line("");
  log_warn("careful");
  set_log_file({});
  const std::string file = testing::read_file(dir / "log.txt");
  EXPECT_EQ(file, "printed and logged\nonly in the file\nsecond line\nwarning: careful\n");
  EXPECT_EQ(cap.text().find("only in the file"), std::string::npos);
  EXPECT_NE(cap.text().find("printed and logged"), std::string::npos);
  const std::string now = utc_now();
  EXPECT_EQ(now.size(), 20u) << now;
  EXPECT_EQ(now.back(), 'Z');
}

TEST(Runtime, EnvironmentInfoNamesEveryPart) {
  std::map<std::string, std::string> info;
  for (const auto& [k, v] : environment_info()) info[k] = v;
  for (const char* k :
       {"aefx", "LibTorch", "CUDA", "cuDNN", "OpenCV", "BLAS", "threads", "machine"})
    EXPECT_TRUE(info.count(k) && !info[k].empty()) << k;
  EXPECT_EQ(info["LibTorch"].rfind(std::to_string(TORCH_VERSION_MAJOR) + ".", 0), 0u);
#ifdef AEFX_HAVE_OPENCV
  EXPECT_EQ(info["OpenCV"].rfind("4.", 0), 0u) << info["OpenCV"];
#else
  EXPECT_NE(info["OpenCV"].find("built without OpenCV"), std::string::npos);
#endif
  if (!torch::cuda::is_available()) EXPECT_EQ(info["cuDNN"], "not available");
}

}  // namespace
}  // namespace aefx::util
