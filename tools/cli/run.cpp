// aefx run CONFIG: the config's stages in its run folder, then the folder's report.html.
#include <torch/torch.h>

#include <iostream>
#include <map>
#include <memory>

#include "aefx/config/config.h"
#include "aefx/engine/runner.h"
#include "aefx/stages/stages.h"
#include "aefx/util/log.h"
#include "aefx/util/progress.h"
#include "aefx/util/runtime.h"
#include "aefx/viz/report.h"
#include "cli.h"

namespace aefx::cli {
namespace {

constexpr const char* kDescription =
    R"(Runs the stages listed in the config (or --stages) in the run folder output_dir/name.
Each stage reads what earlier stages wrote there, so stages can run alone.)";

constexpr const char* kFooter =
    R"(Every line printed also goes to the run folder's log.txt, with the versions, the device and
the resolved config. Per epoch: metrics.jsonl and metrics.csv; pictures: curves.png,
reconstructions.png, confusion.png, latents.png; at the end: report.html (docs/architecture.md).

Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves the stage's progress and exits
with 130 or 143; a second Ctrl-C stops at once (the last saved progress is kept).

With torchrun's variables set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; LOCAL_RANK and
LOCAL_WORLD_SIZE optional), this process is one rank of a data-parallel group: rank 0 does
everything a single process does; the others train their share of pretrain and classify,
print only warnings and errors, and write nothing (see aefx launch --help).

examples:
  aefx run configs/cifar10-cpu.yaml
  aefx run configs/cifar10-cpu.yaml --set data.root=/data/cifar10 --set pretrain.epochs=2
  aefx run configs/cifar10.yaml --stages classify,evaluate
  aefx run configs/cifar10-cpu.yaml --resume
  aefx run configs/cifar10-cpu.yaml --progress lines 2>&1 | tee run.log
)";

/// The --progress choices by name.
const std::map<std::string, util::ProgressMode>& progress_modes() {
  static const std::map<std::string, util::ProgressMode> modes{
      {"auto", util::ProgressMode::kAuto},
      {"bar", util::ProgressMode::kBar},
      {"lines", util::ProgressMode::kLines},
      {"off", util::ProgressMode::kOff}};
  return modes;
}

struct RunArgs {
  ConfigArgs config;
  std::string stages, progress;
  CLI::Option* stages_option = nullptr;  ///< given, even empty: the list replaces the config's
  engine::RunOptions options;
};

int run(RunArgs& a) {
  use_config_args(a.config);
  if (!a.progress.empty()) util::set_progress_mode(progress_modes().at(a.progress));
  const std::vector<std::string> chosen =
      a.stages_option->count() ? config::parse_stage_list(a.stages) : std::vector<std::string>{};
  const auto cfg = config::load_config(a.config.config, a.config.sets);
  const auto stages = chosen.empty() ? cfg.stages : chosen;
  auto& options = a.options;
  options.dist = dist::env_from(dist::environment_variables());
  const bool worker = options.dist.enabled && options.dist.rank != 0;
  if (worker) {
    // Rank 0 speaks for the group; the others print only warnings and errors.
    util::set_log_level(util::LogLevel::kQuiet);
    util::set_progress_mode(util::ProgressMode::kOff);
    util::set_log_prefix("rank " + std::to_string(options.dist.rank) + ": ");
  }
  util::install_signal_handlers();
  // The report, while the run still holds its folder.
  options.finish = [](const engine::RunFolder& folder,
                      const std::vector<std::pair<std::string, double>>& times) {
    double total = 0;
    std::string line;
    for (const auto& [name, sec] : times) {
      total += sec;
      line += util::strfmt(" %s %.1f s,", name.c_str(), sec);
    }
    util::set_log_file(folder.log());
    const auto report = viz::write_report(folder.dir());
    if (!times.empty()) {
      util::log_info(util::strfmt("done in %.1f s (%s ) -> %s", total, line.c_str(),
                                  folder.dir().string().c_str()));
    }
    util::log_info("report: " + report.string());
    util::set_log_file({});
  };
  try {
    engine::run_stages(cfg, stages, stages::builtin_stages(), options);
    if (worker) return 0;
  } catch (const util::Interrupted& e) {
    if (worker) {
      std::cerr << "aefx: " << util::log_prefix() << e.what() << std::endl;
      return 128 + e.signal();
    }
    std::string resume = "aefx run " + shell_quote(a.config.config);
    for (const auto& set : a.config.sets) resume += " --set " + shell_quote(set);
    if (!chosen.empty()) {
      std::string list;
      for (const auto& s : chosen) list += (list.empty() ? "" : ",") + s;
      resume += " --stages " + list;
    }
    if (options.dist.enabled)
      resume = "(the same launch command, e.g. aefx launch --nproc " +
               std::to_string(options.dist.world_size) + ") " + resume;
    std::cerr << "aefx: " << e.what() << ". Resume with: " << resume << " --resume" << std::endl;
    return 128 + e.signal();
  }
  return 0;
}

}  // namespace

Action setup_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  set_help(app, "CONFIG [options]", kDescription, kFooter);
  a->stages_option = app.add_option("--stages", a->stages,
                                    "stages to run, from: pretrain classify evaluate export")
                         ->type_name("a,b,...");
  add_config_args(app, a->config);
  app.add_flag("--resume", a->options.resume,
               "continue the run folder's stopped run: completed stages are skipped, the\n"
               "stopped stage continues from its last checkpoint (same epoch and step,\n"
               "optimizer, LR schedule and RNG state); needs the same config");
  app.add_flag("--restart", a->options.restart,
               "start over although the run folder holds unfinished, resumable work");
  app.add_option("--progress", a->progress,
                 "auto (default): a bar redrawn in place when stderr is a terminal, else\n"
                 "a plain line every 15 s; bar; lines; off")
      ->type_name("MODE")
      ->check(expects(CLI::IsMember(progress_modes()), "auto, bar, lines or off"));
  return [a] { return run(*a); };
}

}  // namespace aefx::cli
