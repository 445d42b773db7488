// MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST, ...): plain or gzip-compressed.
#include <torch/torch.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <stdexcept>

#include "aefx/data/dataset.h"

namespace aefx::data {
namespace fs = std::filesystem;
namespace {

/// Reads a whole file, inflating it when it is gzip data (zlib reads other files as they are).
/// Refuses more than kIdxMaxBytes of content, so a small compressed file cannot fill memory.
std::vector<uint8_t> read_maybe_gzip(const fs::path& file) {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> in(gzopen(file.c_str(), "rb"), gzclose);
  if (!in) throw std::runtime_error("cannot open IDX file " + file.string());
  std::vector<uint8_t> bytes;
  constexpr size_t kChunk = size_t{1} << 20;
  while (true) {
    const size_t have = bytes.size();
    if (have >= static_cast<size_t>(kIdxMaxBytes)) {
      throw std::runtime_error("IDX file " + file.string() + " holds more than " +
                               std::to_string(kIdxMaxBytes >> 20) +
                               " MiB (uncompressed): not a data set aefx reads");
    }
    bytes.resize(have + kChunk);
    const int got = gzread(in.get(), bytes.data() + have, static_cast<unsigned>(kChunk));
    if (got < 0) {
      int code = 0;
      const char* msg = gzerror(in.get(), &code);
      throw std::runtime_error("cannot read IDX file " + file.string() + ": " +
                               (msg ? msg : "read error") + " (corrupt gzip data?)");
    }
    bytes.resize(have + static_cast<size_t>(got));
    if (got == 0) break;
  }
  int code = 0;
  const char* msg = gzerror(in.get(), &code);
  if (code != Z_OK && code != Z_STREAM_END) {
    throw std::runtime_error("cannot read IDX file " + file.string() + ": " +
                             (msg ? msg : "read error") + " (truncated gzip data?)");
  }
  return bytes;
}

/// The first of `stem`, `stem` with '.' before "idx" (MNIST copies on the web use both), and
/// their .gz versions that exists.
fs::path find_idx_file(const fs::path& root, const std::string& stem) {
  std::string dotted = stem;  // train-images-idx3-ubyte -> train-images.idx3-ubyte
  dotted[dotted.rfind("-idx")] = '.';
  for (const auto& name : {stem, stem + ".gz", dotted, dotted + ".gz"}) {
    if (fs::is_regular_file(root / name)) return root / name;
  }
  throw std::runtime_error("missing IDX file " + (root / stem).string() +
                           " (or .gz): expected MNIST-format train-images-idx3-ubyte, "
                           "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                           "t10k-labels-idx1-ubyte in data.root");
}

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

torch::Tensor parse_idx(const uint8_t* data, size_t size, int64_t dims, const std::string& name) {
  const std::string what = dims == 1 ? "labels (idx1)" : "images (idx" + std::to_string(dims) + ")";
  if (size < 4 || data[0] != 0 || data[1] != 0) {
    throw std::runtime_error("IDX file " + name +
                             " does not start with the IDX magic number (0x0000....): not an "
                             "IDX file (or still compressed without a .gz name?)");
  }
  if (data[2] != 0x08) {
    char type[8];
    std::snprintf(type, sizeof type, "0x%02X", data[2]);
    throw std::runtime_error("IDX file " + name + " holds values of type " + type +
                             "; aefx reads unsigned-byte IDX files (type 0x08)");
  }
  if (data[3] != dims) {
    throw std::runtime_error("IDX file " + name + " has " + std::to_string(data[3]) +
                             " dimensions; expected " + what);
  }
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  if (size < header) {
    throw std::runtime_error("IDX file " + name + " is truncated: " + std::to_string(size) +
                             " bytes, shorter than its " + std::to_string(header) + "-byte header");
  }
  std::vector<int64_t> shape;
  uint64_t count = 1;
  for (int64_t d = 0; d < dims; ++d) {
    const uint32_t n = big_endian(data + 4 + 4 * d);
    shape.push_back(static_cast<int64_t>(n));
    // Every dimension fits the file: products stay below its size, so nothing overflows.
    if (n != 0 && count > (size - header) / n) {
      count = std::numeric_limits<uint64_t>::max();
    } else {
      count *= n;
    }
  }
  if (shape[0] == 0) throw std::runtime_error("IDX file " + name + " holds no " + what);
  for (size_t d = 1; d < shape.size(); ++d) {
    if (shape[d] == 0) throw std::runtime_error("IDX file " + name + " has an empty dimension");
  }
  if (count != size - header) {
    std::string dims_text;
    for (auto s : shape) dims_text += (dims_text.empty() ? "" : " x ") + std::to_string(s);
    throw std::runtime_error("IDX file " + name + " declares " + dims_text + " values but holds " +
                             std::to_string(size - header) + " bytes after its header (" +
                             (count > size - header ? "truncated" : "trailing bytes") + "?)");
  }
  auto raw = torch::from_blob(const_cast<uint8_t*>(data + header), shape, torch::kUInt8);
  return raw.clone();  // from_blob does not own the bytes
}

std::string idx_images_file(const std::string& root, Split split) {
  return find_idx_file(
             root, std::string(split == Split::kTrain ? "train" : "t10k") + "-images-idx3-ubyte")
      .string();
}

Dataset load_idx(const std::string& root, Split split,
                 const std::vector<std::string>& class_names) {
  const fs::path r(root);
  if (!fs::is_directory(r)) {
    throw std::runtime_error(
        "data.root " + root +
        " is not a folder; for Fashion-MNIST: apt-get install dataset-fashion-mnist and set "
        "data.root to /usr/share/datasets/fashion-mnist");
  }
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  const fs::path image_file = find_idx_file(r, prefix + "-images-idx3-ubyte");
  const fs::path label_file = find_idx_file(r, prefix + "-labels-idx1-ubyte");
  const auto image_bytes = read_maybe_gzip(image_file);
  auto images = parse_idx(image_bytes.data(), image_bytes.size(), 3, image_file.string());
  const auto label_bytes = read_maybe_gzip(label_file);
  auto labels = parse_idx(label_bytes.data(), label_bytes.size(), 1, label_file.string());
  if (labels.size(0) != images.size(0)) {
    throw std::runtime_error("IDX file " + label_file.string() + " holds " +
                             std::to_string(labels.size(0)) + " labels but " + image_file.string() +
                             " holds " + std::to_string(images.size(0)) + " images");
  }
  std::vector<std::string> names = class_names;
  if (names.empty()) {
    for (int c = 0; c < 10; ++c) names.push_back(std::to_string(c));
  }
  const auto max_label = labels.max().item<int64_t>();
  if (max_label >= static_cast<int64_t>(names.size())) {
    const auto at = (labels >= static_cast<int64_t>(names.size())).nonzero()[0][0].item<int64_t>();
    throw std::runtime_error(
        "IDX file " + label_file.string() + ": record " + std::to_string(at) + " has label " +
        std::to_string(labels[at].item<int64_t>()) + ", outside 0.." +
        std::to_string(names.size() - 1) +
        (class_names.empty()
             ? " (name the classes with data.class_names)"
             : " (data.class_names names " + std::to_string(names.size()) + " classes)"));
  }
  return Dataset{images.unsqueeze(1), labels.to(torch::kLong), names};
}

}  // namespace aefx::data
