// libFuzzer target: the image-folder scanner. The input describes a small directory tree, read
// with FuzzedDataProvider: entries (class folders, empty or not, nested folders, files with
// names and extensions from small lists, their bytes) under train/ or test/. The tree is written
// to a fresh scratch folder (in /dev/shm when there is one), both splits are loaded at 8 x 8 and
// every file goes through decode_image. The documented error is std::runtime_error; anything
// else (another exception, a crash, a sanitizer report, a result that does not match the tree)
// is a finding. tools/fuzz.sh lowers OpenCV's image size limit (OPENCV_IO_MAX_IMAGE_PIXELS) and
// turns off libFuzzer's per-input leak check for this target; it says why.
#include <fuzzer/FuzzedDataProvider.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "aefx/data/dataset.h"
#include "aefx/util/log.h"
#include "scratch_dir.h"

namespace {

namespace fs = std::filesystem;
using aefx::data::Split;

// Keep these lists in step with tests/fuzz/make_corpus.py, which encodes the seed trees.
constexpr std::array<const char*, 2> kSplits{"train", "test"};
constexpr std::array<const char*, 6> kClasses{"cat", "dog", "Bird", "a b", ".hidden", "x.png"};
constexpr std::array<const char*, 5> kStems{"0", "1", "img", "a.b", ""};
constexpr std::array<const char*, 16> kExts{".png", ".jpg", ".jpeg", ".bmp",    ".ppm", ".pgm",
                                            ".pbm", ".tif", ".tiff", ".webp",   ".PNG", ".JpG",
                                            ".txt", "",     ".gif",  ".png.txt"};
constexpr int kMaxEntries = 16;
constexpr size_t kMaxFileBytes = 4096;
constexpr int64_t kSize = 8;

/// AEFX_FUZZ_VERBOSE=1 prints what each input did (to check that seeds reach the decoders).
bool verbose() {
  static const bool on = std::getenv("AEFX_FUZZ_VERBOSE") != nullptr;
  return on;
}

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_image_folder: %s\n", what.c_str());
  std::abort();
}

/// The same rule as the scanner: a file is an image by its (case-insensitive) extension.
bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> kImageExts{".png", ".jpg", ".jpeg", ".bmp",  ".ppm",
                                                ".pgm", ".pbm", ".tif",  ".tiff", ".webp"};
  return kImageExts.count(ext) > 0;
}

/// What was written for one split: class folders, and the images in each.
struct SplitTree {
  std::map<std::string, std::set<std::string>> images;  // class -> image file names
};

template <class T, size_t N>
const T& pick(FuzzedDataProvider& in, const std::array<T, N>& options) {
  return options[in.ConsumeIntegralInRange<uint8_t>(0, N - 1)];
}

/// Checks a successful load against the tree: classes in sorted order, every image once.
void check_split(const aefx::data::Dataset& ds, const SplitTree& tree, const char* split) {
  std::vector<std::string> classes;
  int64_t n = 0;
  for (const auto& [name, files] : tree.images) {
    classes.push_back(name);
    if (files.empty()) finding(std::string(split) + ": accepted the empty class folder " + name);
    n += static_cast<int64_t>(files.size());
  }
  if (ds.class_names != classes) finding(std::string(split) + ": wrong class names");
  if (ds.images.sizes() != torch::IntArrayRef({n, 3, kSize, kSize}) ||
      ds.images.scalar_type() != torch::kUInt8 || ds.labels.sizes() != torch::IntArrayRef({n}))
    finding(std::string(split) + ": wrong shapes or types");
  auto counts = torch::bincount(ds.labels, {}, static_cast<int64_t>(classes.size()));
  for (size_t k = 0; k < classes.size(); ++k) {
    if (counts[static_cast<int64_t>(k)].item<int64_t>() !=
        static_cast<int64_t>(tree.images.at(classes[k]).size()))
      finding(std::string(split) + ": wrong label counts");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  aefx::util::set_log_level(aefx::util::LogLevel::kQuiet);
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  aefx::fuzz::ScratchDir root("images");
  std::array<SplitTree, 2> trees;
  std::array<bool, 2> split_made{false, false};
  std::vector<fs::path> files;
  for (int e = 0; e < kMaxEntries && in.remaining_bytes() > 0; ++e) {
    const int s = in.ConsumeBool() ? 1 : 0;
    const std::string cls = pick(in, kClasses);
    const int kind = in.ConsumeIntegralInRange<uint8_t>(0, 2);  // 0 folder, 1 file, 2 nested
    const fs::path dir = root.path / kSplits[s] / cls;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) continue;
    split_made[s] = true;
    trees[s].images[cls];
    if (kind == 0) continue;
    const std::string name = std::string(pick(in, kStems)) + pick(in, kExts);
    if (name.empty()) continue;
    const fs::path path = dir / name;
    if (kind == 2) {
      fs::create_directory(path, ec);  // a folder inside a class folder is not an image
      continue;
    }
    const auto bytes = in.ConsumeBytes<char>(in.ConsumeIntegralInRange<size_t>(0, kMaxFileBytes));
    if (fs::is_directory(path)) continue;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) finding("cannot write " + path.string());
    if (is_image_name(path)) trees[s].images[cls].insert(name);
    files.push_back(path);
  }

  for (int s = 0; s < 2; ++s) {
    try {
      const auto ds = aefx::data::load_image_folder(root.path.string(),
                                                    s == 0 ? Split::kTrain : Split::kTest, kSize);
      if (!split_made[s]) finding(std::string("loaded the missing split ") + kSplits[s]);
      check_split(ds, trees[s], kSplits[s]);
      if (verbose()) std::fprintf(stderr, "%s: %ld images\n", kSplits[s], long(ds.size()));
    } catch (const std::runtime_error& e) {
      if (verbose()) std::fprintf(stderr, "%s: %s\n", kSplits[s], e.what());
    }
  }
  for (const auto& f : files) {
    try {
      const auto img = aefx::data::decode_image(f.string(), kSize);
      if (img.sizes() != torch::IntArrayRef({3, kSize, kSize}) ||
          img.scalar_type() != torch::kUInt8)
        finding("decode_image: wrong shape or type for " + f.string());
      if (verbose()) std::fprintf(stderr, "decoded %s\n", f.c_str());
    } catch (const std::runtime_error& e) {
      if (verbose()) std::fprintf(stderr, "%s\n", e.what());
    }
  }
  return 0;
}
