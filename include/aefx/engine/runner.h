#pragma once
// The stage registry and runner. Stages communicate only through files in the run folder,
// so each stage can run alone on a run folder that earlier stages filled.
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "aefx/config/config.h"

namespace aefx::engine {

/// What a stage gets: the validated config, its run folder and the device to use.
struct RunContext {
  config::Config config;
  std::filesystem::path run_dir;
  torch::Device device = torch::kCPU;
};

using StageFn = std::function<void(RunContext&)>;

/// Name -> stage function.
class StageRegistry {
 public:
  void add(const std::string& name, StageFn fn);
  bool contains(const std::string& name) const;
  const StageFn& get(const std::string& name) const;

 private:
  std::map<std::string, StageFn> stages_;
};

/// Written by the runner when every requested stage has finished: the stages' wall seconds,
/// the whole invocation's wall time and peak RSS, seed, device, threads, git commit and machine.
inline constexpr const char* kRunFile = "run.json";

/// Run folder for a config: output_dir/name.
std::filesystem::path run_dir_for(const config::Config& cfg);

/// Prepares the run (threads, seed, device, a writable run folder with the resolved config
/// and log.txt), runs `stages` in order and writes run.json. Returns per-stage wall seconds.
std::vector<std::pair<std::string, double>> run_stages(const config::Config& cfg,
                                                       const std::vector<std::string>& stages,
                                                       const StageRegistry& registry);

}  // namespace aefx::engine
