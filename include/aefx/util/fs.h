#pragma once
// File helpers: every file aefx writes goes through atomic_write so that an interrupted
// write never replaces a good file with a half-written one.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace aefx::util {

namespace fs = std::filesystem;

/// Writes `path` atomically: `writer` fills a temporary file next to it, which is flushed to
/// disk and renamed over `path` only if the writer succeeded. Throws std::runtime_error naming
/// the file on any failure; the previous content of `path` is then untouched. With `durable`
/// false nothing is flushed: the file is still whole or old after a killed process (the rename
/// is atomic), only not after a power cut; for state rewritten many times a second.
void atomic_write(const fs::path& path, const std::function<void(const fs::path& tmp)>& writer,
                  bool durable = true);

/// Atomically replaces `path` with `content`.
void atomic_write_text(const fs::path& path, const std::string& content, bool durable = true);

/// Writes all `bytes` of `data` at `offset` of the open file `fd` (pwrite, retried after a short
/// write or EINTR). Throws std::runtime_error "cannot write NAME: reason" (a full disk: ENOSPC).
void pwrite_all(int fd, const void* data, size_t bytes, int64_t offset, const std::string& name);

/// Reads exactly `bytes` at `offset` of `fd` into `data`; throws "cannot read NAME: reason".
void pread_all(int fd, void* data, size_t bytes, int64_t offset, const std::string& name);

/// A file written by appending, that knows its size and never keeps a partial append: a write
/// that fails (a full disk, the file-size limit) cuts the file back to its size before the append
/// and throws std::runtime_error naming the file and the reason. Move-only; closes the file.
class AppendFile {
 public:
  /// Opens `path` for writing, creating it when missing, and cuts it to `keep_bytes` (0: empty;
  /// the resume path keeps what an earlier process had written). Throws std::runtime_error naming
  /// the file when it cannot be opened or holds fewer than `keep_bytes` bytes.
  AppendFile(const fs::path& path, int64_t keep_bytes);
  AppendFile(AppendFile&& other) noexcept;
  AppendFile& operator=(AppendFile&&) = delete;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  ~AppendFile();
  void append(const void* data, size_t bytes);
  /// Overwrites bytes already written (a header), at `offset`.
  void write_at(int64_t offset, const void* data, size_t bytes);
  /// Cuts the file back to `bytes` (<= size()).
  void truncate(int64_t bytes);
  /// Flushes the file to disk.
  void sync();
  int64_t size() const { return size_; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  int fd_ = -1;
  int64_t size_ = 0;
};

/// Reads a whole file; throws std::runtime_error naming it when it cannot be read.
std::string read_text(const fs::path& path);

/// Removes `path` and everything under it, if it exists; errors are ignored (a scratch folder).
/// Not std::filesystem::remove_all: pip's LibTorch 2.x exports its own copy of that function,
/// built for another ABI, which crashes when a program linked against it calls it.
void remove_tree(const fs::path& path);

/// Throws std::runtime_error saying which stage writes `path` when it does not exist.
void require_file(const fs::path& path, const std::string& written_by);

/// Creates `dir` (and parents) and checks that a file can be written there, so that an
/// unwritable output folder is reported before any work starts.
void ensure_writable_dir(const fs::path& dir);

}  // namespace aefx::util
