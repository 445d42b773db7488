#pragma once
// Mixed precision: what the machine computes bf16 on natively, and the guard that turns
// LibTorch's autocast on around the heavy operations. Weights, optimizer state, BatchNorm
// statistics, losses and everything written to a run folder stay fp32. (The config's
// `precision:` becomes a dtype in engine/precision.h.)
#include <c10/core/ScalarType.h>
#include <torch/types.h>

namespace aefx::util {

/// True when this CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16, as the kernel
/// reports in /proc/cpuinfo): there oneDNN's bf16 convolutions run about twice as fast as fp32.
bool cpu_has_bf16();

/// Whether `device` computes bf16 natively: CUDA, or a CPU with cpu_has_bf16().
bool native_bf16(const torch::Device& device);

/// "bf16" or "fp32": how logs, run.json and `aefx bench` name a compute dtype.
const char* precision_name(torch::ScalarType dtype);

/// The dtype a matmul of float tensors computes in on `device` in this scope: autocast's dtype
/// where an Autocast guard is on, else float. For code that casts its inputs itself.
torch::ScalarType matmul_dtype(const torch::Device& device);

/// Autocast on `device` to `dtype` for this scope (the C++ side of `torch.autocast`): matmuls and
/// convolutions run in bf16 on fp32 weights, precision-sensitive ops (losses, softmax,
/// upsampling, reductions) in fp32, as LibTorch's autocast lists say. With torch::kFloat the
/// guard does nothing. Scopes nest; leaving the outermost clears autocast's weight-cast cache.
/// Call backward() outside the scope, as PyTorch recommends: autograd runs each backward op in
/// the dtype its forward op ran in.
class Autocast {
 public:
  Autocast(const torch::Device& device, torch::ScalarType dtype);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType type_ = c10::DeviceType::CPU;
  bool was_enabled_ = false;
  torch::ScalarType was_dtype_ = torch::kFloat;
};

}  // namespace aefx::util
