#pragma once
// The config's `precision:` as the dtype the heavy operations compute in (util/precision.h has
// the autocast guard that applies it).
#include <torch/types.h>

#include "aefx/config/config.h"

namespace aefx::engine {

/// torch::kBFloat16 or torch::kFloat. `auto` picks bf16 where `device` computes it natively
/// (CUDA; CPUs with avx512_bf16 or amx_bf16), fp32 elsewhere; `bf16` on a CPU without it still
/// runs (emulated, slower than fp32) and says so once in the log.
torch::ScalarType compute_dtype(config::Precision precision, const torch::Device& device);

}  // namespace aefx::engine
