#pragma once
// The stage registry, the plan (what to run, skip or resume) and the runner. Stages communicate
// only through files in the run folder (engine/run_folder.h), so each stage can run alone on a
// run folder that earlier stages filled.
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "aefx/config/config.h"
#include "aefx/dist/dist.h"
#include "aefx/engine/run_folder.h"

namespace aefx::engine {

/// What a stage gets: the validated config, its run folder, the device and the group it runs in
/// (the single process, or every rank of a data-parallel run for the distributed stages). With
/// `resume`, a stage that finds its resumable state in the run folder continues from it. Only
/// rank 0 writes into the run folder; the other ranks get what they read through the group.
struct RunContext {
  config::Config config;
  RunFolder folder;
  torch::Device device;
  dist::Group& group;
  bool resume = false;
  /// Rank 0, or the only process: the one that writes files and prints progress.
  bool is_main() const { return group.is_main(); }
  /// What the config's `precision` computes in on this device (util::compute_dtype).
  torch::ScalarType compute_dtype() const;
};

using StageFn = std::function<void(RunContext&)>;

/// Name -> stage function, where the stage keeps its resumable state (if it has one), and
/// whether it runs on every rank of a group.
class StageRegistry {
 public:
  /// A `distributed` stage runs on every rank of a group; the others on rank 0 alone.
  void add(const std::string& name, StageFn fn, RunFile state_file = nullptr,
           bool distributed = false);
  bool contains(const std::string& name) const;
  const StageFn& get(const std::string& name) const;
  /// nullptr when the stage keeps no resumable state (it reruns from its start).
  RunFile state_file(const std::string& name) const;
  bool distributed(const std::string& name) const;

 private:
  struct Entry {
    StageFn fn;
    RunFile state_file = nullptr;
    bool distributed = false;
  };
  const Entry& entry(const std::string& name) const;
  std::map<std::string, Entry> stages_;
};

/// How run_stages treats an earlier, unfinished run in the same folder.
struct RunOptions {
  /// Continue it: stages it completed are skipped, the stage it stopped in continues from its
  /// resumable state. The config must equal the folder's config.yaml (except the keys marked as
  /// not affecting results: stages, threads, report.*, distributed.*).
  bool resume = false;
  /// Start over even when the folder holds a stage's unfinished, resumable work.
  bool restart = false;
  /// torchrun's variables: when enabled, join that group (dist::Group) and train data-parallel.
  dist::Env dist;
  /// Rank 0, after the stages (and run.json) while the run still holds its folder's lock: what
  /// else belongs to the run (the CLI writes report.html here). Gets the stages' wall seconds.
  std::function<void(const RunFolder&, const std::vector<std::pair<std::string, double>>&)> finish;
};

/// What the runner does with one requested stage.
enum class StageAction { kRun, kResume, kSkip };

struct PlannedStage {
  std::string name;
  StageAction action = StageAction::kRun;
};

/// The plan for `requested` stages in `folder` given its `progress`: a stage completed in the
/// earlier run is skipped on --resume, the one that stopped resumes, the others run. Pure apart
/// from `has_state` (does the stage's resumable state file exist). Throws std::invalid_argument
/// (before any work) for an unknown stage, --resume with --restart, --resume with no earlier run
/// or another world size for a stopped data-parallel stage, unfinished resumable work without
/// --resume or --restart, and (world_size > 1) a distributed stage after a rank-0-only one.
std::vector<PlannedStage> plan_stages(const RunFolder& folder,
                                      const std::vector<std::string>& requested,
                                      const Progress& progress, const RunOptions& options,
                                      const StageRegistry& registry,
                                      const std::function<bool(RunFile)>& has_state);

/// What `aefx runs` shows of a run folder.
struct RunSummary {
  std::string name;  ///< the folder's name (the config's `name`)
  std::filesystem::path dir;
  std::string date;                    ///< last update, local time "YYYY-MM-DD HH:MM"
  int64_t mtime = 0;                   ///< the same, seconds since the epoch
  std::vector<std::string> completed;  ///< stages completed, in order
  std::string unfinished, stopped_by;  ///< the stage that stopped, and what stopped it
  double test_accuracy = -1;           ///< metrics.json's, or < 0 when there is none
};

/// The run folders directly under `dir` (folders with a config.yaml), newest first. Throws
/// std::runtime_error naming `dir` when it is not a folder. A folder whose files do not parse
/// is listed with what could be read.
std::vector<RunSummary> list_runs(const std::filesystem::path& dir);

/// Run folder for a config: output_dir/name.
std::filesystem::path run_dir_for(const config::Config& cfg);

/// Prepares the run (threads, seed, device, a writable, locked run folder with the resolved
/// config and log.txt), runs the planned stages in order and writes run.json. Returns per-stage
/// wall seconds. In a group (options.dist), rank 0 does all that and tells the others which
/// stages to run and whether to resume them; they run only the distributed stages (pretrain,
/// classify) and write nothing. CPU threads default to the cores divided among the processes of
/// a machine, and device cuda / auto means cuda:LOCAL_RANK. A resumed run must have the world
/// size that started it. Throws std::invalid_argument before any work when plan_stages refuses,
/// when --resume finds another config, or when another run holds the folder. A signal ends it
/// with util::Interrupted saying where the progress was saved.
std::vector<std::pair<std::string, double>> run_stages(const config::Config& cfg,
                                                       const std::vector<std::string>& stages,
                                                       const StageRegistry& registry,
                                                       const RunOptions& options = {});

}  // namespace aefx::engine
