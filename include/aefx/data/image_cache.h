#pragma once
// Image files decoded and resized once into a uint8 file, then read through a memory map: data
// larger than memory for pretraining. The file is a 4 KiB header and N x C x S x S pixels; it is
// keyed by the source files (paths, sizes, modification times), the image size and the channels,
// and rebuilt when any of them changes. Building streams rows to the file from worker threads, so
// memory does not grow with N; reading maps it, and release() drops the pages this process has
// touched from its resident set (the kernel's page cache keeps them), so that peak RSS does not
// grow with N either.
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace aefx::data {

class ImageCache {
 public:
  /// The cache of `files` as uint8 `channels` x size x size images (RGB, or grey by the BT.601
  /// luma weights) in folder `dir` (created when missing), built first when no file there has
  /// this key; caches of other keys in `dir` are removed then. An undecodable file is skipped
  /// with a warning naming it (it takes no row). Throws std::runtime_error naming the folder when
  /// it cannot be written, and when no file decodes.
  static std::shared_ptr<const ImageCache> open(const std::vector<std::string>& files, int64_t size,
                                                int64_t channels, const std::string& dir);
  ~ImageCache();
  ImageCache(const ImageCache&) = delete;
  ImageCache& operator=(const ImageCache&) = delete;

  /// uint8 N x C x S x S over the mapping (read-only memory: never write to it), valid while the
  /// cache lives (hold the shared_ptr as long as the tensor).
  const torch::Tensor& images() const { return images_; }
  int64_t size() const { return images_.size(0); }
  /// Files the cache skipped because they did not decode.
  int64_t skipped() const { return skipped_; }
  const std::string& path() const { return path_; }
  /// Drops the mapping's pages from this process's resident set (madvise MADV_DONTNEED); later
  /// reads fault them back from the page cache.
  void release() const;

 private:
  ImageCache() = default;
  std::string path_;
  void* base_ = nullptr;
  size_t length_ = 0;
  int64_t skipped_ = 0;
  torch::Tensor images_;
};

}  // namespace aefx::data
