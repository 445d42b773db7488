#include "aefx/extract/npy.h"

#include <torch/torch.h>

#include <cctype>
#include <fstream>
#include <stdexcept>

#include "aefx/util/log.h"

namespace aefx::extract {
namespace {

const char* npy_descr(torch::ScalarType dtype) {
  if (dtype == torch::kFloat) return "<f4";
  if (dtype == torch::kHalf) return "<f2";
  throw std::invalid_argument("features.npy holds float32 or float16 values");
}

/// The first kNpyHeaderBytes of a file (fewer when it is shorter).
std::string read_head(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string head(static_cast<size_t>(kNpyHeaderBytes), '\0');
  in.read(head.data(), kNpyHeaderBytes);
  head.resize(static_cast<size_t>(std::max<std::streamsize>(0, in.gcount())));
  return head;
}

/// Whether `head` is npy_header(dtype, R, cols) for some row count R.
bool is_header_for(const std::string& head, torch::ScalarType dtype, int64_t cols) {
  const std::string want = npy_header(dtype, 0, cols);
  if (head.size() != want.size()) return false;
  const size_t open = want.find("(") + 1;
  if (head.compare(0, open, want, 0, open) != 0) return false;
  size_t at = open;
  while (at < head.size() && std::isdigit(static_cast<unsigned char>(head[at]))) ++at;
  const std::string tail = util::strfmt(", %lld), }", static_cast<long long>(cols));
  return at > open && head.compare(at, tail.size(), tail) == 0;
}

/// The file opened keeping its first `rows` rows, its header checked before anything is cut.
util::AppendFile open_rows(const std::filesystem::path& path, torch::ScalarType dtype, int64_t cols,
                           int64_t rows) {
  if (rows > 0 && !is_header_for(read_head(path), dtype, cols)) {
    throw std::runtime_error(path.string() + " is not the features file this extraction wrote (" +
                             std::string(npy_descr(dtype)) + ", " + std::to_string(cols) +
                             " columns)");
  }
  return util::AppendFile(
      path,
      rows > 0 ? kNpyHeaderBytes + rows * cols * static_cast<int64_t>(c10::elementSize(dtype)) : 0);
}

}  // namespace

std::string npy_header(torch::ScalarType dtype, int64_t rows, int64_t cols) {
  std::string dict =
      util::strfmt("{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
                   npy_descr(dtype), static_cast<long long>(rows), static_cast<long long>(cols));
  constexpr size_t kPreamble = 10;  // magic (6), version (2), header length (2, little-endian)
  if (dict.size() + kPreamble + 1 > static_cast<size_t>(kNpyHeaderBytes))
    throw std::invalid_argument("npy_header: shape too large for the fixed header");
  dict.append(static_cast<size_t>(kNpyHeaderBytes) - kPreamble - 1 - dict.size(), ' ');
  dict += '\n';
  const auto len = static_cast<uint16_t>(dict.size());
  std::string head("\x93NUMPY\x01\x00", 8);
  head += static_cast<char>(len & 0xff);
  head += static_cast<char>(len >> 8);
  return head + dict;
}

NpyRowFile::NpyRowFile(const std::filesystem::path& path, torch::ScalarType dtype, int64_t cols,
                       int64_t rows)
    : file_(open_rows(path, dtype, cols, rows)),
      dtype_(dtype),
      cols_(cols),
      rows_(rows),
      row_bytes_(cols * static_cast<int64_t>(c10::elementSize(dtype))) {
  if (rows == 0) {
    const std::string head = npy_header(dtype, 0, cols);
    file_.append(head.data(), head.size());
  }
  write_header();
}

void NpyRowFile::write_header() {
  const std::string head = npy_header(dtype_, rows_, cols_);
  file_.write_at(0, head.data(), head.size());
}

void NpyRowFile::append(const torch::Tensor& rows) {
  TORCH_CHECK(rows.dim() == 2 && rows.size(1) == cols_ && rows.scalar_type() == dtype_ &&
                  rows.device().is_cpu(),
              "NpyRowFile::append expects CPU rows of ", cols_, " values of ", dtype_, ", got ",
              rows.sizes(), " ", rows.scalar_type());
  const auto data = rows.contiguous();
  file_.append(data.data_ptr(), static_cast<size_t>(data.size(0) * row_bytes_));
  rows_ += data.size(0);
  write_header();
}

void NpyRowFile::truncate(int64_t rows) {
  TORCH_CHECK(rows >= 0 && rows <= rows_, "NpyRowFile::truncate beyond the rows written");
  file_.truncate(kNpyHeaderBytes + rows * row_bytes_);
  rows_ = rows;
  write_header();
}

}  // namespace aefx::extract
