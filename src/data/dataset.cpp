#include "aefx/data/dataset.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "aefx/util/log.h"

namespace aefx::data {
namespace fs = std::filesystem;
namespace {

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

std::vector<uint8_t> read_file_bytes(const fs::path& file) {
  if (!fs::exists(file)) throw std::runtime_error("missing CIFAR-10 file " + file.string());
  std::ifstream in(file, std::ios::binary);
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (!in || ec) throw std::runtime_error("cannot read " + file.string());
  // A file too large for a batch is refused by its size, before it is read into memory.
  if (size > static_cast<uintmax_t>(kCifarRecordBytes * kCifarRecordsPerBatch))
    parse_cifar10_batch(nullptr, static_cast<size_t>(size), file.string());
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 &&
      !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    throw std::runtime_error("cannot read " + file.string());
  }
  return bytes;
}

/// Files in a CIFAR-10 folder that are neither the expected batches nor the official extras.
std::vector<std::string> unexpected_files(const fs::path& dir) {
  static const std::vector<std::string> kKnown{
      "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
      "data_batch_5.bin", "test_batch.bin",   "batches.meta.txt", "readme.html"};
  std::vector<std::string> extra;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const auto name = e.path().filename().string();
    if (std::find(kKnown.begin(), kKnown.end(), name) == kKnown.end()) extra.push_back(name);
  }
  std::sort(extra.begin(), extra.end());
  return extra;
}

/// The batch files of a split, in record order.
std::vector<fs::path> cifar_split_files(const fs::path& dir, Split split) {
  std::vector<fs::path> files;
  if (split == Split::kTrain) {
    for (int b = 1; b <= 5; ++b)
      files.push_back(dir / ("data_batch_" + std::to_string(b) + ".bin"));
  } else {
    files.push_back(dir / "test_batch.bin");
  }
  return files;
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

Dataset parse_cifar10_batch(const uint8_t* data, size_t size, const std::string& name) {
  const auto bytes = static_cast<int64_t>(size);
  if (bytes == 0 || bytes % kCifarRecordBytes != 0) {
    throw std::runtime_error("CIFAR-10 file " + name + " has " + std::to_string(bytes) +
                             " bytes, not a multiple of the 3073-byte record (truncated or not "
                             "CIFAR-10?)");
  }
  const int64_t n = bytes / kCifarRecordBytes;
  if (n > kCifarRecordsPerBatch) {
    throw std::runtime_error("CIFAR-10 file " + name + " holds " + std::to_string(n) +
                             " records, more than the " + std::to_string(kCifarRecordsPerBatch) +
                             " of an official batch file (oversized or not CIFAR-10?)");
  }
  for (int64_t r = 0; r < n; ++r) {
    const int label = data[r * kCifarRecordBytes];
    if (label > 9) {
      throw std::runtime_error("CIFAR-10 file " + name + ": record " + std::to_string(r) +
                               " has label " + std::to_string(label) + ", outside 0..9");
    }
  }
  // from_blob does not own the bytes: clone both views before returning.
  auto raw = torch::from_blob(const_cast<uint8_t*>(data), {n, kCifarRecordBytes}, torch::kUInt8);
  return Dataset{raw.narrow(1, 1, kCifarRecordBytes - 1).reshape({n, 3, 32, 32}).clone(),
                 raw.select(1, 0).to(torch::kLong), cifar10_class_names()};
}

Dataset load_cifar10_binary(const std::string& root, Split split) {
  const fs::path dir = cifar_dir(root);
  const auto files = cifar_split_files(dir, split);
  const auto extra = unexpected_files(dir);
  if (!extra.empty()) {
    std::string names;
    for (const auto& e : extra) names += (names.empty() ? "" : ", ") + e;
    util::log_warn("ignoring " + std::to_string(extra.size()) + " unexpected file(s) in " +
                   dir.string() + " (aefx reads data_batch_1..5.bin and test_batch.bin): " + names);
  }
  std::vector<torch::Tensor> images, labels;
  for (const auto& f : files) {
    const auto bytes = read_file_bytes(f);
    auto part = parse_cifar10_batch(bytes.data(), bytes.size(), f.string());
    images.push_back(part.images);
    labels.push_back(part.labels);
  }
  return Dataset{torch::cat(images), torch::cat(labels), cifar10_class_names()};
}

std::vector<std::string> record_names(const config::DataConfig& cfg, Split split, int64_t n) {
  std::vector<std::string> names;
  names.reserve(static_cast<size_t>(n));
  auto add = [&](const std::string& file, int64_t records) {
    for (int64_t r = 0; r < records && static_cast<int64_t>(names.size()) < n; ++r)
      names.push_back(file + "#" + std::to_string(r));
  };
  if (cfg.format == config::DataFormat::kIdx) {
    add(idx_images_file(cfg.root, split), n);
  } else if (cfg.format == config::DataFormat::kCifar10Binary) {
    // The sizes load_cifar10_binary checked: whole records, read in this order.
    for (const auto& f : cifar_split_files(cifar_dir(cfg.root), split))
      add(f.string(), static_cast<int64_t>(fs::file_size(f)) / kCifarRecordBytes);
  }
  if (static_cast<int64_t>(names.size()) != n) {
    throw std::runtime_error(std::string("record_names: data.format ") +
                             config::name_of(cfg.format) + " in " + cfg.root + " does not name " +
                             std::to_string(n) + " records");
  }
  return names;
}

Dataset load_split(const config::DataConfig& cfg, Split split, uint64_t seed) {
  using config::DataFormat;
  Dataset ds = cfg.format == DataFormat::kImageFolder
                   ? load_image_folder(cfg.root, split, cfg.image_size)
               : cfg.format == DataFormat::kIdx ? load_idx(cfg.root, split, cfg.class_names)
                                                : load_cifar10_binary(cfg.root, split);
  if (cfg.format != DataFormat::kImageFolder &&
      (cfg.image_size != ds.images.size(2) || cfg.image_size != ds.images.size(3))) {
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

torch::Tensor to_channels(const torch::Tensor& images, int64_t channels) {
  TORCH_CHECK(images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3),
              "to_channels expects N x C x H x W images with 1 or 3 channels");
  TORCH_CHECK(channels == 1 || channels == 3, "to_channels: channels must be 1 or 3");
  if (images.size(1) == channels) return images;
  if (channels == 3) return images.expand({-1, 3, -1, -1}).contiguous();
  auto w = torch::tensor({0.299f, 0.587f, 0.114f}, torch::kFloat).view({1, 3, 1, 1});
  return (images.to(torch::kFloat) * w.to(images.device()))
      .sum(1, true)
      .round()
      .clamp(0, 255)
      .to(torch::kUInt8);
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

Dataset class_balanced_subset(const Dataset& ds, int64_t per_class, uint64_t seed) {
  if (per_class == 0) return ds;
  const auto classes = static_cast<int64_t>(ds.class_names.size());
  const auto order = torch::randperm(ds.size(), seeded(seed), torch::kLong);
  const auto labels = ds.labels.index_select(0, order).contiguous();
  const int64_t* lab = labels.data_ptr<int64_t>();
  const int64_t* ord = order.data_ptr<int64_t>();
  std::vector<int64_t> taken(static_cast<size_t>(classes), 0), keep;
  for (int64_t i = 0; i < ds.size(); ++i) {
    auto& n = taken[static_cast<size_t>(lab[i])];
    if (n < per_class) {
      ++n;
      keep.push_back(ord[i]);
    }
  }
  for (int64_t k = 0; k < classes; ++k) {
    if (taken[static_cast<size_t>(k)] < per_class) {
      throw std::invalid_argument(
          "config key 'classify.labels_per_class': " + std::to_string(per_class) +
          " labelled images per class asked for, but class '" +
          ds.class_names[static_cast<size_t>(k)] + "' has " +
          std::to_string(taken[static_cast<size_t>(k)]) + " in the train split");
    }
  }
  std::sort(keep.begin(), keep.end());
  return ds.subset(torch::tensor(keep, torch::kLong));
}

std::pair<Dataset, Dataset> load_labelled_train_val(const config::Config& cfg) {
  auto [train, val] = load_train_val(cfg);
  // Its own stream of the seed, so the subset does not move when other draws change.
  train = class_balanced_subset(train, cfg.classify.labels_per_class,
                                static_cast<uint64_t>(cfg.seed) + 17);
  return {std::move(train), std::move(val)};
}

int64_t ChannelMoments::rows_per_chunk(int64_t row_elements) {
  return std::max<int64_t>(1, (int64_t{1} << 22) / std::max<int64_t>(1, row_elements));
}

void ChannelMoments::add(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4, "channel statistics expect N x C x H x W images");
  const auto x = images.to(torch::kCPU, torch::kDouble).div_(255.0);
  auto sum = x.sum({0, 2, 3});
  auto sq = x.square().sum({0, 2, 3});
  sum_ = sum_.defined() ? sum_ + sum : sum;
  sq_ = sq_.defined() ? sq_ + sq : sq;
  count_ += static_cast<double>(x.numel() / x.size(1));
}

std::pair<torch::Tensor, torch::Tensor> ChannelMoments::mean_std() const {
  TORCH_CHECK(count_ > 0, "channel statistics of no images");
  const auto mean = sum_ / count_;
  const auto var = (sq_ / count_ - mean.square()).clamp_min(0);
  return {mean.to(torch::kFloat), var.sqrt().clamp_min(1e-6).to(torch::kFloat)};
}

std::pair<torch::Tensor, torch::Tensor> channel_stats(const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4, "channel statistics expect N x C x H x W images");
  const int64_t chunk =
      ChannelMoments::rows_per_chunk(images.size(1) * images.size(2) * images.size(3));
  ChannelMoments m;
  for (int64_t i = 0; i < images.size(0); i += chunk) m.add(images.slice(0, i, i + chunk));
  return m.mean_std();
}

torch::Tensor augment_batch(const torch::Tensor& batch, int64_t pad, bool flip,
                            c10::optional<at::Generator> gen) {
  TORCH_CHECK(batch.dim() == 4, "augment_batch expects B x C x H x W");
  const int64_t b = batch.size(0), c = batch.size(1), h = batch.size(2), w = batch.size(3);
  const auto opts = torch::TensorOptions().device(batch.device()).dtype(torch::kLong);
  torch::Tensor out = batch;
  if (pad > 0) {
    namespace F = torch::nn::functional;
    auto padded = F::pad(batch, F::PadFuncOptions({pad, pad, pad, pad}));
    // Per-image offsets, applied with two gathers (rows, then columns): no per-image loop.
    auto oy = torch::randint(0, 2 * pad + 1, {b, 1, 1, 1}, gen, opts);
    auto ox = torch::randint(0, 2 * pad + 1, {b, 1, 1, 1}, gen, opts);
    auto rows = (oy + torch::arange(h, opts).view({1, 1, h, 1})).expand({b, c, h, w + 2 * pad});
    auto cropped = padded.gather(2, rows);
    auto cols = (ox + torch::arange(w, opts).view({1, 1, 1, w})).expand({b, c, h, w});
    out = cropped.gather(3, cols);
  }
  if (flip) {
    auto mask = torch::rand({b, 1, 1, 1}, gen, opts.dtype(torch::kFloat)) < 0.5;
    out = torch::where(mask, out.flip({3}), out);
  }
  return out.contiguous(torch::MemoryFormat::ChannelsLast);
}

Dataset training_views(const Dataset& d, bool mirrored, int64_t copies, int64_t pad,
                       uint64_t seed) {
  TORCH_CHECK(copies >= 0 && pad >= 0, "training_views: negative copies or padding");
  if (!mirrored && copies == 0) return d;
  std::vector<torch::Tensor> images{d.images};
  if (mirrored) images.push_back(d.images.flip({3}));
  auto gen = seeded(seed);
  for (int64_t k = 0; k < copies; ++k)
    images.push_back(augment_batch(d.images, pad, true, gen).contiguous());
  Dataset views = d;
  views.images = torch::cat(images);
  views.labels = d.labels.repeat({static_cast<int64_t>(images.size())});
  return views;
}

Dataset head_training_views(const Dataset& train, const config::Config& cfg) {
  const auto& c = cfg.classify;
  return training_views(train, c.flip_codes, c.augmented_copies, c.crop_padding,
                        static_cast<uint64_t>(cfg.seed) + 29);
}

torch::Tensor to_float(const torch::Tensor& images, const torch::Device& device) {
  return images.to(device, /*non_blocking=*/true)
      .to(torch::kFloat)
      .div_(255.0)
      .contiguous(torch::MemoryFormat::ChannelsLast);
}

std::pair<Dataset, Dataset> load_train_val(const config::Config& cfg) {
  const auto seed = static_cast<uint64_t>(cfg.seed);
  auto full = load_split(cfg.data, Split::kTrain, seed);
  return split_validation(full, cfg.data.val_size, seed);
}

}  // namespace aefx::data
