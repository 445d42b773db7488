// aefx info: what this build runs with, on this machine.
#include <algorithm>
#include <iostream>
#include <memory>

#include "aefx/util/json.h"
#include "aefx/util/runtime.h"
#include "cli.h"

namespace aefx::cli {
namespace {

int print_info(bool json) {
  util::configure_threads(0);
  const auto info = util::environment_info();
  if (json) {
    util::Json out = util::Json::object();
    for (const auto& [k, v] : info) out[k] = v;
    std::cout << util::dump_json(out) << "\n";
    return 0;
  }
  size_t w = 0;
  for (const auto& kv : info) w = std::max(w, kv.first.size());
  for (const auto& [k, v] : info)
    std::cout << k << ":" << std::string(w + 2 - k.size() - 1, ' ') << v << "\n";
  return 0;
}

}  // namespace

Action setup_info(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  set_help(app, "[--json]",
           "Prints what this aefx runs with: its version and git commit, LibTorch, CUDA\n"
           "and cuDNN (availability, GPUs), OpenCV (or built without), the BLAS library\n"
           "loaded, threads (what a run with threads: 0 uses) and the machine.",
           "examples:\n"
           "  aefx info\n"
           "  aefx info --json\n");
  app.add_flag("--json", *json, "print one JSON object");
  return [json] { return print_info(*json); };
}

}  // namespace aefx::cli
