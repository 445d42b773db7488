#include "aefx/engine/precision.h"

#include "aefx/util/log.h"
#include "aefx/util/precision.h"

namespace aefx::engine {

torch::ScalarType compute_dtype(config::Precision precision, const torch::Device& device) {
  switch (precision) {
    case config::Precision::kFp32:
      return torch::kFloat;
    case config::Precision::kBf16:
      if (!util::native_bf16(device)) {
        static const bool warned = [] {
          util::log_warn(
              "precision bf16: this CPU has no native bf16 (avx512_bf16 or amx_bf16); bf16 is "
              "emulated and slower than fp32 here");
          return true;
        }();
        (void)warned;
      }
      return torch::kBFloat16;
    case config::Precision::kAuto:
      break;
  }
  return util::native_bf16(device) ? torch::kBFloat16 : torch::kFloat;
}

}  // namespace aefx::engine
