#include "test_util.h"

#include <ATen/CPUGeneratorImpl.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <zlib.h>

#include "aefx/config/config.h"
#include "aefx/data/dataset.h"
#include "aefx/dist/dist.h"
#include "aefx/engine/artifacts.h"
#include "aefx/engine/runner.h"
#include "aefx/models/features.h"
#include "aefx/stages/stages.h"
#include "aefx/util/fs.h"

#ifdef AEFX_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace aefx::testing {
namespace fs = std::filesystem;

TempDir::TempDir(const std::string& tag) {
  std::random_device rd;
  path_ = fs::temp_directory_path() /
          (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
  util::remove_tree(path_);
}

std::pair<torch::Tensor, torch::Tensor> synthetic_images(int64_t n, int64_t classes, int64_t size,
                                                         uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto labels = torch::arange(n, torch::kLong).remainder(classes);
  auto k = labels.to(torch::kFloat).view({n, 1, 1, 1});
  auto coords = torch::linspace(0, 1, size).view({1, 1, size, 1});
  auto ys = coords.expand({n, 1, size, size});
  auto xs = coords.view({1, 1, 1, size}).expand({n, 1, size, size});
  // Blob centre and colour both encode the class; jitter keeps it from being trivial.
  auto cy = 0.25 + 0.5 * (k / std::max<int64_t>(1, classes - 1)) +
            0.05 * torch::randn({n, 1, 1, 1}, gen, torch::kFloat);
  auto cx = 0.75 - 0.5 * (k / std::max<int64_t>(1, classes - 1)) +
            0.05 * torch::randn({n, 1, 1, 1}, gen, torch::kFloat);
  auto blob = torch::exp(-((ys - cy).pow(2) + (xs - cx).pow(2)) / 0.03);
  auto hue = k * (6.2831853 / classes);
  auto color =
      torch::cat({torch::cos(hue), torch::cos(hue + 2.094), torch::cos(hue + 4.189)}, 1) * 0.4 +
      0.5;
  auto img = 0.15 + blob * color + 0.05 * torch::randn({n, 3, size, size}, gen, torch::kFloat);
  return {img.clamp(0, 1).mul(255).round().to(torch::kUInt8), labels};
}

std::string idx_bytes(const torch::Tensor& values) {
  std::string out{'\0', '\0', '\x08', static_cast<char>(values.dim())};
  for (int64_t d = 0; d < values.dim(); ++d) {
    const auto n = static_cast<uint32_t>(values.size(d));
    for (int shift = 24; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>((n >> shift) & 0xff));
  }
  const auto c = values.to(torch::kUInt8).contiguous();
  out.append(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
  return out;
}

std::string gzip_bytes(const std::string& bytes) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out(deflateBound(&zs, static_cast<uLong>(bytes.size())) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(zs.total_out);
  return out;
}

void write_idx(const fs::path& dir, int64_t train_n, int64_t test_n, int64_t size, uint64_t seed) {
  auto grey = [](const torch::Tensor& rgb) {
    return rgb.to(torch::kFloat).mean(1).round().to(torch::kUInt8);  // N x size x size
  };
  auto [train, train_labels] = synthetic_images(train_n, 10, size, seed);
  auto [test, test_labels] = synthetic_images(test_n, 10, size, seed + 100);
  write_bytes(dir / "train-images-idx3-ubyte.gz", gzip_bytes(idx_bytes(grey(train))));
  write_bytes(dir / "train-labels-idx1-ubyte.gz", gzip_bytes(idx_bytes(train_labels)));
  write_bytes(dir / "t10k-images-idx3-ubyte", idx_bytes(grey(test)));
  write_bytes(dir / "t10k-labels-idx1-ubyte", idx_bytes(test_labels));
}

void write_bytes(const fs::path& file, const std::string& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

namespace {
std::string cifar_records(const torch::Tensor& images, const torch::Tensor& labels) {
  const int64_t n = images.size(0);
  std::string out(static_cast<size_t>(n * 3073), '\0');
  auto img = images.contiguous();
  const uint8_t* px = img.data_ptr<uint8_t>();
  auto lab = labels.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) {
    out[static_cast<size_t>(i * 3073)] = static_cast<char>(lab[i]);
    std::memcpy(&out[static_cast<size_t>(i * 3073 + 1)], px + i * 3072, 3072);
  }
  return out;
}
}  // namespace

void write_cifar_binary(const fs::path& dir, int64_t per_batch, int64_t test_n, uint64_t seed) {
  const fs::path d = dir / "cifar-10-batches-bin";
  for (int b = 1; b <= 5; ++b) {
    auto [img, lab] = synthetic_images(per_batch, 10, 32, seed * 10 + b);
    write_bytes(d / ("data_batch_" + std::to_string(b) + ".bin"), cifar_records(img, lab));
  }
  auto [img, lab] = synthetic_images(test_n, 10, 32, seed * 10 + 7);
  write_bytes(d / "test_batch.bin", cifar_records(img, lab));
}

int run_command(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + cmd);
  std::array<char, 4096> buf;
  std::string out;
  size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), got);
  const int status = ::pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Child::Child(const std::string& cmd) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    // exec: the signal goes to the command itself, not to a shell waiting for it.
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  out_ = ::fdopen(fds[0], "r");
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait();
  }
  if (out_) std::fclose(out_);
}

bool Child::wait_for_line(const std::string& needle) {
  std::array<char, 4096> buf;
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), out_)) {
    output_ += buf.data();
    if (std::string(buf.data()).find(needle) != std::string::npos) return true;
  }
  return false;
}

bool wait_until(const std::function<bool()>& condition, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

void Child::send(int signal) { ::kill(pid_, signal); }

int Child::wait() {
  std::array<char, 4096> buf;
  size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), out_)) > 0) output_.append(buf.data(), got);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

AefxResult aefx(const std::string& args) {
  AefxResult r;
  r.code = run_command(std::string(AEFX_BINARY) + " " + args, &r.out);
  return r;
}

std::string write_tiny_setup(const TempDir& dir) {
  write_cifar_binary(dir / "data", 20, 20);
  const auto config = (dir / "tiny.yaml").string();
  write_bytes(config, tiny_config_yaml(dir / "data", dir / "runs"));
  return config;
}

std::string tiny_config_yaml(const fs::path& data_root, const fs::path& out_dir,
                             const std::string& name) {
  return "name: " + name + "\ndevice: cpu\nseed: 0\nthreads: 2\noutput_dir: " + out_dir.string() +
         "\ndata:\n  root: " + data_root.string() +
         "\n  val_size: 40\n  limit_train: 300\n  limit_test: 100\nmodel:\n  widths: [8, 16]\n"
         "  blocks: [1, 1]\npretrain:\n  epochs: 1\n  batch_size: 32\n  lr: 0.003\n  mask_ratio: "
         "0.25\n"
         "  noise: 0.05\nclassify:\n  epochs: 3\n  batch_size: 64\n  lr: 0.003\n  hidden: [16]\n"
         "  pool_grids: [2, 1]\n  code_batch_size: 64\nevaluate:\n  batch_size: 64\n";
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double json_number(const std::string& json, const std::string& key) {
  std::smatch m;
  const std::regex re("\"" + key + "\"\\s*:\\s*([-+0-9.eE]+)");
  if (!std::regex_search(json, m, re)) return std::nan("");
  return std::stod(m[1].str());
}

void write_png(const std::string& file, const torch::Tensor& image, int64_t size) {
#ifdef AEFX_HAVE_OPENCV
  auto hwc = image.permute({1, 2, 0}).flip({2}).contiguous();  // RGB -> BGR for OpenCV
  cv::Mat bgr(static_cast<int>(hwc.size(0)), static_cast<int>(hwc.size(1)), CV_8UC3,
              hwc.data_ptr<uint8_t>());
  cv::Mat out;
  cv::resize(bgr, out, cv::Size(static_cast<int>(size), static_cast<int>(size)), 0, 0,
             cv::INTER_NEAREST);
  if (!cv::imwrite(file, out)) throw std::runtime_error("cannot write " + file);
#else
  (void)image;
  (void)size;
  throw std::runtime_error("write_png " + file + ": tests built without OpenCV");
#endif
}

namespace {
/// The run's frozen encoder with the code spec its config asks for (what classify used).
models::FeatureExtractor native_features(const config::Config& cfg, const fs::path& run) {
  dist::Group alone;
  return models::FeatureExtractor(
      engine::load_autoencoder(cfg, engine::RunFolder(run), torch::kCPU, alone),
      cfg.classify.pool_grids, torch::kCPU);
}
}  // namespace

std::string native_top1(const fs::path& run, const torch::Tensor& image) {
  const auto cfg = config::load_config(engine::RunFolder(run).config().string());
  auto features = native_features(cfg, run);
  auto head = engine::load_head(cfg, engine::RunFolder(run), 10, torch::kCPU);
  torch::NoGradGuard no_grad;
  auto codes = features.encode(image.unsqueeze(0), 1);
  return data::cifar10_class_names()[static_cast<size_t>(
      head->forward(codes).argmax(1).item<int64_t>())];
}

torch::Tensor native_codes(const fs::path& run, const std::string& data_root, int64_t n) {
  const auto cfg = config::load_config(engine::RunFolder(run).config().string());
  auto features = native_features(cfg, run);
  auto test = data::load_cifar10_binary(data_root, data::Split::kTest);
  return features.encode(test.images.narrow(0, 0, n), n);
}

}  // namespace aefx::testing
