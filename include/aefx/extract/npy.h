#pragma once
// features.npy: a 2-D NPY file (format version 1.0) whose rows are appended as they are
// computed, so that memory does not grow with the number of rows, and whose header is rewritten
// in place with the row count after every append, so that the file loads with NumPy at any
// moment (np.load(..., mmap_mode="r")).
//
// Why written here: the format is a 10-byte preamble and a Python dict literal; Debian packages
// no C++ NPY writer (cnpy is not packaged, xtensor's would bring xtensor), and none offers what
// aefx needs: a fixed-size header rewritten in place while rows are appended.
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "aefx/util/fs.h"

namespace aefx::extract {

/// Bytes of the header NpyRowFile writes (preamble, dict, padding): always this size, so that
/// the row count can grow without moving the data.
inline constexpr int64_t kNpyHeaderBytes = 128;

/// The header of a C-order `rows` x `cols` array of `dtype` (torch::kFloat: '<f4',
/// torch::kHalf: '<f2'), padded with spaces to kNpyHeaderBytes.
std::string npy_header(torch::ScalarType dtype, int64_t rows, int64_t cols);

/// A 2-D NPY file of rows appended in order. A failed append (a full disk) leaves the file with
/// the rows before it (util::AppendFile) and throws std::runtime_error naming the file.
class NpyRowFile {
 public:
  /// Opens `path` keeping its first `rows` rows (0: a new file, any old content dropped); with
  /// rows > 0 the header must be the one this class writes for `dtype` and `cols` (the resume
  /// path), else std::runtime_error names the file.
  NpyRowFile(const std::filesystem::path& path, torch::ScalarType dtype, int64_t cols,
             int64_t rows);
  /// Appends a CPU tensor K x cols of the file's dtype; the header's count follows.
  void append(const torch::Tensor& rows);
  /// Cuts the file back to its first `rows` rows (<= rows()).
  void truncate(int64_t rows);
  /// Flushes the file to disk.
  void sync() { file_.sync(); }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }

 private:
  void write_header();

  util::AppendFile file_;
  torch::ScalarType dtype_;
  int64_t cols_, rows_, row_bytes_;
};

}  // namespace aefx::extract
