#include "aefx/util/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <fstream>
#include <sstream>
#include <string>

// LibTorch 2.4 replaced the per-device autocast functions (is_cpu_enabled, set_autocast_gpu_dtype,
// ...) with ones that take the device type, and deprecated the old ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define AEFX_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace aefx::util {
namespace {

bool autocast_enabled(c10::DeviceType type) {
#ifdef AEFX_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled()
                                       : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(c10::DeviceType type, bool enabled) {
#ifdef AEFX_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == c10::DeviceType::CUDA)
    at::autocast::set_enabled(enabled);
  else
    at::autocast::set_cpu_enabled(enabled);
#endif
}

torch::ScalarType autocast_dtype(c10::DeviceType type) {
#ifdef AEFX_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                       : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(c10::DeviceType type, torch::ScalarType dtype) {
#ifdef AEFX_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CUDA)
    at::autocast::set_autocast_gpu_dtype(dtype);
  else
    at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

bool read_cpu_has_bf16() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string flag; words >> flag;)
      if (flag == "avx512_bf16" || flag == "amx_bf16") return true;
    return false;  // every core reports the same flags
  }
  return false;
}

}  // namespace

bool cpu_has_bf16() {
  static const bool has = read_cpu_has_bf16();
  return has;
}

bool native_bf16(const torch::Device& device) { return device.is_cuda() || cpu_has_bf16(); }

torch::ScalarType matmul_dtype(const torch::Device& device) {
  return autocast_enabled(device.type()) ? autocast_dtype(device.type()) : torch::kFloat;
}

const char* precision_name(torch::ScalarType dtype) {
  return dtype == torch::kBFloat16 ? "bf16" : "fp32";
}

Autocast::Autocast(const torch::Device& device, torch::ScalarType dtype)
    : active_(dtype != torch::kFloat), type_(device.type()) {
  if (!active_) return;
  was_enabled_ = autocast_enabled(type_);
  was_dtype_ = autocast_dtype(type_);
  set_autocast_dtype(type_, dtype);
  set_autocast_enabled(type_, true);
  at::autocast::increment_nesting();
}

Autocast::~Autocast() {
  if (!active_) return;
  // As torch.autocast's __exit__: the cache of weights cast to bf16 lives for the outermost
  // scope (one training step), so that a weight used twice is cast once.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(type_, was_enabled_);
  set_autocast_dtype(type_, was_dtype_);
}

}  // namespace aefx::util
