// aefx bench CONFIG: times the pipeline's pieces on the config's data and device; prints JSON.
#include "aefx/bench/bench.h"

#include <iostream>
#include <memory>

#include "aefx/config/config.h"
#include "cli.h"

namespace aefx::cli {
namespace {

constexpr const char* kDescription =
    R"(Times short pieces of the real pipeline on the config's data and device and prints JSON:
pretrain images/s (median step after warm-up), FLOPs per image and achieved GFLOP/s, the
machine's matmul and convolution GFLOP/s through LibTorch, latent-code images/s, the time of
one head epoch, peak RSS; with --pipeline, the wall time of every stage of the config (run in
a scratch folder that is removed afterwards) and its test accuracy.
tools/bench_pytorch.py runs the same measurement in plain PyTorch and prints the ratios.)";

constexpr const char* kFooter = R"(Logs go to stderr, JSON to stdout.

examples:
  aefx bench configs/cifar10-cpu.yaml --set data.root=/data/cifar10
  aefx bench configs/cifar10-cpu.yaml --set data.root=/data/cifar10 --pipeline
)";

struct BenchArgs {
  ConfigArgs config;
  bench::BenchOptions options;
};

int run_bench(const BenchArgs& a) {
  use_config_args(a.config);
  const auto cfg = config::load_config(a.config.config, a.config.sets);
  std::cout << util::dump_json(bench::run_bench(cfg, a.options)) << std::endl;
  return 0;
}

}  // namespace

Action setup_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  set_help(app, "CONFIG [options]", kDescription, kFooter);
  add_config_args(app, a->config);
  app.add_option("--steps", a->options.steps, "timed pretrain steps (default 30)")
      ->type_name("N")
      ->check(integer_at_least(1));
  app.add_option("--warmup", a->options.warmup, "untimed pretrain steps first (default 5)")
      ->type_name("N")
      ->check(integer_at_least(0));
  app.add_flag("--pipeline", a->options.pipeline, "also run and time the whole pipeline");
  return [a] { return run_bench(*a); };
}

}  // namespace aefx::cli
