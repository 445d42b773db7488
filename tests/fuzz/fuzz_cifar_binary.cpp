// libFuzzer target: the CIFAR-10 binary reader. The input is one batch file. It is parsed in
// memory and, written as test_batch.bin into a scratch folder, through load_cifar10_binary; both
// must agree. The documented error is std::runtime_error; anything else (another exception, a
// crash, a sanitizer report, a wrong result) is a finding.
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
using aefx::data::Dataset;

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_cifar_binary: %s\n", what.c_str());
  std::abort();
}

const fs::path& scratch() {
  static aefx::fuzz::ScratchDir dir("cifar");
  return dir.path;
}

/// What a valid parse must look like: n records, images and labels taken from the bytes.
void check_dataset(const Dataset& ds, const uint8_t* data, size_t size) {
  const auto n = static_cast<int64_t>(size) / aefx::data::kCifarRecordBytes;
  if (size % aefx::data::kCifarRecordBytes != 0 || n == 0 || n > aefx::data::kCifarRecordsPerBatch)
    finding("accepted " + std::to_string(size) + " bytes");
  if (ds.images.sizes() != torch::IntArrayRef({n, 3, 32, 32}) ||
      ds.images.scalar_type() != torch::kUInt8 || ds.labels.sizes() != torch::IntArrayRef({n}) ||
      ds.labels.scalar_type() != torch::kLong || ds.class_names.size() != 10)
    finding("wrong shapes or types");
  const auto* img = ds.images.contiguous().data_ptr<uint8_t>();
  const auto* lab = ds.labels.contiguous().data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r) {
    const uint8_t* rec = data + r * aefx::data::kCifarRecordBytes;
    if (lab[r] != rec[0] || lab[r] > 9) finding("wrong label in record " + std::to_string(r));
    if (std::memcmp(img + r * 3 * 32 * 32, rec + 1, 3 * 32 * 32) != 0)
      finding("wrong pixels in record " + std::to_string(r));
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  aefx::util::set_log_level(aefx::util::LogLevel::kQuiet);
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bool parsed = false;
  Dataset in_memory;
  try {
    in_memory = aefx::data::parse_cifar10_batch(data, size, "fuzz input");
    parsed = true;
    check_dataset(in_memory, data, size);
  } catch (const std::runtime_error&) {
  }

  // The same bytes as a file: the loader must accept and reject exactly the same inputs.
  const fs::path file = scratch() / "test_batch.bin";
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) finding("cannot write " + file.string());
  }
  try {
    const auto loaded =
        aefx::data::load_cifar10_binary(scratch().string(), aefx::data::Split::kTest);
    if (!parsed) finding("load_cifar10_binary accepted what parse_cifar10_batch rejected");
    if (!torch::equal(loaded.images, in_memory.images) ||
        !torch::equal(loaded.labels, in_memory.labels))
      finding("load_cifar10_binary and parse_cifar10_batch disagree");
  } catch (const std::runtime_error&) {
    if (parsed) finding("load_cifar10_binary rejected what parse_cifar10_batch accepted");
  }
  return 0;
}
