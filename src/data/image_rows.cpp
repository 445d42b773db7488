#include "aefx/data/image_rows.h"

#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>

#include "aefx/util/log.h"

namespace aefx::data {

void ImageRows::append(torch::Tensor images, std::shared_ptr<const ImageCache> cache) {
  TORCH_CHECK(images.dim() == 4 && images.scalar_type() == torch::kUInt8,
              "ImageRows: uint8 N x C x H x W images expected");
  TORCH_CHECK(parts_.empty() || (images.size(1) == channels() && images.size(2) == height() &&
                                 images.size(3) == width()),
              "ImageRows: images of ", images.sizes(), " beside rows of ", channels(), " x ",
              height(), " x ", width());
  const int64_t n = images.size(0);
  parts_.push_back({std::move(images), std::move(cache), size_});
  size_ += n;
}

torch::Tensor ImageRows::gather(const torch::Tensor& index) const {
  TORCH_CHECK(!parts_.empty(), "ImageRows::gather on no rows");
  const auto device = parts_[0].images.device();
  auto idx = index.to(device, torch::kLong);
  if (parts_.size() == 1) return parts_[0].images.index_select(0, idx);
  auto out = torch::empty({idx.size(0), channels(), height(), width()}, parts_[0].images.options());
  for (const auto& p : parts_) {
    const auto mine = (idx >= p.offset) & (idx < p.offset + p.images.size(0));
    const auto at = mine.nonzero().flatten();
    if (at.size(0) == 0) continue;
    out.index_copy_(0, at, p.images.index_select(0, idx.index_select(0, at) - p.offset));
  }
  return out;
}

torch::Tensor ImageRows::rows(int64_t begin, int64_t end, int64_t step) const {
  if (parts_.size() == 1) return parts_[0].images.slice(0, begin, end, step);
  return gather(torch::arange(begin, end, step, torch::kLong));
}

ImageRows ImageRows::to(const torch::Device& device) const {
  ImageRows moved;
  for (const auto& p : parts_) moved.append(p.images.to(device), p.cache);
  return moved;
}

std::pair<torch::Tensor, torch::Tensor> ImageRows::channel_stats() const {
  const int64_t chunk = ChannelMoments::rows_per_chunk(channels() * height() * width());
  ChannelMoments m;
  for (int64_t i = 0; i < size_; i += chunk) {
    m.add(rows(i, std::min(size_, i + chunk)));
    release();  // the mapped pages read so far leave the resident set
  }
  return m.mean_std();
}

void ImageRows::release() const {
  for (const auto& p : parts_) {
    if (p.cache) p.cache->release();
  }
}

ImageRows pretrain_rows(const config::Config& cfg, const Dataset& train) {
  const auto& d = cfg.data;
  ImageRows rows;
  if (!d.unlabeled_only) rows.append(train.images);
  if (d.unlabeled.empty()) return rows;
  if (!std::filesystem::is_directory(d.unlabeled)) {
    throw std::runtime_error("data.unlabeled " + d.unlabeled + " is not a folder");
  }
  const auto files = find_images(d.unlabeled);
  if (files.empty()) {
    throw std::runtime_error("data.unlabeled " + d.unlabeled +
                             " holds no image file (searched recursively for .png, .jpg, .jpeg, "
                             ".bmp, .ppm, .pgm, .pbm, .tif, .tiff, .webp)");
  }
  const std::string dir = d.cache_dir.empty()
                              ? (std::filesystem::path(d.unlabeled) / ".aefx-cache").string()
                              : d.cache_dir;
  auto cache = ImageCache::open(files, d.image_size, train.images.size(1), dir);
  util::log_info(util::strfmt(
      "pretrain: %lld unlabeled images from %s%s (cache %s)", static_cast<long long>(cache->size()),
      d.unlabeled.c_str(),
      cache->skipped() > 0
          ? util::strfmt(", %lld files skipped", static_cast<long long>(cache->skipped())).c_str()
          : "",
      cache->path().c_str()));
  rows.append(cache->images(), cache);
  return rows;
}

}  // namespace aefx::data
