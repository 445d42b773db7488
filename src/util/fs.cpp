#include "aefx/util/fs.h"

#include <fcntl.h>
#include <ftw.h>
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

void atomic_write(const fs::path& path, const std::function<void(const fs::path& tmp)>& writer) {
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  try {
    writer(tmp);
    if (!fs::exists(tmp)) throw std::runtime_error("nothing was written");
    fsync_path(tmp);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw std::runtime_error(ec.message());
    // The rename itself reaches the disk only when the folder's entry does.
    fsync_path(path.parent_path().empty() ? fs::path(".") : path.parent_path());
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw std::runtime_error("cannot write " + path.string() + ": " + e.what());
  }
}

void atomic_write_text(const fs::path& path, const std::string& content) {
  atomic_write(path, [&](const fs::path& tmp) {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error(std::strerror(errno));
    errno = 0;
    const bool wrote =
        std::fwrite(content.data(), 1, content.size(), f) == content.size() && std::fflush(f) == 0;
    const int err = errno;
    const bool closed = std::fclose(f) == 0;
    if (!wrote || !closed) {
      throw std::runtime_error(err != 0 ? std::strerror(err) : "write failed (disk full?)");
    }
  });
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
