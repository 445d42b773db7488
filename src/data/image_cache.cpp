#include "aefx/data/image_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "aefx/data/dataset.h"
#include "aefx/util/fs.h"
#include "aefx/util/hash.h"
#include "aefx/util/log.h"
#include "aefx/util/parallel.h"
#include "aefx/util/runtime.h"

namespace aefx::data {
namespace fs = std::filesystem;
namespace {

/// Bytes before the first row: a page, so that the rows are page-aligned in the mapping.
constexpr int64_t kHeaderBytes = 4096;
constexpr char kMagic[8] = {'A', 'E', 'F', 'X', 'U', '8', '\x01', '\0'};

/// The header's fields after the magic.
struct Header {
  int64_t rows, channels, size, skipped;
  uint64_t key;
};

/// What the cache's content depends on: the files as the file system describes them (path,
/// size, modification time), the image size, the channels and this layout's version.
uint64_t cache_key(const std::vector<std::string>& files, int64_t size, int64_t channels) {
  uint64_t h =
      util::fnv1a("aefx-image-cache-1 " + std::to_string(size) + " " + std::to_string(channels));
  for (const auto& f : files) {
    struct stat st {};
    const bool ok = ::stat(f.c_str(), &st) == 0;
    h = util::fnv1a(f + '\n' +
                        (ok ? std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) +
                                  "." + std::to_string(st.st_mtim.tv_nsec)
                            : std::string("missing")) +
                        '\n',
                    h);
  }
  return h;
}

std::string errno_text() { return std::strerror(errno); }

/// Decodes `files` into a new cache file at `path` (through a temporary file renamed at the end).
void build(const std::vector<std::string>& files, int64_t size, int64_t channels, uint64_t key,
           const std::string& path) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + tmp + ": " + errno_text());
  try {
    const auto n = static_cast<int64_t>(files.size());
    const int64_t row = channels * size * size;
    std::vector<char> ok(files.size(), 0);
    std::vector<std::string> reasons(files.size());
    util::log_info(util::strfmt("caching %lld images (%lld x %lld x %lld) in %s",
                                static_cast<long long>(n), static_cast<long long>(channels),
                                static_cast<long long>(size), static_cast<long long>(size),
                                path.c_str()));
    const double t0 = util::now_seconds();
    // An undecodable file is noted and skipped; a failed write ends the build.
    util::parallel_for_each(n, [&](int64_t i) {
      torch::Tensor img;
      try {
        img = to_channels(decode_image(files[static_cast<size_t>(i)], size).unsqueeze(0), channels)
                  .contiguous();
      } catch (const std::runtime_error& e) {
        reasons[static_cast<size_t>(i)] = e.what();
        return;
      }
      util::pwrite_all(fd, img.data_ptr(), static_cast<size_t>(row), kHeaderBytes + i * row, tmp);
      ok[static_cast<size_t>(i)] = 1;
    });
    // Rows of skipped files leave holes: the rows after them move down, in order.
    int64_t rows = 0;
    std::vector<char> buffer(static_cast<size_t>(row));
    for (int64_t i = 0; i < n; ++i) {
      if (!ok[static_cast<size_t>(i)]) {
        util::log_warn("skipped " + reasons[static_cast<size_t>(i)]);
        continue;
      }
      if (rows != i) {
        util::pread_all(fd, buffer.data(), buffer.size(), kHeaderBytes + i * row, tmp);
        util::pwrite_all(fd, buffer.data(), buffer.size(), kHeaderBytes + rows * row, tmp);
      }
      ++rows;
    }
    if (rows == 0) {
      throw std::runtime_error("none of the " + std::to_string(n) +
                               " image files could be decoded (the first: " + reasons[0] + ")");
    }
    if (::ftruncate(fd, static_cast<off_t>(kHeaderBytes + rows * row)) != 0)
      throw std::runtime_error("cannot size " + tmp + ": " + errno_text());
    std::vector<char> head(static_cast<size_t>(kHeaderBytes), 0);
    const Header h{rows, channels, size, n - rows, key};
    std::memcpy(head.data(), kMagic, sizeof kMagic);
    std::memcpy(head.data() + sizeof kMagic, &h, sizeof h);
    util::pwrite_all(fd, head.data(), head.size(), 0, tmp);
    if (::fsync(fd) != 0) throw std::runtime_error("cannot flush " + tmp + ": " + errno_text());
    ::close(fd);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw std::runtime_error("cannot write " + path + ": " + ec.message());
    util::log_info(util::strfmt("cached %lld images (%lld skipped) in %.1f s",
                                static_cast<long long>(rows), static_cast<long long>(n - rows),
                                util::now_seconds() - t0));
  } catch (...) {
    ::close(fd);
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace

std::shared_ptr<const ImageCache> ImageCache::open(const std::vector<std::string>& files,
                                                   int64_t size, int64_t channels,
                                                   const std::string& dir) {
  TORCH_CHECK(!files.empty() && size > 0 && (channels == 1 || channels == 3),
              "ImageCache::open: files, a size and 1 or 3 channels expected");
  const uint64_t key = cache_key(files, size, channels);
  const std::string name = "images-" + util::hex64(key) + ".u8";
  const fs::path path = fs::path(dir) / name;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    try {
      util::ensure_writable_dir(dir);
    } catch (const std::exception& e) {
      throw std::runtime_error("image cache folder (data.cache_dir) " + dir +
                               " cannot be written: " + e.what());
    }
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const auto f = e.path().filename().string();
      if (f.rfind("images-", 0) == 0 && f.size() > 3 && f.substr(f.size() - 3) == ".u8") {
        util::log_info("removing the stale image cache " + e.path().string());
        fs::remove(e.path(), ec);
      }
    }
    build(files, size, channels, key, path.string());
  }
  std::shared_ptr<ImageCache> cache(new ImageCache());
  cache->path_ = path.string();
  const int fd = ::open(cache->path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + cache->path_ + ": " + errno_text());
  struct stat st {};
  char head[sizeof kMagic + sizeof(Header)] = {};
  Header h{};
  const bool read_ok = ::fstat(fd, &st) == 0 &&
                       ::pread(fd, head, sizeof head, 0) == static_cast<ssize_t>(sizeof head);
  if (read_ok) std::memcpy(&h, head + sizeof kMagic, sizeof h);
  const int64_t row = channels * size * size;
  if (!read_ok || std::memcmp(head, kMagic, sizeof kMagic) != 0 || h.key != key ||
      h.channels != channels || h.size != size || h.rows <= 0 ||
      st.st_size != kHeaderBytes + h.rows * row) {
    ::close(fd);
    throw std::runtime_error("image cache " + cache->path_ +
                             " is damaged (remove it and it is rebuilt)");
  }
  cache->length_ = static_cast<size_t>(st.st_size);
  cache->base_ = ::mmap(nullptr, cache->length_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (cache->base_ == MAP_FAILED) {
    cache->base_ = nullptr;
    throw std::runtime_error("cannot map " + cache->path_ + ": " + errno_text());
  }
  ::madvise(cache->base_, cache->length_, MADV_RANDOM);
  cache->skipped_ = h.skipped;
  // The tensor does not own the memory: the cache (which the shared_ptr's owners keep) does.
  cache->images_ = torch::from_blob(static_cast<char*>(cache->base_) + kHeaderBytes,
                                    {h.rows, channels, size, size}, torch::kUInt8);
  return cache;
}

ImageCache::~ImageCache() {
  if (base_) ::munmap(base_, length_);
}

void ImageCache::release() const {
  if (base_) ::madvise(base_, length_, MADV_DONTNEED);
}

}  // namespace aefx::data
