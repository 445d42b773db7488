#include "aefx/engine/runner.h"

#include <torch/torch.h>

#include <stdexcept>

#include "aefx/util/build_info.h"
#include "aefx/util/fs.h"
#include "aefx/util/json.h"
#include "aefx/util/log.h"
#include "aefx/util/runtime.h"

namespace aefx::engine {

void StageRegistry::add(const std::string& name, StageFn fn) { stages_[name] = std::move(fn); }

bool StageRegistry::contains(const std::string& name) const { return stages_.count(name) > 0; }

const StageFn& StageRegistry::get(const std::string& name) const {
  auto it = stages_.find(name);
  if (it == stages_.end()) throw std::invalid_argument("unknown stage '" + name + "'");
  return it->second;
}

std::filesystem::path run_dir_for(const config::Config& cfg) {
  return std::filesystem::path(cfg.output_dir) / cfg.name;
}

std::vector<std::pair<std::string, double>> run_stages(const config::Config& cfg,
                                                       const std::vector<std::string>& stages,
                                                       const StageRegistry& registry) {
  for (const auto& s : stages) registry.get(s);  // unknown names fail before any work
  RunContext ctx{cfg, run_dir_for(cfg), util::resolve_device(cfg.device)};
  // cuDNN autotune: every step has the same shapes, so the search pays for itself at once.
  if (ctx.device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  const int threads = util::configure_threads(cfg.threads);
  util::ensure_writable_dir(ctx.run_dir);
  util::atomic_write_text(ctx.run_dir / "config.yaml", config::to_yaml(cfg));
  util::set_log_file(ctx.run_dir / "log.txt");
  util::log_info(
      util::strfmt("aefx %s, LibTorch %d.%d.%d, device %s, %d CPU thread(s), run folder %s",
                   AEFX_VERSION, TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH,
                   ctx.device.str().c_str(), threads, ctx.run_dir.string().c_str()));
  std::vector<std::pair<std::string, double>> times;
  const double t_start = util::now_seconds();
  try {
    for (const auto& name : stages) {
      torch::manual_seed(static_cast<uint64_t>(cfg.seed));
      const double t0 = util::now_seconds();
      util::log_info("== stage " + name);
      registry.get(name)(ctx);
      util::release_free_memory();
      times.emplace_back(name, util::now_seconds() - t0);
      util::log_info(util::strfmt("== stage %s done in %.1f s", name.c_str(), times.back().second));
    }
  } catch (...) {
    util::set_log_file({});
    throw;
  }
  util::set_log_file({});
  util::Json stage_times = util::Json::object();
  for (const auto& [name, seconds] : times) stage_times.set(name, seconds);
  const auto run = util::Json::object(
      {{"name", cfg.name},
       {"seed", cfg.seed},
       {"stages", stage_times},
       {"wall_seconds", util::now_seconds() - t_start},
       {"peak_rss_bytes", util::peak_rss_bytes()},
       {"device", ctx.device.str()},
       {"threads", threads},
       {"aefx_version", AEFX_VERSION},
       {"git_commit", util::git_commit()},
       {"libtorch_version",
        util::strfmt("%d.%d.%d", TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH)},
       {"machine", util::machine_info()}});
  util::atomic_write_text(ctx.run_dir / kRunFile, run.dump() + "\n");
  return times;
}

}  // namespace aefx::engine
