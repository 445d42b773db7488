#pragma once
// `aefx bench`: short, timed pieces of the real pipeline on the configured device, reported
// as JSON. tools/bench_pytorch.py times the same pieces of the same model in plain PyTorch.
#include <cstdint>

#include "aefx/config/config.h"
#include "aefx/util/json.h"

namespace aefx::bench {

struct BenchOptions {
  int64_t warmup = 5;     ///< pretrain steps run before timing starts
  int64_t steps = 30;     ///< timed pretrain steps (the median step time is reported)
  bool pipeline = false;  ///< also run every stage of the config in a scratch folder, timed
};

/// Times, on the config's data, device and precision (the resolved one is reported):
///  - pretrain throughput (images/s from the median step after warm-up), the model's forward
///    FLOPs per image and the GFLOP/s that gives (training = 3x forward);
///  - the machine's practical peak through LibTorch: a 4096^2 fp32 matmul (BLAS) and a large
///    3x3 convolution (oneDNN on CPU, cuDNN on CUDA);
///  - latent-code extraction images/s;
///  - one head epoch on as many codes as classify trains on (flipped copies included);
///  - peak host RSS; with `pipeline`, the wall time of every stage and the test accuracy.
/// Throws std::invalid_argument for bad options.
util::Json run_bench(const config::Config& cfg, const BenchOptions& options);

}  // namespace aefx::bench
