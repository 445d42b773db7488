#pragma once
// Helpers shared by the tests: temporary folders and synthetic data sets written to disk.
#include <torch/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace aefx::testing {

/// A fresh empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "aefx");
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Synthetic, learnable images: class k is a smooth colour blob whose hue and position depend
/// on k, plus noise. uint8 N x 3 x size x size and labels 0..classes-1 (balanced).
std::pair<torch::Tensor, torch::Tensor> synthetic_images(int64_t n, int64_t classes, int64_t size,
                                                         uint64_t seed);

/// Writes data_batch_1..5.bin and test_batch.bin (official layout) into dir/cifar-10-batches-bin.
void write_cifar_binary(const std::filesystem::path& dir, int64_t per_batch, int64_t test_n,
                        uint64_t seed = 1);

/// Writes raw bytes to a file.
void write_bytes(const std::filesystem::path& file, const std::string& bytes);

/// Runs a shell command; returns its exit code and fills `output` with stdout+stderr.
int run_command(const std::string& cmd, std::string* output);

/// A tiny, fast config pointing at `data_root` and writing under `out_dir`.
std::string tiny_config_yaml(const std::filesystem::path& data_root,
                             const std::filesystem::path& out_dir,
                             const std::string& name = "tiny");

}  // namespace aefx::testing
