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
#include "aefx/dist/dist.h"

namespace aefx::engine {

/// What a stage gets: the validated config, its run folder and the device to use. With
/// `resume`, a stage that finds its resumable state in the run folder continues from it. With
/// a `group` (several processes), a distributed stage trains data-parallel; only rank 0 writes
/// into the run folder, and the other ranks get what they read from it through the group.
struct RunContext {
  config::Config config;
  std::filesystem::path run_dir;
  torch::Device device = torch::kCPU;
  bool resume = false;
  dist::Group* group = nullptr;
  /// Rank 0, or the only process: the one that writes files and prints progress.
  bool is_main() const { return group == nullptr || group->is_main(); }
};

using StageFn = std::function<void(RunContext&)>;

/// Name -> stage function, and the file (relative to the run folder) where the stage keeps its
/// resumable state, if it has one.
class StageRegistry {
 public:
  /// A `distributed` stage runs on every rank of a group; the others on rank 0 alone.
  void add(const std::string& name, StageFn fn, std::string state_file = "",
           bool distributed = false);
  bool contains(const std::string& name) const;
  const StageFn& get(const std::string& name) const;
  /// "" when the stage keeps no resumable state (it reruns from its start).
  const std::string& state_file(const std::string& name) const;
  bool distributed(const std::string& name) const;

 private:
  struct Entry {
    StageFn fn;
    std::string state_file;
    bool distributed = false;
  };
  std::map<std::string, Entry> stages_;
};

/// How run_stages treats an earlier, unfinished run in the same folder.
struct RunOptions {
  /// Continue it: stages it completed are skipped, the stage it stopped in continues from its
  /// resumable state. The config must equal the folder's config.yaml (except `stages`,
  /// `threads` and `report.*`).
  bool resume = false;
  /// Start over even when the folder holds a stage's unfinished, resumable work.
  bool restart = false;
  /// torchrun's variables: when enabled, join that group (dist::Group) and train data-parallel.
  dist::Env dist;
};

/// Which stages of the run folder completed and which one stopped (and why), kept up to date
/// atomically as stages start and finish.
inline constexpr const char* kProgressFile = "progress.json";

/// Written by the runner when every requested stage has finished: the stages' wall seconds,
/// the whole invocation's wall time and peak RSS, seed, device, threads, git commit and machine.
inline constexpr const char* kRunFile = "run.json";

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

/// Prepares the run (threads, seed, device, a writable run folder with the resolved config
/// and log.txt), runs `stages` in order and writes run.json. Returns per-stage wall seconds.
/// In a group (options.dist), rank 0 does all that and tells the others which stages to run
/// and whether to resume them; they run only the distributed stages (pretrain, classify) and
/// write nothing. CPU threads default to the cores divided among the processes of a machine,
/// and device cuda / auto means cuda:LOCAL_RANK. A resumed run must have the world size that
/// started it.
/// Throws std::invalid_argument before any work when the folder holds a stage's unfinished,
/// resumable work and neither `resume` nor `restart` is set, or when `resume` finds nothing to
/// resume or another config. A signal ends it with util::Interrupted saying where the
/// progress was saved.
std::vector<std::pair<std::string, double>> run_stages(const config::Config& cfg,
                                                       const std::vector<std::string>& stages,
                                                       const StageRegistry& registry,
                                                       const RunOptions& options = {});

}  // namespace aefx::engine
