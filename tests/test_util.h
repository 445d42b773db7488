#pragma once
// Helpers shared by the tests: temporary folders and synthetic data sets written to disk.
#include <torch/types.h>

#include <filesystem>
#include <functional>
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

/// The bytes of an unsigned-byte IDX file holding `values` (uint8, any shape: its dimensions
/// go into the header).
std::string idx_bytes(const torch::Tensor& values);

/// gzip-compressed `bytes` (zlib), as a .gz file holds them.
std::string gzip_bytes(const std::string& bytes);

/// Writes an MNIST-format data set of grey synthetic images (size x size, 10 classes) into
/// `dir`: train-* and t10k-* images and labels, the train files gzip-compressed (.gz), the test
/// files plain.
void write_idx(const std::filesystem::path& dir, int64_t train_n, int64_t test_n, int64_t size,
               uint64_t seed = 1);

/// Writes raw bytes to a file.
void write_bytes(const std::filesystem::path& file, const std::string& bytes);

/// Runs a shell command; returns its exit code and fills `output` with stdout+stderr.
int run_command(const std::string& cmd, std::string* output);

/// What the aefx binary did: its exit code and its output (stdout and stderr).
struct AefxResult {
  int code;
  std::string out;
};

/// Runs the aefx binary under test with `args` (a shell command line).
AefxResult aefx(const std::string& args);

/// A child process running a shell command, its stdout and stderr on one pipe: for tests that
/// signal a real aefx process at a known point of its output.
class Child {
 public:
  explicit Child(const std::string& cmd);
  ~Child();  ///< kills and reaps the process if it still runs
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  /// Reads output lines until one contains `needle` (true) or the output ends (false).
  bool wait_for_line(const std::string& needle);
  void send(int signal);
  /// Reads the rest of the output and reaps the process: its exit code, 128 + N when signal N
  /// killed it.
  int wait();
  const std::string& output() const { return output_; }

 private:
  int pid_ = -1;
  FILE* out_ = nullptr;
  std::string output_;
};

/// Polls `condition` every 10 ms until it holds (true) or `seconds` have passed (false). For
/// tests that wait on another process: give it minutes, as a loaded machine under the
/// sanitizers is many times slower than an idle one; an idle one returns at once.
bool wait_until(const std::function<bool()>& condition, double seconds = 240);

/// A tiny, fast config pointing at `data_root` and writing under `out_dir`.
std::string tiny_config_yaml(const std::filesystem::path& data_root,
                             const std::filesystem::path& out_dir,
                             const std::string& name = "tiny");

/// Writes a small synthetic CIFAR binary data set to dir/data and a tiny config using it (runs
/// under dir/runs) to dir/tiny.yaml; returns the config's path.
std::string write_tiny_setup(const TempDir& dir);

/// A whole file as a string.
std::string read_file(const std::filesystem::path& file);

/// The number after "key": in JSON text (first occurrence); NaN when absent.
double json_number(const std::string& json, const std::string& key);

/// Writes a uint8 3 x H x W RGB image as PNG, scaled (nearest) to size x size.
void write_png(const std::string& file, const torch::Tensor& image, int64_t size);

/// Class name the native (non-exported) models of run folder `run` predict for a uint8 image.
std::string native_top1(const std::filesystem::path& run, const torch::Tensor& image);

/// Native latent codes (N x D float) of the first n test images of a CIFAR binary data set.
torch::Tensor native_codes(const std::filesystem::path& run, const std::string& data_root,
                           int64_t n);

}  // namespace aefx::testing
