#include "aefx/util/runtime.h"

#include <ATen/Version.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <malloc.h>
#include <sys/resource.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "aefx/util/build_info.h"
#include "aefx/util/log.h"
#ifdef AEFX_HAVE_OPENCV
#include <opencv2/core/version.hpp>
#endif

namespace aefx::util {

int configure_threads(int64_t threads) {
  if (threads < 0) throw std::invalid_argument("threads must be >= 0 (0 = all cores)");
  int n = static_cast<int>(threads);
  if (n == 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  return torch::get_num_threads();
}

void tune_allocator() {
  // 32 MiB is the largest mmap threshold glibc accepts; blocks below it come from the heap,
  // which is neither trimmed nor unmapped between steps.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
}

void release_free_memory() { malloc_trim(0); }

namespace {

/// The BLAS shared library this process has mapped (libblas.so.3 is a Debian alternative, so
/// the path says which implementation it is), or "".
std::string loaded_blas() {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = path.substr(path.rfind('/') + 1);
    if (file.rfind("libblas", 0) == 0 || file.rfind("libopenblas", 0) == 0 ||
        file.rfind("libmkl_rt", 0) == 0 || file.rfind("libblis", 0) == 0) {
      std::error_code ec;
      const auto real = std::filesystem::canonical(path, ec);
      return ec ? path : real.string();
    }
  }
  return "";
}

/// The value of `key` ("BLAS_INFO") in LibTorch's build configuration, or "".
std::string torch_config_value(const std::string& key) {
  const std::string cfg = at::show_config();
  const auto at = cfg.find(key + "=");
  if (at == std::string::npos) return "";
  const auto start = at + key.size() + 1;
  return cfg.substr(start, cfg.find_first_of(", \n", start) - start);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> environment_info() {
  std::vector<std::pair<std::string, std::string>> info;
  info.emplace_back("aefx", std::string(AEFX_VERSION) + " (git " + git_commit() + ")");
  info.emplace_back("LibTorch", strfmt("%d.%d.%d", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR,
                                       TORCH_VERSION_PATCH));
  const bool cuda = torch::cuda::is_available();
  info.emplace_back(
      "CUDA", cuda ? strfmt("available, %d GPU(s)", static_cast<int>(torch::cuda::device_count()))
              : at::detail::getCUDAHooks().hasCUDA() ? "built in, but no GPU is visible"
                                                     : "not available (this LibTorch is CPU-only)");
  info.emplace_back(
      "cuDNN", cuda && torch::cuda::cudnn_is_available()
                   ? strfmt("available, version %ld", at::detail::getCUDAHooks().versionCuDNN())
                   : "not available");
#ifdef AEFX_HAVE_OPENCV
  info.emplace_back("OpenCV", CV_VERSION);
#else
  info.emplace_back("OpenCV",
                    "built without OpenCV (AEFX_WITH_OPENCV=OFF): no image folders, "
                    "no pictures");
#endif
  std::string backends = std::string(AEFX_HAVE_GLOO ? "gloo (CPU)" : "") +
                         (AEFX_HAVE_GLOO && AEFX_HAVE_NCCL ? ", " : "") +
                         (AEFX_HAVE_NCCL ? "nccl (CUDA)" : "");
  info.emplace_back("distributed",
                    backends.empty() ? "no backend (built without Gloo and NCCL)" : backends);
  const std::string blas = loaded_blas();
  info.emplace_back("BLAS", blas.empty() ? "none loaded" : blas);
  const std::string torch_blas = torch_config_value("BLAS_INFO");
  info.emplace_back("LibTorch BLAS", torch_blas.empty() ? "unknown" : torch_blas);
  info.emplace_back("threads",
                    strfmt("%d intra-op, %d inter-op, %u logical cores", torch::get_num_threads(),
                           torch::get_num_interop_threads(), std::thread::hardware_concurrency()));
  info.emplace_back("machine", machine_summary());
  return info;
}

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

torch::Device resolve_device(const std::string& spec) {
  if (spec == "auto")
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
  if (spec == "cpu") return torch::kCPU;
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
      throw std::invalid_argument(
          "device: '" + spec +
          "' was requested but CUDA is not available (this LibTorch build or "
          "machine has no CUDA device); use device: cpu or auto");
    }
    torch::Device dev(spec == "cuda" ? std::string("cuda:0") : spec);
    if (dev.index() >= static_cast<int>(torch::cuda::device_count())) {
      throw std::invalid_argument("device: '" + spec + "' but only " +
                                  std::to_string(torch::cuda::device_count()) +
                                  " CUDA device(s) exist");
    }
    return dev;
  }
  throw std::invalid_argument("device: expected auto, cpu, cuda or cuda:N, found '" + spec + "'");
}

double now_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_stop_signal(int sig) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, sig)) {
    // A second request: stop now, with the default action of the signal.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGXFSZ, SIG_IGN);
}

int interrupt_signal() { return g_signal.load(); }

void set_interrupt_signal(int signal) { g_signal.store(signal); }

std::string signal_name(int signal) {
  if (signal == SIGINT) return "SIGINT";
  if (signal == SIGTERM) return "SIGTERM";
  return "signal " + std::to_string(signal);
}

void throw_if_interrupted(const std::string& where) {
  const int sig = interrupt_signal();
  if (sig != 0) throw Interrupted(sig, "interrupted by " + signal_name(sig) + " " + where);
}

}  // namespace aefx::util
