#include "aefx/data/dataset.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "aefx/util/log.h"

namespace aefx::data {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kRecord = 1 + 3 * 32 * 32;

fs::path cifar_dir(const std::string& root) {
  const fs::path r(root);
  if (fs::exists(r / "cifar-10-batches-bin")) return r / "cifar-10-batches-bin";
  if (fs::exists(r / "data_batch_1.bin") || fs::exists(r / "test_batch.bin")) return r;
  if (!fs::exists(r)) {
    throw std::runtime_error("data.root " + root +
                             " does not exist; get CIFAR-10 with "
                             "tools/download_cifar10.sh " +
                             root + " or set data.root");
  }
  throw std::runtime_error("no CIFAR-10 binary files in " + root +
                           " (expected cifar-10-batches-bin/ "
                           "or data_batch_1.bin there); get them with tools/download_cifar10.sh " +
                           root + " or set data.root");
}

void read_batch_file(const fs::path& file, std::vector<uint8_t>& bytes) {
  if (!fs::exists(file)) throw std::runtime_error("missing CIFAR-10 file " + file.string());
  const auto size = static_cast<int64_t>(fs::file_size(file));
  if (size == 0 || size % kRecord != 0) {
    throw std::runtime_error("CIFAR-10 file " + file.string() + " has " + std::to_string(size) +
                             " bytes, not a multiple of the 3073-byte record (truncated or not "
                             "CIFAR-10?)");
  }
  std::ifstream in(file, std::ios::binary);
  const size_t offset = bytes.size();
  bytes.resize(offset + static_cast<size_t>(size));
  if (!in.read(reinterpret_cast<char*>(bytes.data() + offset), size)) {
    throw std::runtime_error("cannot read " + file.string());
  }
}

at::Generator seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

}  // namespace

Dataset Dataset::subset(const torch::Tensor& index) const {
  return Dataset{images.index_select(0, index), labels.index_select(0, index), class_names};
}

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names{"airplane", "automobile", "bird",  "cat",  "deer",
                                              "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

Dataset load_cifar10_binary(const std::string& root, Split split) {
  const fs::path dir = cifar_dir(root);
  std::vector<fs::path> files;
  if (split == Split::kTrain) {
    for (int b = 1; b <= 5; ++b)
      files.push_back(dir / ("data_batch_" + std::to_string(b) + ".bin"));
  } else {
    files.push_back(dir / "test_batch.bin");
  }
  std::vector<uint8_t> bytes;
  std::vector<int64_t> first_record;  // index of each file's first record
  for (const auto& f : files) {
    first_record.push_back(static_cast<int64_t>(bytes.size()) / kRecord);
    read_batch_file(f, bytes);
  }
  const int64_t n = static_cast<int64_t>(bytes.size()) / kRecord;
  auto raw = torch::from_blob(bytes.data(), {n, kRecord}, torch::kUInt8);
  auto labels = raw.select(1, 0).to(torch::kLong);
  const auto bad = (labels > 9).nonzero();
  if (bad.numel() > 0) {
    const int64_t row = bad[0][0].item<int64_t>();
    size_t file = 0;
    while (file + 1 < files.size() && first_record[file + 1] <= row) ++file;
    throw std::runtime_error("CIFAR-10 file " + files[file].string() + ": record " +
                             std::to_string(row - first_record[file]) + " has label " +
                             std::to_string(labels[row].item<int64_t>()) + ", outside 0..9");
  }
  auto images = raw.narrow(1, 1, 3 * 32 * 32).reshape({n, 3, 32, 32}).clone();
  return Dataset{images, labels.clone(), cifar10_class_names()};
}

Dataset load_split(const config::DataConfig& cfg, Split split, uint64_t seed) {
  Dataset ds = cfg.format == "image-folder" ? load_image_folder(cfg.root, split, cfg.image_size)
                                            : load_cifar10_binary(cfg.root, split);
  if (cfg.format != "image-folder" && cfg.image_size != ds.images.size(2)) {
    namespace F = torch::nn::functional;
    auto resized = F::interpolate(ds.images.to(torch::kFloat),
                                  F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{cfg.image_size, cfg.image_size})
                                      .mode(torch::kBilinear)
                                      .align_corners(false));
    ds.images = resized.round().clamp(0, 255).to(torch::kUInt8);
  }
  const int64_t limit = split == Split::kTrain ? cfg.limit_train : cfg.limit_test;
  if (limit > 0 && limit < ds.size()) {
    auto perm =
        torch::randperm(ds.size(), seeded(seed + (split == Split::kTrain ? 1 : 2)), torch::kLong);
    ds = ds.subset(perm.narrow(0, 0, limit));
  }
  return ds;
}

std::pair<Dataset, Dataset> split_validation(const Dataset& full, int64_t val_size, uint64_t seed) {
  if (val_size >= full.size()) {
    throw std::invalid_argument("config key 'data.val_size': expected fewer than the " +
                                std::to_string(full.size()) + " training images, found " +
                                std::to_string(val_size));
  }
  auto perm = torch::randperm(full.size(), seeded(seed), torch::kLong);
  auto val_idx = perm.narrow(0, 0, val_size);
  auto train_idx = perm.narrow(0, val_size, full.size() - val_size);
  return {full.subset(train_idx), full.subset(val_idx)};
}

std::pair<torch::Tensor, torch::Tensor> channel_stats(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4, "channel_stats expects N x C x H x W images");
  auto x = images.to(torch::kDouble).div_(255.0);
  auto mean = x.mean({0, 2, 3});
  auto std = x.std({0, 2, 3}, /*unbiased=*/false).clamp_min(1e-6);
  return {mean.to(torch::kFloat), std.to(torch::kFloat)};
}

torch::Tensor augment_batch(const torch::Tensor& batch, int64_t pad, bool flip) {
  TORCH_CHECK(batch.dim() == 4, "augment_batch expects B x C x H x W");
  const int64_t b = batch.size(0), c = batch.size(1), h = batch.size(2), w = batch.size(3);
  const auto opts = torch::TensorOptions().device(batch.device()).dtype(torch::kLong);
  torch::Tensor out = batch;
  if (pad > 0) {
    namespace F = torch::nn::functional;
    auto padded = F::pad(batch, F::PadFuncOptions({pad, pad, pad, pad}));
    // Per-image offsets, applied with two gathers (rows, then columns): no per-image loop.
    auto oy = torch::randint(0, 2 * pad + 1, {b, 1, 1, 1}, opts);
    auto ox = torch::randint(0, 2 * pad + 1, {b, 1, 1, 1}, opts);
    auto rows = (oy + torch::arange(h, opts).view({1, 1, h, 1})).expand({b, c, h, w + 2 * pad});
    auto cropped = padded.gather(2, rows);
    auto cols = (ox + torch::arange(w, opts).view({1, 1, 1, w})).expand({b, c, h, w});
    out = cropped.gather(3, cols);
  }
  if (flip) {
    auto mask = torch::rand({b, 1, 1, 1}, batch.options()) < 0.5;
    out = torch::where(mask, out.flip({3}), out);
  }
  return out.contiguous(torch::MemoryFormat::ChannelsLast);
}

torch::Tensor to_float(const torch::Tensor& images, const torch::Device& device) {
  return images.to(device, /*non_blocking=*/true)
      .to(torch::kFloat)
      .div_(255.0)
      .contiguous(torch::MemoryFormat::ChannelsLast);
}

}  // namespace aefx::data
