// libFuzzer target: the IDX (MNIST format) reader. The input is one images file. It is parsed in
// memory and, written as t10k-images-idx3-ubyte.gz (zlib reads it whether or not it is gzip
// data) beside a labels file for one image, through load_idx. The documented error is
// std::runtime_error; anything else (another exception, a crash, a sanitizer report, a wrong
// result) is a finding.
#include <stdlib.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "aefx/data/dataset.h"
#include "aefx/util/log.h"
#include "scratch_dir.h"

namespace {

namespace fs = std::filesystem;

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_idx: %s\n", what.c_str());
  std::abort();
}

const fs::path& scratch() {
  static aefx::fuzz::ScratchDir dir("idx");
  return dir.path;
}

void write(const fs::path& file, const uint8_t* data, size_t size) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) finding("cannot write " + file.string());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  aefx::util::set_log_level(aefx::util::LogLevel::kQuiet);
  torch::set_num_threads(1);
  // One label (class 3) for the images file the inputs become.
  const uint8_t labels[] = {0, 0, 8, 1, 0, 0, 0, 1, 3};
  write(scratch() / "t10k-labels-idx1-ubyte", labels, sizeof labels);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (int64_t dims : {1, 3}) {
    try {
      const auto t = aefx::data::parse_idx(data, size, dims, "fuzz input");
      const size_t header = 4 + 4 * static_cast<size_t>(dims);
      if (t.dim() != dims || t.scalar_type() != torch::kUInt8 ||
          static_cast<size_t>(t.numel()) + header != size ||
          std::memcmp(t.contiguous().data_ptr<uint8_t>(), data + header, size - header) != 0)
        finding("accepted " + std::to_string(size) + " bytes with a wrong result");
    } catch (const std::runtime_error&) {
    }
  }
  write(scratch() / "t10k-images-idx3-ubyte.gz", data, size);
  try {
    const auto ds = aefx::data::load_idx(scratch().string(), aefx::data::Split::kTest, {});
    if (ds.size() != 1 || ds.images.dim() != 4 || ds.images.size(1) != 1 ||
        ds.labels[0].item<int64_t>() != 3 || ds.class_names.size() != 10)
      finding("load_idx returned a wrong data set");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
