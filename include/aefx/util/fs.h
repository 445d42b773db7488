#pragma once
// File helpers: every file aefx writes goes through atomic_write so that an interrupted
// write never replaces a good file with a half-written one.
#include <filesystem>
#include <functional>
#include <string>

namespace aefx::util {

namespace fs = std::filesystem;

/// Writes `path` atomically: `writer` fills a temporary file next to it, which is flushed to
/// disk and renamed over `path` only if the writer succeeded. Throws std::runtime_error naming
/// the file on any failure; the previous content of `path` is then untouched.
void atomic_write(const fs::path& path, const std::function<void(const fs::path& tmp)>& writer);

/// Atomically replaces `path` with `content`.
void atomic_write_text(const fs::path& path, const std::string& content);

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
