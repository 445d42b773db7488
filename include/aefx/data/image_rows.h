#pragma once
// The images pretrain learns from: the labelled train split's images in memory, and the cached
// images of data.unlabeled, seen as one set of rows without copying either.
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "aefx/config/config.h"
#include "aefx/data/dataset.h"
#include "aefx/data/image_cache.h"

namespace aefx::data {

/// One or more uint8 N_k x C x H x W tensors (the same C, H, W) seen as rows 0..N-1, in order.
class ImageRows {
 public:
  ImageRows() = default;
  explicit ImageRows(torch::Tensor images) { append(std::move(images)); }
  /// Adds rows after the ones already held; `cache` keeps a mapped tensor's memory alive and is
  /// what release() releases.
  void append(torch::Tensor images, std::shared_ptr<const ImageCache> cache = nullptr);

  int64_t size() const { return size_; }
  int64_t channels() const { return parts_.empty() ? 0 : parts_[0].images.size(1); }
  int64_t height() const { return parts_.empty() ? 0 : parts_[0].images.size(2); }
  int64_t width() const { return parts_.empty() ? 0 : parts_[0].images.size(3); }
  /// The rows at `index` (int64, any device) in that order: uint8 on the rows' device.
  torch::Tensor gather(const torch::Tensor& index) const;
  /// Rows begin, begin + step, ... below end.
  torch::Tensor rows(int64_t begin, int64_t end, int64_t step = 1) const;
  /// The same rows with each part on `device` (on the CPU a mapped cache stays mapped).
  ImageRows to(const torch::Device& device) const;
  /// Per-channel mean and std of all rows in [0, 1] units, as channel_stats, read in chunks.
  std::pair<torch::Tensor, torch::Tensor> channel_stats() const;
  /// Drops the pages of the mapped caches from this process's resident set (ImageCache::release).
  void release() const;

 private:
  struct Part {
    torch::Tensor images;
    std::shared_ptr<const ImageCache> cache;
    int64_t offset = 0;
  };
  std::vector<Part> parts_;
  int64_t size_ = 0;
};

/// The rows pretrain trains on: the labelled train images (`train`), plus the images of
/// data.unlabeled (found recursively, cached in data.cache_dir or data.unlabeled/.aefx-cache)
/// unless data.unlabeled_only leaves out the labelled ones. Throws std::runtime_error naming
/// data.unlabeled when it is not a folder or holds no image file.
ImageRows pretrain_rows(const config::Config& cfg, const Dataset& train);

}  // namespace aefx::data
