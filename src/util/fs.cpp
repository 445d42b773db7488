#include "aefx/util/fs.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace aefx::util {
namespace {

void fsync_path(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0)
    throw std::runtime_error("cannot reopen " + path.string() + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0)
    throw std::runtime_error("cannot flush " + path.string() + ": " + std::strerror(err));
}

}  // namespace

void atomic_write(const fs::path& path, const std::function<void(const fs::path& tmp)>& writer,
                  bool durable) {
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  try {
    writer(tmp);
    if (!fs::exists(tmp)) throw std::runtime_error("nothing was written");
    if (durable) fsync_path(tmp);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw std::runtime_error(ec.message());
    // The rename itself reaches the disk only when the folder's entry does.
    if (durable) fsync_path(path.parent_path().empty() ? fs::path(".") : path.parent_path());
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw std::runtime_error("cannot write " + path.string() + ": " + e.what());
  }
}

void atomic_write_text(const fs::path& path, const std::string& content, bool durable) {
  atomic_write(
      path,
      [&](const fs::path& tmp) {
        std::FILE* f = std::fopen(tmp.c_str(), "wb");
        if (!f) throw std::runtime_error(std::strerror(errno));
        errno = 0;
        const bool wrote = std::fwrite(content.data(), 1, content.size(), f) == content.size() &&
                           std::fflush(f) == 0;
        const int err = errno;
        const bool closed = std::fclose(f) == 0;
        if (!wrote || !closed) {
          throw std::runtime_error(err != 0 ? std::strerror(err) : "write failed (disk full?)");
        }
      },
      durable);
}

AppendFile::AppendFile(const fs::path& path, int64_t keep_bytes) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error("cannot open " + path.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || st.st_size < keep_bytes) {
    ::close(fd_);
    throw std::runtime_error(path.string() + " holds " + std::to_string(st.st_size) +
                             " bytes, fewer than the " + std::to_string(keep_bytes) +
                             " already written to it (changed by something else?)");
  }
  size_ = st.st_size;
  truncate(keep_bytes);
}

AppendFile::AppendFile(AppendFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), size_(other.size_) {
  other.fd_ = -1;
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void pwrite_all(int fd, const void* data, size_t bytes, int64_t offset, const std::string& name) {
  const auto* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pwrite(fd, p + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw std::runtime_error("cannot write " + name + ": " +
                               std::strerror(n < 0 ? errno : ENOSPC));
    done += static_cast<size_t>(n);
  }
}

void pread_all(int fd, void* data, size_t bytes, int64_t offset, const std::string& name) {
  auto* p = static_cast<char*>(data);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd, p + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw std::runtime_error("cannot read " + name + ": " +
                               (n < 0 ? std::strerror(errno) : "the file is shorter"));
    done += static_cast<size_t>(n);
  }
}

void AppendFile::append(const void* data, size_t bytes) {
  try {
    pwrite_all(fd_, data, bytes, size_, path_.string());
  } catch (const std::runtime_error&) {
    // Back to the last whole append. Should even this fail, size() still says what is whole
    // and the next AppendFile on the file cuts it there.
    [[maybe_unused]] const int cut = ::ftruncate(fd_, static_cast<off_t>(size_));
    throw;
  }
  size_ += static_cast<int64_t>(bytes);
}

void AppendFile::write_at(int64_t offset, const void* data, size_t bytes) {
  if (offset < 0 || offset + static_cast<int64_t>(bytes) > size_)
    throw std::logic_error("AppendFile::write_at past the end of " + path_.string());
  pwrite_all(fd_, data, bytes, offset, path_.string());
}

void AppendFile::truncate(int64_t bytes) {
  if (::ftruncate(fd_, static_cast<off_t>(bytes)) != 0)
    throw std::runtime_error("cannot cut " + path_.string() + ": " + std::strerror(errno));
  size_ = bytes;
}

void AppendFile::sync() {
  if (::fsync(fd_) != 0)
    throw std::runtime_error("cannot flush " + path_.string() + ": " + std::strerror(errno));
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string() + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void remove_tree(const fs::path& path) {
  ::nftw(
      path.c_str(),
      [](const char* file, const struct stat*, int, struct FTW*) {
        ::remove(file);
        return 0;
      },
      16, FTW_DEPTH | FTW_PHYS);
}

void require_file(const fs::path& path, const std::string& written_by) {
  if (!fs::exists(path)) {
    throw std::runtime_error("missing " + path.string() + ": it is written by the '" + written_by +
                             "' stage; run that stage first (e.g. --stages " + written_by + ")");
  }
}

void ensure_writable_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw std::runtime_error("cannot create output folder " + dir.string() + ": " + ec.message());
  const fs::path probe = dir / (".aefx_write_test." + std::to_string(::getpid()));
  {
    std::ofstream out(probe);
    if (!out || !(out << "ok") || !out.flush()) {
      throw std::runtime_error("output folder " + dir.string() + " is not writable");
    }
  }
  fs::remove(probe, ec);
}

}  // namespace aefx::util
